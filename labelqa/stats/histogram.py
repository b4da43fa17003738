"""Per-group histograms whose bins bound a selection's cuts before the selection pass runs.

A statistics pass can count, per group, how many values fall in each of
``B`` equal bins of ``[low, high)``; once the pass is merged and each
group's count ``c`` is known, the bin holding the group's ``c``-th largest
(or smallest) value is known too, so every value more than a bin beyond it
(towards the far side) can never be selected nor tie the cut
(:meth:`GroupHistogram.bounds`). A
:class:`~labelqa.stats.selection.GroupedTop` given those bounds
(:meth:`~labelqa.stats.selection.GroupedTop.bound`) drops such values as
they arrive instead of keeping and compacting them: out of core, the
prune-by-noise-rate cuts pass then holds about the values it selects.

Exactness: the bin of ``v`` is ``floor(fl(v - low) / width)`` clipped to
``[0, B)``, computed in ``v``'s own float type. ``width`` is a power of two
and ``low`` a small integer, so the division is exact and rounding only
ever moves a value within its order: the bin is monotone in ``v``. A value
below ``low + (b - 1) * width`` then lies in a bin below ``b``, hence
strictly below every value of bin ``b`` (one bin of slack covers the
rounding of ``v - low``); likewise a value above ``low + (b + 1) * width``
lies strictly above every value of bin ``b``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GroupHistogram"]


class GroupHistogram:
    """Counts of values per group and bin: ``bins`` equal bins (a power of two) of ``[low, low + span)``.

    Values outside the range count in the first or last bin. Exact integer
    counts: batches update and partials merge in any order.

    Args:
        n_groups: Groups ``0 .. n_groups - 1``.
        bins: Bins per group, a power of two.
        low: The range's lower end, an integer.
        span: The range's width, a power of two (``[-1, 1)``: ``low=-1, span=2``).
    """

    def __init__(self, n_groups: int, bins: int, *, low: int = -1, span: int = 2) -> None:
        if bins < 1 or bins & (bins - 1) or span < 1 or span & (span - 1):
            raise ValueError("bins and span must be powers of two")
        self.n_groups = int(n_groups)
        self.bins = int(bins)
        self.low = int(low)
        self.span = int(span)
        self.counts = np.zeros(self.n_groups * self.bins, dtype=np.int64)

    @property
    def width(self) -> float:
        """The width of a bin (a power of two, exact)."""
        return self.span / self.bins

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """Each value's bin (int64), monotone in the value (see the module doc)."""
        t = np.subtract(values, values.dtype.type(self.low))  # in the values' own float type
        t *= values.dtype.type(self.bins / self.span)  # a power of two: exact
        np.clip(t, 0, self.bins - 1, out=t)
        return t.astype(np.int64)  # truncation is floor on [0, bins)

    def update(self, groups: np.ndarray, values: np.ndarray) -> GroupHistogram:
        """Count ``values`` (float32 or float64), value ``i`` in group ``groups[i]``; returns ``self``."""
        values = np.asarray(values)
        if values.size:
            at = self.bin_of(values.ravel())
            at += np.asarray(groups, dtype=np.int64).ravel() * self.bins
            self.counts += np.bincount(at, minlength=self.counts.size)
        return self

    def merge(self, other: GroupHistogram) -> GroupHistogram:
        """Fold another partial (over other values) in; returns ``self``."""
        if (other.n_groups, other.bins, other.low, other.span) != (self.n_groups, self.bins, self.low, self.span):
            raise ValueError("cannot merge histograms of different groups or bins")
        self.counts += other.counts
        return self

    def bounds(self, counts: np.ndarray, *, largest: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(groups, values)``: for each group holding at least its ``counts[g] >= 1`` values, a value such that
        no value beyond it (smaller, when selecting the ``c`` largest; larger, for the smallest) is among the
        group's ``c`` most extreme values nor ties the ``c``-th."""
        per_group = self.counts.reshape(self.n_groups, self.bins)
        counts = np.asarray(counts, dtype=np.int64)
        ordered = per_group[:, ::-1] if largest else per_group  # from the extreme inwards
        reach = np.cumsum(ordered, axis=1)  # values in the first b + 1 bins from the extreme
        groups = np.flatnonzero((counts >= 1) & (reach[:, -1] >= counts))
        if groups.size == 0:
            return groups, np.zeros(0, dtype=np.float64)
        steps = np.count_nonzero(reach[groups] < counts[groups, None], axis=1)  # bins from the extreme to the c-th
        cut_bin = self.bins - 1 - steps if largest else steps
        # a value beyond this edge rounds into a bin beyond the cut's (module doc); the first and last bins also
        # hold the values out of range, so a cut there bounds nothing
        edge = cut_bin - 1 if largest else cut_bin + 1
        inside = (cut_bin > 0) if largest else (cut_bin < self.bins - 1)
        return groups[inside], self.low + edge[inside] * self.width
