"""Every row's score folded batch by batch: how many rows score lower than any row, out of core.

With several detectors the combined label quality and the ``relative_rank``
flag rest on each row's *rows before* count ``b_d(i)``: the rows detector
``d`` scores strictly lower (:func:`labelqa.detectors.ensemble.rows_before`:
ties count from where their group starts, NaN as the highest score). It
depends on every other row's score, so the streaming and Dask engines first
fold each detector's scores into a :class:`ScoreCounts` (the distinct scores
and how often each occurs: few values for detectors with coarse scores,
such as ``dup``; up to one a row otherwise), then count for any batch
against it. The answer equals the in-memory one exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ScoreCounts"]


def _keyed(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(scores), np.inf, scores)


@dataclass(eq=False)
class ScoreCounts:
    """The distinct scores of some rows and their counts; merged by adding (any batching, any order).

    Feed batches with :meth:`add` or :meth:`merge`, then :meth:`finish`
    before :meth:`rows_before`.
    """

    _parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    values: np.ndarray | None = None
    below: np.ndarray | None = None  # rows with a smaller score, per distinct value
    n: int = 0

    @classmethod
    def of(cls, scores: np.ndarray) -> ScoreCounts:
        """The counts of one batch's scores."""
        out = cls()
        return out.add(scores)

    def add(self, scores: np.ndarray) -> ScoreCounts:
        """Fold one batch's scores in; returns ``self``."""
        values, counts = np.unique(_keyed(scores), return_counts=True)
        self._parts.append((values, counts.astype(np.int64)))
        self.n += int(np.asarray(scores).shape[0])
        return self

    def merge(self, other: ScoreCounts) -> ScoreCounts:
        """Fold another partial in; returns ``self``."""
        self._parts += other._parts
        self.n += other.n
        return self

    def finish(self) -> ScoreCounts:
        """Combine the parts; returns ``self``."""
        if self._parts:
            values, inverse = np.unique(np.concatenate([v for v, _ in self._parts]), return_inverse=True)
            counts = np.zeros(values.size, dtype=np.int64)
            np.add.at(counts, inverse, np.concatenate([c for _, c in self._parts]))
            self._parts = []
        else:
            values, counts = np.empty(0), np.empty(0, np.int64)
        self.values = values
        self.below = np.concatenate([[0], np.cumsum(counts)])
        return self

    def rows_before(self, scores: np.ndarray) -> np.ndarray:
        """How many rows fed score strictly lower than each of ``scores`` (which must have been fed)."""
        assert self.values is not None and self.below is not None, "call finish() first"
        return self.below[_search(self.values, _keyed(scores))].astype(np.float64)


def _search(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.searchsorted(values, keys)``, the keys searched in sorted order (cache-friendly: several times faster
    on millions of values than searching them in row order)."""
    order = np.argsort(keys, kind="stable")
    at = np.empty(keys.size, dtype=np.intp)
    at[order] = np.searchsorted(values, keys[order])
    return at
