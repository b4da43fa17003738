"""Duplicates with conflicting labels: the same (or nearly the same) example labelled two ways.

Two rows are **exact duplicates** when the values of the chosen feature
columns (``dup_cols``: text, image bytes or paths, numbers, lists such as
pixel arrays) are equal: each row gets a 64-bit hash of those values
(:func:`row_hashes`, a per-row output) and rows with the same hash form a
group. Two rows are **near duplicates** when the cosine similarity of their
embeddings is at least ``dup_threshold``; candidates come from the same
neighbour index the NRG detector uses (:func:`labelqa.detectors.nrg_backends.knn_search`:
each row's ``dup_k`` nearest rows; ``dup_index`` picks the scikit-learn
inverted file, faiss HNSW or brute force). Groups are the connected
components of both kinds of links, so near-duplicate chains join one group.

In every group of two or more rows the **consensus label** is the most
frequent given label; a tie goes to the class with the larger summed
predicted probability over the group (fixed-point sums, so exact), then to the
lower class index. Rows whose label differs from their group's consensus
are flagged, with the consensus as the suggested label and the reason
"3 near-identical rows are labelled 'dog'".

Outputs (:class:`~labelqa.detectors.base.DetectorResult`):

- ``scores``: the share of the row's group that has the row's label (1 for
  rows in no group); lower = more suspect.
- ``issues``: the row's label differs from its group's consensus.
- ``suggested``: the consensus label for flagged rows, else the given label;
  ``suggested_confidence`` its predicted probability.
- ``extra``: ``dup_group`` (group number, -1 for none), ``dup_group_size``,
  ``dup_agree`` (rows of the group with the consensus label) and, with a
  split column, ``dup_leak`` (the group spans several splits: leakage).
- ``summary``: group counts (exact, near, conflicting, leaking) and the
  largest groups with their ids, labels and splits.

Exact grouping is an exact partial aggregate (:class:`HashGroups`: hash ->
per-class counts and probability sums, merged by adding), so it gives the
same groups batch by batch as on all rows at once. The detector's *plan*
(:meth:`DuplicateDetector.plan`, what the streaming and Dask engines run)
makes two statistics passes, rows per hash (:class:`HashCounts`), then label
counts, probability sums, first row and splits of the hashes seen twice or
more, and returns :class:`ExactDuplicateRule`, which scores any batch. Near
duplicates need every embedding at once: the in-memory :meth:`DuplicateDetector.detect`
finds them; see docs/duplicates.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.model import LabelData
from labelqa.detectors import nrg_backends as be
from labelqa.detectors.base import Block, DatasetInfo, Detector, DetectorResult, DetectorRows, Plan, RowRule, Step
from labelqa.errors import LabelqaError

__all__ = [
    "DEFAULT_THRESHOLD",
    "DuplicateDetector",
    "DuplicateGroups",
    "ExactDuplicateRule",
    "HashCounts",
    "HashGroups",
    "consensus_labels",
    "find_duplicates",
    "near_duplicate_pairs",
    "row_hashes",
]

#: Default cosine similarity at or above which two embeddings are near duplicates.
DEFAULT_THRESHOLD = 0.98

#: Fixed-point scale of probability sums (exact integer sums, so merge order never matters).
PROB_SCALE = 2**24

#: The hash of a row whose hashed columns are all null: such rows join no exact group.
NO_HASH = np.uint64(0)

#: Groups listed in the summary (largest and conflicting first).
SUMMARY_GROUPS = 20
#: Ids listed per group in the summary.
SUMMARY_IDS = 10

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


# --------------------------------------------------------------------------- hashing
def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * _MUL1
        h = (h ^ (h >> np.uint64(27))) * _MUL2
        return h ^ (h >> np.uint64(31))


def _hash_values(values: np.ndarray) -> np.ndarray:
    import pandas as pd  # a core dependency; its hash_array is vectorised C (siphash for objects)

    return pd.util.hash_array(values, categorize=False).astype(np.uint64, copy=False)


def _hash_column(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per-row uint64 hashes of one column and its null mask."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    n = len(arr)
    nulls = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(n, dtype=bool)
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        values = pc.list_flatten(arr)
        vh, vnull = _hash_column(values)
        vh = np.where(vnull, _GOLDEN, vh)
        # position within the row, mixed in so [1, 2] and [2, 1] differ; rows summed (order-free, wraps)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        pos = np.arange(len(values), dtype=np.uint64) - starts.astype(np.uint64)
        with np.errstate(over="ignore"):
            mixed = _mix(vh ^ _mix(pos + _GOLDEN))
        h = np.zeros(n, dtype=np.uint64)
        rows = np.repeat(np.arange(n), lengths)
        if mixed.size:
            # a wrapping sum per row: bincount would round through float64, so sum 32-bit halves exactly
            lo = np.bincount(rows, weights=(mixed & np.uint64(0xFFFFFFFF)).astype(np.float64), minlength=n)
            hi = np.bincount(rows, weights=(mixed >> np.uint64(32)).astype(np.float64), minlength=n)
            with np.errstate(over="ignore"):
                h = lo.astype(np.uint64) + (hi.astype(np.uint64) << np.uint64(32))
        with np.errstate(over="ignore"):
            h = _mix(h ^ _mix(lengths.astype(np.uint64) + np.uint64(1)))
        return h, nulls
    if pa.types.is_struct(t):
        raise LabelqaError(f"cannot hash a struct column ({t})", "choose scalar, text, bytes or list columns")
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or \
            pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        values = arr.to_numpy(zero_copy_only=False)
    elif pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        values = arr.fill_null(0).to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            values = np.where(values == 0, 0.0, values)  # -0.0 == 0.0
    else:  # dates, timestamps, decimals...: their text
        values = arr.cast(pa.string()).to_numpy(zero_copy_only=False)
    return _hash_values(values), nulls


def row_hashes(table: pa.Table, columns: list[str] | None = None) -> np.ndarray:
    """A 64-bit hash per row of the values of ``columns`` (default all), equal for equal rows.

    Text, bytes, numbers (``-0.0`` and ``0.0`` alike), booleans, lists
    (order matters) and other types by their text. A null hashes as a
    value of its own; a row whose columns are all null gets :data:`NO_HASH`
    and joins no group. Distinct rows collide with probability about
    ``2**-64`` per pair (~3e-8 over a million rows).
    """
    columns = list(columns or table.column_names)
    n = table.num_rows
    h = np.full(n, np.uint64(0x6A09E667F3BCC908), dtype=np.uint64)
    all_null = np.ones(n, dtype=bool)
    for name in columns:
        ch, nulls = _hash_column(table.column(name))
        ch = np.where(nulls, _GOLDEN, ch)
        all_null &= nulls
        with np.errstate(over="ignore"):
            h = _mix(h * np.uint64(31) + ch)
    h[h == NO_HASH] = np.uint64(1)
    h[all_null] = NO_HASH
    return h


# --------------------------------------------------------------------------- the mergeable partial
def _fixed_point(pred_probs: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(pred_probs, dtype=np.float64) * PROB_SCALE).astype(np.int64)


@dataclass(eq=False)
class HashGroups:
    """Per distinct row hash: label counts and fixed-point probability sums; merged by adding.

    The partial aggregate of exact-duplicate grouping: built per batch
    (:meth:`of`), merged in any order (:meth:`merge`) to the same value, then
    looked up per row (:meth:`lookup`).

    Attributes:
        hashes: Sorted distinct hashes (``NO_HASH`` excluded), shape ``(U,)``.
        counts: Rows per hash and given class, ``(U, K)`` int64.
        prob_sums: Predicted probabilities summed per hash, in units of ``1 / PROB_SCALE``, ``(U, K)`` int64.
    """

    hashes: np.ndarray
    counts: np.ndarray
    prob_sums: np.ndarray
    first: np.ndarray | None = None
    splits: np.ndarray | None = None

    @classmethod
    def empty(cls, n_classes: int, *, positions: bool = False, splits: bool = False) -> HashGroups:
        """No rows (``positions``/``splits``: also track first rows / split pairs, as :meth:`of` does)."""
        return cls(np.empty(0, np.uint64), np.zeros((0, n_classes), np.int64), np.zeros((0, n_classes), np.int64),
                   np.empty(0, np.int64) if positions else None, np.empty((0, 2), np.uint64) if splits else None)

    @classmethod
    def of(cls, hashes: np.ndarray, labels: np.ndarray, pred_probs: np.ndarray, positions: np.ndarray | None = None,
           split_hashes: np.ndarray | None = None) -> HashGroups:
        """The partial of one batch of rows.

        ``positions`` (global row indices) adds each hash's first row
        (:attr:`first`); ``split_hashes`` (:func:`row_hashes` of the split
        column) adds the distinct (hash, split) pairs (:attr:`splits`).
        """
        keep = hashes != NO_HASH
        hashes, labels = hashes[keep], np.asarray(labels, dtype=np.int64)[keep]
        k = pred_probs.shape[1]
        uniq, inverse = np.unique(hashes, return_inverse=True)
        counts = np.bincount(inverse * k + labels, minlength=uniq.size * k).reshape(uniq.size, k)
        sums = np.zeros((uniq.size, k), dtype=np.int64)
        np.add.at(sums, inverse, _fixed_point(pred_probs[keep]))
        first = None
        if positions is not None:
            first = np.full(uniq.size, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first, inverse, np.asarray(positions, dtype=np.int64)[keep])
        splits = None
        if split_hashes is not None:
            splits = np.unique(np.stack([hashes, np.asarray(split_hashes, np.uint64)[keep]], axis=1), axis=0)
        return cls(uniq, counts.astype(np.int64), sums, first, splits)

    def merge(self, other: HashGroups) -> HashGroups:
        """Both partials' rows (commutative and associative: integer sums, minima and set unions)."""
        hashes = np.concatenate([self.hashes, other.hashes])
        uniq, inverse = np.unique(hashes, return_inverse=True)
        counts = np.zeros((uniq.size, self.counts.shape[1]), dtype=np.int64)
        sums = np.zeros_like(counts)
        np.add.at(counts, inverse, np.concatenate([self.counts, other.counts]))
        np.add.at(sums, inverse, np.concatenate([self.prob_sums, other.prob_sums]))
        first = None
        if self.first is not None and other.first is not None:
            first = np.full(uniq.size, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first, inverse, np.concatenate([self.first, other.first]))
        splits = None
        if self.splits is not None and other.splits is not None:
            splits = np.unique(np.concatenate([self.splits, other.splits]), axis=0)
        return HashGroups(uniq, counts, sums, first, splits)

    def duplicated(self) -> HashGroups:
        """Only the hashes shared by two or more rows."""
        keep = self.counts.sum(axis=1) >= 2
        first = self.first[keep] if self.first is not None else None
        splits = self.splits
        if splits is not None:
            splits = splits[np.isin(splits[:, 0], self.hashes[keep])]
        return HashGroups(self.hashes[keep], self.counts[keep], self.prob_sums[keep], first, splits)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row: (hash index or -1, rows with its hash, their consensus class or -1, rows with that class)."""
        n = hashes.shape[0]
        if self.hashes.size == 0:
            return np.full(n, -1, np.int64), np.ones(n, np.int64), np.full(n, -1, np.int64), np.zeros(n, np.int64)
        pos = np.searchsorted(self.hashes, hashes).clip(max=self.hashes.size - 1)
        found = (self.hashes[pos] == hashes) & (hashes != NO_HASH)
        consensus = consensus_labels(self.counts, self.prob_sums)
        index = np.where(found, pos, -1)
        size = np.where(found, self.counts.sum(axis=1)[pos], 1)
        cons = np.where(found, consensus[pos], -1)
        agree = np.where(found, self.counts[pos, consensus[pos]], 0)
        return index, size, cons, agree


@dataclass(eq=False)
class HashCounts:
    """Rows per distinct row hash (``NO_HASH`` left out); merged by adding: the first pass of the exact plan.

    Attributes:
        hashes: Sorted distinct hashes, shape ``(U,)``.
        counts: Rows with each hash, ``(U,)`` int64.
    """

    _hashes: np.ndarray
    _counts: np.ndarray
    #: Batches' counts not yet folded in: merged when they outgrow the folded part, so feeding B batches of a
    #: dataset costs O(N log N), not O(N B).
    _pending: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @classmethod
    def empty(cls) -> HashCounts:
        """No rows."""
        return cls(np.empty(0, np.uint64), np.empty(0, np.int64))

    @classmethod
    def of(cls, hashes: np.ndarray) -> HashCounts:
        """The counts of one batch of rows."""
        uniq, counts = np.unique(hashes[hashes != NO_HASH], return_counts=True)
        return cls(uniq.astype(np.uint64), counts.astype(np.int64))

    def merge(self, other: HashCounts) -> HashCounts:
        """Both partials' rows (commutative and associative)."""
        out = HashCounts(self._hashes, self._counts,
                         [*self._pending, (other._hashes, other._counts), *other._pending])
        if sum(h.size for h, _ in out._pending) > max(out._hashes.size, 1 << 16):
            out._fold()
        return out

    def _fold(self) -> None:
        if not self._pending:
            return
        parts = [(self._hashes, self._counts), *self._pending]
        uniq, inverse = np.unique(np.concatenate([h for h, _ in parts]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([c for _, c in parts]), minlength=uniq.size)
        self._hashes, self._counts, self._pending = uniq.astype(np.uint64), counts.astype(np.int64), []

    @property
    def hashes(self) -> np.ndarray:
        """Sorted distinct hashes."""
        self._fold()
        return self._hashes

    @property
    def counts(self) -> np.ndarray:
        """Rows per hash."""
        self._fold()
        return self._counts

    def duplicated(self) -> np.ndarray:
        """The sorted hashes of two or more rows."""
        return self.hashes[self.counts >= 2]


def consensus_labels(counts: np.ndarray, prob_sums: np.ndarray) -> np.ndarray:
    """Per group: the most frequent class; ties to the larger probability sum, then the lower index."""
    if counts.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    top = counts == counts.max(axis=1, keepdims=True)
    return np.argmax(np.where(top, prob_sums, -1), axis=1).astype(np.int64)


# --------------------------------------------------------------------------- near duplicates and groups
def near_duplicate_pairs(embeddings: np.ndarray, threshold: float, *, k: int = 10, index: str = "auto",
                         n_probe: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j, cosine)`` with ``i < j`` whose L2-normalised embeddings have cosine >= ``threshold``.

    Each row's ``k`` nearest rows come from :func:`~labelqa.detectors.nrg_backends.knn_search`
    (``index``: ``auto``/``sklearn``, ``faiss`` or ``brute``); a row with more
    than ``k`` near duplicates still joins them all through the groups'
    transitive closure.
    """
    n = embeddings.shape[0]
    if n < 2:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    nbrs, sims, _ = be.knn_search(embeddings, k, index=index, n_probe=n_probe, seed=seed)
    rows = np.broadcast_to(np.arange(n)[:, None], nbrs.shape)
    near = (sims >= np.float32(threshold)) & (nbrs != rows)
    i, j, s = rows[near], nbrs[near].astype(np.int64), sims[near]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = np.unique(lo * n + hi, return_index=True)[1]
    return lo[key].astype(np.int64), hi[key].astype(np.int64), s[key]


@dataclass(eq=False)
class DuplicateGroups:
    """Rows grouped as duplicates.

    Attributes:
        group: Group number per row, ``-1`` for rows in no group; groups are
            numbered by their first row.
        size: Rows in the row's group (1 for rows in no group).
        exact: Per group: every row has the same hash (identical hashed columns).
        consensus: Per group: the consensus class.
        agree: Per group: rows with the consensus class.
        counts: Per group and class: rows given that class, ``(G, K)``.
    """

    group: np.ndarray
    size: np.ndarray
    exact: np.ndarray
    consensus: np.ndarray
    agree: np.ndarray
    counts: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return int(self.consensus.size)

    def conflicts(self, labels: np.ndarray) -> np.ndarray:
        """Rows in a group whose label differs from the group's consensus."""
        grouped = self.group >= 0
        out = np.zeros(self.group.shape, dtype=bool)
        out[grouped] = np.asarray(labels)[grouped] != self.consensus[self.group[grouped]]
        return out


def find_duplicates(labels: np.ndarray, pred_probs: np.ndarray, *, hashes: np.ndarray | None = None,
                    embeddings: np.ndarray | None = None, threshold: float = DEFAULT_THRESHOLD, k: int = 10,
                    index: str = "auto", n_probe: int = 16, seed: int = 0) -> DuplicateGroups:
    """Group rows that are exact duplicates (equal ``hashes``) or near duplicates (embeddings).

    Args:
        labels: Class codes ``(N,)``.
        pred_probs: ``(N, K)`` probabilities (tie-break of the consensus).
        hashes: Per-row hashes (:func:`row_hashes`), or ``None``.
        embeddings: L2-normalised float32 ``(N, D)`` embeddings, or ``None``.
        threshold: Cosine similarity of near duplicates.
        k, index, n_probe, seed: The neighbour search (:func:`near_duplicate_pairs`).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    labels = np.asarray(labels, dtype=np.int64)
    n, k_classes = pred_probs.shape
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    if hashes is not None:
        valid = np.flatnonzero(hashes != NO_HASH)
        _, first, inverse = np.unique(hashes[valid], return_index=True, return_inverse=True)
        src.append(valid)
        dst.append(valid[first[inverse]])  # every row linked to the first row with its hash
    if embeddings is not None:
        i, j, _ = near_duplicate_pairs(embeddings, threshold, k=k, index=index, n_probe=n_probe, seed=seed)
        src.append(i)
        dst.append(j)
    a = np.concatenate(src) if src else np.empty(0, np.int64)
    b = np.concatenate(dst) if dst else np.empty(0, np.int64)
    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp)
    in_group = comp_size[comp] >= 2
    # number groups by their first row
    first_rows = np.unique(comp[in_group], return_index=True)
    order = np.argsort(np.flatnonzero(in_group)[first_rows[1]], kind="stable")
    renumber = np.full(comp_size.size, -1, dtype=np.int64)
    renumber[first_rows[0][order]] = np.arange(order.size)
    group = renumber[comp]
    n_groups = order.size
    members = np.flatnonzero(group >= 0)
    g = group[members]
    counts = np.bincount(g * k_classes + labels[members], minlength=n_groups * k_classes).reshape(n_groups, k_classes)
    sums = np.zeros((n_groups, k_classes), dtype=np.int64)
    np.add.at(sums, g, _fixed_point(pred_probs[members]))
    consensus = consensus_labels(counts, sums)
    exact = np.zeros(n_groups, dtype=bool)
    if hashes is not None and n_groups:
        h = hashes[members]
        distinct = np.unique(np.stack([g.astype(np.uint64), h], axis=1), axis=0)
        n_hashes = np.bincount(distinct[:, 0].astype(np.int64), minlength=n_groups)
        no_hash = np.bincount(g, weights=(h == NO_HASH), minlength=n_groups) > 0
        exact = (n_hashes == 1) & ~no_hash
    size = np.ones(n, dtype=np.int64)
    size[members] = comp_size[comp[members]]
    agree = counts[np.arange(n_groups), consensus] if n_groups else np.zeros(0, np.int64)
    return DuplicateGroups(group, size, exact, consensus, agree.astype(np.int64), counts.astype(np.int64))


# --------------------------------------------------------------------------- the exact plan (any engine)
def _block_table(block: Block, columns: list[str]) -> pa.Table:
    """The block's rows of the data-file ``columns``: streamed with the batch, or read from the loaded file."""
    if block.columns is not None:
        return block.columns
    data = block.data
    if data is None or data.source is None:
        raise LabelqaError(
            f"the dup detector reads columns {', '.join(columns)} from the data file, but the data was "
            "built in memory", "load it from a file, or call labelqa.detectors.duplicates.find_duplicates")

    def read() -> pa.Table:
        from labelqa.data.readers import read_table

        table = read_table(data.source, data.meta.get("input_format"), columns)
        if table.num_rows != data.n_rows:  # pragma: no cover - the same file the loader read
            raise LabelqaError(f"{data.source} has {table.num_rows} rows, the loaded data {data.n_rows}")
        return table

    return block.cached(("dup_table", tuple(columns)), read)


def _block_hashes(block: Block, columns: list[str], wanted: list[str]) -> np.ndarray:
    """:func:`row_hashes` of the block's ``columns`` (``wanted``: every column the detector reads)."""
    return block.cached(("dup_hashes", tuple(columns)),
                        lambda: row_hashes(_block_table(block, wanted), columns))


class _HashCountStep(Step):
    """Pass 1: rows per hash."""

    name = "duplicate hashes"

    def __init__(self, columns: list[str], wanted: list[str]) -> None:
        self.columns, self.wanted = columns, wanted

    def start(self) -> HashCounts:
        return HashCounts.empty()

    def feed(self, partial: HashCounts, block: Block) -> HashCounts:
        return partial.merge(HashCounts.of(_block_hashes(block, self.columns, self.wanted)))


class _HashGroupStep(Step):
    """Pass 2: label counts, probability sums, first row and splits of the hashes seen twice or more."""

    name = "duplicate groups"

    def __init__(self, columns: list[str], wanted: list[str], split_col: str | None, duplicated: np.ndarray,
                 n_classes: int) -> None:
        self.columns, self.wanted, self.split_col = columns, wanted, split_col
        self.duplicated, self.n_classes = duplicated, n_classes

    def start(self) -> HashGroups:
        return HashGroups.empty(self.n_classes, positions=True, splits=self.split_col is not None)

    def feed(self, partial: HashGroups, block: Block) -> HashGroups:
        h = _block_hashes(block, self.columns, self.wanted)
        sel = np.flatnonzero(_member(h, self.duplicated))
        if sel.size == 0:
            return partial
        split = _block_hashes(block, [self.split_col], self.wanted)[sel] if self.split_col else None
        return partial.merge(HashGroups.of(h[sel], np.asarray(block.labels)[sel], np.asarray(block.pred_probs)[sel],
                                           positions=block.positions[sel], split_hashes=split))


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` by binary search."""
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, values).clip(max=sorted_set.size - 1)
    return sorted_set[pos] == values


class ExactDuplicateRule(RowRule):
    """Per-row outputs of exact-duplicate groups, from the merged partial of the hashes seen twice or more.

    Gives the in-memory detector's columns and summary on data without
    embeddings: groups numbered by their first row, the same consensus,
    scores, flags and suggestions.
    """

    def __init__(self, groups: HashGroups, columns: list[str], wanted: list[str], split_col: str | None,
                 classes: tuple[Any, ...]) -> None:
        self.groups, self.columns, self.wanted, self.split_col = groups, columns, wanted, split_col
        self.class_names = [str(c) for c in classes]
        n = groups.hashes.size
        assert groups.first is not None, "the groups pass records first rows"
        by_first = np.argsort(groups.first, kind="stable")
        self.group_of = np.empty(n, dtype=np.int64)
        self.group_of[by_first] = np.arange(n)
        self.consensus = consensus_labels(groups.counts, groups.prob_sums)
        self.sizes = groups.counts.sum(axis=1)
        self.agree = groups.counts[np.arange(n), self.consensus] if n else np.zeros(0, np.int64)
        self.leak = None
        if split_col is not None:
            assert groups.splits is not None, "the groups pass records splits"
            at = np.searchsorted(groups.hashes, groups.splits[:, 0])
            self.leak = np.bincount(at, minlength=n) >= 2
        # the groups the summary lists, by group number: conflicting, then leaking, then largest, then first row
        sizes_g = np.empty(n, np.int64)
        sizes_g[self.group_of] = self.sizes
        conflicting_g = np.empty(n, bool)
        conflicting_g[self.group_of] = self.agree < self.sizes
        leak_g = np.zeros(n, bool)
        if self.leak is not None:
            leak_g[self.group_of] = self.leak
        self.listed = np.lexsort((np.arange(n), -sizes_g, ~leak_g, ~conflicting_g))[:SUMMARY_GROUPS]

    def rows(self, block: Block) -> DetectorRows:
        labels = np.asarray(block.labels, dtype=np.int64)
        h = _block_hashes(block, self.columns, self.wanted)
        index, size, cons, agree = self.groups.lookup(h)
        found = index >= 0
        at = index[found]
        group = np.full(block.n, -1, dtype=np.int64)
        group[found] = self.group_of[at]
        issues = found & (labels != cons)
        own = np.ones(block.n, dtype=np.float64)
        own[found] = self.groups.counts[at, labels[found]] / size[found]
        suggested = labels.copy()
        suggested[issues] = cons[issues]
        confidence = np.asarray(block.pred_probs, dtype=np.float64)[np.arange(block.n), suggested]
        extra: dict[str, np.ndarray] = {"dup_group": group, "dup_group_size": size, "dup_agree": agree,
                                        "dup_exact": found.copy()}
        if self.leak is not None:
            leak = np.zeros(block.n, dtype=bool)
            leak[found] = self.leak[at]
            extra["dup_leak"] = leak
        return DetectorRows(scores=own, issues=issues, suggested=suggested, suggested_confidence=confidence,
                            extra=extra)

    def tally(self, block: Block, rows: DetectorRows) -> dict[str, Any]:
        """The ids (and splits) of the listed groups' rows in this block, as lists (concatenated over blocks)."""
        group = rows.extra["dup_group"]
        sel = np.flatnonzero(np.isin(group, self.listed))
        g = group[sel]
        order = np.argsort(g, kind="stable")
        starts = np.r_[0, np.flatnonzero(g[order][1:] != g[order][:-1]) + 1]
        within = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size])) if order.size \
            else np.zeros(0, np.int64)
        first_ids = np.sort(order[within < SUMMARY_IDS])  # each group's first rows, in row order
        out: dict[str, Any] = {"dup_ids": [(int(g[i]), _plain(block.ids[sel[i]])) for i in first_ids]}
        if self.split_col is not None:
            split_h = _block_hashes(block, [self.split_col], self.wanted)[sel]
            _, one = np.unique(np.stack([g.astype(np.uint64), split_h], axis=1), axis=0, return_index=True)
            values = _block_table(block, self.wanted).column(self.split_col).take(pa.array(sel[one])).to_pylist()
            out["dup_splits"] = [(int(g[i]), str(v)) for i, v in zip(one, values)]
        return out

    def summary(self, tallies: dict[str, Any]) -> dict[str, Any]:
        n = self.groups.hashes.size
        conflicting = self.agree < self.sizes
        out: dict[str, Any] = {
            "hashed_columns": list(self.columns),
            "near_threshold": None,
            "n_groups": int(n),
            "n_exact_groups": int(n),
            "n_near_groups": 0,
            "rows_in_groups": int(self.sizes.sum()),
            "largest_group": int(self.sizes.max()) if n else 0,
            "n_conflicting_groups": int(conflicting.sum()),
            "n_issues": int((self.sizes - self.agree).sum()),
            "issue_rule": "label differs from its duplicate group's most frequent label",
        }
        if self.leak is not None:
            out["split_col"] = self.split_col
            out["n_leak_groups"] = int(self.leak.sum())
            out["rows_in_leak_groups"] = int(self.sizes[self.leak].sum())
        at_of = np.empty(n, dtype=np.int64)
        at_of[self.group_of] = np.arange(n)
        ids: dict[int, list[Any]] = {}
        for gi, row_id in tallies.get("dup_ids", []):
            ids.setdefault(gi, []).append(row_id)
        splits: dict[int, set[str]] = {}
        for gi, value in tallies.get("dup_splits", []):
            splits.setdefault(gi, set()).add(value)
        listed = []
        for gi in self.listed:
            at = at_of[gi]
            counts = self.groups.counts[at]
            item: dict[str, Any] = {
                "group": int(gi),
                "size": int(self.sizes[at]),
                "kind": "identical",
                "labels": {self.class_names[c]: int(counts[c]) for c in np.flatnonzero(counts)},
                "consensus": self.class_names[int(self.consensus[at])],
                "ids": ids.get(int(gi), [])[:SUMMARY_IDS],
            }
            if self.leak is not None:
                item["splits"] = sorted(splits.get(int(gi), set()))
            listed.append(item)
        out["groups"] = listed
        return out


# --------------------------------------------------------------------------- the detector
@dataclass(kw_only=True)
class DuplicateDetector(Detector):
    """Exact and near duplicates whose labels disagree.

    Args:
        dup_cols: Columns of the data file hashed for exact duplicates
            (``None``: no exact matching).
        dup_threshold: Cosine similarity of embeddings at or above which two
            rows are near duplicates (used when the data has embeddings).
        dup_k: Neighbours searched per row for near duplicates.
        dup_index: Neighbour index: ``auto`` (scikit-learn inverted file),
            ``sklearn``, ``faiss`` or ``brute``.
        split_col: Column of the data file naming each row's split
            (train/test...); groups spanning several splits are reported as
            leakage.
        n_probe: Cells searched per cell by the scikit-learn index (32: every injected near duplicate
            found at 1M rows in benchmarks/bench_duplicates.py; 8 and 16 missed 1.9% and 0.5%).
        seed: Seed of the approximate index.
    """

    name: ClassVar[str] = "dup"
    #: Exact duplicates run batch by batch (:meth:`plan`); near duplicates need every embedding at once,
    #: which only the in-memory engine loads (the scan keeps scans with embeddings there).
    needs_all_rows: ClassVar[str | None] = None

    dup_cols: list[str] | None = None
    dup_threshold: float = DEFAULT_THRESHOLD
    dup_k: int = 10
    dup_index: str = "auto"
    split_col: str | None = None
    n_probe: int = 32
    seed: int = 0

    def check_params(self) -> None:
        super().check_params()
        if int(self.n_probe) < 1:
            raise LabelqaError(f"invalid dup option: n_probe={self.n_probe}", "use at least 1")

    def file_columns(self) -> list[str]:
        """The hashed columns and the split column."""
        return list(dict.fromkeys(list(self.dup_cols or []) + ([self.split_col] if self.split_col else [])))

    def check(self, info: DatasetInfo) -> None:
        """Validate the parameters; the exact plan also needs multiclass data and columns to hash."""
        self.check_params()
        if info.task != "multiclass":
            raise LabelqaError("the dup detector is defined for multiclass data", "drop dup from --detectors")
        if not self.dup_cols:
            raise LabelqaError("the dup detector needs columns to hash on this engine",
                               "pass --dup-cols COL,... (near duplicates of embeddings need --engine memory)")

    def plan(self, info: DatasetInfo) -> Plan:
        """Exact duplicates in two statistics passes (rows per hash, then the groups of repeated hashes).

        Gives the in-memory detector's outputs on data without embeddings;
        near duplicates are not searched (they need every embedding at once).
        """
        columns, wanted = list(self.dup_cols or []), self.file_columns()
        counts = yield _HashCountStep(columns, wanted)
        groups = yield _HashGroupStep(columns, wanted, self.split_col, counts.duplicated(), info.n_classes)
        return ExactDuplicateRule(groups, columns, wanted, self.split_col, info.classes)

    def _read_columns(self, data: LabelData, columns: list[str]) -> pa.Table:
        if data.source is None:
            raise LabelqaError(
                f"the dup detector reads columns {', '.join(columns)} from the data file, but the data was "
                "built in memory", "load it from a file, or call labelqa.detectors.duplicates.find_duplicates")
        from labelqa.data.readers import read_table

        table = read_table(data.source, data.meta.get("input_format"), columns)
        if table.num_rows != data.n_rows:  # pragma: no cover - the same file the loader read
            raise LabelqaError(f"{data.source} has {table.num_rows} rows, the loaded data {data.n_rows}")
        return table

    def detect(self, data: LabelData) -> DetectorResult:
        """Group duplicates in ``data`` and flag rows whose group disagrees with their label."""
        self.check_params()
        if data.task != "multiclass":
            raise LabelqaError("the dup detector is defined for multiclass data", "drop dup from --detectors")
        if not self.dup_cols and data.embeddings is None:
            raise LabelqaError("the dup detector needs columns to hash or embeddings",
                               "pass --dup-cols COL,... (text, image bytes or paths) or --embeddings-col COLUMN")
        wanted = list(self.dup_cols or []) + ([self.split_col] if self.split_col else [])
        table = self._read_columns(data, wanted) if wanted else None
        hashes = row_hashes(table, list(self.dup_cols)) if self.dup_cols else None
        embeddings = None
        if data.embeddings is not None:
            from labelqa.detectors.nrg import prepare_embeddings

            embeddings = prepare_embeddings(data.embeddings, data.n_rows, data.ids)
        groups = find_duplicates(data.labels, data.pred_probs, hashes=hashes, embeddings=embeddings,
                                 threshold=float(self.dup_threshold), k=int(self.dup_k), index=self.dup_index,
                                 n_probe=int(self.n_probe), seed=int(self.seed))
        labels = np.asarray(data.labels, dtype=np.int64)
        issues = groups.conflicts(labels)
        grouped = groups.group >= 0
        g = groups.group
        own = np.ones(data.n_rows, dtype=np.float64)
        own[grouped] = groups.counts[g[grouped], labels[grouped]] / groups.size[grouped]
        suggested = labels.copy()
        suggested[issues] = groups.consensus[g[issues]]
        rows = np.arange(data.n_rows)
        confidence = np.asarray(data.pred_probs, dtype=np.float64)[rows, suggested]
        agree = np.zeros(data.n_rows, dtype=np.int64)
        agree[grouped] = groups.agree[g[grouped]]
        extra: dict[str, np.ndarray] = {"dup_group": g, "dup_group_size": groups.size, "dup_agree": agree,
                                        "dup_exact": np.where(grouped, groups.exact[np.maximum(g, 0)], False)}
        leak_groups = None
        if self.split_col:
            split = table.column(self.split_col)
            leak_groups = _spanning_groups(g, split)
            extra["dup_leak"] = np.where(grouped, leak_groups[np.maximum(g, 0)], False) if groups.n_groups \
                else np.zeros(data.n_rows, dtype=bool)
        summary = _summary(self, data, groups, issues, leak_groups, table)
        return DetectorResult(name=self.name, scores=own, issues=issues, suggested=suggested,
                              suggested_confidence=confidence, summary=summary, params=self.get_params(),
                              extra=extra)


def _spanning_groups(group: np.ndarray, split: pa.ChunkedArray) -> np.ndarray:
    """Per group: its rows come from two or more splits."""
    n_groups = int(group.max()) + 1 if group.size and group.max() >= 0 else 0
    if n_groups == 0:
        return np.zeros(0, dtype=bool)
    codes = pc.dictionary_encode(split.cast(pa.string()).combine_chunks()).indices
    codes = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    members = group >= 0
    pairs = np.unique(np.stack([group[members], codes[members]], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=n_groups) >= 2


def _summary(det: DuplicateDetector, data: LabelData, groups: DuplicateGroups, issues: np.ndarray,
             leak_groups: np.ndarray | None, table: pa.Table | None) -> dict[str, Any]:
    n_groups = groups.n_groups
    sizes = np.bincount(groups.group[groups.group >= 0], minlength=n_groups)
    conflicting = groups.agree < sizes
    out: dict[str, Any] = {
        "hashed_columns": list(det.dup_cols or []),
        "near_threshold": float(det.dup_threshold) if data.embeddings is not None else None,
        "n_groups": n_groups,
        "n_exact_groups": int(groups.exact.sum()),
        "n_near_groups": int(n_groups - groups.exact.sum()),
        "rows_in_groups": int(sizes.sum()),
        "largest_group": int(sizes.max()) if n_groups else 0,
        "n_conflicting_groups": int(conflicting.sum()),
        "n_issues": int(issues.sum()),
        "issue_rule": "label differs from its duplicate group's most frequent label",
    }
    if leak_groups is not None:
        out["split_col"] = det.split_col
        out["n_leak_groups"] = int(leak_groups.sum())
        out["rows_in_leak_groups"] = int(sizes[leak_groups].sum())
    # the listed groups: conflicting first, then leaking, then by size (largest first), then by first row
    leak = leak_groups if leak_groups is not None else np.zeros(n_groups, dtype=bool)
    order = np.lexsort((np.arange(n_groups), -sizes, ~leak, ~conflicting))[:SUMMARY_GROUPS]
    members_of = np.argsort(groups.group, kind="stable")
    starts = np.searchsorted(groups.group[members_of], np.arange(n_groups))
    names = data.class_names
    split = table.column(det.split_col).to_pylist() if leak_groups is not None and order.size else None
    listed = []
    for gi in order:
        rows = members_of[starts[gi]: starts[gi] + sizes[gi]]
        item: dict[str, Any] = {
            "group": int(gi),
            "size": int(sizes[gi]),
            "kind": "identical" if groups.exact[gi] else "near-identical",
            "labels": {names[c]: int(groups.counts[gi, c]) for c in np.flatnonzero(groups.counts[gi])},
            "consensus": names[int(groups.consensus[gi])],
            "ids": [_plain(data.ids[r]) for r in rows[:SUMMARY_IDS]],
        }
        if split is not None:
            item["splits"] = sorted({str(split[r]) for r in rows})
        listed.append(item)
    out["groups"] = listed
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def reasons(class_names: list[str], labels: np.ndarray, extra: dict[str, np.ndarray], suggested: np.ndarray,
            idx: np.ndarray) -> list[str]:
    """"3 near-identical rows are labelled 'dog'" for the flagged rows ``idx``."""
    agree = np.asarray(extra["dup_agree"])[idx]
    exact = np.asarray(extra["dup_exact"])[idx]
    sugg = np.asarray(suggested)[idx]
    out = []
    for a, e, s in zip(agree, exact, sugg):
        kind = "identical" if e else "near-identical"
        out.append(f"{a} {kind} row{'s are' if a != 1 else ' is'} labelled '{class_names[s]}'")
    return out
