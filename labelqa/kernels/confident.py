"""Counting steps of confident learning, written as partial aggregates.

Each aggregate is a small dataclass with two operations:

- ``update(batch...)`` folds one batch of rows into the partial, and
- ``merge(other)`` folds another partial (built from other rows) into it.

Updating with batches and merging the partials gives exactly the same state as
one update on all the rows, whatever the batching and the row order, so the
in-memory path, a streaming path (record batches) and a Dask engine (one
partial per partition, merged in a tree) can share this code.

Two passes are needed, because the confident joint depends on the thresholds:

1. :class:`ClassProbSums` -> per-class thresholds ``t_k``;
2. :class:`ConfidentJointCounts` with those thresholds -> the confident joint
   ``C`` (and a per-row guess of the true label, for the rows of each batch).

See ``ALGORITHMS.md`` section 1 (Northcutt, Jiang, Chuang, JAIR 2021).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CONFIDENT_EPS",
    "EMPTY_CLASS_THRESHOLD",
    "PROB_SCALE",
    "ClassProbSums",
    "ConfidentJointCounts",
]

#: A row is confident for class k when ``p_ik >= t_k - CONFIDENT_EPS``.
CONFIDENT_EPS = 1e-6

#: Threshold of a class that no row is labelled with. No probability reaches
#: it, so such a class is never in a confident set.
EMPTY_CLASS_THRESHOLD = 2.0

#: Probabilities are summed as integers in units of ``1 / PROB_SCALE``
#: (about 2.3e-10): integer sums are exact, so thresholds do not depend on
#: row order or batching. The int64 sums hold about 2**31 rows per class.
PROB_SCALE = float(2**32)


def _check_batch(labels: np.ndarray, pred_probs: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != n_classes:
        raise ValueError(
            f"pred_probs must have shape (n, {n_classes}), got {pred_probs.shape}"
        )
    if labels.shape != (pred_probs.shape[0],):
        raise ValueError(
            f"labels must have shape ({pred_probs.shape[0]},), got {labels.shape}"
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class codes, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False), pred_probs


def confident_cutoffs(thresholds: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per-class cutoffs ``t_k - CONFIDENT_EPS`` in the dtype of the probabilities.

    For float32 probabilities the cutoff is rounded *up* to the next float32,
    so ``p >= cutoff32`` holds exactly when ``p >= t_k - eps`` holds in exact
    arithmetic: comparing in float32 is then as exact as comparing in float64,
    without upcasting the probability matrix.
    """
    cut = np.asarray(thresholds, dtype=np.float64) - CONFIDENT_EPS
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return cut
    low = cut.astype(dtype)
    return np.where(low.astype(np.float64) < cut, np.nextafter(low, dtype.type(np.inf)), low)


@dataclass
class ClassProbSums:
    """Per-class sums of the probability of the given label, and class counts.

    ``t_k`` (the confident-learning threshold) is the mean of ``p_ik`` over
    the rows with given label ``k``.

    Attributes:
        n_classes: Number of classes K.
        sums: Shape ``(K,)`` int64: sum over rows with ``s_i = k`` of
            ``p_ik``, in units of ``1 / PROB_SCALE`` (exact integer sums).
        counts: Shape ``(K,)`` int64: ``n_k``, the number of rows given ``k``.
    """

    n_classes: int
    sums: np.ndarray = field(default=None)  # type: ignore[assignment]
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        k = int(self.n_classes)
        if self.sums is None:
            self.sums = np.zeros(k, dtype=np.int64)
        if self.counts is None:
            self.counts = np.zeros(k, dtype=np.int64)

    def update(self, labels: np.ndarray, pred_probs: np.ndarray) -> ClassProbSums:
        """Fold one batch of rows into the sums.

        Args:
            labels: Given labels of the batch, shape ``(n,)``, codes ``0..K-1``.
            pred_probs: Probabilities of the batch, shape ``(n, K)``.

        Returns:
            ``self``, for chaining.
        """
        labels, pred_probs = _check_batch(labels, pred_probs, self.n_classes)
        if labels.size == 0:
            return self
        return self.update_given(labels, pred_probs[np.arange(labels.size), labels])

    def update_given(self, labels: np.ndarray, given_probs: np.ndarray) -> ClassProbSums:
        """:meth:`update` from ``p_{i, s_i}`` alone, for callers that already gathered it.

        Args:
            labels: Given labels of the batch, shape ``(n,)``, codes ``0..K-1``.
            given_probs: Probability of each row's given label, shape ``(n,)``.

        Returns:
            ``self``, for chaining.
        """
        labels = np.asarray(labels).astype(np.int64, copy=False)
        self_conf = np.asarray(given_probs).astype(np.float64)
        if self_conf.shape != labels.shape:
            raise ValueError(f"given_probs must have shape {labels.shape}, got {self_conf.shape}")
        if labels.size == 0:
            return self
        fixed = np.rint(self_conf * PROB_SCALE).astype(np.int64)
        # Integer (not float) accumulation: exact, so order-independent.
        np.add.at(self.sums, labels, fixed)
        self.counts += np.bincount(labels, minlength=self.n_classes)
        return self

    def merge(self, other: ClassProbSums) -> ClassProbSums:
        """Fold another partial (from other rows) into this one; returns ``self``."""
        if other.n_classes != self.n_classes:
            raise ValueError(f"cannot merge {other.n_classes} classes into {self.n_classes}")
        self.sums += other.sums
        self.counts += other.counts
        return self

    def thresholds(self) -> np.ndarray:
        """Per-class thresholds ``t_k``, shape ``(K,)`` float64.

        A class with no rows gets :data:`EMPTY_CLASS_THRESHOLD` (2.0), which
        no probability reaches.
        """
        out = np.full(self.n_classes, EMPTY_CLASS_THRESHOLD, dtype=np.float64)
        seen = self.counts > 0
        out[seen] = self.sums[seen] / PROB_SCALE / self.counts[seen]
        return out


@dataclass
class ConfidentJointCounts:
    """The confident joint ``C``: rows = given label, columns = guessed true label.

    For each row, the confident set is ``{k : p_ik >= t_k - 1e-6}``. An empty
    set: the row is not counted (guess ``-1``). One class: that class is the
    guess. Several classes: the guess is the argmax of ``p_i`` over all K
    classes (lowest index on ties). Then ``C[s_i, guess_i] += 1``.

    Attributes:
        n_classes: Number of classes K.
        joint: Shape ``(K, K)`` int64 counts.
    """

    n_classes: int
    joint: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.joint is None:
            k = int(self.n_classes)
            self.joint = np.zeros((k, k), dtype=np.int64)

    def update(
        self,
        labels: np.ndarray,
        pred_probs: np.ndarray,
        thresholds: np.ndarray,
        argmax: np.ndarray | None = None,
    ) -> np.ndarray:
        """Count one batch of rows into the joint.

        Args:
            labels: Given labels of the batch, shape ``(n,)``.
            pred_probs: Probabilities of the batch, shape ``(n, K)`` (float32
                stays float32).
            thresholds: Per-class thresholds of the whole dataset, shape
                ``(K,)`` (from :meth:`ClassProbSums.thresholds`).
            argmax: Optional ``pred_probs.argmax(axis=1)`` of the batch, when
                the caller already has it (saves a pass over the batch).

        Returns:
            The guessed true label of each row of the batch, shape ``(n,)``
            int64, ``-1`` for rows with no confident class.
        """
        labels, pred_probs = _check_batch(labels, pred_probs, self.n_classes)
        k = self.n_classes
        n = labels.size
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if pred_probs.dtype.kind != "f":
            pred_probs = pred_probs.astype(np.float64)
        cut = confident_cutoffs(np.asarray(thresholds, dtype=np.float64), pred_probs.dtype)
        confident = pred_probs >= cut  # the one (n, K) temporary, bool
        # Summing the bools as small unsigned ints is faster than count_nonzero(axis=1).
        acc = np.uint8 if k < 1 << 8 else np.uint16 if k < 1 << 16 else np.int64
        n_confident = confident.view(np.uint8).sum(axis=1, dtype=acc)
        if argmax is None:
            guess = pred_probs.argmax(axis=1)
        else:
            guess = np.array(argmax, dtype=np.int64, copy=True)
            if guess.shape != (n,):
                raise ValueError(f"argmax must have shape ({n},), got {guess.shape}")
        # Rows with exactly one confident class: that class, which is not
        # always the argmax (p = (.5, .4), t = (.6, .3) -> class 1).
        single = np.flatnonzero(n_confident == 1)
        if single.size:
            off = ~confident[single, guess[single]]
            if off.any():
                rows = single[off]
                guess[rows] = confident[rows].argmax(axis=1)
        guess[n_confident == 0] = -1
        counted = guess >= 0
        cells = labels[counted] * k + guess[counted]
        self.joint += np.bincount(cells, minlength=k * k).reshape(k, k)
        return guess.astype(np.int64, copy=False)

    def merge(self, other: ConfidentJointCounts) -> ConfidentJointCounts:
        """Fold another partial (from other rows) into this one; returns ``self``."""
        if other.n_classes != self.n_classes:
            raise ValueError(f"cannot merge {other.n_classes} classes into {self.n_classes}")
        self.joint += other.joint
        return self
