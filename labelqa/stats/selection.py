"""Bounded-memory, order-independent "the c smallest (or largest) values" selection.

Every selection of the detectors ("flag the c rows of class k with the
lowest self-confidence") follows one tie rule: rows tied with the ``c``-th
value share its fate (all taken, possibly more than ``c``, unless that
exceeds a ``limit``; then none of them is). That rule only depends on three
numbers: the cut value ``v`` (the ``c``-th value), how many values are
strictly beyond it and how many equal it. This module finds them over any
batching of the values, merging partials in any order:

* :class:`Pick`: one group. Keeps ``min(c, n - c + 1)`` values (the smaller
  side) plus one counter (:class:`BoundedSmallest`); its :class:`Cut` is the
  rule any batch can apply.
* :class:`GroupedTop`: many groups at once, vectorised: per group the ``c``
  most extreme values *and every value tied with the c-th*, so the cut and
  its tie count are exact. Fed only with *candidate* values (e.g. the rows
  whose prediction disagrees with their label) when every other value of
  the group is known to lie on the far side of a bound: a group whose cut
  falls before the bound is then *settled* from the candidates alone
  (:class:`GroupCuts` keeps the rules of many groups as arrays).

:class:`BoundedSmallest` keeps the ``m`` smallest values seen (a multiset)
and the number of *discarded* values equal to the largest kept one. When the
kept set shrinks its maximum, discarded values are all >= the old maximum,
hence never equal to the new one, so the counter stays exact.

Values are compared exactly as given (float32 stays float32; negation, used
for the other side, is exact).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PREFILTER_MIN_ROWS", "BoundedSmallest", "Cut", "GroupCuts", "GroupedTop", "Pick", "Selections", "narrowed_beyond", "top_window"]


class BoundedSmallest:
    """The ``m`` smallest values of a stream (a multiset), mergeable.

    Attributes:
        m: How many values to keep (>= 1).
        seen: Number of values folded in so far.
    """

    def __init__(self, m: int, dtype: np.dtype | type = np.float64) -> None:
        if m < 1:
            raise ValueError(f"m must be >= 1, got {m}")
        self.m = int(m)
        self.dtype = np.dtype(dtype)
        self.seen = 0
        self._kept = np.empty(0, dtype=self.dtype)
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self._cut: object = None  # the m-th smallest once m values were seen
        self._extra = 0  # discarded values equal to the cut

    def update(self, values: np.ndarray) -> BoundedSmallest:
        """Fold a batch of values in; returns ``self``."""
        v = np.asarray(values, dtype=self.dtype).ravel()
        self.seen += v.size
        if v.size == 0:
            return self
        if self._cut is not None:
            cut = self._cut
            self._extra += int(np.count_nonzero(v == cut))
            v = v[v < cut]
            if v.size == 0:
                return self
        self._pending.append(v.copy() if v.base is not None else v)
        self._n_pending += v.size
        if self._kept.size + self._n_pending >= 2 * self.m + 1024:
            self._compact()
        return self

    def _compact(self) -> None:
        if not self._pending:
            return
        u = np.concatenate([self._kept, *self._pending])
        self._pending, self._n_pending = [], 0
        self._reduce(u, [(self._cut, self._extra)])

    def _reduce(self, u: np.ndarray, previous: list[tuple[object, int]]) -> None:
        """Keep the m smallest of ``u``; ``previous``: (cut, discarded ties) of the parts."""
        if u.size < self.m:
            self._kept, self._cut, self._extra = u, None, 0
            return
        if u.size == self.m:
            kept = u
            cut = u.max()
        else:
            part = np.partition(u, self.m - 1)
            kept = part[: self.m].copy()
            cut = part[self.m - 1]
        extra = int(np.count_nonzero(u == cut)) - int(np.count_nonzero(kept == cut))
        # Values discarded earlier by a part are >= that part's cut, and the new
        # cut is <= every full part's cut: they equal it only when the cuts match.
        extra += sum(e for c, e in previous if c is not None and c == cut)
        self._kept, self._cut, self._extra = kept, cut, extra

    def merge(self, other: BoundedSmallest) -> BoundedSmallest:
        """Fold another accumulator (over other values) in; returns ``self``."""
        if other.m != self.m:
            raise ValueError(f"cannot merge m={other.m} into m={self.m}")
        self._compact()
        other._compact()
        self.seen += other.seen
        u = np.concatenate([self._kept, other._kept.astype(self.dtype, copy=False)])
        self._reduce(u, [(self._cut, self._extra), (other._cut, other._extra)])
        return self

    def result(self) -> tuple[object, int, int] | None:
        """``(cut, n_below, n_equal)``: the m-th smallest value, how many values
        are strictly smaller and how many equal it; ``None`` if fewer than m
        values were seen."""
        self._compact()
        if self._cut is None:
            if self._kept.size < self.m:
                return None
            self._reduce(self._kept, [])
        cut = self._cut
        below = int(np.count_nonzero(self._kept < cut))
        equal = int(np.count_nonzero(self._kept == cut)) + self._extra
        return cut, below, equal

    @property
    def nbytes(self) -> int:
        """Bytes held (kept plus pending values)."""
        return int(self._kept.nbytes) + sum(int(p.nbytes) for p in self._pending)


@dataclass(frozen=True)
class Cut:
    """Which values a :class:`Pick` selected, as a rule on a value.

    ``mode``: ``"none"``, ``"all"``, ``"strict"`` (values strictly beyond
    ``value``) or ``"ties"`` (beyond or equal). ``selected``: how many of the
    ``n`` values the rule selects.
    """

    mode: str
    value: object = None
    largest: bool = False
    selected: int = 0

    def select(self, values: np.ndarray) -> np.ndarray:
        """Bool mask of the selected ``values``."""
        values = np.asarray(values)
        if self.mode == "none":
            return np.zeros(values.shape, dtype=bool)
        if self.mode == "all":
            return np.ones(values.shape, dtype=bool)
        v = self.value
        beyond = values > v if self.largest else values < v
        if self.mode == "ties":
            beyond |= values == v
        return beyond


class Pick:
    """The ``count`` smallest (or largest) of ``n`` values, ties shared, over any batching.

    Feed every one of the ``n`` values once (:meth:`update`, any batching,
    any order; :meth:`merge` partials), then :meth:`cut` gives the rule: the
    ``count`` smallest (largest) values, ties at the cut all in, unless that
    makes more than ``limit``, then all out. Memory: ``min(count, n - count +
    1)`` values.
    """

    def __init__(self, count: int, n: int, *, largest: bool = False, dtype: np.dtype | type = np.float64) -> None:
        self.count = int(count)
        self.n = int(n)
        self.largest = bool(largest)
        self.dtype = np.dtype(dtype)
        self.seen = 0
        self._acc: BoundedSmallest | None = None
        self._near = True
        if 0 < self.count < self.n:
            far = self.n - self.count + 1
            self._near = self.count <= far
            # near: the `count` most extreme values; far: the `far` values from the other end
            self._flip = self.largest == self._near  # negate so the kept side is "smallest"
            self._acc = BoundedSmallest(self.count if self._near else far, dtype)

    @property
    def active(self) -> bool:
        """Whether values need to be fed (False: the answer is all or none)."""
        return self._acc is not None

    def update(self, values: np.ndarray) -> Pick:
        """Fold a batch of values in; returns ``self``."""
        values = np.asarray(values)
        self.seen += values.size
        if self._acc is not None and values.size:
            self._acc.update(-values if self._flip else values)
        return self

    def merge(self, other: Pick) -> Pick:
        """Fold another partial over other values in; returns ``self``."""
        if (other.count, other.n, other.largest) != (self.count, self.n, self.largest):
            raise ValueError("cannot merge picks of different selections")
        self.seen += other.seen
        if self._acc is not None and other._acc is not None:
            self._acc.merge(other._acc)
        return self

    def cut(self, limit: int | None = None) -> Cut:
        """The selection rule, once all ``n`` values were fed."""
        if self.count <= 0:
            return Cut("none")
        if self.count >= self.n:
            return Cut("all", selected=self.n)
        if self.seen != self.n:
            raise ValueError(f"pick over {self.n} values was fed {self.seen}")
        assert self._acc is not None
        res = self._acc.result()
        assert res is not None
        cut, below, equal = res
        if self._flip:
            cut = -cut
        if self._near:
            strict = below
        else:  # the far side counted values beyond the cut the other way
            strict = self.n - below - equal
        if limit is not None and strict + equal > limit:
            return Cut("strict", cut, self.largest, strict)
        return Cut("ties", cut, self.largest, strict + equal)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._acc.nbytes if self._acc is not None else 0


#: One compaction of a grouped top at a time in this process: the streaming runner's lanes each fold their own
#: tops, and two compactions at once (each holding a few copies of its values) made the peak memory of a 16M-row
#: scan vary by ~60 MB from run to run.
_COMPACTION = threading.Lock()

#: :func:`top_window` first narrows rows at least this long to about 1.3 times the window (see there).
PREFILTER_MIN_ROWS = 4096
#: One value in this many is sampled to find the narrowing pivot.
_SAMPLE_STEP = 16


def _narrows(vals: np.ndarray, top: int) -> bool:
    """Whether rows of ``vals`` are long enough, and the window small enough, to narrow first."""
    return vals.dtype.kind == "f" and vals.shape[1] >= PREFILTER_MIN_ROWS and top * 4 <= vals.shape[1]


def _pivots(vals: np.ndarray, top: int, largest: bool) -> np.ndarray:
    """Per row, a value from a 1-in-:data:`_SAMPLE_STEP` sample expected to have ~1.3 x ``top`` values beyond it."""
    sample = np.ascontiguousarray(vals[:, ::_SAMPLE_STEP])
    # the pivot's rank from the extreme: the sample's share of the window plus a margin
    rank = min(sample.shape[1], top // _SAMPLE_STEP + top // (4 * _SAMPLE_STEP) + 32)
    kth = sample.shape[1] - rank if largest else rank - 1
    return np.partition(sample, kth, axis=1)[:, kth]


def narrowed_beyond(vals: np.ndarray, counts: np.ndarray, *, largest: bool,
                    columns: bool = False) -> tuple[np.ndarray, ...] | None:
    """Per row ``i`` with ``counts[i] > 0``: its values at or beyond its ``counts[i]``-th most extreme, as ``(row, value)``.

    Each row is first narrowed to the values at or beyond a sampled pivot
    (:func:`_pivots`); when those are at least ``counts[i]`` they hold the
    cut and every tie of it, else the whole row is used. No window is
    sorted. NaN counts as the largest value, as in ``np.partition``, and is
    never returned (no comparison with it holds). ``None`` when the rows are
    too short to gain (then see :func:`top_window`). With ``columns``,
    ``(row, value, column)``: each value's column in ``vals`` too.
    """
    c = np.asarray(counts, dtype=np.int64)
    top = int(c.max()) if c.size else 0
    if top <= 0 or not _narrows(vals, top):
        return None
    pivot = _pivots(vals, top, largest)
    rows: list[np.ndarray] = []
    values: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for i in np.flatnonzero(c > 0):  # few rows (one per cell of a class), each a short partition
        row, count = vals[i], int(c[i])
        at = np.flatnonzero(~(row < pivot[i]) if largest else row <= pivot[i])
        if at.size < count:
            at = np.arange(row.size)
        kept = row[at]
        kth = kept.size - count if largest else count - 1
        cut = np.partition(kept, kth)[kth]
        beyond = np.flatnonzero(kept >= cut if largest else kept <= cut)
        rows.append(np.full(beyond.size, i, dtype=np.int64))
        values.append(kept[beyond])
        cols.append(at[beyond])
    if not rows:
        rows, values, cols = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=vals.dtype)], [np.empty(0, dtype=np.int64)]
    out = np.concatenate(rows), np.concatenate(values)
    return (*out, np.concatenate(cols)) if columns else out


def top_window(values: np.ndarray, top: int, *, largest: bool) -> np.ndarray:
    """The ``top`` most extreme values of each row of a 2-D array, sorted towards the extreme.

    Equal to ``np.partition`` then a sort of the window. For long rows and a
    small window (float values) a strided sample of each row gives a pivot
    expected to leave about ``1.3 * top`` values; when every row keeps at
    least ``top`` values at or beyond its pivot, only those are partitioned,
    row by row (a row's window holds the same values either way); otherwise
    the whole rows are, in one call. NaN counts as the largest value, as in ``np.partition``.
    """
    vals = np.asarray(values)
    g, m = vals.shape
    if _narrows(vals, top):
        pivot = _pivots(vals, top, largest)[:, None]
        keep = ~(vals < pivot) if largest else vals <= pivot  # NaN kept when selecting the largest
        if np.count_nonzero(keep, axis=1).min() >= top:
            window = np.empty((g, top), dtype=vals.dtype)
            for i in range(g):  # few rows (one per cell of a class), each a short partition
                kept = vals[i][keep[i]]
                if largest:
                    window[i] = np.partition(kept, kept.size - top)[kept.size - top:]
                else:
                    window[i] = np.partition(kept, top - 1)[:top]
            window.sort(axis=1)
            return window[:, ::-1] if largest else window
    if largest:
        window = np.partition(vals, m - top, axis=1)[:, m - top:]
        window.sort(axis=1)
        return window[:, ::-1]
    window = np.partition(vals, top - 1, axis=1)[:, :top]
    window.sort(axis=1)
    return window


class GroupedTop:
    """Per group ``g``: the ``counts[g]`` smallest (or largest) values fed, every tie of the cut kept.

    Values arrive as ``(group, value)`` pairs (:meth:`update`) or as a dense
    ``(G', m)`` matrix whose row ``i`` belongs to group ``groups[i]``
    (:meth:`update_rows`); partials :meth:`merge` in any order. Memory per
    group: ``counts[g]`` values plus the ties of its cut.

    A value discarded while compacting is strictly beyond the group's current
    cut, which only moves towards the final cut, so it is never a tie of the
    final cut: the strict and tie counts of :meth:`cuts` are exact.

    With ``ids``, every value comes with an integer id (e.g. its row's
    global position), kept beside it: :meth:`kept` then names the rows at or
    beyond each group's cut.

    Args:
        counts: ``(G,)`` how many values each group selects (``<= 0``: none).
        largest: Select the largest values instead of the smallest.
        dtype: Value dtype (float32 stays float32).
        ids: Keep an id beside every value.
        ids_dtype: Integer dtype of the ids (int32 halves their memory when they fit).
    """

    def __init__(self, counts: np.ndarray, *, largest: bool = False, dtype: np.dtype | type = np.float64,
                 ids: bool = False, ids_dtype: np.dtype | type = np.int64) -> None:
        self.counts = np.asarray(counts, dtype=np.int64).copy()
        self.largest = bool(largest)
        self.dtype = np.dtype(dtype)
        self.ids = bool(ids)
        self.ids_dtype = np.dtype(ids_dtype)
        self.fed = np.zeros(self.counts.size, dtype=np.int64)
        self._g: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._i: list[np.ndarray] = []
        self._pending = 0
        # the first compaction comes once the groups may hold their counts: from then on the bounds below drop
        # most values as they arrive; later ones when the buffers double what was kept
        self._budget = int(np.maximum(self.counts, 0).sum()) + (1 << 16)
        self._compacted = True  # the buffers hold one compacted part (nothing added since)
        #: per group, the key of its cut among the values some partial of this selection kept (see _CutBounds)
        self._bounds = _CutBounds()
        # group numbers are kept in the narrowest type that holds them (2 bytes a value for <= 65,536 groups)
        self._group_dtype = np.dtype(np.uint16 if self.counts.size <= 1 << 16 else np.int64)

    def empty(self) -> GroupedTop:
        """A fresh partial for the same groups (over other values of the same selection: it shares the bounds
        of the cuts, so each partial drops what another's cut already excludes)."""
        top = GroupedTop(self.counts, largest=self.largest, dtype=self.dtype, ids=self.ids, ids_dtype=self.ids_dtype)
        top._bounds = self._bounds
        return top

    def bound(self, groups: np.ndarray, values: np.ndarray) -> GroupedTop:
        """Drop from now on every value of group ``groups[i]`` beyond ``values[i]`` (smaller when selecting the
        largest, else larger), in this partial and the others of the selection; returns ``self``.

        The caller vouches that no such value is among the group's selected ones nor ties its cut (e.g.
        :meth:`labelqa.stats.histogram.GroupHistogram.bounds` from a pass over the same values).
        """
        groups = np.asarray(groups, dtype=np.int64)
        if groups.size:
            keys = np.asarray(values, dtype=np.float64)
            self._bounds.tighten(self.counts.size, groups, -keys if self.largest else keys)
        return self

    # ---- feeding -----------------------------------------------------------
    def update(self, groups: np.ndarray, values: np.ndarray, ids: np.ndarray | None = None) -> GroupedTop:
        """Fold ``(group, value)`` pairs in (with their ``ids`` when the top keeps ids); returns ``self``."""
        groups = np.asarray(groups).ravel()
        if groups.dtype.kind not in "iu":
            groups = groups.astype(np.int64)
        values = np.asarray(values, dtype=self.dtype).ravel()
        if groups.size:
            if self.counts.size == 1 and not groups.any():  # one group: no int64 copy, no bincount
                self.fed[0] += groups.size
            else:
                self.fed += np.bincount(groups.astype(np.int64, copy=False), minlength=self.counts.size)
            self._add(groups, values, ids)
        return self

    def update_rows(self, groups: np.ndarray, matrix: np.ndarray) -> GroupedTop:
        """Fold a dense ``(len(groups), m)`` matrix in, row ``i`` holding values of group ``groups[i]``.

        Same as :meth:`reduce_rows` then :meth:`add_reduced`.
        """
        groups = np.asarray(groups, dtype=np.int64)
        return self.add_reduced(groups, matrix.shape[1], *self.reduce_rows(groups, matrix))

    def reduce_rows(self, groups: np.ndarray, matrix: np.ndarray, *, columns: bool = False) -> tuple[np.ndarray, ...]:
        """Each row of ``matrix`` reduced to its values at or beyond its own ``c``-th (read-only: thread-safe).

        Long rows: :func:`narrowed_beyond`; else one ``np.partition`` for all
        rows. Returns ``(row, value)`` pairs for :meth:`add_reduced` (their
        order is unspecified); with ``columns``, ``(row, value, column)``:
        each value's column in ``matrix`` too (to name its id).
        """
        m = matrix.shape[1]
        c = self.counts[np.asarray(groups, dtype=np.int64)]
        vals = np.asarray(matrix, dtype=self.dtype)
        empty = np.empty(0, dtype=np.int64), np.empty(0, dtype=self.dtype)
        if m == 0 or c.size == 0 or c.max() <= 0:
            return (*empty, np.empty(0, dtype=np.int64)) if columns else empty
        top = int(c.max())
        if top >= m:  # every value of the rows, but those that cannot reach their group's cut (see _CutBounds)
            keep = np.broadcast_to((c > 0)[:, None], vals.shape)
            beyond = self._bounds.beyond(np.asarray(groups, dtype=np.int64)[:, None], vals, self.largest)
            if beyond is not None:
                keep = keep & ~beyond
            rows, cols = np.nonzero(keep)
            out = rows, vals[rows, cols]
            return (*out, cols) if columns else out
        narrowed = narrowed_beyond(vals, c, largest=self.largest, columns=columns)  # long rows: no sorted window
        if narrowed is not None:
            return narrowed
        # The `top` most extreme values of each row, sorted towards the extreme (a window of the row).
        window = top_window(vals, top, largest=self.largest)
        idx = np.arange(c.size)
        cut = window[idx, np.clip(c - 1, 0, top - 1)]
        if columns:  # the values at or beyond each row's cut, found in the whole row (ties included)
            beyond = vals >= cut[:, None] if self.largest else vals <= cut[:, None]
            beyond[c <= 0] = False
            rows, cols = np.nonzero(beyond)
            return rows, vals[rows, cols], cols
        # Every value beyond the cut lies in the window; ties of the cut may lie outside it only when the
        # cut is the window's last value: count those rows' ties over the whole row.
        beyond = window >= cut[:, None] if self.largest else window <= cut[:, None]
        beyond[c <= 0] = False
        rows, cols = np.nonzero(beyond)
        values = window[rows, cols]
        edge = np.flatnonzero((c > 0) & (cut == window[:, -1]))
        if edge.size:
            outside = np.count_nonzero(vals[edge] == cut[edge, None], axis=1) - np.count_nonzero(
                window[edge] == cut[edge, None], axis=1)
            more = np.repeat(edge, outside)
            rows = np.concatenate([rows, more])
            values = np.concatenate([values, cut[more]])
        return rows, values

    def add_reduced(self, groups: np.ndarray, m: int | np.ndarray, rows: np.ndarray, values: np.ndarray,
                    ids: np.ndarray | None = None) -> GroupedTop:
        """Fold in what :meth:`reduce_rows` returned for ``groups`` and ``m`` values per row (or ``m[i]`` in
        row ``i``; ``ids``: one per value)."""
        if len(groups) == 0 or not np.any(m):
            return self
        groups = np.asarray(groups, dtype=np.int64)
        np.add.at(self.fed, groups, m)  # a group may own several rows
        if rows.size:
            self._add(groups[rows], values, ids)
        return self

    def _add(self, groups: np.ndarray, values: np.ndarray, ids: np.ndarray | None = None) -> None:
        if self.ids:
            if ids is None or np.shape(ids) != np.shape(values):
                raise ValueError("this top keeps ids: give one per value")
            ids = np.asarray(ids).ravel()
            if ids.dtype != self.ids_dtype:
                ids = ids.astype(self.ids_dtype)
        beyond = self._bounds.beyond(groups, values, self.largest)
        if beyond is not None:  # drop what cannot reach its group's cut (NaN keys stay, as before)
            keep = ~beyond
            if not keep.all():
                groups, values = groups[keep], values[keep]
                ids = ids[keep] if ids is not None else None
        if ids is not None:
            self._i.append(ids.copy() if ids.base is not None else ids)
        self._compacted = False
        self._g.append(groups.astype(self._group_dtype, copy=False))
        self._v.append(values.copy() if values.base is not None else values)
        self._pending += groups.size
        if self._pending > self._budget:
            with _COMPACTION:
                self._compact()

    def _compact(self) -> tuple[np.ndarray, np.ndarray]:
        """Keep per group its ``counts[g]`` most extreme values and the ties of the ``counts[g]``-th.

        Returns the kept ``(groups, keys)`` grouped by group (keys: values
        negated when selecting the largest, so "most extreme" is "smallest").
        Values are grouped with a stable integer sort; only groups holding
        more than their count are partitioned (one ``np.partition`` each).
        """
        if self._compacted and len(self._g) == 1:
            g, v = self._g[0], self._v[0]
            return g, (-v if self.largest else v)
        g = np.concatenate(self._g) if self._g else np.empty(0, dtype=self._group_dtype)
        v = np.concatenate(self._v) if self._v else np.empty(0, dtype=self.dtype)
        ids = (np.concatenate(self._i) if self._i else np.empty(0, dtype=self.ids_dtype)) if self.ids else None
        self._g, self._v, self._i = [], [], []
        live = self.counts[g] > 0
        if not live.all():
            g, v = g[live], v[live]
            ids = ids[live] if ids is not None else None
        key = np.negative(v, out=v) if self.largest else v  # smallest first; negation is exact (v is our copy)
        del v
        if self.counts.size > 1 and g.size > _COMPACT_CHUNK_VALUES:
            # a large compaction in ranges of groups, one after another: the sort's indices and the gathered
            # copies exist for one range at a time (16M x 10 streamed: the lanes' merge ~95 -> ~45 MB on top)
            parts = [self._selected(g[at], key[at], ids[at] if ids is not None else None)
                     for at in _group_ranges(g, -(-g.size // _COMPACT_CHUNK_VALUES))]
            del g, key, ids
            g = np.concatenate([p[0] for p in parts])
            key = np.concatenate([p[1] for p in parts])
            ids = np.concatenate([p[2] for p in parts]) if self.ids else None
            sizes = np.concatenate([p[3] for p in parts])
            present = np.concatenate([p[4] for p in parts])
            del parts
        else:
            g, key, ids, sizes, present = self._selected(g, key, ids)
        starts = np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(np.intp)
        self._tighten(key, starts, sizes, present)
        v = -key if self.largest else key
        self._g, self._v, self._pending = [g], [v], g.size
        self._i = [ids] if ids is not None else []
        self._budget = max(self._budget, g.size + g.size // 2)  # room for half as much again before the next
        self._compacted = True
        return g, key

    def _selected(self, g: np.ndarray, key: np.ndarray, ids: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """Per group its ``counts[g]`` smallest keys and the ties of the last, grouped by a stable sort:
        ``(g, key, ids, sizes, present)``, group ``present[r]``'s run holding ``sizes[r]`` values."""
        if self.counts.size > 1:  # one group: already grouped
            order = np.argsort(g, kind="stable")
            g = g[order]
            key = key[order]
            ids = ids[order] if ids is not None else None
            del order
        starts, present = _runs(g)  # each present group's run (O(values), not O(groups): K = 1,000 has 1M cells)
        sizes = np.diff(starts, append=g.size)
        over = np.flatnonzero(sizes > np.maximum(self.counts[present], 0))  # a count < 0 selects none
        if over.size:
            keep = np.ones(g.size, dtype=bool)
            for r in over:
                a, b = starts[r], starts[r] + sizes[r]
                seg = key[a:b]
                c = int(self.counts[present[r]])
                keep[a:b] = seg <= np.partition(seg, c - 1)[c - 1]
                sizes[r] = np.count_nonzero(keep[a:b])  # c or more, but none when the c-th key is NaN
            g, key = g[keep], key[keep]
            ids = ids[keep] if ids is not None else None
            held = sizes > 0
            sizes, present = sizes[held], present[held]
        return g, key, ids, sizes, present

    def _tighten(self, key: np.ndarray, starts: np.ndarray, sizes: np.ndarray, held: np.ndarray) -> None:
        """Bound each group holding at least its count by its current cut key (see :class:`_CutBounds`): the
        keys are grouped, group ``held[r]``'s run of ``sizes[r]`` keys starting at ``starts[r]``."""
        if held.size == 0:
            return
        largest_key = np.maximum.reduceat(key, starts)  # held groups are consecutive runs of the keys
        is_full = (self.counts[held] > 0) & (sizes >= self.counts[held])
        full, cut = held[is_full], largest_key[is_full]  # a full group keeps no key past its cut
        ok = ~np.isnan(cut)
        if np.any(ok):
            self._bounds.tighten(self.counts.size, full[ok], cut[ok])

    def merge(self, other: GroupedTop) -> GroupedTop:
        """Fold another partial (over other values) in; returns ``self``."""
        if other.counts.shape != self.counts.shape or other.largest != self.largest:
            raise ValueError("cannot merge selections of different groups")
        if other.ids != self.ids:
            raise ValueError("cannot merge a top with ids and one without")
        self.fed += other.fed
        for n, (g, v) in enumerate(zip(other._g, other._v)):
            self._add(g, v, other._i[n] if self.ids else None)
        return self

    # ---- results -----------------------------------------------------------
    def cuts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per group: ``(complete, cut, strict, equal)``.

        ``complete``: at least ``counts[g] >= 1`` values were fed, so ``cut``
        (the ``counts[g]``-th most extreme value fed) is defined; ``strict``:
        how many fed values lie beyond it, ``equal``: how many equal it.
        Groups that are not complete hold zeros.
        """
        g, key = self._compact()
        size = self.counts.size
        complete = (self.counts >= 1) & (self.fed >= self.counts)
        cut_key = np.zeros(size, dtype=self.dtype)
        strict = np.zeros(size, dtype=np.int64)
        equal = np.zeros(size, dtype=np.int64)
        if g.size:  # g is grouped: each present group is one run, reduced in place (no bincounts)
            starts, present = _runs(g)
            # a complete group keeps exactly the values at or before its cut: the cut is its largest key
            cut_key[present] = np.maximum.reduceat(key, starts)
            cut_key[~complete] = 0
            at_cut = cut_key[g]
            strict[present] = np.add.reduceat(key < at_cut, starts, dtype=np.int64)
            equal[present] = np.add.reduceat(key == at_cut, starts, dtype=np.int64)
        strict[~complete] = 0
        equal[~complete] = 0
        cut = -cut_key if self.largest else cut_key
        return complete, cut, strict, equal

    def kept(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(groups, values, ids)`` of every value kept, grouped by group (a top made with ``ids``).

        For a complete group (see :meth:`cuts`) these are exactly its values
        at or beyond the cut (those :meth:`cuts` counts as ``strict`` and
        ``equal``); for a group fed fewer values than its count, every value
        fed; none for a group whose count is ``<= 0``.

        Raises:
            ValueError: The top keeps no ids.
        """
        if not self.ids:
            raise ValueError("this top keeps no ids")
        g, key = self._compact()
        return g.astype(np.int64), (-key if self.largest else key), self._i[0]

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(int(a.nbytes) for a in (*self._g, *self._v, *self._i))



class GroupCuts:
    """The selection rules of many groups, as arrays: which values of each group are selected.

    Per group ``g``: ``mode[g]`` is ``0`` (select none), ``1`` (select all) or
    ``2`` (values beyond ``value[g]``, and equal to it when ``ties[g]``).

    Args:
        size: Number of groups.
        largest: Whether "beyond" means larger (else smaller).
        dtype: Value dtype.
    """

    NONE, ALL, CUT = 0, 1, 2

    def __init__(self, size: int, *, largest: bool = False, dtype: np.dtype | type = np.float64) -> None:
        self.largest = bool(largest)
        self.mode = np.zeros(size, dtype=np.int8)
        self.value = np.zeros(size, dtype=np.dtype(dtype))
        self.ties = np.zeros(size, dtype=bool)
        self.selected = np.zeros(size, dtype=np.int64)

    def settle(self, top: GroupedTop, *, limits: np.ndarray | None = None,
               bound: float | None = None) -> np.ndarray:
        """Take the groups a :class:`GroupedTop` settles; returns the groups it could not settle.

        Groups with a count of 0 are left as they are (``mode`` starts as
        none). A group is settled when its ``counts[g]``-th value was seen and
        lies strictly before ``bound`` (when the top was
        fed only candidates, every other value lying at or beyond the bound);
        ties at the cut are in unless that makes more than ``limits[g]``.
        """
        complete, cut, strict, equal = top.cuts()
        counts = top.counts
        settled = complete.copy()
        if bound is not None:
            settled &= cut > bound if self.largest else cut < bound
        idx = np.flatnonzero(settled)
        self.mode[idx] = self.CUT
        self.value[idx] = cut[idx]
        ties = np.ones(idx.size, dtype=bool) if limits is None else strict[idx] + equal[idx] <= limits[idx]
        self.ties[idx] = ties
        self.selected[idx] = strict[idx] + np.where(ties, equal[idx], 0)
        return np.flatnonzero((counts > 0) & ~settled)

    def set(self, g: int, cut: Cut) -> None:
        """Take a :class:`Pick`'s rule for group ``g``."""
        if cut.mode == "none":
            self.mode[g] = self.NONE
        elif cut.mode == "all":
            self.mode[g] = self.ALL
        else:
            self.mode[g] = self.CUT
            self.value[g] = cut.value
            self.ties[g] = cut.mode == "ties"
        self.selected[g] = cut.selected

    def select(self, groups: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Bool mask of the selected ``values``, each in group ``groups`` (same shapes)."""
        mode = self.mode[groups]
        v = self.value[groups]
        beyond = values > v if self.largest else values < v
        beyond |= self.ties[groups] & (values == v)
        return np.where(mode == self.CUT, beyond, mode == self.ALL)

    def select_pairs(self, y: np.ndarray, values: np.ndarray) -> np.ndarray:
        """:meth:`select` for an ``(n, K)`` matrix whose entry ``(i, k)`` is in group ``2 k + y[i, k]``."""
        pick = {name: np.where(y, getattr(self, name)[1::2], getattr(self, name)[0::2])
                for name in ("mode", "value", "ties")}
        return self._select(pick["mode"], pick["value"], pick["ties"], values)

    def select_columns(self, values: np.ndarray) -> np.ndarray:
        """:meth:`select` for an ``(n, G)`` matrix whose column ``g`` is group ``g``."""
        return self._select(self.mode, self.value, self.ties, values)

    def _select(self, mode: np.ndarray, v: np.ndarray, ties: np.ndarray, values: np.ndarray) -> np.ndarray:
        beyond = values > v if self.largest else values < v
        beyond |= ties & (values == v)
        return np.where(mode == self.CUT, beyond, mode == self.ALL)


@dataclass
class Selections:
    """The partial of one selection stage: scalar picks, grouped selections and counters, each by key.

    ``gathered``: any other partials of the stage, each with ``empty()`` and ``merge(other)``.
    """

    picks: dict[Any, Pick] = field(default_factory=dict)
    tops: dict[Any, GroupedTop] = field(default_factory=dict)
    counts: dict[Any, np.ndarray] = field(default_factory=dict)
    gathered: dict[Any, Any] = field(default_factory=dict)

    def empty(self) -> Selections:
        """A fresh partial with the same selections."""
        return Selections(
            {key: Pick(p.count, p.n, largest=p.largest, dtype=p.dtype) for key, p in self.picks.items()},
            {key: t.empty() for key, t in self.tops.items()},
            {key: np.zeros_like(c) for key, c in self.counts.items()},
            {key: g.empty() for key, g in self.gathered.items()},
        )

    def merge(self, other: Selections) -> Selections:
        """Fold another partial (over other rows) in; returns ``self``."""
        for key, p in other.picks.items():
            self.picks[key].merge(p)
        for key, t in other.tops.items():
            self.tops[key].merge(t)
        for key, c in other.counts.items():
            self.counts[key] += c
        for key, g in other.gathered.items():
            self.gathered[key] = self.gathered[key].merge(g)
        return self

    def __bool__(self) -> bool:
        return bool(self.picks or self.tops or self.counts or self.gathered)


class _CutBounds:
    """Per group, a key no value of the final selection lies beyond: the tightest cut a partial published.

    A partial that holds at least ``counts[g]`` values of group ``g`` has a
    cut (its ``counts[g]``-th key) that is at or beyond the final cut, which
    only moves towards the extreme as values arrive; so a value whose key is
    larger can never be selected, nor tie the final cut. The partials of one
    selection (:meth:`GroupedTop.empty`: the lanes of a stream pass, the
    chunks of a block) share one object, so each drops what any other's cut
    excludes; bounds known before the pass (:meth:`GroupedTop.bound`) start
    it. Pickled (Dask), each process gets a copy and tightens its own.
    """

    def __init__(self) -> None:
        self.keys: np.ndarray | None = None  # float64 (inf: no bound yet); replaced, never changed in place
        self._lock = threading.Lock()

    def beyond(self, groups: np.ndarray, values: np.ndarray, largest: bool) -> np.ndarray | None:
        """Which ``values`` lie beyond their group's bound (``groups`` broadcast against ``values``; NaN never
        does), or ``None`` while no group is bounded."""
        keys = self.keys
        if keys is None:
            return None
        bound = keys[groups]
        return values < -bound if largest else values > bound

    def tighten(self, size: int, groups: np.ndarray, cut: np.ndarray) -> None:
        """Bound ``groups`` by the keys ``cut`` (where tighter than their bound)."""
        with self._lock:  # a new array: a reader on another thread sees the old bounds or the new ones
            keys = np.full(size, np.inf, dtype=np.float64) if self.keys is None else self.keys.copy()
            keys[groups] = np.minimum(keys[groups], cut.astype(np.float64))
            self.keys = keys

    def __getstate__(self) -> dict[str, Any]:
        return {"keys": self.keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.keys = state["keys"]
        self._lock = threading.Lock()


#: A compaction of more values than this (and of several groups) works through ranges of groups in turn.
_COMPACT_CHUNK_VALUES = 1 << 20


def _group_ranges(g: np.ndarray, n_ranges: int) -> Iterator[np.ndarray]:
    """Positions (ascending) of ``g``'s values in each of ``n_ranges`` consecutive ranges of group numbers
    holding about as many values each; the ranges cover every value once, in group order."""
    counts = np.bincount(g)
    cuts = np.searchsorted(np.cumsum(counts), np.arange(1, n_ranges) * (g.size / n_ranges))
    bounds = np.unique(np.concatenate([[0], cuts + 1, [counts.size]]))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        at = np.flatnonzero((g >= lo) & (g < hi))
        if at.size:
            yield at


def _runs(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, groups)`` of the runs of equal values in grouped ``g`` (group numbers as int64)."""
    if g.size == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int64)
    first = np.empty(g.size, dtype=bool)
    first[0] = True
    np.not_equal(g[1:], g[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return starts, g[starts].astype(np.int64)
