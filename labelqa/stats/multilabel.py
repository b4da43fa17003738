"""Statistics of multi-label confident learning: partial aggregates and the math on them.

Multi-label confident learning solves K binary problems at once (class k,
given value ``b = [k in labels]``). Its dataset-level figures are integer
partial aggregates (``update`` one batch, ``merge`` another partial; exact,
so batching and merge order never change a result):

* :class:`MultilabelSums`: rows per (class, given value) and the exact
  fixed-point sums of ``q`` (the probability of the given value) -> the
  ``(K, 2)`` thresholds and the per-class mean ``q``;
* :class:`MultilabelJoint`: the raw ``(K, 2, 2)`` confident joint, the
  estimated issues per class and the per-(class, value) candidate counts of
  ``confident_learning`` / ``predicted_neq_given``.

Batches are ``(n, K)`` matrices (rows by classes); everything is counted per
class (down the columns).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelqa.errors import LabelqaError
from labelqa.parallel import MIN_PARALLEL_ELEMENTS, row_ranges, thread_map
from labelqa.stats.confident import EMPTY_CLASS_THRESHOLD, PROB_SCALE, round_rows

__all__ = ["MultilabelJoint", "MultilabelSums", "calibrate_multilabel_confident_joint", "fixed_point", "set_members"]


def fixed_point(values: np.ndarray) -> np.ndarray:
    """``values`` (in [0, 1]) as int64 in units of ``1 / PROB_SCALE``, exactly as every sum here rounds them.

    float32 values times 2**32 are exact in float32 and their ``rint`` is
    representable, so no float64 copy is made for them.
    """
    if values.dtype == np.float32:
        return np.rint(values * np.float32(PROB_SCALE)).astype(np.int64)
    return np.rint(values.astype(np.float64) * PROB_SCALE).astype(np.int64)


def column_counts(mask: np.ndarray) -> np.ndarray:
    """``np.count_nonzero(mask, axis=0)`` of an ``(n, K)`` bool matrix, as int64 (summed as bytes: 1.5x faster)."""
    return np.asarray(mask, dtype=bool).view(np.uint8).sum(axis=0, dtype=np.int32).astype(np.int64)


def group_counts(mask: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(K, 2)``: per class, how many of ``mask`` (``(n, K)``) have given value 0 / 1."""
    c1 = column_counts(mask & y)
    return np.stack([column_counts(mask) - c1, c1], axis=1).astype(np.int64)


class MultilabelSums:
    """Pass-1 partial: rows and exact fixed-point sums of ``q`` per (class, given value)."""

    def __init__(self, n_classes: int) -> None:
        k = int(n_classes)
        self.counts = np.zeros((k, 2), dtype=np.int64)
        self.sums = np.zeros((k, 2), dtype=np.int64)

    def update(self, y: np.ndarray, self_conf: np.ndarray) -> MultilabelSums:
        """Fold one batch in: ``y`` ``(n, K)`` bool given values, ``self_conf`` ``(n, K)`` their probability ``q``."""
        n = y.shape[0]
        n1 = column_counts(y)
        self.counts += np.stack([n - n1, n1], axis=1)
        fixed = fixed_point(self_conf)
        total = fixed.sum(axis=0)
        fixed *= y
        sum1 = fixed.sum(axis=0)
        self.sums += np.stack([total - sum1, sum1], axis=1)
        return self

    def merge(self, other: MultilabelSums) -> MultilabelSums:
        """Fold a partial over other rows in; returns ``self``."""
        self.counts += other.counts
        self.sums += other.sums
        return self

    @property
    def n_rows(self) -> int:
        """Rows folded in."""
        return int(self.counts[0].sum()) if self.counts.size else 0

    def thresholds(self) -> np.ndarray:
        """``(K, 2)`` thresholds: mean ``q`` per (class, given value); 2.0 where there are no rows."""
        thr = np.full(self.counts.shape, EMPTY_CLASS_THRESHOLD)
        seen = self.counts > 0
        thr[seen] = self.sums[seen] / PROB_SCALE / self.counts[seen]
        return thr

    def quality(self) -> np.ndarray:
        """Mean ``q`` per class over all rows (the summary's ``label_quality``); 1.0 without rows."""
        n = self.n_rows
        if not n:
            return np.ones(self.counts.shape[0])
        return self.sums.sum(axis=1) / PROB_SCALE / n


class MultilabelJoint:
    """Pass-2 partial: raw joint, estimated issues, candidate counts per (class, value)."""

    def __init__(self, n_classes: int) -> None:
        k = int(n_classes)
        self.joint = np.zeros((k, 2, 2), dtype=np.int64)
        self.est = np.zeros(k, dtype=np.int64)
        self.cand_cl = np.zeros((k, 2), dtype=np.int64)
        self.cand_png = np.zeros((k, 2), dtype=np.int64)

    def update(self, y: np.ndarray, off_diagonal: np.ndarray, counted: np.ndarray,
               disagrees: np.ndarray) -> MultilabelJoint:
        """Fold one batch in (all ``(n, K)`` bool).

        Args:
            y: Given values.
            off_diagonal: Pairs counted off the diagonal of the binary joint.
            counted: Pairs with a non-empty confident set.
            disagrees: Pairs whose prediction disagrees with the given value.
        """
        off1 = column_counts(off_diagonal & y)  # given 1, guessed 0
        off0 = column_counts(off_diagonal) - off1  # given 0, guessed 1
        on1 = column_counts(counted & y)
        self.joint[:, 1, 0] += off1
        self.joint[:, 1, 1] += on1 - off1
        self.joint[:, 0, 1] += off0
        self.joint[:, 0, 0] += column_counts(counted) - on1 - off0
        cl_cand = off_diagonal & disagrees
        self.est += column_counts(cl_cand)
        self.cand_cl += group_counts(cl_cand, y)
        self.cand_png += group_counts(disagrees, y)
        return self

    def merge(self, other: MultilabelJoint) -> MultilabelJoint:
        """Fold a partial over other rows in; returns ``self``."""
        self.joint += other.joint
        self.est += other.est
        self.cand_cl += other.cand_cl
        self.cand_png += other.cand_png
        return self


def calibrate_multilabel_confident_joint(confident_joint: Any, class_counts: Any) -> np.ndarray:
    """Calibrate K binary confident joints at once.

    Per class: each row ``b`` of the 2x2 joint is rescaled to sum to
    ``n_kb``, the matrix to sum to ``N``, then each row rounded to integers
    keeping its rounded sum. A row that is all zero while ``n_kb > 0`` gets
    ``n_kb`` on its diagonal (no evidence of noise).

    Args:
        confident_joint: ``(K, 2, 2)`` counts, ``[class, given, guessed true]``.
        class_counts: ``(K, 2)``: ``n_kb``, rows of class k with given value b.

    Returns:
        ``(K, 2, 2)`` int64.
    """
    c = np.asarray(confident_joint, dtype=np.float64)
    n = np.asarray(class_counts, dtype=np.float64)
    if c.ndim != 3 or c.shape[1:] != (2, 2) or n.shape != c.shape[:2]:
        raise LabelqaError(f"need a (K, 2, 2) joint and (K, 2) counts, got {c.shape} and {n.shape}")
    row_sums = c.sum(axis=2)
    has = row_sums > 0
    scaled = np.where(has[..., None], c / np.where(has, row_sums, 1.0)[..., None] * n[..., None], 0.0)
    empty = ~has & (n > 0)
    for b in (0, 1):
        scaled[:, b, b] = np.where(empty[:, b], n[:, b], scaled[:, b, b])
    # summed in row-major order, like ``sum()`` of one 2x2 matrix (same rounding)
    total = ((scaled[:, 0, 0] + scaled[:, 0, 1]) + scaled[:, 1, 0]) + scaled[:, 1, 1]
    # divide, then multiply: the multiclass rule's order of operations (its floats, bit for bit)
    safe = np.where(total > 0, total, 1.0)[:, None, None]
    scaled = np.where((total > 0)[:, None, None], scaled / safe * n.sum(axis=1)[:, None, None], scaled)
    return round_rows(scaled)


#: Rows per block of :func:`set_members` (its temporaries: a block's flat indices).
SET_BLOCK_ROWS = 1 << 16


def set_members(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of an ``(N, K)`` bool matrix as sets: ``(offsets, members)``, the layout of an Arrow list array.

    ``members[offsets[i]:offsets[i + 1]]`` are the columns set in row ``i``, ascending (``np.nonzero``'s
    order). Row blocks are scanned on threads (``np.flatnonzero`` of a block is 2-4x faster than
    ``np.nonzero`` of the matrix, and releases the GIL).

    Returns:
        ``offsets`` int32 ``(N + 1,)`` and ``members`` int64.
    """
    matrix = np.asarray(matrix, dtype=bool)
    n, k = matrix.shape

    def block(rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        part = matrix[rows[0]:rows[1]]
        flat = np.flatnonzero(part)
        return flat % max(k, 1), np.count_nonzero(part, axis=1)

    parts = list(thread_map(block, row_ranges(n, SET_BLOCK_ROWS), parallel=matrix.size >= MIN_PARALLEL_ELEMENTS))
    offsets = np.zeros(n + 1, dtype=np.int32)
    if parts:
        np.cumsum(np.concatenate([p[1] for p in parts]), out=offsets[1:])
    members = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, dtype=np.int64)
    return offsets, members.astype(np.int64, copy=False)
