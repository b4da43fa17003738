"""Statistics of confident learning: partial aggregates and the math on them.

Each aggregate is a small dataclass with two operations:

- ``update(batch...)`` folds one batch of rows into the partial, and
- ``merge(other)`` folds another partial (built from other rows) into it.

Updating with batches and merging the partials gives exactly the same state as
one update on all the rows, whatever the batching and the row order, so the
in-memory runner (one block), the streaming runner (record batches) and the
Dask runner (one partial per partition, merged in a tree) share this code.

Two passes are needed, because the confident joint depends on the thresholds:

1. :class:`ClassProbSums` -> per-class thresholds ``t_k``;
2. :class:`ConfidentJointCounts` with those thresholds -> the confident joint
   ``C`` (and a per-row guess of the true label, for the rows of each batch).

Then, on the aggregates alone: :func:`calibrate_confident_joint`,
:func:`estimate_latent` (joint, noise matrix, inverse noise matrix, latent
prior) and :func:`round_rows`.

See Northcutt, Jiang, Chuang, JAIR 2021).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from labelqa.errors import LabelqaError
from labelqa.parallel import row_ranges, thread_map, worker_count

__all__ = [
    "CONFIDENT_EPS",
    "EMPTY_CLASS_THRESHOLD",
    "PROB_SCALE",
    "ClassProbSums",
    "ConfidentJointCounts",
    "LatentEstimates",
    "calibrate_confident_joint",
    "confident_cutoffs",
    "confident_guesses",
    "estimate_latent",
    "noise_rate",
    "round_rows",
    "row_entropy",
    "row_max",
    "row_sum_argmax",
    "row_top",
    "scale_rows_to",
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


#: Up to this many classes, row reductions (argmax, max, confident counts) run over transposed chunks: a
#: reduction along 10-wide rows costs numpy a loop per row, the same work over K contiguous columns of a
#: cache-sized chunk is K vectorised passes (3-4x faster at K = 10, identical results).
SMALL_K = 32
#: Rows of a transposed chunk: K x 16,384 float32 (640 KB at K = 10) stays in the L2 cache.
_CHUNK_ROWS = 16384
#: Rows whose fixed-point sums stay exact in float64 (each term < 2**32 + 1, so partial sums < 2**53).
_EXACT_FLOAT_ROWS = 1 << 20
#: Rows per chunk of the class sums (its float temporaries stay in cache).
_SUM_CHUNK_ROWS = 1 << 16
#: Above :data:`SMALL_K` classes, the confident sets are found in blocks of about this many probabilities
#: (a 256 KB bool matrix, reused; the block's 1 MB of float32 stays in cache for the argmax after the comparison).
_WIDE_BLOCK_ELEMENTS = 1 << 18


def _columns(block: np.ndarray) -> np.ndarray:
    """``block`` transposed into a C-contiguous ``(K, rows)`` copy."""
    return np.ascontiguousarray(block.T)


def _running_argmax(cols: np.ndarray, best: np.ndarray, where: np.ndarray, scratch: np.ndarray,
                    flag: np.ndarray) -> None:
    """Fill ``best`` (the row maxima) and ``where`` (uint8: their first column) from the columns of a chunk.

    ``where`` moves to column ``j`` only where ``cols[j] > best`` (strictly): the lowest index wins ties,
    as :func:`numpy.argmax`. The update is arithmetic, with no masked writes: ``where = max(where, flag * j)``
    (``j`` exceeds every earlier column index, so the maximum is ``j`` exactly where the flag is set).
    """
    np.copyto(best, cols[0])
    where[:] = 0
    for j in range(1, cols.shape[0]):
        col = cols[j]
        np.greater(col, best, out=flag)
        np.maximum(best, col, out=best)
        np.multiply(flag.view(np.uint8), np.uint8(j), out=scratch)
        np.maximum(where, scratch, out=where)


def row_top(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(probs.argmax(axis=1), probs.max(axis=1))``, the same values, faster at small K.

    At most :data:`SMALL_K` columns the rows are reduced over transposed
    chunks (see :data:`SMALL_K`); a chunk holding NaN (where numpy's argmax
    picks the first NaN) is reduced by numpy itself. Wider rows: numpy.

    Args:
        probs: Shape ``(n, K)`` floats.

    Returns:
        ``(argmax, max)``: int64 column of each row's maximum (lowest on ties), and the maximum in ``probs``' dtype.
    """
    probs = np.asarray(probs)
    n, k = probs.shape
    if k > SMALL_K or k == 0 or n == 0 or probs.dtype.kind != "f":
        top = probs.argmax(axis=1) if k else np.zeros(n, dtype=np.int64)
        return top.astype(np.int64, copy=False), (probs[np.arange(n), top] if k else np.zeros(n, probs.dtype))
    arg = np.empty(n, dtype=np.uint8)
    best = np.empty(n, dtype=probs.dtype)
    step = min(_CHUNK_ROWS, n)
    scratch, flag = np.empty(step, dtype=np.uint8), np.empty(step, dtype=bool)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        _running_argmax(_columns(probs[start:stop]), best[start:stop], arg[start:stop], scratch[:m], flag[:m])
        if np.isnan(best[start:stop]).any():
            chunk = probs[start:stop]
            arg[start:stop] = chunk.argmax(axis=1)
            best[start:stop] = chunk[np.arange(m), arg[start:stop]]
    return arg.astype(np.int64), best


def _column_sums(cols: np.ndarray, out: np.ndarray, acc: np.ndarray) -> None:
    """``out`` = each row's sum of the transposed ``(K, rows)`` chunk ``cols`` (``K <= SMALL_K``), added in numpy's
    own order for a contiguous row (``np.add.reduce(probs, axis=1)``, bit-identical): fewer than 8 terms in
    sequence; else 8 running sums, combined pairwise, then the rest in sequence. ``acc``: an ``(8, rows)`` buffer."""
    k = cols.shape[0]
    if k < 8:
        np.copyto(out, cols[0])
        for j in range(1, k):
            np.add(out, cols[j], out=out)
        return
    np.copyto(acc, cols[:8])
    j, stop = 8, k - k % 8
    while j < stop:
        np.add(acc, cols[j : j + 8], out=acc)
        j += 8
    np.add(acc[0::2], acc[1::2], out=acc[0::2])  # (r0 + r1), (r2 + r3), (r4 + r5), (r6 + r7)
    np.add(acc[0::4], acc[2::4], out=acc[0::4])  # ... + ..., pairwise
    np.add(acc[0], acc[4], out=out)
    for j in range(stop, k):
        np.add(out, cols[j], out=out)


def row_sum_argmax(probs: np.ndarray, sums: np.ndarray, top: np.ndarray | None) -> tuple[float, float]:
    """Each row's sum and first maximum column, and the smallest and largest value, in one pass.

    The same values as ``np.add.reduce(probs, axis=1)``, ``probs.argmax(axis=1)``, ``probs.min()`` and
    ``probs.max()`` (NaN when ``probs`` holds one), read from cache-sized chunks (transposed ones up to
    :data:`SMALL_K` classes, see there) instead of four passes over the matrix.

    Args:
        probs: Shape ``(n, K)`` floats, C-contiguous rows, ``K >= 1``.
        sums: Output, shape ``(n,)`` in ``probs``' dtype.
        top: Output, shape ``(n,)``, any integer dtype holding ``0..K-1``; ``None``: no argmax.

    Returns:
        ``(min, max)`` of ``probs``.
    """
    n, k = probs.shape
    low, high = np.inf, -np.inf
    if n == 0:
        return low, high
    if k > SMALL_K or probs.dtype.kind != "f":
        step = max(1, _WIDE_BLOCK_ELEMENTS // k)
        for start in range(0, n, step):
            block = probs[start : start + step]
            np.add.reduce(block, axis=1, out=sums[start : start + step])
            if top is not None:
                top[start : start + step] = block.argmax(axis=1)
            low, high = min(low, float(block.min())), max(high, float(block.max()))
        return (np.nan, np.nan) if np.isnan(sums).any() else (float(low), float(high))
    step = min(_CHUNK_ROWS, n)
    acc = np.empty((8, step), dtype=probs.dtype)
    arg, best = np.empty(step, dtype=np.uint8), np.empty(step, dtype=probs.dtype)
    scratch, flag = np.empty(step, dtype=np.uint8), np.empty(step, dtype=bool)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        cols = _columns(probs[start:stop])
        _column_sums(cols, sums[start:stop], acc[:, :m])
        if top is None:
            low, high = min(low, float(cols.min())), max(high, float(cols.max()))
            continue
        _running_argmax(cols, best[:m], arg[:m], scratch[:m], flag[:m])
        if np.isnan(best[:m]).any():  # numpy's argmax picks the first NaN
            top[start:stop] = probs[start:stop].argmax(axis=1)
            continue
        top[start:stop] = arg[:m]
        low, high = min(low, float(cols.min())), max(high, float(best[:m].max()))
    return (np.nan, np.nan) if np.isnan(sums).any() else (float(low), float(high))


def row_max(probs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``probs.max(axis=1)``, the same values, faster at small K (columns of transposed chunks, see :data:`SMALL_K`).

    Args:
        probs: Shape ``(n, K)`` floats, ``K >= 1``.
        out: Optional output, shape ``(n,)`` in ``probs``' dtype.

    Returns:
        Each row's maximum (NaN when the row holds one, as numpy's).
    """
    probs = np.asarray(probs)
    n, k = probs.shape
    if out is None:
        out = np.empty(n, dtype=probs.dtype)
    if k > SMALL_K or n == 0 or probs.dtype.kind != "f":
        np.max(probs, axis=1, out=out)
        return out
    step = min(_CHUNK_ROWS, n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        cols = _columns(probs[start:stop])
        best = out[start:stop]
        np.copyto(best, cols[0])
        for j in range(1, k):
            np.maximum(best, cols[j], out=best)
    return out


def _entropy_into(cols: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None) -> None:
    """``out = -sum_j p_j log p_j`` of a transposed ``(K, rows)`` chunk, in its dtype, class by class (0 log 0 = 0).

    ``scratch``: an optional buffer shaped like ``cols`` for the terms (a chunk-sized allocation less).
    """
    if cols.shape[0] == 0:  # no classes: an empty sum
        out[:] = 0
        return
    logs = np.maximum(cols, np.finfo(cols.dtype).tiny, out=scratch)
    np.log(logs, out=logs)
    logs *= cols  # 0 * log(tiny) = 0
    np.subtract(0, logs[0], out=out)  # from 0, as every later term: a fixed order per element, whatever the chunk
    for row in logs[1:]:
        out -= row


def row_entropy(probs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Each row's entropy ``-sum_k p_k log p_k`` (0 log 0 = 0), summed class by class in the probabilities' dtype.

    Over transposed cache-sized chunks: a row's value does not depend on
    the chunking (the same operations on the same values, in the same order).

    Args:
        probs: Shape ``(n, K)`` floats.
        out: Optional output, shape ``(n,)`` in ``probs``' dtype.
    """
    probs = np.asarray(probs)
    n = probs.shape[0]
    if out is None:
        out = np.empty(n, dtype=probs.dtype)
    scratch = np.empty((probs.shape[1], min(_CHUNK_ROWS, n)), dtype=probs.dtype)
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n)
        _entropy_into(_columns(probs[start:stop]), out[start:stop], scratch[:, : stop - start])
    return out


#: From this many classes the trend's entropy (:func:`trend_entropy`) is summed along each row (a row is long
#: enough for a vectorised reduction, and a transposed chunk would no longer fit the cache: 200k x 1,000,
#: 1.4 -> 0.3 s).
ROWWISE_ENTROPY_K = 64
#: About this many probabilities per row block of that row-wise entropy.
_ENTROPY_BLOCK_ELEMENTS = 1 << 18


def trend_entropy(probs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The trend's entropy of each row: class by class (:func:`row_entropy`) below :data:`ROWWISE_ENTROPY_K`
    classes, else ``-sum(p log max(p, tiny))`` summed along the row (numpy's pairwise sum), in row blocks.

    Either way a row's value does not depend on the blocks (the same operations on the same values).
    """
    probs = np.asarray(probs)
    n, k = probs.shape
    if out is None:
        out = np.empty(n, dtype=probs.dtype)
    if k < ROWWISE_ENTROPY_K:
        return row_entropy(probs, out)
    step = max(1, _ENTROPY_BLOCK_ELEMENTS // k)
    for start in range(0, n, step):
        _rowwise_entropy_into(probs[start:start + step], out[start:start + step])
    return out


def _rowwise_entropy_into(part: np.ndarray, out: np.ndarray) -> None:
    tiny = np.finfo(part.dtype).tiny
    if part.min(initial=np.inf) >= tiny:  # no zero (nor subnormal) to lift: the same logs without that pass
        logs = np.log(part)  # (200k x 1,000: ~0.08 s less CPU)
    else:
        logs = np.maximum(part, tiny)
        np.log(logs, out=logs)
    logs *= part
    np.negative(np.add.reduce(logs, axis=1), out=out)


def _confident_guess(probs: np.ndarray, cut: np.ndarray, argmax: np.ndarray | None,
                     row_max: np.ndarray | None = None, entropy: np.ndarray | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
    """The guessed true label of each row (see :class:`ConfidentJointCounts`), over transposed chunks.

    One transposed copy per chunk serves every reduction, each one numpy call over the whole ``(K, rows)``
    chunk (no per-class Python loop): ``conf = cols >= cut`` (per class), its count per row, and the
    largest confident class index (a row with one confident class: that class); the row maxima and their
    first column (as :func:`numpy.argmax`: the largest ``K - j`` among the columns equal to the maximum).
    The guess is then chosen arithmetically (no masked writes, no branches): ``-1`` (none), that class
    (one), or the argmax (several; given, or found in the same pass). ``row_max`` (same dtype as
    ``probs``), when given, is filled with the row maxima, and ``entropy`` with :func:`row_entropy` (the
    same values).

    Returns:
        ``out`` (or a new array): int8 guesses (``K <= SMALL_K < 128``); ``out`` may be any signed
        integer array of shape ``(n,)``.
    """
    n, k = probs.shape
    if out is None:
        out = np.empty(n, dtype=np.int8)
    step = min(_CHUNK_ROWS, n)
    flags = np.empty((k, step), dtype=bool)
    weighted = np.empty((k, step), dtype=np.uint8)
    count, pick, top, other = (np.empty(step, dtype=np.uint8) for _ in range(4))
    is_one = np.empty(step, dtype=bool)
    best = np.empty(step, dtype=probs.dtype)
    cut_column = np.asarray(cut, dtype=probs.dtype)[:, None]
    class_index = np.arange(k, dtype=np.uint8)[:, None]  # j
    reverse_index = (k - np.arange(k)).astype(np.uint8)[:, None]  # K - j: the largest is the first column
    narrow = out.dtype == np.int8
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        cols = _columns(probs[start:stop])
        if entropy is not None:
            _entropy_into(cols, entropy[start:stop])
        f, fu, wt = flags[:, :m], flags[:, :m].view(np.uint8), weighted[:, :m]
        c, p, t, o, one = count[:m], pick[:m], top[:m], other[:m], is_one[:m]
        np.greater_equal(cols, cut_column, out=f)
        np.add.reduce(fu, axis=0, out=c)
        np.multiply(fu, class_index, out=wt)
        np.maximum.reduce(wt, axis=0, out=p)  # the confident class of a row with exactly one
        if argmax is None or row_max is not None:
            b = best[:m] if row_max is None else row_max[start:stop]
            np.maximum.reduce(cols, axis=0, out=b)
            if np.isnan(b).any():  # numpy's argmax picks the first NaN
                chunk = probs[start:stop]
                t[:] = chunk.argmax(axis=1)
                b[:] = chunk[np.arange(m), t]
            else:
                np.equal(cols, b, out=f)
                np.multiply(fu, reverse_index, out=wt)
                np.maximum.reduce(wt, axis=0, out=t)
                np.subtract(np.uint8(k), t, out=t)
        if argmax is not None:
            t[:] = argmax[start:stop]
        # one confident class -> p, several -> t: t + (p - t) * [c == 1] (uint8, wrapping); none -> 255 (-1)
        np.subtract(p, t, out=p)
        np.equal(c, 1, out=one)
        np.multiply(p, one.view(np.uint8), out=p)
        np.add(p, t, out=p)
        np.equal(c, 0, out=one)
        np.negative(one.view(np.uint8), out=o)  # 0 or 255
        if narrow:
            np.bitwise_or(p, o, out=out[start:stop].view(np.uint8))
        else:
            np.bitwise_or(p, o, out=p)
            out[start:stop] = p.view(np.int8)
    return out


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
        self_conf = np.asarray(given_probs)
        if self_conf.dtype.kind != "f":
            self_conf = self_conf.astype(np.float64)
        if self_conf.shape != labels.shape:
            raise ValueError(f"given_probs must have shape {labels.shape}, got {self_conf.shape}")
        if labels.size == 0:
            return self
        k = self.n_classes
        # Exact, so order-independent: float64 sums of whole numbers are exact below 2**53, which chunks of
        # _EXACT_FLOAT_ROWS rows never reach; each chunk's sums are then added as integers. Chunks of
        # _SUM_CHUNK_ROWS keep the temporaries in cache (np.bincount holds the GIL: no threads here).
        step = min(_EXACT_FLOAT_ROWS, _SUM_CHUNK_ROWS)
        for start in range(0, labels.size, step):
            sl = slice(start, start + step)
            # whole numbers in [0, 2**32] (as floats); float64 a chunk at a time (no float64 copy of the batch)
            fixed = self_conf[sl].astype(np.float64)
            fixed *= PROB_SCALE
            np.rint(fixed, out=fixed)
            self.sums += np.bincount(labels[sl], weights=fixed, minlength=k).astype(np.int64)
        self.counts += np.bincount(labels, minlength=k)
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


def confident_guesses(
    pred_probs: np.ndarray,
    thresholds: np.ndarray,
    argmax: np.ndarray | None = None,
    row_max: np.ndarray | None = None,
    entropy: np.ndarray | None = None,
    guess_out: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's guessed true label for the confident joint (see :class:`ConfidentJointCounts`), uncounted.

    Args:
        pred_probs: Probabilities of the batch, shape ``(n, K)`` (float32 stays float32).
        thresholds: Per-class thresholds of the whole dataset, shape ``(K,)``
            (from :meth:`ClassProbSums.thresholds`).
        argmax: Optional ``pred_probs.argmax(axis=1)`` of the batch, when the
            caller already has it (saves a pass over the batch).
        row_max: Optional output, shape ``(n,)`` in ``pred_probs``' dtype:
            filled with each row's maximum, from the same pass.
        entropy: Optional output, shape ``(n,)`` in ``pred_probs``' dtype:
            filled with :func:`trend_entropy` from the same chunks or row blocks
            (while they are in cache).
        guess_out: Optional output for the guesses, shape ``(n,)``, a signed
            integer dtype holding ``-1..K-1`` (e.g. int8 for K <= :data:`SMALL_K`:
            an eighth of the memory of int64).

    Returns:
        The guessed true label of each row, shape ``(n,)`` (``guess_out`` when
        given, else int64), ``-1`` for rows with no confident class.
    """
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must have shape (n, K), got {pred_probs.shape}")
    n, k = pred_probs.shape
    if n == 0:
        return np.empty(0, dtype=np.int64) if guess_out is None else guess_out
    if pred_probs.dtype.kind != "f":
        pred_probs = pred_probs.astype(np.float64)
    cut = confident_cutoffs(np.asarray(thresholds, dtype=np.float64), pred_probs.dtype)
    if argmax is not None:
        argmax = np.asarray(argmax)
        if argmax.shape != (n,):
            raise ValueError(f"argmax must have shape ({n},), got {argmax.shape}")
    if row_max is not None and (row_max.shape != (n,) or row_max.dtype != pred_probs.dtype):
        raise ValueError(f"row_max must have shape ({n},) and dtype {pred_probs.dtype}")
    if entropy is not None and (entropy.shape != (n,) or entropy.dtype != pred_probs.dtype):
        raise ValueError(f"entropy must have shape ({n},) and dtype {pred_probs.dtype}")
    if guess_out is not None and (guess_out.shape != (n,) or guess_out.dtype.kind != "i"
                                  or np.iinfo(guess_out.dtype).max < k - 1):
        raise ValueError(f"guess_out must have shape ({n},) and a signed integer dtype holding 0..{k - 1}")
    if k <= SMALL_K:  # the row reductions over transposed chunks (same guesses as below)
        guess = _confident_guess(pred_probs, cut, argmax, row_max, entropy, guess_out)
        return guess if guess_out is not None else guess.astype(np.int64)
    guess = _wide_guess(pred_probs, cut, argmax, row_max, entropy)
    if guess_out is not None:
        guess_out[:] = guess
        return guess_out
    return guess


def _wide_guess(pred_probs: np.ndarray, cut: np.ndarray, argmax: np.ndarray | None,
                row_max: np.ndarray | None, entropy: np.ndarray | None = None) -> np.ndarray:
    """:func:`confident_guesses` of rows wider than :data:`SMALL_K` classes (int64), in cache-sized row blocks
    (``entropy``, when given: :func:`trend_entropy` of each block while it is in cache)."""
    n, k = pred_probs.shape
    # Summing the bools as small unsigned ints is faster than count_nonzero(axis=1).
    acc = np.uint8 if k < 1 << 8 else np.uint16 if k < 1 << 16 else np.int64
    n_confident = np.empty(n, dtype=acc)
    guess = np.empty(n, dtype=np.int64) if argmax is None else np.array(argmax, dtype=np.int64, copy=True)
    # Blocks of rows whose (rows, K) bool matrix stays in cache, in one reused buffer: a bool matrix of the
    # whole batch (16 MB per 2^24-probability task) was freshly paged in by every task.
    step = max(1, _WIDE_BLOCK_ELEMENTS // k)
    buffer = np.empty((min(step, n), k), dtype=bool)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = pred_probs[start:stop]
        confident = buffer[: stop - start]
        np.greater_equal(block, cut, out=confident)
        counts = n_confident[start:stop]
        np.add.reduce(confident.view(np.uint8), axis=1, dtype=acc, out=counts)
        top = guess[start:stop]
        if argmax is None:
            np.argmax(block, axis=1, out=top)
        if row_max is not None:  # the maximum, at the argmax (before the correction below)
            row_max[start:stop] = block[np.arange(stop - start), top]
        if entropy is not None:
            trend_entropy(block, entropy[start:stop])
        # Rows with exactly one confident class: that class, which is not
        # always the argmax (p = (.5, .4), t = (.6, .3) -> class 1).
        single = np.flatnonzero(counts == 1)
        if single.size:
            off = ~confident[single, top[single]]
            if off.any():
                rows = single[off]
                top[rows] = confident[rows].argmax(axis=1)
    guess[n_confident == 0] = -1
    return guess


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
        row_max: np.ndarray | None = None,
        entropy: np.ndarray | None = None,
        guess_out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Count one batch of rows into the joint.

        Args:
            labels: Given labels of the batch, shape ``(n,)``.
            pred_probs, thresholds, argmax, row_max, entropy, guess_out: As
                :func:`confident_guesses`.

        Returns:
            The guessed true label of each row of the batch (:func:`confident_guesses`).
        """
        labels, pred_probs = _check_batch(labels, pred_probs, self.n_classes)
        guess = confident_guesses(pred_probs, thresholds, argmax, row_max, entropy, guess_out)
        self.add_guesses(labels, guess)
        return guess

    def add_guesses(self, labels: np.ndarray, guesses: np.ndarray) -> None:
        """Count rows by given label and guess (:func:`confident_guesses`; ``-1``: not counted) into the joint."""
        k = self.n_classes
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size == 0:
            return
        if k <= SMALL_K:  # cell (s, g + 1) of a K x (K + 1) count, column 0 = not counted: no row compaction
            cells = labels * (k + 1)
            cells += guesses
            cells += 1
            self.joint += np.bincount(cells, minlength=k * (k + 1)).reshape(k, k + 1)[:, 1:]
            return
        counted = guesses >= 0
        cells = labels[counted] * k + guesses[counted]
        if self.joint.flags.c_contiguous:  # in place: only the pages of the counted cells (a K x K bincount at
            np.add.at(self.joint.reshape(-1), cells, 1)  # K = 1,000 was 16 MB of fresh memory per call)
        else:
            self.joint += np.bincount(cells, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfidentJointCounts) -> ConfidentJointCounts:
        """Fold another partial (from other rows) into this one; returns ``self``."""
        if other.n_classes != self.n_classes:
            raise ValueError(f"cannot merge {other.n_classes} classes into {self.n_classes}")
        self.joint += other.joint
        return self


# --------------------------------------------------------------------------- math on the aggregates
#: :func:`round_rows` sorts its rows on threads from this many entries (sorting costs far more per entry
#: than the passes :data:`labelqa.parallel.MIN_PARALLEL_ELEMENTS` is tuned for).
PARALLEL_SORT_ELEMENTS = 1 << 16


def round_rows(values: np.ndarray) -> np.ndarray:
    """Round to integers keeping each row's rounded sum; rows along the last axis, any number of them.

    cleanlab 2.9's rule (``round_preserving_row_totals``), implemented from
    its description: round every entry half to even (``np.round``); where a
    row's sum then differs from its rounded float sum by ``d``, move the
    ``|d|`` entries whose residual ``x - round(x)`` is largest (``d > 0``:
    +1 each) or smallest (``d < 0``: -1 each), in the order of numpy's
    default ``argsort`` of the residuals (ties included, so the same numpy
    gives the same choice among tied entries), repeated until the sums agree.
    The multi-label detector rounds its K stacked 2 x 2 joints with it too.
    """
    x = np.asarray(values, dtype=np.float64)
    flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1])) if x.size else x.reshape(-1, max(x.shape[-1:], default=0))
    ints = np.round(flat)
    targets = np.round(flat.sum(axis=1))
    off = np.flatnonzero(ints.sum(axis=1) != targets)
    if off.size and flat.shape[1]:  # every such row's first move at once: one argsort along the rows
        # (numpy sorts each row alone, by the same algorithm as a 1-D argsort: the same order among ties)
        got = ints[off]
        d = targets[off] - got.sum(axis=1)
        residual = flat[off] - got
        order = np.empty(residual.shape, dtype=np.intp)  # rows sorted on threads: mostly-zero rows of a sparse
        # K = 1,000 joint are slow for numpy's default sort (~60 ms), and its order among ties is the rule's

        def sort_rows(rows: tuple[int, int]) -> None:
            order[rows[0]:rows[1]] = np.argsort(residual[rows[0]:rows[1]], axis=1)

        parts = row_ranges(off.size, -(-off.size // worker_count()))
        for _ in thread_map(sort_rows, parts, parallel=residual.size >= PARALLEL_SORT_ELEMENTS):
            pass
        count = np.minimum(np.abs(d), flat.shape[1])[:, None]
        place = np.arange(flat.shape[1])[None, :]
        moved = np.where(d[:, None] > 0, place >= flat.shape[1] - count, place < count)  # the last |d| or first |d|
        step = np.zeros_like(got)
        np.put_along_axis(step, order, moved * np.sign(d)[:, None], axis=1)
        ints[off] = got + step
    for r in np.flatnonzero(ints.sum(axis=1) != targets):  # rows a first move did not settle (|d| > K)
        row, got = flat[r], ints[r]
        while (d := targets[r] - got.sum()) != 0:
            step = 1.0 if d > 0 else -1.0
            order = np.argsort(row - got)  # default kind, as cleanlab's, for the same order among ties
            picked = (order[::-1] if step > 0 else order)[: min(int(abs(d)), row.size)]
            got[picked] += step
    return ints.reshape(x.shape).astype(np.int64)


def scale_rows_to(weights: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Integer matrix whose row ``k`` sums to ``totals[k]``, proportional to ``weights[k]``.

    Rows of zero weight get zeros (nothing to split).
    """
    w = np.asarray(weights, dtype=np.float64)
    sums = w.sum(axis=1)
    factor = np.divide(totals, sums, out=np.zeros_like(sums), where=sums > 0)
    return round_rows(w * factor[:, None])


def calibrate_confident_joint(confident_joint: Any, class_counts: Any) -> np.ndarray:
    """Calibrate the confident joint to the class counts.

    Each row ``j`` is rescaled to sum to ``n_j``, then the whole matrix to sum
    to ``N = sum(n)``, then each row is rounded to integers keeping its
    rounded sum (round, then move +-1 to the entries with the largest
    remainders). A row of ``C`` that is all zero while ``n_j > 0`` (no row of
    class ``j`` was confidently counted) gets ``n_j`` on its diagonal: with no
    evidence of noise, the class is taken as clean.

    Args:
        confident_joint: Shape ``(K, K)`` counts.
        class_counts: ``n_j``, shape ``(K,)``.

    Returns:
        Shape ``(K, K)`` int64; row ``j`` sums to ``n_j`` (when ``C``'s rows
        with ``n_j > 0`` are not all zero, the rescale to N changes nothing).
    """
    c = np.asarray(confident_joint, dtype=np.float64)
    n = np.asarray(class_counts, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or n.shape != (c.shape[0],):
        raise LabelqaError(f"need a (K, K) joint and K class counts, got {c.shape} and {n.shape}")
    row_sums = c.sum(axis=1)
    has = row_sums > 0
    # in place on one fresh copy (at K = 1,000 each K x K temporary is 8 MB of fresh pages); the same
    # operations in this order give cleanlab's floats bit for bit
    scaled = np.array(c, dtype=np.float64, copy=True)
    np.divide(scaled, np.where(has, row_sums, 1.0)[:, None], out=scaled)
    np.multiply(scaled, n[:, None], out=scaled)
    scaled[~has] = 0.0
    empty = np.flatnonzero(~has & (n > 0))
    scaled[empty, empty] = n[empty]
    total = scaled.sum()
    if total > 0:
        np.divide(scaled, total, out=scaled)
        np.multiply(scaled, n.sum(), out=scaled)
    return round_rows(scaled)


class LatentEstimates(NamedTuple):
    """Estimates derived from the calibrated confident joint.

    All matrices are ``[given label s, true label y*]``.

    Attributes:
        joint: ``Q = C_cal / N``, estimate of ``P(s, y*)``.
        noise_matrix: ``P(s=j | y*=k)`` at ``[j, k]`` (Q column-normalised;
            columns sum to 1). A class with no estimated true rows gets an
            identity column.
        inverse_noise_matrix: ``P(y*=k | s=j)`` at ``[j, k]`` (Q
            row-normalised; rows sum to 1). A class no row is given gets an
            identity row.
        latent_prior: ``P(y*=k)``, the column sums of Q, shape ``(K,)``.
    """

    joint: np.ndarray
    noise_matrix: np.ndarray
    inverse_noise_matrix: np.ndarray
    latent_prior: np.ndarray


def estimate_latent(calibrated: Any) -> LatentEstimates:
    """Joint, noise matrix, inverse noise matrix and latent prior from ``C_cal``.

    Args:
        calibrated: The calibrated confident joint, shape ``(K, K)``.

    Returns:
        :class:`LatentEstimates`; divisions by zero are guarded (identity
        column/row, zero joint for an empty matrix).
    """
    c = np.asarray(calibrated, dtype=np.float64)
    total = c.sum()
    q = c / total if total > 0 else np.zeros_like(c)
    col = q.sum(axis=0)
    row = q.sum(axis=1)
    # three fresh K x K arrays, no more (at K = 1,000 each temporary is 8 MB of fresh pages)
    noise = q / np.where(col > 0, col, 1.0)
    _identity_lines(noise, np.flatnonzero(~(col > 0)), axis=1)
    inverse = q / np.where(row > 0, row, 1.0)[:, None]
    _identity_lines(inverse, np.flatnonzero(~(row > 0)), axis=0)
    return LatentEstimates(joint=q, noise_matrix=noise, inverse_noise_matrix=inverse, latent_prior=col)


def _identity_lines(matrix: np.ndarray, lines: np.ndarray, axis: int) -> None:
    """Make the given columns (``axis=1``) or rows (``axis=0``) of a square matrix those of the identity, in place."""
    if lines.size:
        if axis == 1:
            matrix[:, lines] = 0.0
        else:
            matrix[lines, :] = 0.0
        matrix[lines, lines] = 1.0


def noise_rate(calibrated: np.ndarray) -> float:
    """The estimated noise rate ``1 - trace(Q)`` (0 for an empty joint); ``Q``'s diagonal only."""
    c = np.asarray(calibrated, dtype=np.float64)
    total = c.sum()
    return float(1.0 - np.add.reduce(np.diagonal(c) / total)) if total > 0 else 0.0
