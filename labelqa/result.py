"""ScanResult: what a scan found, and how it becomes report tables and a summary.

One result type for every engine. It holds the dataset's facts, each
detector's outcome (parameters, summary, issue count), the row totals the
summary is built from (:class:`RowTotals`: counts, per-class issues, confused
pairs, summed over batches by the out-of-core runners) and the gate. The
per-row outputs are either in memory (``data`` and ``results``, from the
in-memory engine) or recomputed batch by batch by the runner that scanned
(:class:`RowSource`, from the streaming and Dask engines): writers read
:meth:`ScanResult.iter_issue_batches` either way.

Writers, the gate and fix read a ScanResult; they never recompute detector
logic. With several detectors, per-row score, flag and suggestion come from
:mod:`labelqa.detectors.ensemble`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa._version import __version__
from labelqa.data.arrays import from_numpy
from labelqa.data.model import LabelData
from labelqa.detectors import ensemble
from labelqa.detectors.base import DetectorResult
from labelqa.errors import LabelqaError
from labelqa.jsonable import MATRIX_INLINE_CLASSES, MatrixList, jsonable
from labelqa.parallel import beside
from labelqa.report.reasons import reasons_for, scatter_text
from labelqa.stats.multilabel import set_members
from labelqa.stats.ranks import rank_rows

__all__ = [
    "ISSUE_COLUMNS",
    "SUMMARY_SCHEMA_VERSION",
    "DetectorOutcome",
    "RowSource",
    "RowTotals",
    "ScanResult",
    "MATRICES_FILE",
    "MATRIX_INLINE_CLASSES",
    "build_issues_table",
    "class_array",
    "write_matrices",
    "summary_matrices",
    "with_matrices",
    "class_sets",
    "rank_rows",
    "summarize",
]

#: Version of the summary.json layout; bump on any incompatible change.
#: 2: detector parameters and the options use the one option vocabulary (``nrg_lambda``, ``ema_alpha``...).
#: 3: K x K matrices in matrices.npy (``matrices`` says where each belongs; ``null`` here above
#: :data:`MATRIX_INLINE_CLASSES` classes).
SUMMARY_SCHEMA_VERSION = 3

#: Fixed leading columns of issues.parquet, in order.
ISSUE_COLUMNS = (
    "id",
    "given_label",
    "suggested_label",
    "label_quality",
    "is_label_issue",
    "rank",
    "suggested_confidence",
    "detectors",
    "reason",
)

#: Extra per-row arrays of detectors that become issue-table columns under their own name.
_NAMED_EXTRAS = ("outlier_score", "is_outlier", "aum", "dup_group", "dup_group_size", "dup_leak")
#: N x K boolean extras of multi-label detectors, written as lists of class names.
_CLASS_SET_EXTRAS = ("labels_to_remove", "labels_to_add")

_ORIENTATION = "noise_matrix[i][j] = P(given label = classes[i] | true label = classes[j])"

#: The report file holding every K x K matrix of the summary (confident joint, noise matrix...), stacked as
#: one float64 ``(M, K, K)`` array in NumPy's .npy format (``np.load(path, allow_pickle=False)``).
MATRICES_FILE = "matrices.npy"
#: Rows per batch of the in-memory issues table handed to report writers (issues.parquet's row group).
MEMORY_BATCH_ROWS = 1 << 18


def summary_matrices(outcomes: Mapping[str, DetectorOutcome], primary: str, k: int) -> dict[str, np.ndarray]:
    """The summary's K x K matrices by their place in summary.json (``detectors.cl.summary.noise_matrix``).

    Every detector-summary value that is a numeric ``(k, k)`` array (or nested list) is one; the top-level
    ``noise_matrix`` is the primary detector's (the same array object, stored once in :data:`MATRICES_FILE`).
    """
    found: dict[str, np.ndarray] = {}
    if k < 2:
        return found
    for name, outcome in outcomes.items():
        for key, value in outcome.summary.items():
            if isinstance(value, np.ndarray):
                arr = value
            elif isinstance(value, MatrixList):
                arr = value.array
            elif isinstance(value, list) and len(value) == k and isinstance(value[0], (list, np.ndarray)):
                try:
                    arr = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    continue
            else:
                continue
            if arr.shape == (k, k) and arr.dtype.kind in "biuf":
                found[f"detectors.{name}.summary.{key}"] = arr
    primary_nm = found.get(f"detectors.{primary}.summary.noise_matrix")
    if primary_nm is not None:
        found["noise_matrix"] = primary_nm
    return found


def with_matrices(summary: dict[str, Any], matrices: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A copy of ``summary`` with the matrices put back where summary.json names them (as arrays).

    Only the dicts on the way are copied; ``summary`` itself is unchanged. Paths that summary.json does
    not have are ignored.
    """
    out = dict(summary)
    for path, arr in matrices.items():
        keys = path.split(".")
        if keys[0] == "detectors" and len(keys) == 4:
            det = out.get("detectors")
            if not isinstance(det, dict) or not isinstance(det.get(keys[1]), dict):
                continue
            if det is summary.get("detectors"):
                det = out["detectors"] = dict(det)
            entry = det[keys[1]] = dict(det[keys[1]])
            if isinstance(entry.get("summary"), dict):
                entry["summary"] = {**entry["summary"], keys[3]: arr}
        elif len(keys) == 1:
            out[keys[0]] = arr
    return out


def _matrix_index(matrices: Mapping[str, np.ndarray]) -> tuple[dict[str, int], list[np.ndarray]]:
    """Each matrix path's position in the stacked file, each distinct array stored once."""
    index: dict[str, int] = {}
    stack: list[np.ndarray] = []
    seen: dict[int, int] = {}
    for path, arr in matrices.items():
        if id(arr) not in seen:
            seen[id(arr)] = len(stack)
            stack.append(arr)
        index[path] = seen[id(arr)]
    return index, stack


def write_matrices(path: str | os.PathLike[str], matrices: Mapping[str, np.ndarray]) -> None:
    """Write :data:`MATRICES_FILE`: the ``(M, K, K)`` float64 array (order: summary.json's ``matrices.index``).

    The bytes of ``np.save`` of the stacked matrices, written matrix by matrix: no stacked copy (at
    K = 1,000 four matrices are 32 MB of fresh pages).
    """
    _, stack = _matrix_index(matrices)
    parts = [np.ascontiguousarray(a, dtype=np.float64) for a in stack]
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)), "fortran_order": False,
              "shape": (len(parts), *parts[0].shape)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for part in parts:
            part.tofile(fh)


# --------------------------------------------------------------------------- row totals
@dataclass
class RowTotals:
    """Counts over the rows that the summary and the gate need; summed over batches with :meth:`merge`.

    Attributes:
        n_rows: Rows.
        n_flagged: Rows flagged (by the flags the totals were counted for).
        class_counts: ``(K,)`` rows given each class (multi-label: rows whose set holds it).
        class_issues: ``(K,)`` flagged rows given each class.
        suggested_into: ``(K,)`` flagged rows suggested into each class
            (multi-label: labels suggested to be added).
        pairs: ``(K, K)`` flagged rows by (given, suggested) class;
            ``None`` for multi-label data.
        outliers: Rows marked ``is_outlier`` (NRG), or ``None``.
    """

    n_rows: int
    n_flagged: int
    class_counts: np.ndarray
    class_issues: np.ndarray
    suggested_into: np.ndarray
    pairs: np.ndarray | None = None
    outliers: int | None = None

    @classmethod
    def of_rows(cls, labels: np.ndarray, flags: np.ndarray, suggested: np.ndarray, n_classes: int, *,
                multilabel: bool, outliers: np.ndarray | None = None) -> RowTotals:
        """Totals of some rows: given labels (codes, or an N x K bool matrix), flags, suggestions."""
        flags = np.asarray(flags, dtype=bool)
        k = n_classes
        if multilabel:
            counts = np.count_nonzero(labels, axis=0).astype(np.int64)
            issues = np.count_nonzero(labels[flags], axis=0).astype(np.int64)
            into = np.count_nonzero(suggested[flags] & ~labels[flags], axis=0).astype(np.int64)
            pairs = None
        else:
            labels = np.asarray(labels, dtype=np.int64)
            counts = np.bincount(labels, minlength=k)
            pairs = np.bincount(labels[flags] * k + np.asarray(suggested)[flags], minlength=k * k).reshape(k, k)
            issues, into = pairs.sum(axis=1), pairs.sum(axis=0)
        n_out = None if outliers is None else int(np.count_nonzero(outliers))
        return cls(int(flags.size), int(np.count_nonzero(flags)), counts, issues, into, pairs, n_out)

    def merge(self, other: RowTotals) -> RowTotals:
        """Fold the totals of other rows in; returns ``self``."""
        self.n_rows += other.n_rows
        self.n_flagged += other.n_flagged
        self.class_counts = self.class_counts + other.class_counts
        self.class_issues = self.class_issues + other.class_issues
        self.suggested_into = self.suggested_into + other.suggested_into
        if self.pairs is not None and other.pairs is not None:
            self.pairs = self.pairs + other.pairs
        if self.outliers is not None or other.outliers is not None:
            self.outliers = (self.outliers or 0) + (other.outliers or 0)
        return self

    @property
    def class_rates(self) -> np.ndarray:
        """``(K,)`` share of each class's rows that are flagged."""
        return np.divide(self.class_issues, self.class_counts, out=np.zeros(self.class_counts.size),
                         where=self.class_counts > 0)


@dataclass(frozen=True)
class DetectorOutcome:
    """One detector's dataset-level outcome (what summary.json reports of it)."""

    name: str
    n_issues: int
    params: dict[str, Any]
    summary: dict[str, Any]


def summarize(
    *,
    source: str | None,
    task: str,
    classes: list[str],
    primary: str,
    issue_rule: str,
    totals: RowTotals,
    outcomes: Mapping[str, DetectorOutcome],
    options: dict[str, Any],
    models: dict[str, Any] | None = None,
    matrices: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The summary.json dict (versioned schema), from aggregates only (``matrices``: :func:`summary_matrices`
    of these outcomes, when the caller already has them)."""
    k = len(classes)
    det = outcomes[primary].summary
    if matrices is None:
        matrices = summary_matrices(outcomes, primary, k)
    inline = k <= MATRIX_INLINE_CLASSES

    def detector_summary(name: str, summ: dict[str, Any]) -> Any:
        if inline:
            return jsonable(summ)
        return jsonable({key: (None if f"detectors.{name}.summary.{key}" in matrices else value)
                         for key, value in summ.items()})
    extra = det.get("per_class") or [{}] * k
    per_class = []
    for c in range(k):
        row = {
            "class": classes[c],
            "count": int(totals.class_counts[c]),
            "issues": int(totals.class_issues[c]),
            "issue_rate": float(totals.class_rates[c]),
            "suggested_into": int(totals.suggested_into[c]),
        }
        for key, value in extra[c].items():
            if key not in ("class", "class_count"):
                row.setdefault(key, value)
        per_class.append(row)
    confused = []
    if totals.pairs is not None:
        flat = totals.pairs.ravel()
        order = np.argsort(-flat, kind="stable")[:10]
        confused = [{"given": classes[c // k], "suggested": classes[c % k], "count": int(flat[c])}
                    for c in order if flat[c] > 0]
    out: dict[str, Any] = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "labelqa_version": __version__,
        "source": source,
        "task": task,
        "rows": totals.n_rows,
        "n_classes": k,
        "classes": list(classes),
        "primary_detector": primary,
        "detectors_run": list(outcomes),
        "issue_rule": issue_rule if len(outcomes) > 1 else "primary",
        "issues_found": totals.n_flagged,
        "issue_rate": totals.n_flagged / totals.n_rows if totals.n_rows else 0.0,
        "estimated_num_issues": det.get("estimated_num_issues"),
        "estimated_noise_rate": det.get("estimated_noise_rate"),
        "estimated_noise_rate_interval": det.get("estimated_noise_rate_interval"),
        "estimated_noise_rate_estimator": det.get("estimated_noise_rate_estimator"),
        "noise_matrix": det.get("noise_matrix") if inline or "noise_matrix" not in matrices else None,
        "noise_matrix_orientation": _ORIENTATION,
        "per_class": per_class,
        "confused_pairs": confused,
        "detectors": {
            name: {"issues_found": o.n_issues, "params": jsonable(o.params),
                   "summary": detector_summary(name, o.summary)}
            for name, o in outcomes.items()
        },
        "options": jsonable(options),
    }
    if matrices:
        index, _ = _matrix_index(matrices)
        out["matrices"] = {"file": MATRICES_FILE, "inline": inline, "shape": [max(index.values()) + 1, k, k],
                           "index": index}
    if models is not None:
        out["models"] = jsonable(models)
    if totals.outliers is not None:
        out["outliers_found"] = totals.outliers
    return out


# --------------------------------------------------------------------------- the issues table
def build_issues_table(data: LabelData, results: Mapping[str, DetectorResult], primary: str,
                       issue_rule: str = ensemble.DEFAULT_ISSUE_RULE, ranks: np.ndarray | None = None,
                       relative: np.ndarray | None = None) -> pa.Table:
    """The issues table of some rows: one row per input row, joinable on ``id``, in input order.

    Columns: ``id, given_label, suggested_label, label_quality,
    is_label_issue, rank, suggested_confidence, detectors, reason``; for
    multi-label data also ``labels_to_remove, labels_to_add`` (lists of
    class names, where the label columns are lists too); then, when several
    detectors ran, ``<detector>_score`` and ``<detector>_issue`` for each
    (with one detector they would repeat ``label_quality`` and
    ``is_label_issue``), and detector extras such as ``outlier_score``, ``is_outlier``
    (NRG) and ``aum`` (AUM).

    Args:
        data: The rows (the whole dataset, or one batch of it).
        results: Each detector's outputs for those rows.
        primary: The primary detector.
        issue_rule: How flags combine with several detectors.
        ranks: The rows' ranks; default :func:`rank_rows` over these rows
            (a batch passes its global ranks).
        relative: With several detectors, the rows' mean relative ranks over the whole dataset
            (:func:`labelqa.detectors.ensemble.relative_ranks`; a batch passes them); default from these rows.
    """
    return _Rows(data, dict(results), primary, issue_rule, relative).table(ranks)


class _Rows:
    """Per-row views of detector results over some rows (combined by the ensemble rule)."""

    def __init__(self, data: LabelData, results: dict[str, DetectorResult], primary: str, issue_rule: str,
                 relative: np.ndarray | None = None) -> None:
        self.data = data
        self.relative = relative
        self.results = results
        self.primary = primary
        self.issue_rule = issue_rule
        self._cache: dict[str, Any] = {}

    def _cached(self, key: str, build: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def multilabel(self) -> bool:
        return self.data.task == "multilabel"

    @property
    def label_quality(self) -> np.ndarray:
        return self._cached("quality", lambda: ensemble.combined_score(list(self.results.values()), self.relative))

    @property
    def is_label_issue(self) -> np.ndarray:
        return self._cached(
            "flags", lambda: ensemble.combined_flags(list(self.results.values()), self.primary, self.issue_rule,
                                                    self.relative)
        )

    def suggestion(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._cached(
            "suggestion",
            lambda: ensemble.combined_suggestion(list(self.results.values()), self.primary, self.data.labels),
        )

    def totals(self, flags: np.ndarray | None = None) -> RowTotals:
        """Row totals for the combined flags, or for ``flags``."""
        f = self.is_label_issue if flags is None else flags
        outliers = None
        for res in self.results.values():
            if "is_outlier" in res.extra:
                outliers = res.extra["is_outlier"]
                break
        return RowTotals.of_rows(self.data.labels, f, self.suggestion()[0], self.data.n_classes,
                                 multilabel=self.multilabel, outliers=outliers)

    def table(self, ranks: np.ndarray | None = None) -> pa.Table:
        """The whole issues table (one block of every row)."""
        return next(self.blocks(max(self.data.n_rows, 1), ranks))

    def ranks_future(self) -> Future[np.ndarray]:
        """The rows' ranks (:func:`rank_rows`), sorted on a side thread started on first call.

        The sort releases the GIL, so it runs beside whatever the caller does
        next (the summary, the first block's text columns). The arrays it
        reads are computed here first, so the two threads never both fill the
        same cache entry.
        """
        if "ranks" not in self._cache:
            flags = np.asarray(self.is_label_issue, dtype=bool)
            quality = self.label_quality
            self._cache["ranks"] = beside(rank_rows, quality, flags, name="labelqa-rank")
        return self._cache["ranks"]

    def blocks(self, block_rows: int, ranks: np.ndarray | None = None) -> Iterator[pa.Table]:
        """The issues table in blocks of ``block_rows`` rows, in input order, each built when asked for.

        A writer can encode one block while the next is built. The first block
        is a quarter of the others when that splits the rows: the writer starts
        sooner, and the writer is what the report waits for. The rank sort
        (global) runs on a side thread (:meth:`ranks_future`) beside the first
        block's text columns.
        """
        from labelqa.models import disagreement_columns

        data = self.data
        n = data.n_rows
        flags = np.asarray(self.is_label_issue, dtype=bool)
        quality = self.label_quality
        self.suggestion()
        disagreement = disagreement_columns(data)  # several models: where they disagree
        pending = self.ranks_future() if ranks is None else None
        first = block_rows // 4 if n > block_rows else block_rows
        starts = [0, *range(first, max(n, 1), block_rows)] if first < block_rows else range(0, max(n, 1), block_rows)
        for start in starts:
            stop = min(start + (first if start == 0 else block_rows), n)
            rows = slice(start, stop)
            columns = self._row_columns(flags, quality, rows)
            if pending is not None:
                ranks, pending = pending.result(), None
            columns["rank"] = from_numpy(np.asarray(ranks)[rows])
            for key, values in disagreement.items():
                columns[key] = from_numpy(values[rows])
            yield pa.table(columns)

    def _row_columns(self, flags: np.ndarray, quality: np.ndarray, rows: slice) -> dict[str, pa.Array | None]:
        """The issues table's columns for ``rows`` but ``rank`` (a ``None`` placeholder, to keep its position)."""
        data = self.data
        suggested, conf = self.suggestion()
        size = rows.stop - rows.start
        if self.multilabel:
            given = class_sets(data.labels[rows], data.classes)
            suggested_col = class_sets(suggested[rows], data.classes)
        else:
            given = class_array(data.labels[rows], data.classes)
            suggested_col = class_array(suggested[rows], data.classes)
        columns: dict[str, pa.Array | None] = {
            "id": from_numpy(data.ids[rows]),
            "given_label": given,
            "suggested_label": suggested_col,
            "label_quality": from_numpy(np.asarray(quality[rows], dtype=np.float64)),
            "is_label_issue": from_numpy(flags[rows]),
            "rank": None,  # filled in by blocks()
            "suggested_confidence": from_numpy(
                np.asarray(conf[rows], dtype=np.float64) if conf is not None else np.full(size, np.nan)
            ),
            "detectors": self._detectors_column(rows),
            "reason": self._reason_column(rows),
        }
        if self.multilabel:
            for key in _CLASS_SET_EXTRAS:
                mats = [r.extra[key][rows] for r in self.results.values() if key in r.extra]
                if mats:
                    columns[key] = class_sets(np.logical_or.reduce(mats) & flags[rows, None], data.classes)
        single = len(self.results) == 1  # its score and flag are label_quality and is_label_issue: not repeated
        for name, res in self.results.items():
            if not single:
                columns[f"{name}_score"] = pa.array(np.asarray(res.scores[rows], dtype=np.float64))
                columns[f"{name}_issue"] = pa.array(np.asarray(res.issues[rows], dtype=bool))
            for key in _NAMED_EXTRAS:
                if key in res.extra and key not in columns:
                    columns[key] = pa.array(np.asarray(res.extra[key][rows]))
        return columns

    def _detectors_column(self, rows: slice) -> pa.Array:
        """Comma-separated names of the detectors that flagged each of ``rows`` ("" for none).

        Rows are coded by the bitmask of their flags, so only the few distinct
        patterns are turned into strings; only the flagged rows' text is taken,
        then spread over all rows (:func:`scatter_text`).
        """
        names = list(self.results)
        if len(names) > 62:
            raise ValueError("at most 62 detectors per scan")
        dtype = np.uint8 if len(names) <= 8 else np.int64  # a byte a row for the usual few detectors
        code = np.zeros(rows.stop - rows.start, dtype=dtype)
        for bit, res in enumerate(self.results.values()):
            code |= np.asarray(res.issues[rows], dtype=dtype) << dtype(bit)
        fired = np.flatnonzero(code)
        fired_code = code[fired]
        patterns = np.flatnonzero(np.bincount(fired_code, minlength=1))
        labels = [",".join(n for b, n in enumerate(names) if (int(p) >> b) & 1) for p in patterns]
        lookup = np.zeros(int(patterns[-1]) + 1 if patterns.size else 1, dtype=np.int32)  # pattern -> label index
        lookup[patterns] = np.arange(patterns.size, dtype=np.int32)
        text = pa.array(labels, pa.string()).take(from_numpy(lookup[fired_code]))
        return scatter_text(text, fired, code.size)

    def _reason_column(self, rows: slice) -> pa.Array:
        """A short human reason for the flagged ones of ``rows`` ("" for the others).

        Each detector that fired contributes a phrase; several are joined
        with "; " (Arrow kernels throughout, no per-row Python).
        """
        idx = rows.start + np.flatnonzero(self.is_label_issue[rows])
        parts = [reasons_for(self.data, res, idx) for res in self.results.values()]
        if len(parts) == 1:
            joined = parts[0]
        else:
            # rows no single detector flagged (relative_rank can take them) are joined apart
            fired = np.flatnonzero(np.any([np.asarray(r.issues, dtype=bool)[idx] for r in self.results.values()],
                                          axis=0))
            nulled = [pc.if_else(pc.equal(p, ""), pa.scalar(None, pa.string()), p).take(pa.array(fired))
                      for p in parts]
            some = pc.fill_null(pc.binary_join_element_wise(*nulled, "; ", null_handling="skip"), "")
            joined = scatter_text(some, fired, idx.size)
            if fired.size < idx.size:
                rest = np.setdiff1d(np.arange(idx.size), fired)
                phrase = ensemble.joint_reason(list(self.results.values()), idx[rest], self.relative)
                joined = pc.if_else(pc.equal(joined, ""), scatter_text(phrase, rest, idx.size), joined)
        return scatter_text(joined, idx - rows.start, rows.stop - rows.start)


def class_array(codes: np.ndarray, classes: tuple[Any, ...]) -> pa.Array:
    """Class values for integer codes, as Arrow ints or strings like the label column."""
    codes = np.asarray(codes, dtype=np.int64)
    if classes and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return from_numpy(np.asarray(classes, dtype=np.int64)[codes])
    return pa.array(np.asarray([str(c) for c in classes])[codes], type=pa.string())


def class_sets(matrix: np.ndarray, classes: tuple[Any, ...]) -> pa.Array:
    """Rows of an N x K bool matrix as lists of class values (vectorised)."""
    offsets, cols = set_members(matrix)
    return pa.ListArray.from_arrays(pa.array(offsets), class_array(cols, classes))


# --------------------------------------------------------------------------- the result
class RowSource(Protocol):
    """Per-row outputs recomputed by the runner that scanned (streaming and Dask engines)."""

    engine: str

    @property
    def passes(self) -> list[str]:
        """Names of the passes over the data so far."""

    def issue_batches(self) -> Iterator[pa.Table]:
        """The issues table, batch by batch in input order, with global ranks."""

    def close(self) -> None:
        """Release the runner (e.g. a local Dask cluster)."""


@dataclass(eq=False)
class ScanResult:
    """The combined outcome of running detectors on one dataset.

    Built in memory as ``ScanResult(data=..., results=..., primary=...)``;
    the out-of-core engines build it with :meth:`from_totals`. Either way
    :meth:`summary`, :attr:`n_issues`, :attr:`gate` and
    :meth:`iter_issue_batches` work; the per-row arrays (``data``,
    ``results``, :attr:`label_quality`...) exist only in memory.

    Attributes:
        data: The scanned data (``None`` out of core).
        results: Detector results by detector name, in run order (empty out of core).
        primary: Name of the primary detector (its figures lead the summary).
        issue_rule: How flags combine when several detectors ran (see
            :mod:`labelqa.detectors.ensemble`).
        options: Options the scan ran with (recorded in the summary).
        gate: The quality gate's outcome, decided by :func:`labelqa.scan`
            before anything is written (``None`` when not judged).
    """

    data: LabelData | None
    results: dict[str, DetectorResult]
    primary: str
    issue_rule: str = ensemble.DEFAULT_ISSUE_RULE
    options: dict[str, Any] = field(default_factory=dict)
    gate: Any = None  # a labelqa.gate.GateResult (the gate module builds on this one)
    row_index: Any = None  # the scanned pandas DataFrame's index: issues_df() is indexed by it
    _outcomes: dict[str, DetectorOutcome] | None = field(default=None, repr=False)
    _totals: RowTotals | None = field(default=None, repr=False)
    _facts: dict[str, Any] | None = field(default=None, repr=False)
    _rows_source: RowSource | None = field(default=None, repr=False)
    _views: _Rows | None = field(default=None, init=False, repr=False)
    _top: pa.Table | None = field(default=None, init=False, repr=False)
    _matrices: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False)
    _summary: tuple[Any, dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.issue_rule not in ensemble.ISSUE_RULES:
            raise LabelqaError(f"unknown issue rule {self.issue_rule!r}",
                               f"choose one of {', '.join(ensemble.ISSUE_RULES)}")
        if self.data is not None:
            self._views = _Rows(self.data, self.results, self.primary, self.issue_rule)

    @classmethod
    def from_totals(cls, *, source: str | None, task: str, classes: tuple[Any, ...], meta: dict[str, Any],
                    primary: str, outcomes: dict[str, DetectorOutcome], totals: RowTotals,
                    options: dict[str, Any], rows: RowSource, issue_rule: str = "primary",
                    detector_totals: dict[str, RowTotals] | None = None) -> ScanResult:
        """A result whose rows stay with the runner (streaming and Dask engines).

        ``detector_totals``: each detector's own flags' totals (what the gate's
        ``gate_detectors`` naming one detector reads).
        """
        facts = {"source": source, "task": task, "classes": tuple(classes), "meta": dict(meta),
                 "detector_totals": dict(detector_totals or {})}
        rule = issue_rule if len(outcomes) > 1 else "primary"
        return cls(data=None, results={}, primary=primary, issue_rule=rule, options=options,
                   _outcomes=outcomes, _totals=totals, _facts=facts, _rows_source=rows)

    # ---- facts -----------------------------------------------------------
    @property
    def in_memory(self) -> bool:
        """Whether the per-row outputs are held in memory."""
        return self._views is not None

    @property
    def engine(self) -> str:
        """The engine that ran the scan (``memory``, ``stream`` or ``dask``)."""
        return "memory" if self._rows_source is None else self._rows_source.engine

    @property
    def passes(self) -> list[str]:
        """The passes an out-of-core engine made over the data (statistics, selections, rows); empty in memory."""
        return [] if self._rows_source is None else list(self._rows_source.passes)

    @property
    def task(self) -> str:
        """``"multiclass"`` or ``"multilabel"``."""
        return self.data.task if self.data is not None else self._facts["task"]  # type: ignore[index]

    @property
    def multilabel(self) -> bool:
        """Whether the data is multi-label."""
        return self.task == "multilabel"

    @property
    def classes(self) -> tuple[Any, ...]:
        """Class values in probability-column order."""
        return tuple(self.data.classes) if self.data is not None else self._facts["classes"]  # type: ignore[index]

    @property
    def source(self) -> str | None:
        """Where the data came from."""
        return self.data.source if self.data is not None else self._facts["source"]  # type: ignore[index]

    @property
    def outcomes(self) -> dict[str, DetectorOutcome]:
        """Each detector's dataset-level outcome, in run order."""
        if self._outcomes is None:
            self._outcomes = {name: DetectorOutcome(name, res.n_issues, res.params, res.summary)
                              for name, res in self.results.items()}
        return self._outcomes

    @property
    def totals(self) -> RowTotals:
        """Row totals of the combined flags."""
        if self._totals is None:
            self._totals = self._memory().totals()
        return self._totals

    @property
    def n_rows(self) -> int:
        """Rows scanned."""
        return self.totals.n_rows

    @property
    def n_issues(self) -> int:
        """Number of rows flagged as label issues."""
        return self.totals.n_flagged

    @property
    def issue_rate(self) -> float:
        """Share of rows flagged as label issues."""
        return self.n_issues / self.n_rows if self.n_rows else 0.0

    # ---- per-row views (in memory) ---------------------------------------
    def _memory(self) -> _Rows:
        if self._views is None:
            raise LabelqaError(
                f"this scan ran out of core (engine {self.engine}): its per-row outputs are not held in memory",
                "read them with result.iter_issue_batches() or write_report(result, DIR), "
                "or scan with engine='memory'",
            )
        return self._views

    @property
    def primary_result(self) -> DetectorResult:
        """The result of the primary detector (in memory)."""
        self._memory()
        return self.results[self.primary]

    @property
    def label_quality(self) -> np.ndarray:
        """Per-row label quality, lower = more suspect (rank average with several detectors)."""
        return self._memory().label_quality

    @property
    def is_label_issue(self) -> np.ndarray:
        """Per-row issue flag (the ensemble rule with several detectors)."""
        return self._memory().is_label_issue

    @property
    def suggested(self) -> np.ndarray:
        """Per-row suggested label codes (N x K bool label sets for multi-label)."""
        return self._memory().suggestion()[0]

    @property
    def suggested_confidence(self) -> np.ndarray | None:
        """Per-row probability backing the suggestion (NaN where unknown)."""
        return self._memory().suggestion()[1]

    def ranks(self) -> np.ndarray:
        """Rank of every row (see :func:`~labelqa.stats.ranks.rank_rows`)."""
        return self._memory().ranks_future().result().copy()

    def prefetch_ranks(self) -> None:
        """Start sorting the rows for their ranks on a side thread (in memory; out of core nothing to do).

        The issue batches then take the ranks from it; meanwhile the caller
        goes on (e.g. with :meth:`summary`).
        """
        if self._views is not None:
            self._views.ranks_future()

    def totals_for(self, detectors: list[str] | None = None) -> RowTotals:
        """Row totals of the rows flagged by any of ``detectors`` (default: the combined flags).

        Raises:
            LabelqaError: A named detector did not run, or, out of core, a
                set of detectors other than the one that ran.
        """
        if not detectors:
            return self.totals
        missing = [d for d in detectors if d not in self.outcomes]
        if missing:
            raise LabelqaError(
                f"gate detector {', '.join(map(repr, missing))} did not run in this scan "
                f"(ran: {', '.join(self.outcomes)})",
                "fix --gate-detectors / gate_detectors, or run the detector with --detectors",
            )
        if not self.in_memory:
            if len(self.outcomes) == 1 or set(detectors) == set(self.outcomes) and self.issue_rule == "any":
                return self.totals
            own = self._facts["detector_totals"]  # type: ignore[index]
            if len(set(detectors)) == 1 and detectors[0] in own:
                return own[detectors[0]]
            raise LabelqaError(
                f"out of core (engine {self.engine}) the gate counts the combined flags or one detector's, "
                f"not the rows flagged by any of {', '.join(detectors)}",
                "name one detector in --gate-detectors, or scan with --engine memory")
        flags = np.zeros(self.n_rows, dtype=bool)
        for name in detectors:
            flags |= np.asarray(self.results[name].issues, dtype=bool)
        return self._memory().totals(flags)

    # ---- tables --------------------------------------------------------
    def issues_table(self) -> pa.Table:
        """One row per input row, joinable on ``id``, in input order (see :func:`build_issues_table`).

        Built once and cached. Out of core the batches are computed again
        and concatenated: the whole table is then held in memory.
        """
        if self._views is None:
            return pa.concat_tables(list(self.iter_issue_batches()))
        return self._views._cached("issues", lambda: self._views.table())  # type: ignore[union-attr]

    def iter_issue_batches(self) -> Iterator[pa.Table]:
        """The issues table batch by batch, in input order, with global ranks.

        In memory: blocks of :data:`MEMORY_BATCH_ROWS` rows, each built when
        asked for (a report writer encodes one while the next is built), or
        the cached table once :meth:`issues_table` has built it.
        """
        if self._rows_source is not None:
            yield from self._rows_source.issue_batches()
        elif "issues" in self._views._cache:  # type: ignore[union-attr]
            yield self.issues_table()
        else:
            yield from self._views.blocks(MEMORY_BATCH_ROWS)  # type: ignore[union-attr]

    def top_issues(self, n: int) -> pa.Table:
        """The ``n`` best-ranked flagged rows of the issues table, in rank order.

        Out of core this reads the batches again, unless a report writer
        already kept them (:meth:`keep_top`).
        """
        from labelqa.report.toprows import TopRows

        if self._top is not None and self._top.num_rows >= min(n, self.n_issues):
            return self._top.slice(0, n)
        top = TopRows(n)
        for table in self.iter_issue_batches():
            top.add(table)
        return top.table()

    def keep_top(self, table: pa.Table) -> None:
        """Remember the best-ranked flagged rows (in rank order) seen while writing, for :meth:`top_issues`."""
        self._top = table

    def close(self) -> None:
        """Release the runner of an out-of-core scan (a local Dask cluster); a no-op in memory."""
        if self._rows_source is not None:
            self._rows_source.close()

    def __enter__(self) -> ScanResult:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- DataFrames and notebooks (rendering in labelqa.report.notebook) ----
    def issues_df(self) -> Any:
        """The issues table as a pandas DataFrame, one row per input row in input order.

        Indexed like the scanned DataFrame (joinable: ``df.join(result.issues_df())``);
        otherwise by the ``id`` column.
        """
        frame = self.issues_table().to_pandas()
        if self.row_index is not None and len(self.row_index) == len(frame):
            frame.index = self.row_index
        else:
            frame = frame.set_index("id", drop=False)
        return frame

    to_pandas = issues_df

    def ranked_issues(self, n: int | None = None) -> Any:
        """The flagged rows as a pandas DataFrame, best-ranked (most suspect) first; ``n`` of them if given."""
        frame = self.issues_df()
        frame = frame[frame["is_label_issue"].to_numpy()].sort_values("rank", kind="stable")
        return frame if n is None else frame.head(n)

    def cleaned(self, frame: Any, strategy: str = "remove") -> Any:
        """A cleaned copy of the scanned DataFrame: flagged rows removed (``"remove"``) or relabelled
        with the suggested label (``"relabel"``, multiclass); ``frame`` itself is not changed."""
        from labelqa.report.notebook import cleaned_frame

        return cleaned_frame(self, frame, strategy)

    def __repr__(self) -> str:
        from labelqa.report.notebook import short_repr

        return short_repr(self)

    def _repr_html_(self) -> str:
        from labelqa.report.notebook import render_html

        return render_html(self)

    # ---- summary -------------------------------------------------------
    def per_class(self) -> list[dict[str, Any]]:
        """Per-class counts and issue rates (plus the primary detector's figures)."""
        return self.summary()["per_class"]

    def confused_pairs(self, top: int = 10) -> list[dict[str, Any]]:
        """Most frequent (given, suggested) pairs among flagged rows (multiclass only)."""
        return self.summary()["confused_pairs"][:top]

    def summary(self) -> dict[str, Any]:
        """The dataset summary, as written to summary.json (versioned schema), with the gate when judged.

        Built once (and again only when the gate changes): the report writer and the terminal share it.
        Treat it as read-only.
        """
        if self._summary is None or self._summary[0] is not self.gate:
            self._summary = (self.gate, self._build_summary())
        return self._summary[1]

    def _build_summary(self) -> dict[str, Any]:
        models = None
        if self.data is not None:
            from labelqa.models import disagreement_summary

            models = disagreement_summary(self.data)
        out = summarize(
            source=self.source,
            task=self.task,
            classes=[str(c) for c in self.classes],
            primary=self.primary,
            issue_rule=self.issue_rule,
            totals=self.totals,
            outcomes=self.outcomes,
            options=self.options,
            models=models,
            matrices=self.matrices(),
        )
        if self.gate is not None:
            out["gate"] = self.gate.as_dict()
        return out

    def matrices(self) -> dict[str, np.ndarray]:
        """The summary's K x K matrices (confident joint, noise matrix...) by their place in summary.json.

        Written to :data:`MATRICES_FILE` by :func:`labelqa.write_report`; above
        :data:`MATRIX_INLINE_CLASSES` classes they are ``null`` in :meth:`summary`.
        """
        if self._matrices is None:  # built once: at K = 1,000 the nested lists take ~0.1 s to turn into arrays
            self._matrices = summary_matrices(self.outcomes, self.primary, len(self.classes))
        return self._matrices
