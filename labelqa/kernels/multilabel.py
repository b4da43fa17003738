"""Batch kernels of multi-label confident learning: per-batch quantities and mergeable partials.

The in-memory detector (:mod:`labelqa.detectors.multilabel`) computes, per
class k, everything from the whole ``(K, N)`` transposed matrices of one
column block (``_Block``). Here the same quantities are computed per batch of
rows, with the very same array operations (so bit-identical per row), and
the per-dataset ones become partial aggregates:

* :class:`MultilabelSums` (pass 1): rows per (class, given value) and the
  exact fixed-point sums of ``q`` -> the ``(K, 2)`` thresholds; plus the
  float64 sum of ``q`` per class, accumulated row after row in input order
  (the in-memory ``class_scores.mean(axis=0, dtype=float64)`` sums
  sequentially, so this is exact only when batches are folded in order).
* :class:`MultilabelJoint` (pass 2): the raw ``(K, 2, 2)`` confident joint,
  the estimated issues per class and the per-(class, value) candidate counts
  of ``confident_learning`` / ``predicted_neq_given``; integers, mergeable in
  any order.
* :class:`MultilabelRows`: one batch's per-(class, row) quantities given the
  dataset thresholds.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from labelqa.detectors.multilabel import calibrate_multilabel_confident_joint
from labelqa.kernels.confident import EMPTY_CLASS_THRESHOLD, PROB_SCALE, confident_cutoffs

__all__ = ["MultilabelJoint", "MultilabelRows", "MultilabelSums"]


class MultilabelRows:
    """One batch, transposed to ``(K, n)``: the ``_Block`` quantities of its rows.

    Args:
        y: ``(n, K)`` bool given label sets.
        probs: ``(n, K)`` float32/float64 probabilities.
        thresholds: The dataset's ``(K, 2)`` thresholds, or None (pass 1).
    """

    def __init__(self, y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None) -> None:
        y = np.ascontiguousarray(np.asarray(y, dtype=bool).T)
        p = np.ascontiguousarray(np.asarray(probs).T)
        self.y = y
        self.p = p
        self.k, self.n = p.shape
        one = p.dtype.type(1)
        self.pc = one - p
        yf = y.astype(p.dtype)
        other = yf - p
        np.abs(other, out=other)
        self.other = other
        np.subtract(one, yf, out=yf)
        yf -= p
        self.self_conf = np.abs(yf, out=yf)
        n1 = np.count_nonzero(y, axis=1)
        self.counts = np.stack([self.n - n1, n1], axis=1).astype(np.int64)
        self.thresholds = thresholds

    # ---- pass 1 ----------------------------------------------------------
    def fixed_sums(self) -> np.ndarray:
        """``(K, 2)`` exact sums of ``q`` per given value, in units of 1/2**32 (as ``_Block``)."""
        if self.p.dtype == np.float32:
            fixed = np.rint(self.self_conf * np.float32(PROB_SCALE)).astype(np.int64)
        else:
            fixed = np.rint(self.self_conf.astype(np.float64) * PROB_SCALE).astype(np.int64)
        total = fixed.sum(axis=1)
        fixed *= self.y
        sum1 = fixed.sum(axis=1)
        return np.stack([total - sum1, sum1], axis=1)

    # ---- with thresholds ---------------------------------------------------
    @cached_property
    def _guess(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.thresholds is not None, "thresholds needed"
        p, pc, y = self.p, self.pc, self.y
        cut = confident_cutoffs(self.thresholds, p.dtype)
        conf0 = pc >= cut[:, 0:1]
        conf1 = p >= cut[:, 1:2]
        both = conf0 & conf1
        g1 = conf1 & ~(both & ~(p > pc))
        g0 = conf0 & ~(both & ~(p <= pc))
        off_diagonal = (y & g0) | (g1 & ~y)
        return off_diagonal, conf0 | conf1

    @property
    def off_diagonal(self) -> np.ndarray:
        return self._guess[0]

    @cached_property
    def agrees(self) -> np.ndarray:
        return self.self_conf >= self.other

    @cached_property
    def disagrees(self) -> np.ndarray:
        return ~self.agrees

    def group(self, b: int) -> np.ndarray:
        return self.y if b else ~self.y

    def joint(self) -> np.ndarray:
        """The batch's raw ``(K, 2, 2)`` confident joint (``_Block.joint``)."""
        off, counted = self._guess
        y = self.y
        joint = np.empty((self.k, 2, 2), dtype=np.int64)
        off1 = np.count_nonzero(off & y, axis=1)
        off0 = np.count_nonzero(off, axis=1) - off1
        on1 = np.count_nonzero(counted & y, axis=1)
        joint[:, 1, 0] = off1
        joint[:, 1, 1] = on1 - off1
        joint[:, 0, 1] = off0
        joint[:, 0, 0] = np.count_nonzero(counted, axis=1) - on1 - off0
        return joint

    @cached_property
    def normalized_margin(self) -> np.ndarray:
        own = self.self_conf.astype(np.float64)
        return np.clip((own - self.other.astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)

    def candidates(self, method: str) -> np.ndarray:
        """``(K, n)`` candidates of ``confident_learning`` / ``predicted_neq_given``."""
        cand = self.disagrees
        if method == "confident_learning":
            cand = cand & self.off_diagonal
        return cand

    def group_counts(self, mask: np.ndarray) -> np.ndarray:
        """``(K, 2)``: per class, how many of ``mask`` have given value 0 / 1."""
        c1 = np.count_nonzero(mask & self.y, axis=1)
        return np.stack([np.count_nonzero(mask, axis=1) - c1, c1], axis=1).astype(np.int64)


class MultilabelSums:
    """Pass-1 partial: counts and fixed-point sums per (class, value), sequential float64 ``q`` sums."""

    def __init__(self, n_classes: int) -> None:
        k = int(n_classes)
        self.counts = np.zeros((k, 2), dtype=np.int64)
        self.sums = np.zeros((k, 2), dtype=np.int64)
        self.qsum = np.zeros(k, dtype=np.float64)
        self.n = 0

    def update(self, rows: MultilabelRows) -> MultilabelSums:
        """Fold a batch in (batches must come in input order for :attr:`qsum`)."""
        self.counts += rows.counts
        self.sums += rows.fixed_sums()
        # ((acc + q_0) + q_1) + ...: numpy's axis-0 sum of a C-ordered matrix adds row after row,
        # like the in-memory ``class_scores.mean(axis=0, dtype=float64)``.
        stacked = np.empty((rows.n + 1, rows.k), dtype=np.float64)
        stacked[0] = self.qsum
        stacked[1:] = rows.self_conf.T
        self.qsum = stacked.sum(axis=0)
        self.n += rows.n
        return self

    def merge(self, other: MultilabelSums) -> MultilabelSums:
        """Fold a partial over the following rows in (exact for the integer parts; ``qsum`` is
        then summed per partial, which may differ in the last bits from the in-memory mean)."""
        self.counts += other.counts
        self.sums += other.sums
        self.qsum = self.qsum + other.qsum
        self.n += other.n
        return self

    def thresholds(self) -> np.ndarray:
        thr = np.full(self.counts.shape, EMPTY_CLASS_THRESHOLD)
        seen = self.counts > 0
        thr[seen] = self.sums[seen] / PROB_SCALE / self.counts[seen]
        return thr

    def quality(self) -> np.ndarray:
        """Mean ``q`` per class (the summary's ``label_quality``)."""
        return self.qsum / self.n if self.n else np.ones(self.qsum.size)


class MultilabelJoint:
    """Pass-2 partial: raw joint, estimated issues, candidate counts per (class, value)."""

    def __init__(self, n_classes: int) -> None:
        k = int(n_classes)
        self.joint = np.zeros((k, 2, 2), dtype=np.int64)
        self.est = np.zeros(k, dtype=np.int64)
        self.cand_cl = np.zeros((k, 2), dtype=np.int64)
        self.cand_png = np.zeros((k, 2), dtype=np.int64)

    def update(self, rows: MultilabelRows) -> MultilabelJoint:
        self.joint += rows.joint()
        cl_cand = rows.off_diagonal & rows.disagrees
        self.est += np.count_nonzero(cl_cand, axis=1)
        self.cand_cl += rows.group_counts(cl_cand)
        self.cand_png += rows.group_counts(rows.disagrees)
        return self

    def merge(self, other: MultilabelJoint) -> MultilabelJoint:
        self.joint += other.joint
        self.est += other.est
        self.cand_cl += other.cand_cl
        self.cand_png += other.cand_png
        return self

    def calibrated(self, counts: np.ndarray) -> np.ndarray:
        return calibrate_multilabel_confident_joint(self.joint, counts)


class EmaBlockScores:
    """EMA row scores computed over the in-memory detector's row blocks, in row order.

    ``ema_aggregate`` computes each block of rows (``_row_blocks``: 2**23
    elements, at least 1024 rows, from row 0) with one matrix-vector product,
    whose per-row rounding depends on the BLAS code path the row takes in
    that product (its place in the block, the block's length). So scores are
    computed on the very same blocks: rows are buffered (sorted, float64)
    until their block is complete (at most one block: 2**23 values, 64 MB),
    then the block's scores are appended to ``out`` (a binary file of
    float64, one per row, in row order; ``None``: kept for :meth:`take`).
    Feed rows in input order.
    """

    def __init__(self, n_rows: int, n_classes: int, alpha: float, out: Any) -> None:
        from labelqa.detectors.multilabel import _row_blocks

        k = int(n_classes)
        self.k = k
        self.blocks = _row_blocks(int(n_rows), k)
        a = float(alpha)
        weights = a * (1.0 - a) ** np.arange(k, dtype=np.float64)
        weights[k - 1] = (1.0 - a) ** (k - 1)
        self.weights = weights
        self.out = out
        self._bi = 0
        self._buf: np.ndarray | None = None
        self._filled = 0
        self.completed: list[np.ndarray] = []

    def update(self, class_scores: np.ndarray) -> None:
        """Fold the next rows' ``(n, K)`` class scores in."""
        s = np.sort(class_scores, axis=1)
        n, pos = s.shape[0], 0
        while pos < n:
            blk = self.blocks[self._bi]
            length = blk.stop - blk.start
            if self._buf is None:
                self._buf = np.empty((length, self.k), dtype=np.float64)
                self._filled = 0
            take = min(length - self._filled, n - pos)
            self._buf[self._filled : self._filled + take] = s[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == length:
                done = np.clip(self._buf @ self.weights, 0.0, 1.0)
                if self.out is None:
                    self.completed.append(done)
                else:
                    done.tofile(self.out)
                self._buf = None
                self._bi += 1

    def take(self) -> np.ndarray:
        """Scores completed since the last call (``out=None``: kept in memory, e.g. on a Dask worker)."""
        done = np.concatenate(self.completed) if self.completed else np.empty(0, dtype=np.float64)
        self.completed = []
        return done

    def close(self) -> None:
        if self._buf is not None or self._bi != len(self.blocks):
            raise ValueError("rows missing: not every block was completed")
