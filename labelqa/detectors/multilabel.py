"""Multi-label confident learning (Thyagarajan, Snorrason, Northcutt, Mueller
2022): find wrong label *sets* from out-of-sample per-class probabilities.

Implemented from the method's description (``ALGORITHMS.md`` section 2), with
the binary problems solved exactly as :mod:`labelqa.detectors.confident`
defines confident learning (section 1):

1. **One-vs-rest reduction.** For every class ``k`` a binary problem: given
   value ``y_ik = [k in labels_i]`` and binary probabilities
   ``[1 - p_ik, p_ik]``. All K problems are solved together, vectorised over
   the ``(N, K)`` matrix (in blocks of columns to bound memory): thresholds
   are a ``(K, 2)`` array, confident joints ``(K, 2, 2)`` (``[class, given,
   guessed true]``), calibration and every flagging method are array
   operations over all classes at once. A flagged (row, class) pair with the
   label present is "label k should be removed", with it absent "label k
   should be added"; a row is flagged when any of its pairs is.
2. **Scores.** Per class ``q_ik = p_ik`` if ``k`` is in the row's labels, else
   ``1 - p_ik``; the row score aggregates ``q_i``: an exponential moving
   average over the scores sorted from largest to smallest (``alpha = 0.8``,
   the default; it weights the worst classes most) or a softmin
   (``temperature = 0.1``).

Definitions shared with the multiclass detector (per class ``k`` and given
binary value ``b``; ``n_kb`` rows have value ``b``):

- threshold ``t_kb`` = mean over those rows of their binary probability of
  ``b`` (exact fixed-point sums, so independent of row order); ``2.0`` when
  ``n_kb = 0``; a row is confident for ``b`` when that probability is
  ``>= t_kb - 1e-6``; both confident: the larger probability (``0`` on ties);
- the *estimated number of issues* of class ``k``: rows counted off the
  diagonal of the raw binary confident joint whose prediction also disagrees
  with the given value (``q_ik < 1 - q_ik``);
- the *agreement rule*: after ``prune_by_noise_rate``, ``prune_by_class``,
  ``both``, ``confident_learning`` and ``predicted_neq_given`` a pair whose
  prediction agrees with its given value (``q_ik >= 1 - q_ik``, ties toward
  the given value) is never flagged; so a flagged pair always has
  ``p_ik < 0.5`` (remove) or ``p_ik > 0.5`` (add);
- ties in every selection are shared: rows tied with the last one selected
  are all taken, unless that would break the ``min_examples_per_class``
  cap, then none of them is; so results never depend on row order.

The probabilities must be out-of-sample (e.g. cross-validated): a model that
trained on the same rows has memorised their labels, errors included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.detectors.confident import _AGREEMENT_RULE_METHODS, FILTER_METHODS, _round_rows, check_common_options
from labelqa.errors import LabelqaError
from labelqa.kernels.confident import EMPTY_CLASS_THRESHOLD, PROB_SCALE, confident_cutoffs

__all__ = [
    "AGGREGATIONS",
    "FILTER_METHODS",
    "MultilabelConfidentLearning",
    "MultilabelIssues",
    "aggregate_scores",
    "calibrate_multilabel_confident_joint",
    "compute_multilabel_confident_joint",
    "ema_aggregate",
    "find_multilabel_issues",
    "get_multilabel_quality_scores",
    "labels_to_indicator",
    "multilabel_class_scores",
    "multilabel_thresholds",
    "softmin_aggregate",
]

AGGREGATIONS = ("ema", "softmin")


#: About this many matrix elements per block of columns / rows.
_BLOCK_ELEMENTS = 1 << 23


# --------------------------------------------------------------------------- inputs
def labels_to_indicator(labels: Any, n_classes: int) -> np.ndarray:
    """Given labels as an ``(N, K)`` bool indicator matrix.

    Args:
        labels: Either an ``(N, K)`` array of bools or 0/1 integers, or a
            sequence of N label sets, each a sequence of class codes
            ``0..K-1`` (possibly empty), like ``[[0], [0, 2], []]``.
        n_classes: K.

    Raises:
        LabelqaError: On a wrong shape, a value other than 0/1, or a class
            code out of range.
    """
    k = int(n_classes)
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        arr = labels
    elif isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype != object:
        raise LabelqaError(
            f"multi-label labels must be an (N, {k}) indicator matrix or a list of label sets, "
            f"got a 1-D array of shape {labels.shape}"
        )
    else:
        sets = list(labels)
        arr = np.zeros((len(sets), k), dtype=bool)
        for i, s in enumerate(sets):
            codes = np.asarray(list(s) if not np.isscalar(s) else [s])
            if codes.size == 0:
                continue
            if codes.dtype.kind not in "iu":
                raise LabelqaError(f"row {i}: label set must hold integer class codes, got {list(s)!r}")
            if codes.min() < 0 or codes.max() >= k:
                raise LabelqaError(f"row {i}: class codes must be in 0..{k - 1}, got {list(s)!r}")
            arr[i, codes] = True
        return arr
    if arr.shape[1] != k:
        raise LabelqaError(f"labels must have {k} columns (one per class), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise LabelqaError(f"labels must be a 0/1 indicator matrix, got dtype {arr.dtype}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise LabelqaError("labels must be a 0/1 indicator matrix; found values other than 0 and 1")
    return arr.astype(bool)


def _as_arrays(labels: Any, pred_probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Light checks: (N, K) float probabilities in [0, 1], an (N, K) bool label matrix."""
    probs = np.asarray(pred_probs)
    if probs.ndim != 2:
        raise LabelqaError(f"pred_probs must be a 2-D (N, K) array, got shape {probs.shape}")
    if probs.dtype.kind != "f" or probs.dtype.itemsize < 4:
        probs = probs.astype(np.float64)
    if probs.size:
        lo, hi = float(np.min(probs)), float(np.max(probs))
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise LabelqaError(
                f"multi-label pred_probs must be per-class probabilities in [0, 1], found {lo:g}..{hi:g}",
                "apply a sigmoid to logits; rows need not sum to 1",
            )
    y = labels_to_indicator(labels, probs.shape[1])
    if y.shape[0] != probs.shape[0]:
        raise LabelqaError(f"labels have {y.shape[0]} rows but pred_probs has {probs.shape[0]}")
    return y, probs


def _check_options(
    n_classes: int,
    *,
    filter_by: str = "prune_by_noise_rate",
    frac_noise: float = 1.0,
    num_to_remove_per_class: Any = None,
    min_examples_per_class: int = 1,
) -> np.ndarray | None:
    """Validate options; returns ``num_to_remove_per_class`` as (K, 2) int64 or None."""
    check_common_options(filter_by, frac_noise, min_examples_per_class, FILTER_METHODS)
    if num_to_remove_per_class is None:
        return None
    arr = np.asarray(num_to_remove_per_class)
    if arr.shape != (n_classes, 2) or (arr.size and arr.dtype.kind not in "iu") or (arr.size and arr.min() < 0):
        raise LabelqaError(
            f"num_to_remove_per_class must be a ({n_classes}, 2) array of integers >= 0, got {num_to_remove_per_class!r}",
            "row k is [labels k to add, labels k to remove]",
        )
    return arr.astype(np.int64)


def _check_aggregation(aggregation: str, alpha: float, temperature: float) -> None:
    if aggregation not in AGGREGATIONS:
        raise LabelqaError(f"unknown aggregation {aggregation!r}", f"choose one of {', '.join(AGGREGATIONS)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) or not (
        0.0 <= float(alpha) <= 1.0
    ):
        raise LabelqaError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float, np.integer, np.floating))
        or not (float(temperature) > 0.0 and math.isfinite(float(temperature)))
    ):
        raise LabelqaError(f"temperature must be a number > 0, got {temperature!r}")


def _row_blocks(n_rows: int, n_cols: int) -> list[slice]:
    step = max(1024, _BLOCK_ELEMENTS // max(n_cols, 1))
    return [slice(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]


def _col_blocks(n_rows: int, n_cols: int) -> list[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(n_rows, 1))
    return [slice(s, min(s + step, n_cols)) for s in range(0, n_cols, step)]


# --------------------------------------------------------------------------- scores
def multilabel_class_scores(labels: Any, pred_probs: Any) -> np.ndarray:
    """Per-class label quality ``q_ik``: ``p_ik`` if ``k`` is given, else ``1 - p_ik``.

    Args:
        labels: ``(N, K)`` indicator matrix or a list of N label sets.
        pred_probs: ``(N, K)`` per-class probabilities in [0, 1].

    Returns:
        Shape ``(N, K)``, in the probabilities' dtype (float32 stays float32).
    """
    y, probs = _as_arrays(labels, pred_probs)
    return _class_scores(y, probs)


def _class_scores(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.where(y, probs, probs.dtype.type(1) - probs)


def ema_aggregate(scores: Any, alpha: float = 0.8) -> np.ndarray:
    """Exponential moving average of each row's scores, sorted largest first.

    ``E_1 = q_(1)``, ``E_t = alpha * q_(t) + (1 - alpha) * E_(t-1)``; the row
    score is ``E_K``. Computed as one weighted sum of the sorted row: weight
    ``(1 - alpha)^(K-1)`` for the largest score and ``alpha (1 - alpha)^(K-t)``
    for the t-th largest (t >= 2); the weights sum to 1, so the result is in
    the range of the row. ``alpha = 1`` gives the minimum, ``alpha = 0`` the
    maximum.

    Args:
        scores: Shape ``(N, K)``, e.g. from :func:`multilabel_class_scores`.
        alpha: Smoothing weight in [0, 1].

    Returns:
        float64, shape ``(N,)``.
    """
    _check_aggregation("ema", alpha, 1.0)
    s = _as_score_matrix(scores)
    n, k = s.shape
    if k == 0:
        return np.ones(n)
    a = float(alpha)
    # ascending position j (0 = smallest): weight a (1-a)^j, the largest (1-a)^(K-1)
    weights = a * (1.0 - a) ** np.arange(k, dtype=np.float64)
    weights[k - 1] = (1.0 - a) ** (k - 1)
    out = np.empty(n, dtype=np.float64)
    for sl in _row_blocks(n, k):
        out[sl] = np.sort(s[sl], axis=1).astype(np.float64) @ weights
    return np.clip(out, 0.0, 1.0)


def softmin_aggregate(scores: Any, temperature: float = 0.1) -> np.ndarray:
    """Softmin of each row: ``sum_k q_k * softmax((1 - q) / T)_k``.

    Args:
        scores: Shape ``(N, K)``.
        temperature: ``T > 0``; smaller is closer to the minimum.

    Returns:
        float64, shape ``(N,)``.
    """
    _check_aggregation("softmin", 0.8, temperature)
    s = _as_score_matrix(scores)
    n, k = s.shape
    if k == 0:
        return np.ones(n)
    t = float(temperature)
    out = np.empty(n, dtype=np.float64)
    for sl in _row_blocks(n, k):
        block = s[sl].astype(np.float64)
        # softmax((1 - q) / T) == softmax(-(q - min q) / T): shifted, no overflow
        w = np.exp(-(block - block.min(axis=1, keepdims=True)) / t)
        out[sl] = np.einsum("ij,ij->i", block, w) / w.sum(axis=1)
    return np.clip(out, 0.0, 1.0)


def _as_score_matrix(scores: Any) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2:
        raise LabelqaError(f"scores must be a 2-D (N, K) array, got shape {s.shape}")
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    return s


def aggregate_scores(
    scores: Any, aggregation: str = "ema", *, alpha: float = 0.8, temperature: float = 0.1
) -> np.ndarray:
    """Row scores from per-class scores: ``"ema"`` (default) or ``"softmin"``."""
    _check_aggregation(aggregation, alpha, temperature)
    if aggregation == "ema":
        return ema_aggregate(scores, alpha)
    return softmin_aggregate(scores, temperature)


def get_multilabel_quality_scores(
    labels: Any,
    pred_probs: Any,
    *,
    aggregation: str = "ema",
    alpha: float = 0.8,
    temperature: float = 0.1,
) -> np.ndarray:
    """Per-row label quality in [0, 1]; lower = the label set is more likely wrong.

    The per-class scores of :func:`multilabel_class_scores`, aggregated by
    :func:`aggregate_scores`.
    """
    _check_aggregation(aggregation, alpha, temperature)
    y, probs = _as_arrays(labels, pred_probs)
    return aggregate_scores(_class_scores(y, probs), aggregation, alpha=alpha, temperature=temperature)


# --------------------------------------------------------------------------- counting
def _fixed_sums(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exact per-row sums of ``values`` where ``mask``, in units of 1/PROB_SCALE (int64)."""
    fixed = np.rint(values.astype(np.float64) * PROB_SCALE).astype(np.int64)
    fixed[~mask] = 0
    return fixed.sum(axis=1)


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
    factor = np.divide(n.sum(axis=1), total, out=np.ones_like(total), where=total > 0)
    scaled *= factor[:, None, None]
    return _round_rows(scaled)


class _BlockStats(NamedTuple):
    counts: np.ndarray  # (k, 2) n_kb
    thresholds: np.ndarray  # (k, 2)
    joint: np.ndarray  # (k, 2, 2) raw
    est: np.ndarray  # (k,) estimated number of issues


class _Block:
    """One block of classes (columns), transposed to (k, N): everything per class."""

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        self.y = y  # (k, N) bool
        self.p = p  # (k, N) probability of "present"
        one = p.dtype.type(1)
        self.pc = pc = one - p  # probability of "absent"
        # q (probability of the given value) and the other binary probability,
        # bit-identical to where(y, p, 1 - p) and where(y, 1 - p, p), faster:
        # |0 - p| = p and |1 - p| = 1 - p, rounded like 1 - p.
        yf = y.astype(p.dtype)
        self.other = other = yf - p
        np.abs(other, out=other)
        np.subtract(one, yf, out=yf)
        yf -= p
        self.self_conf = np.abs(yf, out=yf)
        n = y.shape[1]
        n1 = np.count_nonzero(y, axis=1)
        self.counts = np.stack([n - n1, n1], axis=1).astype(np.int64)
        # exact fixed-point sums of q per given value: one pass over q
        if p.dtype == np.float32:
            # q * 2**32 is exact in float32 and its rint is representable: no float64 pass
            fixed = np.rint(self.self_conf * np.float32(PROB_SCALE)).astype(np.int64)
        else:
            fixed = np.rint(self.self_conf.astype(np.float64) * PROB_SCALE).astype(np.int64)
        total = fixed.sum(axis=1)
        fixed *= y
        sum1 = fixed.sum(axis=1)
        del fixed
        sums = np.stack([total - sum1, sum1], axis=1)
        thr = np.full(self.counts.shape, EMPTY_CLASS_THRESHOLD)
        seen = self.counts > 0
        thr[seen] = sums[seen] / PROB_SCALE / self.counts[seen]
        self.thresholds = thr
        cut = confident_cutoffs(thr, p.dtype)
        conf0 = pc >= cut[:, 0:1]
        conf1 = p >= cut[:, 1:2]
        both = conf0 & conf1
        # guess "present": confident for 1 and (not for 0, or p > 1 - p); "absent" likewise, ties -> absent
        g1 = conf1 & ~(both & ~(p > pc))
        g0 = conf0 & ~(both & ~(p <= pc))
        self.off_diagonal = (y & g0) | (g1 & ~y)
        counted = conf0 | conf1
        joint = np.empty((y.shape[0], 2, 2), dtype=np.int64)
        off1 = np.count_nonzero(self.off_diagonal & y, axis=1)  # given 1, guessed 0
        off0 = np.count_nonzero(self.off_diagonal, axis=1) - off1  # given 0, guessed 1
        on1 = np.count_nonzero(counted & y, axis=1)
        joint[:, 1, 0] = off1
        joint[:, 1, 1] = on1 - off1
        joint[:, 0, 1] = off0
        joint[:, 0, 0] = np.count_nonzero(counted, axis=1) - on1 - off0
        self.joint = joint
        self.agrees = self.self_conf >= self.other
        self.disagrees = ~self.agrees
        self.est = np.count_nonzero(self.off_diagonal & self.disagrees, axis=1).astype(np.int64)
        self.calibrated = calibrate_multilabel_confident_joint(joint, self.counts)

    def stats(self) -> _BlockStats:
        return _BlockStats(self.counts, self.thresholds, self.joint, self.est)

    def group(self, b: int) -> np.ndarray:
        return self.y if b else ~self.y


def _select_smallest(
    values: np.ndarray,
    mask: np.ndarray,
    counts: np.ndarray,
    limits: np.ndarray | None = None,
    *,
    candidates: np.ndarray | None = None,
    bound: float = 0.0,
) -> np.ndarray:
    """Per row r: the ``counts[r]`` smallest ``values[r]`` among ``mask[r]``, ties shared.

    Entries tied with the ``counts[r]``-th value share its fate, so the choice
    never depends on their order: all are taken (possibly more than
    ``counts[r]``), unless that would exceed ``limits[r]``, in which case none
    is. Callers pass ``limits >= counts``.

    Fast path: ``candidates`` (usually the few pairs whose prediction
    disagrees with their label) with ``bound`` such that every masked
    non-candidate value is ``>= bound``. A row whose ``counts[r]``-th smallest
    candidate is ``< bound`` has its whole selection, ties included, among its
    candidates: it is resolved by one sort of all candidates. The other rows
    take the general path: one ``np.partition`` over them, then a sort of the
    ``max(counts)`` leading values only.
    """
    out = np.zeros(values.shape, dtype=bool)
    counts = np.asarray(counts, dtype=np.int64).copy()
    if candidates is not None and np.any(counts > 0):
        _select_among_candidates(values, mask & candidates, counts, limits, bound, out)
    available = np.count_nonzero(mask, axis=1)
    active = np.flatnonzero(counts > 0)
    if active.size == 0:
        return out
    whole = active[counts[active] >= available[active]]
    out[whole] = mask[whole]
    active = active[counts[active] < available[active]]
    if active.size == 0:
        return out
    c = counts[active]
    msk = mask[active]
    vv = np.where(msk, values[active], values.dtype.type(np.inf))
    m = int(c.max())
    lead = np.partition(vv, m - 1, axis=1)[:, :m]
    lead.sort(axis=1)
    cut = lead[np.arange(active.size), c - 1][:, None]
    strict = vv < cut  # masked-out entries are +inf, never below a (finite) cut
    chosen = strict | (msk & (vv == cut))
    if limits is not None:
        over = np.count_nonzero(chosen, axis=1) > np.asarray(limits, dtype=np.int64)[active]
        chosen[over] = strict[over]
    out[active] = chosen
    return out


def _select_among_candidates(
    values: np.ndarray,
    cand: np.ndarray,
    counts: np.ndarray,
    limits: np.ndarray | None,
    bound: float,
    out: np.ndarray,
) -> None:
    """The fast path of :func:`_select_smallest`: sets ``out`` for the rows it
    resolves and zeroes their ``counts`` (in place)."""
    n_cand = np.count_nonzero(cand, axis=1)
    rows_ok = (counts > 0) & (n_cand >= counts)
    if not rows_ok.any():
        return
    width = values.shape[1]
    flat = np.flatnonzero(cand)
    row = flat // width
    keep = rows_ok[row]
    flat, row = flat[keep], row[keep]
    v = values.ravel()[flat]
    order = np.lexsort((v, row))  # by row, then value
    starts = np.concatenate([[0], np.cumsum(np.where(rows_ok, n_cand, 0))])[:-1]
    sel = np.flatnonzero(rows_ok)
    cut = np.zeros(values.shape[0], dtype=v.dtype)
    cut[sel] = v[order[starts[sel] + counts[sel] - 1]]
    resolved = np.zeros(values.shape[0], dtype=bool)
    resolved[sel] = cut[sel] < bound
    cut_e = cut[row]
    chosen = resolved[row] & (v <= cut_e)
    if limits is not None:
        n_chosen = np.bincount(row[chosen], minlength=values.shape[0])
        over = n_chosen > np.asarray(limits, dtype=np.int64)
        chosen &= ~(over[row] & (v == cut_e))
    out.ravel()[flat[chosen]] = True
    counts[resolved] = 0


def _select_per_group(
    blk: _Block, values: np.ndarray, totals: np.ndarray, limits: np.ndarray | None, bound: float
) -> np.ndarray:
    """Per class and given value b: the ``totals[k, b]`` lowest ``values`` among rows with value b.

    ``bound``: every pair whose prediction agrees with its label has a value
    ``>= bound`` (and the others ``<= bound``), for the fast path of
    :func:`_select_smallest`.
    """
    out = np.zeros(values.shape, dtype=bool)
    for b in (0, 1):
        if np.any(totals[:, b] > 0):
            lim = None if limits is None else limits[:, b]
            out |= _select_smallest(
                values, blk.group(b), totals[:, b], lim, candidates=blk.disagrees, bound=bound
            )
    return out


def _noise_cells(blk: _Block, frac: float, ntr: np.ndarray | None, min_examples: int) -> np.ndarray:
    """How many rows of each (class, given value b) to flag by PBC/PBNR, shape (k, 2).

    The multiclass detector's rule on each binary calibrated joint (its one
    off-diagonal cell ``o = C_cal[k, b, 1-b]``, diagonal ``d = C_cal[k, b, b]``):

    - ``num_to_remove_per_class``: ``min(ntr[k, b], cap)`` where ``o > 0``;
    - otherwise, when ``d < min_examples`` the diagonal is raised to it (never
      above ``n_kb``) and ``o`` lowered by as much (not below 0), then capped
      at ``n_kb - min_examples``; then ``o`` is scaled by ``frac_noise`` and
      the row ``[n_kb - o, o]`` rounded keeping its sum (floor, then +1 to the
      larger fractional part, ties to the higher column).
    """
    n = blk.counts.astype(np.float64)
    caps = np.maximum(n - min_examples, 0.0)
    cal = blk.calibrated.astype(np.float64)
    off = np.stack([cal[:, 0, 1], cal[:, 1, 0]], axis=1)
    if ntr is not None:
        return np.where(off > 0, np.minimum(ntr, caps), 0).astype(np.int64)
    diag = np.stack([cal[:, 0, 0], cal[:, 1, 1]], axis=1)
    raise_by = np.minimum(np.maximum(diag, min_examples), n) - diag
    off = np.where(raise_by > 0, np.maximum(off - raise_by, 0.0), off)
    over = off > caps
    off[over] *= caps[over] / off[over]
    off *= frac
    full = np.empty_like(cal)
    full[:, 0, 0] = n[:, 0] - off[:, 0]
    full[:, 0, 1] = off[:, 0]
    full[:, 1, 0] = off[:, 1]
    full[:, 1, 1] = n[:, 1] - off[:, 1]
    rounded = _round_rows(full)
    return np.stack([rounded[:, 0, 1], rounded[:, 1, 0]], axis=1)


def _flag_prune_by_class(blk: _Block, frac: float, ntr: np.ndarray | None, min_examples: int) -> np.ndarray:
    caps = np.maximum(blk.counts - min_examples, 0)
    totals = np.minimum(ntr, caps) if ntr is not None else _noise_cells(blk, frac, None, min_examples)
    return _select_per_group(blk, blk.self_conf, totals, caps, 0.5)


def _flag_prune_by_noise_rate(blk: _Block, frac: float, ntr: np.ndarray | None, min_examples: int) -> np.ndarray:
    caps = np.maximum(blk.counts - min_examples, 0)
    cells = _noise_cells(blk, frac, ntr, min_examples)
    # largest margin p_other - p_given == smallest (q - other), same rounding as the margin
    return _select_per_group(blk, blk.self_conf - blk.other, cells, caps, 0.0)


def _limit_per_group(blk: _Block, candidates: np.ndarray, totals: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Keep, per class and given value, at most ``min(totals, caps)`` candidates (lowest q)."""
    limits = np.minimum(totals, caps)
    out = candidates.copy()
    for b in (0, 1):
        grp = blk.group(b) & candidates
        n_cand = np.count_nonzero(grp, axis=1)
        over = n_cand > limits[:, b]
        if not over.any():
            continue
        rows = np.flatnonzero(over)
        keep = _select_smallest(
            blk.self_conf[rows], grp[rows], limits[rows, b], caps[rows, b],
            candidates=blk.disagrees[rows], bound=0.5,
        )
        out[rows] = np.where(grp[rows], keep, out[rows])
    return out


def _flag_low_score(
    blk: _Block, scores: np.ndarray, frac: float, ntr: np.ndarray | None, caps: np.ndarray
) -> np.ndarray:
    if ntr is not None:
        return _select_per_group(blk, scores, np.minimum(ntr, caps), caps, 0.5)
    totals = np.rint(frac * blk.est).astype(np.int64)
    if not np.any(totals > 0):
        return np.zeros(scores.shape, dtype=bool)
    # The T_k lowest of the class, then at most caps[k, b] of them per given
    # value (the lowest). Unlike the multiclass detector, rows dropped by a cap
    # are not replaced: in a binary problem the replacements would come from
    # the other direction, typically pairs whose prediction agrees with their
    # label (e.g. a class with a single positive row).
    mask = _select_smallest(
        scores, np.ones(scores.shape, dtype=bool), totals, candidates=blk.disagrees, bound=0.5
    )
    for b in (0, 1):
        grp = blk.group(b) & mask
        rows = np.flatnonzero(np.count_nonzero(grp, axis=1) > caps[:, b])
        if rows.size:
            keep = _select_smallest(
                scores[rows], grp[rows], caps[rows, b], caps[rows, b],
                candidates=blk.disagrees[rows], bound=0.5,
            )
            mask[rows] = np.where(grp[rows], keep, mask[rows])
    return mask


def _normalized_margin(blk: _Block) -> np.ndarray:
    own = blk.self_conf.astype(np.float64)
    return np.clip((own - blk.other.astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)


def _flag_block(blk: _Block, filter_by: str, frac: float, ntr: np.ndarray | None, min_examples: int) -> np.ndarray:
    caps = np.maximum(blk.counts - min_examples, 0)
    if filter_by == "prune_by_class":
        mask = _flag_prune_by_class(blk, frac, ntr, min_examples)
    elif filter_by == "prune_by_noise_rate":
        mask = _flag_prune_by_noise_rate(blk, frac, ntr, min_examples)
    elif filter_by == "both":
        mask = _flag_prune_by_class(blk, frac, ntr, min_examples) & _flag_prune_by_noise_rate(
            blk, frac, ntr, min_examples
        )
    elif filter_by in ("confident_learning", "predicted_neq_given"):
        cand = ~blk.agrees
        if filter_by == "confident_learning":
            cand &= blk.off_diagonal
        counts = np.stack([np.count_nonzero(cand & ~blk.y, axis=1), np.count_nonzero(cand & blk.y, axis=1)], axis=1)
        totals = ntr if ntr is not None else np.rint(frac * counts).astype(np.int64)
        mask = _limit_per_group(blk, cand, totals, caps)
    elif filter_by == "low_self_confidence":
        mask = _flag_low_score(blk, blk.self_conf, frac, ntr, caps)
    elif filter_by == "low_normalized_margin":
        mask = _flag_low_score(blk, _normalized_margin(blk), frac, ntr, caps)
    else:  # pragma: no cover - validated before
        raise LabelqaError(f"unknown filter_by {filter_by!r}", f"choose one of {', '.join(FILTER_METHODS)}")
    if filter_by in _AGREEMENT_RULE_METHODS:
        mask &= ~blk.agrees
    return mask


@dataclass
class _Run:
    """Flags and per-class statistics of one run over all classes."""

    flags: np.ndarray  # (N, K) bool
    counts: np.ndarray  # (K, 2)
    thresholds: np.ndarray  # (K, 2)
    joint: np.ndarray  # (K, 2, 2)
    calibrated: np.ndarray  # (K, 2, 2)
    est: np.ndarray  # (K,)


def _run(
    y: np.ndarray, probs: np.ndarray, filter_by: str, frac: float, ntr: np.ndarray | None, min_examples: int
) -> _Run:
    n, k = probs.shape
    flags = np.zeros((n, k), dtype=bool)
    counts = np.zeros((k, 2), dtype=np.int64)
    thresholds = np.full((k, 2), EMPTY_CLASS_THRESHOLD)
    joint = np.zeros((k, 2, 2), dtype=np.int64)
    calibrated = np.zeros((k, 2, 2), dtype=np.int64)
    est = np.zeros(k, dtype=np.int64)
    if n == 0:
        return _Run(flags, counts, thresholds, joint, calibrated, est)
    for cols in _col_blocks(n, k):
        blk = _Block(np.ascontiguousarray(y[:, cols].T), np.ascontiguousarray(probs[:, cols].T))
        flags[:, cols] = _flag_block(blk, filter_by, frac, None if ntr is None else ntr[cols], min_examples).T
        counts[cols], thresholds[cols], joint[cols], est[cols] = blk.stats()
        calibrated[cols] = blk.calibrated
        del blk
    return _Run(flags, counts, thresholds, joint, calibrated, est)


# --------------------------------------------------------------------------- public API
def multilabel_thresholds(labels: Any, pred_probs: Any) -> np.ndarray:
    """Per-class binary thresholds, shape ``(K, 2)``: ``[:, 0]`` mean ``1 - p_ik``
    over rows without class k, ``[:, 1]`` mean ``p_ik`` over rows with it
    (``2.0`` when there are no such rows)."""
    y, probs = _as_arrays(labels, pred_probs)
    return _run(y, probs, "confident_learning", 1.0, None, 1).thresholds


def compute_multilabel_confident_joint(labels: Any, pred_probs: Any) -> np.ndarray:
    """Raw one-vs-rest confident joints, shape ``(K, 2, 2)``, ``[class, given, guessed true]``."""
    y, probs = _as_arrays(labels, pred_probs)
    return _run(y, probs, "confident_learning", 1.0, None, 1).joint


class MultilabelIssues(NamedTuple):
    """Result of :func:`find_multilabel_issues`.

    Attributes:
        issues: Per-row flag, shape ``(N,)`` bool: any class flagged.
        to_remove: ``(N, K)`` bool: label k is given but should be removed.
        to_add: ``(N, K)`` bool: label k is missing and should be added.
    """

    issues: np.ndarray
    to_remove: np.ndarray
    to_add: np.ndarray


def find_multilabel_issues(
    labels: Any,
    pred_probs: Any,
    *,
    filter_by: str = "prune_by_noise_rate",
    frac_noise: float = 1.0,
    num_to_remove_per_class: Any = None,
    min_examples_per_class: int = 1,
) -> MultilabelIssues:
    """Flag wrong labels in multi-label data: one-vs-rest confident learning.

    Each class k is a binary confident-learning problem (given value
    ``[k in labels_i]``, probabilities ``[1 - p_ik, p_ik]``) solved with the
    same definitions as :func:`labelqa.detectors.confident.find_label_issues`,
    for all classes at once. Methods (``filter_by``), per class k and given
    value b:

    - ``prune_by_noise_rate`` (default): the ``c_kb`` rows with the largest
      margin ``p(1-b) - p(b)``, ``c_kb`` the off-diagonal cell
      ``C_cal[k, b, 1-b]`` after the multiclass detector's min-examples guard
      and ``frac_noise`` scaling;
    - ``prune_by_class``: the ``c_kb`` rows with the lowest ``q_ik``;
    - ``both``: pairs flagged by both;
    - ``confident_learning``: pairs counted off the diagonal of the binary
      confident joint; ``predicted_neq_given``: ``p_ik < 0.5`` for a given
      label, ``p_ik > 0.5`` for a missing one;
    - ``low_self_confidence`` / ``low_normalized_margin``: per class the
      ``T_k`` pairs with the lowest ``q_ik`` (resp. ``(q - (1-q) + 1) / 2``),
      ``T_k`` = the class's estimated number of issues; then at most
      ``n_kb - min_examples_per_class`` of them per given value (the lowest;
      unlike the multiclass detector, dropped pairs are not replaced).

    These are per-class decisions. cleanlab 2.9 agrees exactly on the first
    five methods; for the ``low_*`` methods it instead ranks whole rows by
    the aggregated row score and flags as many rows as ``confident_learning``
    does (observed as a black box), so its flagged rows differ.

    Args:
        labels: ``(N, K)`` bool/0-1 indicator matrix, or N label sets of
            class codes (e.g. ``[[0], [0, 2], []]``).
        pred_probs: ``(N, K)`` out-of-sample per-class probabilities in
            [0, 1] (rows need not sum to 1).
        filter_by: One of :data:`FILTER_METHODS`.
        frac_noise: Flag only this fraction (rounded, per class and given
            value; for the ``low_*`` methods, of ``T_k``) of the estimates.
        num_to_remove_per_class: ``(K, 2)`` integers replacing the estimated
            counts: row k is ``[labels k to add, labels k to remove]``
            (indexed by given value 0/1); same per-method meaning as in the
            multiclass detector.
        min_examples_per_class: Per class, keep at least this many rows with
            the label and this many without it unflagged.

    Returns:
        :class:`MultilabelIssues` ``(issues, to_remove, to_add)``.

    Raises:
        LabelqaError: On invalid inputs or options.
    """
    y, probs = _as_arrays(labels, pred_probs)
    ntr = _check_options(
        probs.shape[1],
        filter_by=filter_by,
        frac_noise=frac_noise,
        num_to_remove_per_class=num_to_remove_per_class,
        min_examples_per_class=min_examples_per_class,
    )
    run = _run(y, probs, filter_by, float(frac_noise), ntr, int(min_examples_per_class))
    return MultilabelIssues(run.flags.any(axis=1), run.flags & y, run.flags & ~y)


# --------------------------------------------------------------------------- detector
@dataclass(kw_only=True)
class MultilabelConfidentLearning(Detector):
    """Multi-label confident learning: flag and score label sets.

    Args:
        filter_by: How (row, class) pairs are flagged, one of
            :data:`FILTER_METHODS` (see :func:`find_multilabel_issues`).
        aggregation: Row score from the per-class scores: ``"ema"``
            (exponential moving average, default) or ``"softmin"``.
        alpha: EMA weight (0.8).
        temperature: Softmin temperature (0.1).
        frac_noise: Flag only this fraction of the estimated issues.
        num_to_remove_per_class: ``(K, 2)`` counts replacing the estimates
            (row k: ``[to add, to remove]``).
        min_examples_per_class: Per class, keep at least this many rows with
            and without the label unflagged.

    :meth:`detect` returns:

    - ``scores``: aggregated row score in [0, 1], lower = more suspect;
    - ``issues``: row flagged (any class);
    - ``suggested``: ``(N, K)`` bool, the suggested label set (given set,
      flagged labels removed, flagged missing labels added);
    - ``suggested_confidence``: ``(N,)``, the least-supported class decision
      of the suggested set: ``min_k`` of ``p_ik`` for the classes in the set
      and ``1 - p_ik`` for those not in it (for an unflagged row: its lowest
      per-class score);
    - ``extra``: ``labels_to_remove`` and ``labels_to_add`` ``(N, K)`` bool,
      ``class_scores`` ``(N, K)`` (``q_ik``) and ``change_confidence``
      ``(N, K)``: the probability backing a change of class k in row i,
      ``1 - q_ik`` (``1 - p_ik`` to remove a given label, ``p_ik`` to add a
      missing one), for a per-class ``--min-confidence`` rule (it is defined
      for every pair; only flagged pairs are changes);
    - ``summary``: per-class counts and rates (see :meth:`detect`).
    """

    name: ClassVar[str] = "mlcl"

    filter_by: str = "prune_by_noise_rate"
    aggregation: str = "ema"
    alpha: float = 0.8
    temperature: float = 0.1
    frac_noise: float = 1.0
    num_to_remove_per_class: Sequence[Sequence[int]] | None = None
    min_examples_per_class: int = 1

    def detect(self, data: LabelData) -> DetectorResult:
        """Score, flag and suggest a label set for every row of ``data``.

        Summary keys: ``per_class`` (one dict per class: ``class``,
        ``count`` = rows with the label, ``should_remove`` and
        ``should_remove_rate`` (over ``count``), ``should_add`` and
        ``should_add_rate`` (over the rows without the label),
        ``threshold_present``, ``threshold_absent``, ``label_quality`` (mean
        ``q_ik``), ``estimated_issues``, ``confident_joint`` (2x2, ``[given,
        true]``)); ``n_rows``, ``rows_with_issue``, ``share_rows_with_issue``,
        ``labels_to_remove``, ``labels_to_add``, ``filter_by``,
        ``aggregation``, ``alpha``/``temperature``.

        Raises:
            LabelqaError: On non-multi-label data or an invalid parameter.
        """
        if data.task != "multilabel":
            raise LabelqaError(
                f"multi-label confident learning needs multi-label data, got task {data.task!r}",
                "use the confident learning detector for multiclass data",
            )
        _check_aggregation(self.aggregation, self.alpha, self.temperature)
        y, probs = _as_arrays(data.labels, data.pred_probs)
        n, k = probs.shape
        ntr = _check_options(
            k,
            filter_by=self.filter_by,
            frac_noise=self.frac_noise,
            num_to_remove_per_class=self.num_to_remove_per_class,
            min_examples_per_class=self.min_examples_per_class,
        )
        run = _run(y, probs, self.filter_by, float(self.frac_noise), ntr, int(self.min_examples_per_class))
        flags = run.flags
        to_remove = flags & y
        to_add = flags & ~y
        issues = flags.any(axis=1)
        class_scores = _class_scores(y, probs)
        scores = aggregate_scores(class_scores, self.aggregation, alpha=self.alpha, temperature=self.temperature)
        change_confidence = class_scores.dtype.type(1) - class_scores
        suggested = y ^ flags
        # flagged pairs are backed by 1 - q, the others by q
        backing = np.where(flags, change_confidence, class_scores)
        suggested_confidence = (
            backing.min(axis=1).astype(np.float64) if k else np.ones(n, dtype=np.float64)
        )
        return DetectorResult(
            name=self.name,
            scores=scores,
            issues=issues,
            suggested=suggested,
            suggested_confidence=suggested_confidence,
            summary=self._summary(data, run, y, to_remove, to_add, issues, class_scores),
            params=self.get_params(),
            extra={
                "labels_to_remove": to_remove,
                "labels_to_add": to_add,
                "class_scores": class_scores,
                "change_confidence": change_confidence,
            },
        )

    def _summary(
        self,
        data: LabelData,
        run: _Run,
        y: np.ndarray,
        to_remove: np.ndarray,
        to_add: np.ndarray,
        issues: np.ndarray,
        class_scores: np.ndarray,
    ) -> dict[str, Any]:
        n, k = y.shape
        quality = class_scores.mean(axis=0, dtype=np.float64) if n else np.ones(k)
        names = data.class_names if len(data.classes) == k else [str(i) for i in range(k)]
        return multilabel_detector_summary(
            names=names, counts=run.counts, thresholds=run.thresholds, joint=run.joint, est=run.est,
            quality=quality, remove=np.count_nonzero(to_remove, axis=0), add=np.count_nonzero(to_add, axis=0),
            n_issues=int(np.count_nonzero(issues)), params=self.get_params(),
        )


def multilabel_detector_summary(
    *, names: Sequence[str], counts: np.ndarray, thresholds: np.ndarray, joint: np.ndarray, est: np.ndarray,
    quality: np.ndarray, remove: np.ndarray, add: np.ndarray, n_issues: int, params: dict[str, Any],
) -> dict[str, Any]:
    """The multi-label detector's summary, from per-class aggregates.

    One builder for the in-memory detector and the streaming/Dask engines
    (``labelqa.engines.output``), so their summaries cannot drift apart.

    Args:
        names: Class names.
        counts: ``(K, 2)`` rows without / with each class.
        thresholds: ``(K, 2)`` thresholds for absent / present.
        joint: ``(K, 2, 2)`` confident joints.
        est: Estimated issues per class.
        quality: Mean class score per class.
        remove: Flagged labels to remove, per class.
        add: Flagged labels to add, per class.
        n_issues: Rows with an issue.
        params: The detector's parameters (``filter_by``, ``aggregation``,
            ``alpha`` or ``temperature``).
    """
    k = len(names)
    n = int(counts[0].sum()) if k else 0
    count = counts[:, 1]
    absent = counts[:, 0]
    per_class = [
        {
            "class": names[j],
            "count": int(count[j]),
            "should_remove": int(remove[j]),
            "should_remove_rate": float(remove[j] / count[j]) if count[j] else 0.0,
            "should_add": int(add[j]),
            "should_add_rate": float(add[j] / absent[j]) if absent[j] else 0.0,
            "threshold_present": float(thresholds[j, 1]),
            "threshold_absent": float(thresholds[j, 0]),
            "label_quality": float(quality[j]),
            "estimated_issues": int(est[j]),
            "confident_joint": joint[j].tolist(),
        }
        for j in range(k)
    ]
    summary: dict[str, Any] = {
        "per_class": per_class,
        "n_rows": n,
        "rows_with_issue": int(n_issues),
        "share_rows_with_issue": float(n_issues / n) if n else 0.0,
        "labels_to_remove": int(remove.sum()),
        "labels_to_add": int(add.sum()),
        "filter_by": params["filter_by"],
        "aggregation": params["aggregation"],
    }
    if params["aggregation"] == "ema":
        summary["alpha"] = float(params["alpha"])
    else:
        summary["temperature"] = float(params["temperature"])
    return summary
