"""Bounded-memory, order-independent "the c smallest (or largest) values" selection.

The in-memory confident-learning detector picks rows with
``labelqa.detectors.confident._pick``: the ``c`` smallest (or largest) values,
where rows tied with the ``c``-th value share its fate (all taken, possibly
more than ``c``, unless that exceeds ``limit``; then none of them is). That
rule only depends on three numbers: the cut value ``v`` (the ``c``-th value),
how many values are strictly beyond it and how many equal it. This module
finds them over a stream of batches, or over partitions merged in any order,
keeping only ``min(c, n - c + 1)`` values (the smaller side) plus one counter:

* :class:`BoundedSmallest` keeps the ``m`` smallest values seen (a multiset)
  and the number of *discarded* values equal to the largest kept one. When
  the kept set shrinks its maximum, discarded values are all >= the old
  maximum, hence never equal to the new one, so the counter stays exact.
* :class:`Pick` chooses the side: the ``c`` smallest directly, or the
  ``n - c + 1`` largest (whose minimum is the ``c``-th smallest) when that is
  fewer values; and turns the result into a :class:`Cut`.

Values are compared exactly as given (float32 stays float32; negation, used
for the other side, is exact), so a :class:`Cut` selects the very rows
``_pick`` selects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BoundedSmallest", "Cut", "Pick"]


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
    """Streaming ``_pick(values, count, largest=..., limit=...)`` over ``n`` values.

    Feed every one of the ``n`` values once (:meth:`update`, any batching,
    any order; :meth:`merge` partials), then :meth:`cut` gives the rule that
    selects exactly the rows ``_pick`` would: the ``count`` smallest (largest)
    values, ties at the cut all in, unless that makes more than ``limit``,
    then all out. Memory: ``min(count, n - count + 1)`` values.
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
