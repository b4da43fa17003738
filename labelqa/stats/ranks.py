"""Ranks of the issues table: flagged rows first, each group by score, ties by row position.

:func:`rank_rows` ranks rows held in memory. :class:`RankIndex` gives the
same ranks to rows produced batch by batch in input order (the streaming and
Dask runners): flagged rows (bounded by the issue count) are ranked in
memory; for the others only their scores are kept, sorted (4 bytes a row for
float32 scores, else 8), plus one counter per score value that occurs more
than once: a row's rank is ``n_flagged + 1 + #(smaller scores) + #(equal
scores earlier in the input)``. With a single batch the index simply holds
:func:`rank_rows`' answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelqa.parallel import thread_map, worker_count

__all__ = ["RankIndex", "rank_rows", "sort_in_place"]

#: From this many values :func:`sort_in_place` sorts the two halves on two threads.
PARALLEL_SORT_MIN = 1 << 20


def sort_in_place(values: np.ndarray) -> None:
    """``values.sort()``, on two cores for large arrays: each half sorted on a thread, then the two sorted runs
    merged by a stable sort (numpy's timsort finds the runs: one merge pass). 4M float32: ~150 -> ~95 ms."""
    if values.size < PARALLEL_SORT_MIN or worker_count() < 2:
        values.sort()
        return
    half = values.size // 2
    list(thread_map(np.ndarray.sort, [values[:half], values[half:]]))
    values.sort(kind="stable")


def rank_rows(scores: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Rank every row, 1 = most suspect: flagged rows first, each group by score.

    Ties are broken by row position, so equal inputs give equal ranks.

    Args:
        scores: Per-row quality, lower = more suspect.
        flags: Per-row issue flag.

    Returns:
        int64 ranks ``1..N``; flagged rows hold ``1..n_flagged``.
    """
    flags = np.asarray(flags, dtype=bool)
    scores = np.asarray(scores)
    flagged, others = np.flatnonzero(flags), np.flatnonzero(~flags)
    # a stable sort of each group by score == lexsort by (flag, score, position); NaN sorts last in both
    order = np.concatenate([flagged[_score_order(scores[flagged])], others[_score_order(scores[others])]])
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def _score_order(scores: np.ndarray) -> np.ndarray:
    """``np.argsort(scores, kind="stable")`` (by :func:`stable_argsort`); float64 scores that are all exactly
    float32 (confident learning's self-confidence) sort as float32, by radix passes with no tie check."""
    if scores.dtype == np.float64 and scores.size >= 64:
        narrow = scores.astype(np.float32)
        if np.array_equal(narrow, scores):  # False with any NaN: the plain sort handles those
            return stable_argsort(narrow)
    return stable_argsort(scores)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise ``a == b``, NaN equal to NaN (sorting puts every NaN in one block)."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def stable_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")``, 2-4x as fast for float32 and float64 values without NaN.

    Each value is mapped to an unsigned integer with the same order (-0.0 taken as 0.0). A float32
    key is sorted by two stable passes over its 16-bit halves (numpy sorts 16-bit values by radix:
    850k rows in ~25 ms where a sort of 64-bit words takes ~45). A float64 key keeps its top
    ``64 - b`` bits (``b`` = the bits of the largest position) packed above the position in one
    uint64, so a plain sort of distinct integers gives the order; the few rows whose cut keys tie
    but whose whole keys do not are then put in order by a second, small sort (see :func:`_packed_order`).
    """
    n = values.size
    if values.dtype not in (np.float32, np.float64) or n >= 2**32 or n < 64 or np.isnan(values).any():
        return np.argsort(values, kind="stable")
    keys = _sortable_bits(values)
    if values.dtype == np.float32:
        order = np.argsort(keys.astype(np.uint16), kind="stable")  # the low halves (astype keeps the low bits)
        np.right_shift(keys, np.uint32(16), out=keys)
        return order[np.argsort(keys.astype(np.uint16)[order], kind="stable")]
    width = max(int(n - 1).bit_length(), 1)
    return _packed_order(keys, width)


def _sortable_bits(values: np.ndarray) -> np.ndarray:
    """Float32 (float64) values as uint32 (uint64) with the same order, -0.0 as 0.0; a fresh array."""
    unsigned = np.uint32 if values.dtype == np.float32 else np.uint64
    top = values.dtype.itemsize * 8 - 1
    bits = (values + values.dtype.type(0)).view(unsigned)  # a copy, worked on in place
    flip = bits >> unsigned(top)  # negative: all bits flipped; else the sign bit
    np.multiply(flip, unsigned((1 << top) - 1), out=flip)
    np.bitwise_or(flip, unsigned(1 << top), out=flip)
    np.bitwise_xor(bits, flip, out=bits)
    return bits


def _packed_order(keys: np.ndarray, width: int) -> np.ndarray:
    """The stable order of uint64 ``keys``: each key's top ``64 - width`` bits above its ``width``-bit position.

    Runs of equal cut keys that hold an inversion of the whole keys are then re-sorted by (cut key,
    whole key, position); when there are many, the plain stable sort of the keys is used instead.
    """
    n = keys.size
    packed = np.empty(n, dtype=np.uint64)
    position = np.arange(n, dtype=np.uint64)
    np.right_shift(keys, np.uint64(width), out=packed)
    np.left_shift(packed, np.uint64(width), out=packed)
    np.bitwise_or(packed, position, out=packed)
    packed.sort()
    order = np.bitwise_and(packed, np.uint64((1 << width) - 1)).astype(np.intp)
    np.right_shift(packed, np.uint64(width), out=packed)  # the cut keys, sorted
    tied = np.flatnonzero(packed[1:] == packed[:-1])
    if not tied.size:
        return order
    inverted = tied[keys[order[tied]] > keys[order[tied + 1]]]
    if inverted.size > n // 16:  # keys that differ mostly below the cut: the plain stable sort is quicker
        return np.argsort(keys, kind="stable")
    if inverted.size:
        cut = np.unique(packed[inverted])  # the runs to mend, each a range of sorted positions
        lo = np.searchsorted(packed, cut, "left")
        sizes = np.searchsorted(packed, cut, "right") - lo
        at = np.arange(int(sizes.sum())) + np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)
        rows = order[at]
        order[at] = rows[np.lexsort((rows, keys[rows], packed[at]))]
    return order


class RankIndex:
    """Global ranks for rows seen batch by batch in input order (see the module doc).

    Feed every batch once with :meth:`add` (any order of batches; parts from
    other processes merge with :meth:`merge`), call :meth:`finish`, then ask
    :meth:`ranks` for each batch, in input order. Unflagged scores are kept
    as float32 when every one of them is exactly a float32 (e.g. float32
    self-confidence), else as float64.
    """

    def __init__(self) -> None:
        self.dtype = np.dtype(np.float32)
        self._unflagged: list[np.ndarray] = []
        self._fs: list[np.ndarray] = []
        self._fp: list[np.ndarray] = []
        self._single: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._parts = 0
        self.n_flagged = 0

    def add(self, scores: np.ndarray, flags: np.ndarray, positions: np.ndarray) -> RankIndex:
        """Fold one batch in (``positions``: the rows' global indices)."""
        flags = np.asarray(flags, dtype=bool)
        self._parts += 1
        if self._parts == 1:
            self._single = (np.asarray(scores), flags, np.asarray(positions))
        else:
            self._spill()
            self._add(scores, flags, positions)
        self.n_flagged += int(np.count_nonzero(flags))
        return self

    def _spill(self) -> None:
        if self._single is not None:
            s, f, p = self._single
            self._single = None
            self._add(s, f, p)

    def _add(self, scores: np.ndarray, flags: np.ndarray, positions: np.ndarray) -> None:
        unf = np.asarray(scores[~flags])
        narrow = unf.astype(np.float32)
        if unf.dtype != np.float32 and not np.array_equal(narrow.astype(unf.dtype), unf, equal_nan=True):
            self.dtype = np.dtype(np.float64)
            narrow = unf.astype(np.float64)
        self._unflagged.append(narrow)
        self._fs.append(np.asarray(scores[flags], dtype=np.float64))
        self._fp.append(np.asarray(positions[flags], dtype=np.int64))

    def merge(self, other: RankIndex) -> RankIndex:
        """Fold another index's batches in; returns ``self``."""
        other._spill()
        self._spill()
        self._parts += max(other._parts, 1)
        self.dtype = np.promote_types(self.dtype, other.dtype)
        self._unflagged += other._unflagged
        self._fs += other._fs
        self._fp += other._fp
        self.n_flagged += other.n_flagged
        return self

    def finish(self) -> RankIndex:
        """Sort what was fed; returns ``self``."""
        if self._single is not None:
            s, f, p = self._single
            self._single_ranks = (int(p[0]) if p.size else 0, rank_rows(s, f))
            return self
        self._single_ranks = None
        fs = np.concatenate(self._fs) if self._fs else np.empty(0)
        fp = np.concatenate(self._fp) if self._fp else np.empty(0, dtype=np.int64)
        self._fs, self._fp = [], []
        # flagged rows by position, then stably by score: rank order (score, position), as rank_rows; a sort of
        # positions that come in sorted runs and a radix sort of the scores (4M x 10: ~65 -> ~25 ms, no lexsort)
        by_pos = np.argsort(fp, kind="stable")
        self.flag_pos = fp[by_pos]
        del fp
        order = _score_order(fs[by_pos])
        del fs, by_pos
        self.flag_rank = np.empty(order.size, dtype=np.int64)
        self.flag_rank[order] = np.arange(1, order.size + 1)
        del order  # (each temporary freed once used: the peak of a large index is its sorted scores)
        s = np.empty(sum(part.size for part in self._unflagged), dtype=self.dtype)
        at = 0
        while self._unflagged:  # fill one array, freeing each part as it is copied (no second copy of all)
            part = self._unflagged.pop(0)
            s[at : at + part.size] = part
            at += part.size
            del part
        sort_in_place(s)
        self.sorted = s
        # Tied scores are runs of ``s`` (NaN ties NaN, as in rank_rows' sort). A run is named by where it starts,
        # which the search for a score finds anyway; ``seen[i]`` counts the rows already ranked of the i-th run.
        index_type = np.int64 if s.size >= 2**31 else np.int32
        repeats = np.equal(s[1:], s[:-1])  # s[i + 1] repeats s[i]; NaN sorts last, so only the tail can be NaN
        if s.size and np.isnan(s[-1]):
            nan_from = int(np.searchsorted(s, np.nan))  # NaN ties NaN, as in rank_rows' sort
            repeats[nan_from:] = True
        starts = repeats.copy()  # a run of ties starts where s repeats and did not just before
        starts[1:] &= ~repeats[:-1]
        del repeats
        self.tie_starts = np.flatnonzero(starts).astype(index_type)
        del starts
        self.has_ties = bool(self.tie_starts.size)
        self.seen = np.zeros(self.tie_starts.size, dtype=index_type)
        return self

    def restart(self) -> None:
        """Ready :meth:`ranks` for another walk over the batches from the first."""
        if self._single_ranks is None:
            self.seen[:] = 0

    def ranks(self, scores: np.ndarray, flags: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Ranks of one batch; batches must come in input order (call :meth:`restart` before each walk)."""
        return self.ranks_of(self.prepare(scores, flags, positions))

    def prepare(self, scores: np.ndarray, flags: np.ndarray, positions: np.ndarray) -> tuple[Any, ...]:
        """The searches behind one batch's ranks, which read the finished index only (any thread, any order).

        :meth:`ranks_of` then completes them, batch after batch in input order.
        """
        if self._single_ranks is not None:
            start, ranks = self._single_ranks
            return (ranks[positions - start] if positions.size != ranks.size else ranks,)
        flags = np.asarray(flags, dtype=bool)
        out = np.empty(scores.size, dtype=np.int64)
        if flags.any():
            out[flags] = self.flag_rank[np.searchsorted(self.flag_pos, positions[flags])]
        unf = ~flags
        s = np.asarray(scores[unf], dtype=self.dtype)
        # Keys sorted once (stable: equal scores keep input order) walk the big array in order, and make the
        # tied rows of each repeated value one run already in input order.
        order = stable_argsort(s)
        keys = s[order]
        start_of = np.searchsorted(self.sorted, keys, side="left")  # where each score's run starts
        r = self.n_flagged + 1 + start_of
        sd = heads = tied_rows = None
        if self.has_ties and keys.size:
            # a score is tied when its run holds a second value (every fed score is in ``sorted``)
            nxt = np.minimum(start_of + 1, self.sorted.size - 1)
            hit = (start_of + 1 < self.sorted.size) & _same(self.sorted[nxt], keys)
            tied_rows = np.flatnonzero(hit)
            sd = np.searchsorted(self.tie_starts, start_of[hit])  # which tied run (non-decreasing)
            start = np.r_[True, sd[1:] != sd[:-1]] if sd.size else np.zeros(0, dtype=bool)
            heads = np.flatnonzero(start)
            r[tied_rows] += np.arange(sd.size) - heads[np.cumsum(start) - 1]  # place among this batch's ties
        return out, unf, order, r, sd, heads, tied_rows

    def ranks_of(self, prepared: tuple[Any, ...]) -> np.ndarray:
        """Ranks of one batch from :meth:`prepare`: the rows tied with earlier batches' counted (input order)."""
        if len(prepared) == 1:
            return prepared[0]
        out, unf, order, r, sd, heads, tied_rows = prepared
        if sd is not None and sd.size:
            r[tied_rows] += self.seen[sd]
            self.seen[sd[heads]] += np.diff(np.r_[heads, sd.size])  # each value once: no add.at
        ranked = np.empty(r.size, dtype=np.int64)
        ranked[order] = r
        out[unf] = ranked
        return out
