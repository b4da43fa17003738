"""Multi-label confident learning (Thyagarajan, Snorrason, Northcutt, Mueller
2022): find wrong label *sets* from out-of-sample per-class probabilities.

Implemented from the method's description (multi-label confident learning, Thyagarajan et al. 2023), with
the binary problems solved exactly as :mod:`labelqa.detectors.confident`
defines confident learning (section 1), as one plan every runner executes
unchanged (see :mod:`labelqa.detectors.base`):

1. **One-vs-rest reduction.** For every class ``k`` a binary problem: given
   value ``y_ik = [k in labels_i]`` and binary probabilities
   ``[1 - p_ik, p_ik]``. All K problems are solved together, vectorised over
   the ``(K, n)`` transposed rows of each chunk: thresholds are a ``(K, 2)``
   array, confident joints ``(K, 2, 2)`` (``[class, given, guessed true]``)
   (:mod:`labelqa.stats.multilabel`), calibration and every flagging method
   are array operations over all classes at once. A flagged (row, class)
   pair with the label present is "label k should be removed", with it
   absent "label k should be added"; a row is flagged when any of its pairs
   is.
2. **Scores.** Per class ``q_ik = p_ik`` if ``k`` is in the row's labels, else
   ``1 - p_ik``; the row score aggregates ``q_i``: an exponential moving
   average over the scores sorted from largest to smallest (``ema_alpha =
   0.8``, the default; it weights the worst classes most) or a softmin
   (``softmin_temperature = 0.1``).

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np

from labelqa.data.model import LabelData
from labelqa.detectors.base import Block, DatasetInfo, Detector, DetectorRows, Plan, RowRule, Step, selection_stages
from labelqa.detectors.base import run_on_block
from labelqa import options
from labelqa.detectors.confident import AGREEMENT_RULE_METHODS, FILTER_METHODS
from labelqa.errors import LabelqaError
from labelqa.parallel import MIN_PARALLEL_ELEMENTS, thread_map
from labelqa.stats.confident import EMPTY_CLASS_THRESHOLD, confident_cutoffs
from labelqa.stats.multilabel import MultilabelJoint, MultilabelSums, calibrate_multilabel_confident_joint
from labelqa.stats.selection import GroupCuts, GroupedTop, Pick, Selections

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

#: About this many matrix elements per chunk of rows: each chunk's temporaries (a few ``(n, K)`` arrays)
#: stay in the cache, and a large block gives every worker thread many chunks.
CHUNK_ELEMENTS = 1 << 20
#: Rows per chunk at least (narrow matrices).
MIN_CHUNK_ROWS = 1024

R = TypeVar("R")


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


def _per_class_counts(num_to_remove_per_class: Any, n_classes: int) -> np.ndarray | None:
    """``num_to_remove_per_class`` as a (K, 2) int64 array (or None)."""
    if num_to_remove_per_class is None:
        return None
    arr = np.asarray(num_to_remove_per_class)
    if arr.shape != (n_classes, 2) or (arr.size and arr.dtype.kind not in "iu") or (arr.size and arr.min() < 0):
        raise LabelqaError(
            f"num_to_remove_per_class must be a ({n_classes}, 2) array of integers >= 0, got {num_to_remove_per_class!r}",
            "row k is [labels k to add, labels k to remove]",
        )
    return arr.astype(np.int64)


def _check_aggregation(aggregation: str, ema_alpha: float, softmin_temperature: float) -> None:
    """The row-score options, checked as their flags are (:mod:`labelqa.options`)."""
    for name, value in (("aggregation", aggregation), ("ema_alpha", ema_alpha),
                        ("softmin_temperature", softmin_temperature)):
        options.check(options.OPTIONS[name], value)


def _row_chunks(n_rows: int, n_cols: int) -> list[slice]:
    step = max(MIN_CHUNK_ROWS, CHUNK_ELEMENTS // max(n_cols, 1))
    return [slice(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]


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
    score is ``E_K``, so in the range of the row: ``alpha = 1`` gives the
    minimum, ``alpha = 0`` the maximum. Evaluated class by class, elementwise
    over the rows (no matrix product), so a row's score does not depend on
    the other rows or on how rows are batched.

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
    out = np.empty(n, dtype=np.float64)
    for sl in _row_chunks(n, k):
        out[sl] = _ema_rows(s[sl], float(alpha))[0]
    return out


def _ema_rows(s: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ema_aggregate` of one chunk ``(n, K)``, ``K >= 1``, and each row's minimum (as float64)."""
    k = s.shape[1]
    # ascending, the largest last; transposed so that each step reads one contiguous row
    ordered = np.sort(s, axis=1).T.astype(np.float64, order="C")
    acc = ordered[k - 1].copy()
    step = np.empty_like(acc)
    for t in range(k - 2, -1, -1):
        acc *= 1.0 - a
        acc += np.multiply(ordered[t], a, out=step)
    return np.clip(acc, 0.0, 1.0, out=acc), ordered[0]


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
    for sl in _row_chunks(n, k):
        block = s[sl].astype(np.float64)
        # softmax((1 - q) / T) == softmax(-(q - min q) / T): shifted, no overflow
        w = np.exp(-(block - block.min(axis=1, keepdims=True)) / t)
        out[sl] = (block * w).sum(axis=1) / w.sum(axis=1)
    return np.clip(out, 0.0, 1.0)


def _as_score_matrix(scores: Any) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2:
        raise LabelqaError(f"scores must be a 2-D (N, K) array, got shape {s.shape}")
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    return s


def aggregate_scores(
    scores: Any, aggregation: str = "ema", *, ema_alpha: float = 0.8, softmin_temperature: float = 0.1
) -> np.ndarray:
    """Row scores from per-class scores: ``"ema"`` (default) or ``"softmin"``."""
    _check_aggregation(aggregation, ema_alpha, softmin_temperature)
    if aggregation == "ema":
        return ema_aggregate(scores, ema_alpha)
    return softmin_aggregate(scores, softmin_temperature)


def get_multilabel_quality_scores(
    labels: Any,
    pred_probs: Any,
    *,
    aggregation: str = "ema",
    ema_alpha: float = 0.8,
    softmin_temperature: float = 0.1,
) -> np.ndarray:
    """Per-row label quality in [0, 1]; lower = the label set is more likely wrong.

    The per-class scores of :func:`multilabel_class_scores`, aggregated by
    :func:`aggregate_scores`.
    """
    _check_aggregation(aggregation, ema_alpha, softmin_temperature)
    y, probs = _as_arrays(labels, pred_probs)
    return aggregate_scores(_class_scores(y, probs), aggregation, ema_alpha=ema_alpha,
                            softmin_temperature=softmin_temperature)


# --------------------------------------------------------------------------- per-row state of a chunk
class _Pairs:
    """One chunk of rows, ``(n, K)``: every (row, class) pair's binary quantities, per class down the columns."""

    def __init__(self, y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None) -> None:
        self.y = y = np.asarray(y, dtype=bool)
        self.p = p = np.asarray(probs)
        self.n, self.k = p.shape
        self.thresholds = thresholds

    @cached_property
    def _binary(self) -> tuple[np.ndarray, np.ndarray]:
        # q (probability of the given value) and the other binary probability,
        # bit-identical to where(y, p, 1 - p) and where(y, 1 - p, p), faster:
        # |0 - p| = p and |1 - p| = 1 - p, rounded like 1 - p.
        p, one = self.p, self.p.dtype.type(1)
        yf = self.y.astype(p.dtype)
        other = yf - p
        np.abs(other, out=other)
        np.subtract(one, yf, out=yf)
        yf -= p
        return np.abs(yf, out=yf), other

    @property
    def self_conf(self) -> np.ndarray:
        """``q``: the probability of the given value (the per-class score)."""
        return self._binary[0]

    @property
    def other(self) -> np.ndarray:
        """``1 - q``, rounded like ``1 - p``."""
        return self._binary[1]

    @cached_property
    def guessed(self) -> tuple[np.ndarray, np.ndarray]:
        """``(off_diagonal, counted)``: pairs counted off the joint's diagonal, pairs counted at all."""
        assert self.thresholds is not None, "thresholds needed"
        p, y = self.p, self.y
        pc = p.dtype.type(1) - p  # probability of "absent"
        cut = confident_cutoffs(self.thresholds, p.dtype)
        conf0 = pc >= cut[:, 0]
        conf1 = p >= cut[:, 1]
        both = conf0 & conf1
        # guess "present": confident for 1 and (not for 0, or p > 1 - p); "absent" likewise, ties -> absent
        g1 = conf1 & ~(both & ~(p > pc))
        g0 = conf0 & ~(both & ~(p <= pc))
        return (y & g0) | (g1 & ~y), conf0 | conf1

    @property
    def off_diagonal(self) -> np.ndarray:
        return self.guessed[0]

    @cached_property
    def disagrees(self) -> np.ndarray:
        """Pairs whose prediction disagrees with the given value (``q < 1 - q``)."""
        return self.self_conf < self.other

    @cached_property
    def normalized_margin(self) -> np.ndarray:
        return _normalized_margin(self.self_conf, self.other)

    @cached_property
    def groups(self) -> np.ndarray:
        """``(n, K)`` group of each pair, ``2 k + b``: class ``k`` and given value ``b``."""
        return 2 * np.arange(self.k, dtype=np.int64) + self.y

    def candidates(self, method: str) -> np.ndarray:
        """``(n, K)`` candidates of ``confident_learning`` / ``predicted_neq_given``."""
        cand = self.disagrees
        if method == "confident_learning":
            cand = cand & self.off_diagonal
        return cand

    # ---- the same quantities at some pairs only (flat indices into the (n, K) chunk) ----
    @cached_property
    def disagreeing(self) -> np.ndarray:
        """Flat indices of the pairs that disagree (few: every selection but ``low_*`` is made among them)."""
        return np.flatnonzero(self.disagrees)

    def candidates_at(self, method: str) -> np.ndarray:
        """Flat indices of :meth:`candidates`."""
        idx = self.disagreeing
        if method == "confident_learning":
            idx = idx[self.off_diagonal.ravel()[idx]]
        return idx

    def groups_at(self, idx: np.ndarray) -> np.ndarray:
        """:attr:`groups` at flat indices ``idx``."""
        return 2 * (idx % self.k) + self.y.ravel()[idx]

    def self_conf_at(self, idx: np.ndarray) -> np.ndarray:
        """:attr:`self_conf` at flat indices ``idx``."""
        return self.self_conf.ravel()[idx]

    def other_at(self, idx: np.ndarray) -> np.ndarray:
        """:attr:`other` at flat indices ``idx``."""
        return self.other.ravel()[idx]

    def normalized_margin_at(self, idx: np.ndarray) -> np.ndarray:
        """:attr:`normalized_margin` at flat indices ``idx`` (elementwise: the same floats)."""
        return _normalized_margin(self.self_conf_at(idx), self.other_at(idx))


def _normalized_margin(own: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``(q - (1 - q) + 1) / 2`` of pairs, clipped to ``[0, 1]``, in float64 (``other``: the rounded ``1 - q``)."""
    return np.clip((own.astype(np.float64) - other.astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)


def _chunk_map(block: Block, fn: Callable[[slice, _Pairs], R], thresholds: np.ndarray | None = None) -> list[R]:
    """``fn(rows, pairs)`` for every chunk of rows of ``block``, in row order; on threads when the block is large.

    ``fn`` may only write to rows ``rows`` of shared outputs (or return a partial to merge).
    """
    y, probs = block.labels, block.pred_probs
    return list(thread_map(lambda sl: fn(sl, _Pairs(y[sl], probs[sl], thresholds)), _row_chunks(*probs.shape),
                           parallel=probs.size >= MIN_PARALLEL_ELEMENTS))


# --------------------------------------------------------------------------- statistics passes
class SumsStep(Step):
    """Pass 1: rows and fixed-point ``q`` sums per (class, given value)."""

    name = "class sums"

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes

    def start(self) -> MultilabelSums:
        return MultilabelSums(self.n_classes)

    def feed(self, partial: MultilabelSums, block: Block) -> MultilabelSums:
        k = self.n_classes
        for part in _chunk_map(block, lambda _, pairs: MultilabelSums(k).update(pairs.y, pairs.self_conf)):
            partial.merge(part)
        return partial


class JointStep(Step):
    """Pass 2: the binary confident joints, estimated issues and candidate counts."""

    name = "confident joints"

    def __init__(self, thresholds: np.ndarray) -> None:
        self.thresholds = thresholds

    def start(self) -> MultilabelJoint:
        return MultilabelJoint(self.thresholds.shape[0])

    def feed(self, partial: MultilabelJoint, block: Block) -> MultilabelJoint:
        k = self.thresholds.shape[0]

        def part(_: slice, pairs: _Pairs) -> MultilabelJoint:
            off, counted = pairs.guessed
            return MultilabelJoint(k).update(pairs.y, off, counted, pairs.disagrees)

        for joint in _chunk_map(block, part, self.thresholds):
            partial.merge(joint)
        return partial


@dataclass
class Estimates:
    """Dataset-level figures after the statistics passes."""

    counts: np.ndarray  # (K, 2)
    thresholds: np.ndarray  # (K, 2)
    joint: np.ndarray  # (K, 2, 2)
    est: np.ndarray  # (K,)
    cand_cl: np.ndarray  # (K, 2)
    cand_png: np.ndarray  # (K, 2)
    quality: np.ndarray  # (K,)

    @cached_property
    def calibrated(self) -> np.ndarray:
        return calibrate_multilabel_confident_joint(self.joint, self.counts)

    @property
    def n_classes(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.counts[0].sum()) if self.counts.size else 0


def noise_cells(est: Estimates, frac: float, ntr: np.ndarray | None, min_examples: int,
                by_class: bool = False) -> np.ndarray:
    """How many rows of each (class, given value b) to flag by PBNR (or PBC: ``by_class``), shape (K, 2).

    The multiclass detector's rule (cleanlab 2.9's, see
    :func:`labelqa.detectors.confident.noise_cells`) on each binary calibrated
    joint (its one off-diagonal cell ``o = C_cal[k, b, 1-b]``, diagonal
    ``d = C_cal[k, b, b]``):

    - ``num_to_remove_per_class``: ``min(ntr[k, b], cap)`` where ``o > 0``;
    - otherwise, when ``d < min_examples`` the diagonal is raised to it and
      ``o`` lowered by as much (not below 0); then PBNR flags
      ``trunc(frac_noise * o)`` and PBC ``n_kb - trunc(d + o - frac_noise * o)``.
    """
    n = est.counts.astype(np.float64)
    caps = np.maximum(n - min_examples, 0.0)
    cal = est.calibrated.astype(np.float64)
    off = np.stack([cal[:, 0, 1], cal[:, 1, 0]], axis=1)
    if ntr is not None:
        return np.where(off > 0, np.minimum(ntr, caps), 0).astype(np.int64)
    diag = np.stack([cal[:, 0, 0], cal[:, 1, 1]], axis=1)
    raised = np.maximum(diag, min_examples)
    off = np.maximum(off - (raised - diag), 0.0)
    if by_class:
        kept = (raised + (off - off * frac)).astype(np.int64)
        return np.maximum(est.counts - kept, 0).astype(np.int64)
    return (off * frac).astype(np.int64)


# --------------------------------------------------------------------------- selection
#: Every pair whose prediction agrees with its given value has ``q >= 0.5``, ``q - other >= 0`` and a
#: normalized margin ``>= 0.5``: selections among the disagreeing pairs are settled below these bounds.
_BOUNDS = {"pbc": 0.5, "pbnr": 0.0, "low": 0.5, "top": 0.5}


#: The selections whose intersection a method flags, for the methods flagged at disagreeing pairs only.
_SPARSE_KINDS = {"prune_by_noise_rate": ("pbnr",), "prune_by_class": ("pbc",), "both": ("pbc", "pbnr"),
                 "confident_learning": ("lim",), "predicted_neq_given": ("lim",)}


class FlagRule:
    """The ``filter_by`` rule for one dataset: selections per (class, given value), flags of any chunk.

    Kinds of selection (groups ``2 k + b`` unless said):

    - ``pbc``: the ``c_kb`` lowest ``q``; ``pbnr``: the ``c_kb`` lowest
      ``q - other`` (largest margin); ``low`` (``low_*`` with
      ``num_to_remove_per_class``): the lowest scores; all three fed first
      with the disagreeing pairs only, the groups those cannot settle then
      fed every pair (a :class:`~labelqa.stats.selection.Pick` each);
    - ``lim`` (``confident_learning``/``predicted_neq_given``): at most
      ``min(totals, caps)`` candidates per group, the lowest ``q``;
    - ``top`` (``low_*`` otherwise; groups = classes): the ``T_k`` lowest
      scores of class ``k``, then ``cap`` at most ``n_kb -
      min_examples_per_class`` of them per given value (the lowest; dropped
      pairs are not replaced).
    """

    def __init__(self, est: Estimates, method: str, frac: float, ntr: np.ndarray | None, min_examples: int,
                 dtype: np.dtype) -> None:
        self.est = est
        self.method = method
        self.frac = float(frac)
        self.ntr = ntr
        self.min_ex = int(min_examples)
        self.caps = np.maximum(est.counts - self.min_ex, 0)
        self.dtype = np.dtype(dtype)
        self.cuts: dict[str, GroupCuts] = {}
        self.limits: dict[str, np.ndarray | None] = {}

    # ---- planning --------------------------------------------------------------
    def _score_dtype(self) -> np.dtype:
        return self.dtype if self.method == "low_self_confidence" else np.dtype(np.float64)

    def _dtype(self, kind: str) -> np.dtype:
        return self._score_dtype() if kind in ("low", "top", "cap") else self.dtype

    def stages(self) -> Iterator[tuple[str, Selections]]:
        """The selection stages, in order; each is fed every block, then :meth:`finish` ed."""
        m, est, caps, ntr = self.method, self.est, self.caps, self.ntr
        first = Selections()
        counts: dict[str, np.ndarray] = {}
        if m in ("prune_by_class", "both"):
            counts["pbc"] = (np.minimum(ntr, caps) if ntr is not None
                             else noise_cells(est, self.frac, None, self.min_ex, by_class=True))
        if m in ("prune_by_noise_rate", "both"):
            counts["pbnr"] = noise_cells(est, self.frac, ntr, self.min_ex)
        if m in ("confident_learning", "predicted_neq_given"):
            cand = est.cand_cl if m == "confident_learning" else est.cand_png
            totals = ntr if ntr is not None else np.rint(self.frac * cand).astype(np.int64)
            limits = np.minimum(totals, caps)
            over = cand > limits
            counts["lim"] = np.where(over, limits, 0)
            self.cuts["lim"] = GroupCuts(2 * est.n_classes, dtype=self.dtype)
            # groups within their limit keep every candidate; the others keep their `limits` lowest
            self.cuts["lim"].mode[:] = np.where(over.ravel(), GroupCuts.NONE, GroupCuts.ALL)
        if m in ("low_self_confidence", "low_normalized_margin"):
            if ntr is not None:
                counts["low"] = np.minimum(ntr, caps)
            else:
                counts["top"] = np.rint(self.frac * est.est).astype(np.int64)
        for kind, c in counts.items():
            self.limits[kind] = None if kind == "top" else caps.ravel()
            if kind == "lim":
                lim = GroupedTop(c.ravel(), dtype=self.dtype)
                if lim.counts.any():
                    first.tops[kind] = lim
                continue
            self.cuts[kind] = GroupCuts(c.size, dtype=self._dtype(kind))
            first.tops[kind] = GroupedTop(c.ravel(), dtype=self._dtype(kind))
        if first.tops:
            yield "cuts", first
        full = Selections()
        for kind, groups in getattr(self, "unsettled", {}).items():
            sizes = est.counts.ravel() if kind != "top" else np.full(est.n_classes, est.n_rows)
            for g in groups:
                full.picks[(kind, int(g))] = Pick(int(first.tops[kind].counts[g]), int(sizes[g]),
                                                  dtype=self._dtype(kind))
        if full.picks:
            yield "all pairs", full
        if "top" in self.cuts:
            over = self._top_per_value() > caps
            if over.any():
                self.cuts["cap"] = GroupCuts(2 * est.n_classes, dtype=self._score_dtype())
                self.cuts["cap"].mode[:] = np.where((over & (caps == 0)).ravel(), GroupCuts.NONE, GroupCuts.ALL)
                yield "caps", Selections(tops={"cap": GroupedTop(np.where(over, caps, 0).ravel(),
                                                               dtype=self._score_dtype())})

    def _top_per_value(self) -> np.ndarray:
        """``(K, 2)`` upper bound of the pairs the ``top`` cut selects per given value."""
        sel = self.cuts["top"].selected
        return np.stack([sel, sel], axis=1)

    def finish(self, stage: str, acc: Selections) -> None:
        """Record a fed stage's results."""
        if stage == "cuts":
            self.unsettled = {}
            for kind, top in acc.tops.items():
                if kind == "lim":  # every candidate is fed: every group settles
                    self.cuts["lim"].settle(top, limits=self.limits["lim"])
                    continue
                left = self.cuts[kind].settle(top, limits=self.limits[kind], bound=_BOUNDS[kind])
                if left.size:
                    self.unsettled[kind] = left
        elif stage == "all pairs":
            for (kind, g), pick in acc.picks.items():
                limit = self.limits[kind]
                self.cuts[kind].set(g, pick.cut(None if limit is None else int(limit[g])))
        elif stage == "caps":
            self.cuts["cap"].settle(acc.tops["cap"], limits=self.caps.ravel())

    # ---- values ------------------------------------------------------------------
    def _scores(self, pairs: _Pairs) -> np.ndarray:
        return pairs.self_conf if self.method == "low_self_confidence" else pairs.normalized_margin

    def _values(self, pairs: _Pairs, kind: str) -> np.ndarray:
        if kind in ("pbc", "lim"):
            return pairs.self_conf
        if kind == "pbnr":
            return pairs.self_conf - pairs.other  # smallest q - other == largest margin (same rounding)
        return self._scores(pairs)

    def _groups(self, pairs: _Pairs, kind: str) -> np.ndarray:
        if kind == "top":
            return np.broadcast_to(np.arange(pairs.k, dtype=np.int64), (pairs.n, pairs.k))
        return pairs.groups

    def _values_at(self, pairs: _Pairs, kind: str, idx: np.ndarray) -> np.ndarray:
        """:meth:`_values` at flat indices ``idx`` (the same floats: every value is elementwise)."""
        if kind in ("pbc", "lim") or (kind in ("low", "top", "cap") and self.method == "low_self_confidence"):
            return pairs.self_conf_at(idx)
        if kind == "pbnr":
            return pairs.self_conf_at(idx) - pairs.other_at(idx)
        return pairs.normalized_margin_at(idx)

    def _column(self, pairs: _Pairs, kind: str, k: int) -> np.ndarray:
        """:meth:`_values` of class ``k`` (column ``k``)."""
        return self._values_at(pairs, kind, np.arange(pairs.n, dtype=np.int64) * pairs.k + k)

    def feed(self, stage: str, acc: Selections, block: Block) -> None:
        """Fold one block into a stage's selections: each chunk into a fresh partial (on threads), merged in order."""

        def part(_: slice, pairs: _Pairs) -> Selections:
            local = acc.empty()
            self._feed(stage, local, pairs)
            return local

        for local in _chunk_map(block, part, self.est.thresholds):
            acc.merge(local)

    def _feed(self, stage: str, acc: Selections, pairs: _Pairs) -> None:
        if stage == "cuts":
            for kind, top in acc.tops.items():
                idx = pairs.candidates_at(self.method) if kind == "lim" else pairs.disagreeing
                groups = idx % pairs.k if kind == "top" else pairs.groups_at(idx)
                top.update(groups, self._values_at(pairs, kind, idx))
        elif stage == "all pairs":
            for (kind, g), pick in acc.picks.items():
                if kind == "top":
                    pick.update(self._column(pairs, kind, g))
                else:
                    k, b = divmod(g, 2)
                    pick.update(self._column(pairs, kind, k)[pairs.y[:, k] == bool(b)])
        elif stage == "caps":
            scores = self._scores(pairs)
            chosen = self._apply(pairs, "top")
            acc.tops["cap"].update(pairs.groups[chosen], scores[chosen])

    def _apply(self, pairs: _Pairs, kind: str) -> np.ndarray:
        cuts = self.cuts[kind]
        values = self._values(pairs, kind)
        return cuts.select_columns(values) if kind == "top" else cuts.select_pairs(pairs.y, values)

    def _select_at(self, pairs: _Pairs, kind: str, idx: np.ndarray) -> np.ndarray:
        """Which of the pairs at flat indices ``idx`` the ``kind`` cuts select (:meth:`_apply` at those pairs)."""
        return self.cuts[kind].select(pairs.groups_at(idx), self._values_at(pairs, kind, idx))

    # ---- flags -------------------------------------------------------------------
    def flags(self, pairs: _Pairs) -> np.ndarray:
        """``(n, K)`` flags of one chunk."""
        m = self.method
        kinds = _SPARSE_KINDS.get(m)
        if kinds is not None and m in AGREEMENT_RULE_METHODS:  # only disagreeing pairs can be flagged
            idx = pairs.candidates_at(m) if kinds == ("lim",) else pairs.disagreeing
            chosen = self._select_at(pairs, kinds[0], idx)
            for kind in kinds[1:]:
                chosen &= self._select_at(pairs, kind, idx)
            flags = np.zeros(pairs.n * pairs.k, dtype=bool)
            flags[idx[chosen]] = True
            return flags.reshape(pairs.n, pairs.k)
        return self.dense_flags(pairs)

    def dense_flags(self, pairs: _Pairs) -> np.ndarray:
        """:meth:`flags` over every pair (the reference; the ``low_*`` methods use it)."""
        m = self.method
        if m == "prune_by_class":
            mask = self._apply(pairs, "pbc")
        elif m == "prune_by_noise_rate":
            mask = self._apply(pairs, "pbnr")
        elif m == "both":
            mask = self._apply(pairs, "pbc") & self._apply(pairs, "pbnr")
        elif m in ("confident_learning", "predicted_neq_given"):
            mask = pairs.candidates(m) & self._apply(pairs, "lim")
        elif self.ntr is not None:
            mask = self._apply(pairs, "low")
        else:
            mask = self._apply(pairs, "top")
            if "cap" in self.cuts:
                mask &= self.cuts["cap"].select_pairs(pairs.y, self._scores(pairs))
        if m in AGREEMENT_RULE_METHODS:
            mask &= pairs.disagrees
        return mask


# --------------------------------------------------------------------------- per-row outputs and summary
class MultilabelExtras(Mapping[str, np.ndarray]):
    """The detector's ``extra`` arrays, ``(N, K)`` each: ``labels_to_remove`` and ``labels_to_add`` (bool), and
    ``class_scores`` (``q_ik``) and ``change_confidence`` (``1 - q_ik``), computed on first read only.

    The report never reads the last two: at 1M x 50 float32 they would be 400 MB made for nobody.

    Attributes:
        counts: The detector's tallies of these rows, when :meth:`MultilabelRule.rows` counted them.
    """

    LAZY = ("class_scores", "change_confidence")

    def __init__(self, labels: np.ndarray, pred_probs: np.ndarray, labels_to_remove: np.ndarray,
                 labels_to_add: np.ndarray) -> None:
        self._labels = labels
        self._probs = pred_probs
        self._arrays: dict[str, np.ndarray] = {"labels_to_remove": labels_to_remove, "labels_to_add": labels_to_add}
        self.counts: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            if key == "class_scores":
                self._arrays[key] = _chunked_class_scores(self._labels, self._probs)
            elif key == "change_confidence":
                q = self["class_scores"]
                self._arrays[key] = q.dtype.type(1) - q
            else:
                raise KeyError(key)
        return self._arrays[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("labels_to_remove", "labels_to_add", *self.LAZY))

    def __len__(self) -> int:
        return 2 + len(self.LAZY)


def _chunked_class_scores(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """:func:`multilabel_class_scores` of a block, chunk by chunk on threads (the same floats)."""
    out = np.empty(probs.shape, dtype=probs.dtype)

    def fill(sl: slice, pairs: _Pairs) -> None:
        out[sl] = pairs.self_conf

    _chunk_map(Block(y, probs), fill)
    return out


class MultilabelRule(RowRule):
    """Flags, scores and suggestions of any block; the summary from aggregates and tallies."""

    def __init__(self, est: Estimates, flag: FlagRule, names: Sequence[str], params: dict[str, Any]) -> None:
        self.est = est
        self.flag = flag
        self.names = list(names)
        self.params = params

    def rows(self, block: Block) -> DetectorRows:
        y, probs = block.labels, block.pred_probs
        n, k = probs.shape
        p = self.params
        scores = np.empty(n, dtype=np.float64)
        issues = np.empty(n, dtype=bool)
        suggested = np.empty((n, k), dtype=bool)
        remove = np.empty((n, k), dtype=bool)
        add = np.empty((n, k), dtype=bool)
        confidence = np.ones(n, dtype=np.float64)

        def fill(sl: slice, pairs: _Pairs) -> tuple[np.ndarray, np.ndarray]:
            flags = self.flag.flags(pairs)
            q = pairs.self_conf  # == where(y, p, 1 - p), bit for bit
            np.logical_xor(pairs.y, flags, out=suggested[sl])
            np.logical_and(flags, pairs.y, out=remove[sl])
            np.greater(flags, pairs.y, out=add[sl])  # flagged and not given
            if not k:
                scores[sl] = 1.0
                issues[sl] = False
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            if p["aggregation"] == "ema":
                _check_aggregation("ema", p["ema_alpha"], 1.0)
                scores[sl], lowest = _ema_rows(q, float(p["ema_alpha"]))
            else:
                scores[sl] = softmin_aggregate(q, p["softmin_temperature"])
                lowest = q.min(axis=1)
            # flags are few: rows, columns and counts from their flat positions, not from (n, K) reductions
            flat = np.flatnonzero(flags)
            rows, cols = np.divmod(flat, k)
            mine = issues[sl]
            mine[:] = False
            mine[rows] = True
            given = pairs.y.ravel()[flat]
            # suggested confidence: each row's lowest backing, q for unflagged pairs and 1 - q for flagged ones
            conf = confidence[sl]
            conf[:] = lowest
            flagged = np.flatnonzero(mine)
            backing = q[flagged]
            backing[flags[flagged]] = q.dtype.type(1) - backing[flags[flagged]]
            conf[flagged] = backing.min(axis=1)
            return np.bincount(cols[given], minlength=k), np.bincount(cols[~given], minlength=k)

        removed, added = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
        for r, a in _chunk_map(block, fill, self.est.thresholds):
            removed += r
            added += a
        extra = MultilabelExtras(y, probs, remove, add)
        extra.counts = {"remove": removed, "add": added, "issues": int(np.count_nonzero(issues))}
        return DetectorRows(scores=scores, issues=issues, suggested=suggested, suggested_confidence=confidence,
                            extra=extra)

    def tally(self, block: Block, rows: DetectorRows) -> dict[str, Any]:
        counted = getattr(rows.extra, "counts", None)
        if counted is not None:  # counted chunk by chunk while the rows were made
            return dict(counted)
        return {
            "remove": np.count_nonzero(rows.extra["labels_to_remove"], axis=0).astype(np.int64),
            "add": np.count_nonzero(rows.extra["labels_to_add"], axis=0).astype(np.int64),
            "issues": int(np.count_nonzero(rows.issues)),
        }

    def summary(self, tallies: dict[str, Any]) -> dict[str, Any]:
        est = self.est
        k = est.n_classes
        zeros = np.zeros(k, dtype=np.int64)
        return multilabel_summary(
            names=self.names, counts=est.counts, thresholds=est.thresholds, joint=est.joint, est=est.est,
            quality=est.quality, remove=tallies.get("remove", zeros), add=tallies.get("add", zeros),
            n_issues=int(tallies.get("issues", 0)), params=self.params,
        )


def multilabel_summary(
    *, names: Sequence[str], counts: np.ndarray, thresholds: np.ndarray, joint: np.ndarray, est: np.ndarray,
    quality: np.ndarray, remove: np.ndarray, add: np.ndarray, n_issues: int, params: dict[str, Any],
) -> dict[str, Any]:
    """The multi-label detector's summary, from per-class aggregates.

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
            ``ema_alpha`` or ``softmin_temperature``).
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
        "labels_to_remove": int(np.sum(remove)),
        "labels_to_add": int(np.sum(add)),
        "filter_by": params["filter_by"],
        "aggregation": params["aggregation"],
    }
    if params["aggregation"] == "ema":
        summary["ema_alpha"] = float(params["ema_alpha"])
    else:
        summary["softmin_temperature"] = float(params["softmin_temperature"])
    return summary


# --------------------------------------------------------------------------- detector
@dataclass(kw_only=True)
class MultilabelConfidentLearning(Detector):
    """Multi-label confident learning: flag and score label sets.

    Args:
        filter_by: How (row, class) pairs are flagged, one of
            :data:`FILTER_METHODS` (see :func:`find_multilabel_issues`).
        aggregation: Row score from the per-class scores: ``"ema"``
            (exponential moving average, default) or ``"softmin"``.
        ema_alpha: EMA weight (0.8).
        softmin_temperature: Softmin temperature (0.1).
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
    - ``summary``: per class (``class``, ``count`` = rows with the label,
      ``should_remove`` and ``should_remove_rate`` (over ``count``),
      ``should_add`` and ``should_add_rate`` (over the rows without the
      label), ``threshold_present``, ``threshold_absent``, ``label_quality``
      (mean ``q_ik``), ``estimated_issues``, ``confident_joint`` (2x2,
      ``[given, true]``)); ``n_rows``, ``rows_with_issue``,
      ``share_rows_with_issue``, ``labels_to_remove``, ``labels_to_add``,
      ``filter_by``, ``aggregation``, ``ema_alpha``/``softmin_temperature``.
    """

    name: ClassVar[str] = "mlcl"

    filter_by: str = "prune_by_noise_rate"
    aggregation: str = "ema"
    ema_alpha: float = 0.8
    softmin_temperature: float = 0.1
    frac_noise: float = 1.0
    num_to_remove_per_class: Sequence[Sequence[int]] | None = None
    min_examples_per_class: int = 1

    def check(self, info: DatasetInfo) -> None:
        """Validate the parameters for ``info`` (multi-label data, K classes)."""
        self.check_params()
        if self.filter_by not in FILTER_METHODS:
            raise LabelqaError(f"filter_by={self.filter_by!r} is for multiclass data only",
                               f"use one of {', '.join(FILTER_METHODS)}")
        if info.task != "multilabel":
            raise LabelqaError(
                f"multi-label confident learning needs multi-label data, got task {info.task!r}",
                "use the confident learning detector for multiclass data",
            )
        self._ntr(info.n_classes)

    def _ntr(self, n_classes: int) -> np.ndarray | None:
        return _per_class_counts(self.num_to_remove_per_class, n_classes)

    def plan(self, info: DatasetInfo) -> Plan:
        """Class sums, confident joints, the selection stages of ``filter_by``; then the row rule."""
        k = info.n_classes
        ntr = self._ntr(k)
        sums: MultilabelSums = yield SumsStep(k)
        thresholds = sums.thresholds()
        p2: MultilabelJoint = yield JointStep(thresholds)
        est = Estimates(sums.counts.copy(), thresholds, p2.joint.copy(), p2.est.copy(), p2.cand_cl.copy(),
                        p2.cand_png.copy(), sums.quality())
        flag = FlagRule(est, self.filter_by, float(self.frac_noise), ntr, int(self.min_examples_per_class),
                        info.prob_dtype)
        yield from selection_stages(flag)
        names = [str(c) for c in info.classes] if len(info.classes) == k else [str(i) for i in range(k)]
        return MultilabelRule(est, flag, names, self.get_params())


# --------------------------------------------------------------------------- array API
def _run(labels: Any, pred_probs: Any, det: MultilabelConfidentLearning) -> tuple[MultilabelRule, Block]:
    y, probs = _as_arrays(labels, pred_probs)
    info = DatasetInfo(y.shape[0], tuple(range(probs.shape[1])), "multilabel", np.dtype(probs.dtype))
    det.check(info)
    block = Block(y, probs)
    rule = run_on_block(det.plan(info), block)
    assert isinstance(rule, MultilabelRule)
    return rule, block


def multilabel_thresholds(labels: Any, pred_probs: Any) -> np.ndarray:
    """Per-class binary thresholds, shape ``(K, 2)``: ``[:, 0]`` mean ``1 - p_ik``
    over rows without class k, ``[:, 1]`` mean ``p_ik`` over rows with it
    (``2.0`` when there are no such rows)."""
    y, probs = _as_arrays(labels, pred_probs)
    step = SumsStep(probs.shape[1])
    return step.feed(step.start(), Block(y, probs)).thresholds()


def compute_multilabel_confident_joint(labels: Any, pred_probs: Any) -> np.ndarray:
    """Raw one-vs-rest confident joints, shape ``(K, 2, 2)``, ``[class, given, guessed true]``."""
    rule, _ = _run(labels, pred_probs, MultilabelConfidentLearning(filter_by="confident_learning"))
    return rule.est.joint


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
    det = MultilabelConfidentLearning(filter_by=filter_by, frac_noise=frac_noise,
                                      num_to_remove_per_class=num_to_remove_per_class,
                                      min_examples_per_class=min_examples_per_class)
    rule, block = _run(labels, pred_probs, det)
    y = block.labels
    flags = np.empty(block.pred_probs.shape, dtype=bool)

    def fill(sl: slice, pairs: _Pairs) -> None:
        flags[sl] = rule.flag.flags(pairs)

    _chunk_map(block, fill, rule.est.thresholds)
    return MultilabelIssues(flags.any(axis=1), flags & y, flags & ~y)
