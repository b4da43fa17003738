"""Confident learning (Northcutt, Jiang, Chuang, JAIR 2021): find label errors
from out-of-sample predicted probabilities.

Implemented from the method's description (``ALGORITHMS.md`` section 1):

1. per-class thresholds ``t_k`` = mean ``p_ik`` over the rows given ``k``;
2. the confident joint ``C`` (rows = given label, columns = guessed true
   label), counting each row whose confident set is not empty;
3. calibration of ``C`` to the class counts, and the latent estimates
   (joint ``Q``, noise matrix, inverse noise matrix, latent prior);
4. flagging rows (``filter_by``) and scoring every row (``score_method``).

The probabilities must be out-of-sample (e.g. cross-validated): a model that
trained on the same rows has memorised their labels, errors included.

All matrices are laid out ``[given label, true label]``, like ``C``:
``noise_matrix[j, k] = P(s=j | y*=k)`` (columns sum to 1) and
``inverse_noise_matrix[j, k] = P(y*=k | s=j)`` (rows sum to 1).

Everything is vectorised over rows (numpy): rows are grouped by given label
with one stable sort, and per class only ``(n_k, K)`` blocks are formed.
Results do not depend on row order: the counting kernels are exact, and in
every selection ("the c rows with the lowest/largest ...") rows tied at the
cut share one fate: all of them are flagged, possibly more than c, unless that
would break ``min_examples_per_class``, in which case none of them is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

import numpy as np

from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.errors import LabelqaError
from labelqa.kernels.confident import ClassProbSums, ConfidentJointCounts
from labelqa.noise_interval import noise_rate_interval
from labelqa.parallel import MIN_PARALLEL_ELEMENTS, thread_map

__all__ = [
    "FILTER_METHODS",
    "SCORE_METHODS",
    "ConfidentLearning",
    "LatentEstimates",
    "calibrate_confident_joint",
    "compute_confident_joint",
    "estimate_latent",
    "find_label_issues",
    "get_label_quality_scores",
    "per_class_thresholds",
]

FILTER_METHODS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_self_confidence",
    "low_normalized_margin",
)
SCORE_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")

#: Methods after which a row whose prediction agrees with its label is unflagged.
_AGREEMENT_RULE_METHODS = frozenset(FILTER_METHODS[:5])

#: A row's prediction agrees with its label when ``p_{i,s_i} >= max_k p_ik -
#: AGREEMENT_TOLERANCE``: near-ties count as ties, resolved toward the label
#: (the same 1e-6 as the confident-set epsilon; cleanlab 2.9 behaves alike).
AGREEMENT_TOLERANCE = 1e-6

#: Lower bound used in the confidence-weighted entropy score.
_CWE_FLOOR = 1e-6

#: About this many matrix elements per row chunk (bounds temporaries to a few MB).
_CHUNK_ELEMENTS = 1 << 21


# --------------------------------------------------------------------------- inputs
def _as_arrays(labels: Any, pred_probs: Any, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Light checks: shapes, integer labels in range; float probabilities."""
    probs = np.asarray(pred_probs)
    if probs.ndim != 2:
        raise LabelqaError(f"pred_probs must be a 2-D (N, K) array, got shape {probs.shape}")
    if probs.dtype.kind != "f":
        probs = probs.astype(np.float64)
    k = probs.shape[1]
    if n_classes is not None and int(n_classes) != k:
        raise LabelqaError(f"n_classes={n_classes} but pred_probs has {k} columns")
    labs = np.asarray(labels)
    if labs.shape != (probs.shape[0],):
        raise LabelqaError(f"labels must have shape ({probs.shape[0]},) like pred_probs' rows, got {labs.shape}")
    if labs.size and labs.dtype.kind not in "iu":
        raise LabelqaError(f"labels must be integer class codes 0..{k - 1}, got dtype {labs.dtype}")
    labs = labs.astype(np.int64, copy=False)
    if labs.size and (labs.min() < 0 or labs.max() >= k):
        raise LabelqaError(f"labels must be class codes in 0..{k - 1}, found {labs.min()}..{labs.max()}")
    return labs, probs


def check_common_options(
    filter_by: str, frac_noise: float, min_examples_per_class: int, methods: Sequence[str]
) -> None:
    """Validate the options the multiclass and multi-label detectors share.

    Raises:
        LabelqaError: Naming the bad value and, for ``filter_by``, the choices.
    """
    if filter_by not in methods:
        raise LabelqaError(f"unknown filter_by {filter_by!r}", f"choose one of {', '.join(methods)}")
    if isinstance(frac_noise, bool) or not isinstance(frac_noise, (int, float, np.integer, np.floating)) or not (
        0.0 <= float(frac_noise) <= 1.0
    ):
        raise LabelqaError(f"frac_noise must be a number in [0, 1], got {frac_noise!r}")
    if (
        isinstance(min_examples_per_class, bool)
        or not isinstance(min_examples_per_class, (int, np.integer))
        or min_examples_per_class < 0
    ):
        raise LabelqaError(f"min_examples_per_class must be an integer >= 0, got {min_examples_per_class!r}")


def _check_options(
    n_classes: int,
    *,
    filter_by: str = "prune_by_noise_rate",
    score_method: str = "self_confidence",
    frac_noise: float = 1.0,
    num_to_remove_per_class: Sequence[int] | None = None,
    min_examples_per_class: int = 1,
) -> np.ndarray | None:
    """Validate options; returns ``num_to_remove_per_class`` as int64 (or None)."""
    check_common_options(filter_by, frac_noise, min_examples_per_class, FILTER_METHODS)
    if score_method not in SCORE_METHODS:
        raise LabelqaError(f"unknown score_method {score_method!r}", f"choose one of {', '.join(SCORE_METHODS)}")
    if num_to_remove_per_class is None:
        return None
    arr = np.asarray(num_to_remove_per_class)
    if arr.shape != (n_classes,) or (arr.size and arr.dtype.kind not in "iu") or (arr.size and arr.min() < 0):
        raise LabelqaError(
            f"num_to_remove_per_class must be {n_classes} integers >= 0 (one per class), "
            f"got {num_to_remove_per_class!r}"
        )
    return arr.astype(np.int64)


def _chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    step = max(1024, _CHUNK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


# --------------------------------------------------------------------------- counting
def per_class_thresholds(labels: Any, pred_probs: Any, n_classes: int | None = None) -> np.ndarray:
    """Per-class confident thresholds ``t_k`` = mean ``p_ik`` over rows given ``k``.

    Args:
        labels: Given labels, shape ``(N,)``, integer codes ``0..K-1``.
        pred_probs: Out-of-sample predicted probabilities, shape ``(N, K)``.
        n_classes: K, if given checked against ``pred_probs``.

    Returns:
        Shape ``(K,)`` float64. A class no row is given gets 2.0, a threshold
        no probability reaches (so it is never in a confident set).
    """
    labs, probs = _as_arrays(labels, pred_probs, n_classes)
    return ClassProbSums(probs.shape[1]).update(labs, probs).thresholds()


def compute_confident_joint(
    labels: Any, pred_probs: Any, thresholds: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The (raw, uncalibrated) confident joint and each row's guessed true label.

    A row's confident set is ``{k : p_ik >= t_k - 1e-6}``. Empty: the row is
    not counted (guess ``-1``); one class: that class; several: the argmax of
    ``p_i`` over all classes (lowest index on ties). ``C[s_i, guess_i] += 1``.

    Args:
        labels: Given labels, shape ``(N,)``.
        pred_probs: Predicted probabilities, shape ``(N, K)``.
        thresholds: Per-class thresholds, shape ``(K,)``; default
            :func:`per_class_thresholds`.

    Returns:
        ``(C, guess)``: ``C`` shape ``(K, K)`` int64, rows = given label,
        columns = guessed true label; ``guess`` shape ``(N,)`` int64.
    """
    labs, probs = _as_arrays(labels, pred_probs)
    k = probs.shape[1]
    if thresholds is None:
        thr = ClassProbSums(k).update(labs, probs).thresholds()
    else:
        thr = np.asarray(thresholds, dtype=np.float64)
        if thr.shape != (k,):
            raise LabelqaError(f"thresholds must have shape ({k},), got {thr.shape}")
    return _confident_joint(labs, probs, thr)


def _confident_joint(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, max_prob: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Chunked kernel updates (on threads for large inputs); also fills ``max_prob`` (row maxima) when given.

    Each chunk counts into its own partial joint; the integer partials are
    summed, so the result does not depend on how chunks are scheduled.
    """
    k = probs.shape[1]
    guess = np.empty(labels.size, dtype=np.int64)

    def count(sl: slice) -> np.ndarray:
        block = probs[sl]
        top = block.argmax(axis=1)
        if max_prob is not None:
            max_prob[sl] = block[np.arange(top.size), top]
        part = ConfidentJointCounts(k)
        guess[sl] = part.update(labels[sl], block, thresholds, argmax=top)
        return part.joint

    joint = np.zeros((k, k), dtype=np.int64)
    for part in thread_map(count, _chunks(*probs.shape), parallel=probs.size >= MIN_PARALLEL_ELEMENTS):
        joint += part
    return joint, guess


def _round_rows(values: np.ndarray) -> np.ndarray:
    """Round to integers keeping each row's (rounded) sum; rows along the last axis, any number of them.

    Equivalent to "round each entry, then move +-1 to the entries with the
    largest remainders": each entry is floored, then the ``m`` entries with
    the largest fractional parts get ``+1``, where ``m`` makes the row sum
    equal its rounded sum. Ties go to the higher column (what cleanlab 2.9
    does on small cases, observed as a black box; on larger rows its choice
    among tied entries follows its sort and is not reproducible). The
    multi-label detector rounds its K stacked 2 x 2 joints with it too.
    """
    x = np.asarray(values, dtype=np.float64)
    floored = np.floor(x)
    frac = x - floored
    missing = (np.rint(x.sum(axis=-1)) - floored.sum(axis=-1)).astype(np.int64)[..., None]
    # order by fractional part descending, ties by column descending
    rev = np.argsort(-frac[..., ::-1], axis=-1, kind="stable")
    rank = np.argsort(rev, axis=-1, kind="stable")[..., ::-1]  # rank of each original column
    return (floored + (rank < missing)).astype(np.int64)


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
    scaled = np.zeros_like(c)
    scaled[has] = c[has] / row_sums[has, None] * n[has, None]
    empty = np.flatnonzero(~has & (n > 0))
    scaled[empty, empty] = n[empty]
    total = scaled.sum()
    if total > 0:
        scaled *= n.sum() / total
    return _round_rows(scaled)


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
    eye = np.eye(c.shape[0])
    col = q.sum(axis=0)
    row = q.sum(axis=1)
    noise = np.where(col > 0, q / np.where(col > 0, col, 1.0), eye)
    inverse = np.where(row[:, None] > 0, q / np.where(row > 0, row, 1.0)[:, None], eye)
    return LatentEstimates(joint=q, noise_matrix=noise, inverse_noise_matrix=inverse, latent_prior=col)


# --------------------------------------------------------------------------- selection helpers
def _pick(values: np.ndarray, count: int, *, largest: bool, limit: int | None = None) -> np.ndarray:
    """Positions of the ``count`` smallest (or largest) values, ties shared.

    Rows tied with the ``count``-th value share its fate, so the choice never
    depends on row order: all of them are taken (possibly more than
    ``count``), unless that would exceed ``limit``, in which case none of
    them is (fewer than ``count``). Linear time (one ``np.partition``).
    """
    n = values.size
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    if count >= n:
        return np.arange(n)
    if largest:
        cut = np.partition(values, n - count)[n - count]
        strict = np.flatnonzero(values > cut)
    else:
        cut = np.partition(values, count - 1)[count - 1]
        strict = np.flatnonzero(values < cut)
    ties = np.flatnonzero(values == cut)
    if limit is not None and strict.size + ties.size > limit:
        return strict
    return np.concatenate([strict, ties])


def _scale_rows_to(weights: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Integer matrix whose row ``k`` sums to ``totals[k]``, proportional to ``weights[k]``.

    Rows of zero weight get zeros (nothing to split).
    """
    w = np.asarray(weights, dtype=np.float64)
    sums = w.sum(axis=1)
    factor = np.divide(totals, sums, out=np.zeros_like(sums), where=sums > 0)
    return _round_rows(w * factor[:, None])


# --------------------------------------------------------------------------- shared state
class _Prepared:
    """Everything computed once per dataset, shared by flags, scores and summary."""

    def __init__(self, labels: np.ndarray, probs: np.ndarray) -> None:
        self.labels = labels
        self.probs = probs
        self.n_rows, self.n_classes = probs.shape
        self.self_conf = probs[np.arange(self.n_rows), labels]  # p_{i, s_i} in the probabilities' dtype
        sums = ClassProbSums(self.n_classes).update_given(labels, self.self_conf)
        self.class_counts = sums.counts
        self.thresholds = sums.thresholds()
        self.max_prob = np.empty(self.n_rows, dtype=probs.dtype)  # max_k p_ik
        self.joint, self.guess = _confident_joint(labels, probs, self.thresholds, self.max_prob)

    @cached_property
    def calibrated(self) -> np.ndarray:
        return calibrate_confident_joint(self.joint, self.class_counts)

    @cached_property
    def agrees(self) -> np.ndarray:
        """Prediction agrees with the label: ``p_{i,s_i} >= max_k p_ik - 1e-6``.

        Ties, up to the same tolerance as the confident sets, favour the label.
        """
        return self.self_conf.astype(np.float64) >= self.max_prob.astype(np.float64) - AGREEMENT_TOLERANCE

    @cached_property
    def off_diagonal(self) -> np.ndarray:
        """Rows counted off the diagonal of the raw confident joint."""
        return (self.guess >= 0) & (self.guess != self.labels)

    @cached_property
    def estimated_num_issues(self) -> int:
        """Rows off the diagonal of ``C`` whose prediction also disagrees with the label."""
        return int(np.count_nonzero(self.off_diagonal & ~self.agrees))

    @cached_property
    def groups(self) -> tuple[np.ndarray, np.ndarray]:
        """``(order, starts)``: rows sorted stably by label; class k is ``order[starts[k]:starts[k+1]]``."""
        k = self.n_classes
        small = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.int64
        order = np.argsort(self.labels.astype(small, copy=False), kind="stable")
        starts = np.concatenate([[0], np.cumsum(self.class_counts)])
        return order, starts

    def class_rows(self, k: int) -> np.ndarray:
        order, starts = self.groups
        return order[starts[k] : starts[k + 1]]

    def caps(self, min_examples: int) -> np.ndarray:
        """Most rows of each class that may be flagged, keeping ``min_examples`` unflagged."""
        return np.maximum(self.class_counts - min_examples, 0)


# --------------------------------------------------------------------------- flagging
def _noise_cells(prep: _Prepared, frac: float, ntr: np.ndarray | None, min_examples: int) -> np.ndarray:
    """How many rows to flag per cell (given ``k``, true ``j != k``); diagonal 0.

    From the off-diagonal of ``C_cal``:

    - ``num_to_remove_per_class`` given: row ``k`` is split in proportion to
      ``C_cal``'s off-diagonal row ``k`` to sum to ``min(ntr[k], cap_k)``.
    - otherwise ``min_examples_per_class``: where ``C_cal[k, k] <
      min_examples``, the diagonal is raised to it (never above ``n_k``) and
      the same amount is taken from each non-zero off-diagonal cell of the row
      (cells stop at 0; if the row still holds more than ``n_k -
      min_examples`` it is scaled down to that). This is what cleanlab 2.9
      does, observed as a black box. Then ``frac_noise`` scales the
      off-diagonal cells (the diagonal takes the rest of ``n_k``) and each row
      is rounded keeping its sum ``n_k``, so the diagonal stays >= the
      guard and cells never exceed their ``frac_noise = 1`` value.
    """
    n = prep.class_counts.astype(np.float64)
    caps = prep.caps(min_examples).astype(np.float64)
    off = prep.calibrated.astype(np.float64)
    diag = np.diagonal(off).copy()
    np.fill_diagonal(off, 0.0)
    if ntr is not None:
        return _scale_rows_to(off, np.minimum(ntr, caps))
    raise_by = np.minimum(np.maximum(diag, min_examples), n) - diag
    if (raise_by > 0).any():
        nonzero = np.maximum(np.count_nonzero(off, axis=1), 1)
        off = np.maximum(off - (raise_by / nonzero)[:, None], 0.0)
        np.fill_diagonal(off, 0.0)
        sums = off.sum(axis=1)
        over = sums > caps
        off[over] *= (caps[over] / sums[over])[:, None]
    off *= frac
    full = off.copy()
    np.fill_diagonal(full, n - off.sum(axis=1))
    cells = _round_rows(full)
    np.fill_diagonal(cells, 0)
    return cells


def _flag_prune_by_class(
    prep: _Prepared, frac: float, ntr: np.ndarray | None, min_examples: int
) -> np.ndarray:
    caps = prep.caps(min_examples)
    totals = np.minimum(ntr, caps) if ntr is not None else _noise_cells(prep, frac, None, min_examples).sum(axis=1)
    mask = np.zeros(prep.n_rows, dtype=bool)
    for k in np.flatnonzero(totals > 0):
        rows = prep.class_rows(k)
        mask[rows[_pick(prep.self_conf[rows], int(totals[k]), largest=False, limit=int(caps[k]))]] = True
    return mask


def _top_margins(
    probs: np.ndarray, rows: np.ndarray, k: int, need: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PBNR picks among ``rows`` (all given ``k``), vectorised over the true classes ``j``.

    For each ``j`` with ``need[j] > 0``: the ``need[j]`` rows with the largest
    margin ``p_ij - p_ik``. A column is *resolved* only when that cut margin
    is > 0 (see the caller); the others are returned for the caller to rank
    over the whole class.

    Returns:
        ``(strict, tied, unresolved)``: bool masks over ``rows`` of the rows
        above the cut of some resolved column and of those at a cut, and
        the unresolved columns.
    """
    cols = np.flatnonzero(need)
    m = rows.size
    counts = need[cols]
    fits = counts <= m
    unresolved = [cols[~fits]]
    cols, counts = cols[fits], counts[fits]
    strict = np.zeros(m, dtype=bool)
    tied = np.zeros(m, dtype=bool)
    if cols.size == 0:
        return strict, tied, np.concatenate(unresolved)
    block = probs[rows]  # (m, K) copy, rows in original order
    block -= block[:, k : k + 1]
    margins = block.T[cols]  # (J, m), contiguous per column j
    top = int(counts.max())
    tail = np.partition(margins, m - top, axis=1)[:, m - top :]
    tail.sort(axis=1)
    cut = tail[np.arange(cols.size), top - counts]  # counts[j]-th largest margin
    good = cut > 0
    unresolved.append(cols[~good])
    margins, cut = margins[good], cut[good, None]
    strict |= (margins > cut).any(axis=0)
    tied |= (margins == cut).any(axis=0)
    return strict, tied, np.concatenate(unresolved)


def _flag_prune_by_noise_rate(
    prep: _Prepared, frac: float, ntr: np.ndarray | None, min_examples: int
) -> np.ndarray:
    caps = prep.caps(min_examples)
    cells = _noise_cells(prep, frac, ntr, min_examples)
    mask = np.zeros(prep.n_rows, dtype=bool)
    disagree = prep.max_prob > prep.self_conf
    prep.groups  # noqa: B018 - computed once here, not raced for by the threads below

    def pick(k: int) -> np.ndarray:
        rows = prep.class_rows(k)
        # A row whose argmax is its label has every margin p_ij - p_ik <= 0.
        # So when the c-th largest margin among the other rows is > 0, the top
        # c of the whole class are among them, ties included: rank only those
        # (usually a small share of the class), and the whole class otherwise.
        sub = np.flatnonzero(disagree[rows])
        strict_sub, tied_sub, unresolved = _top_margins(prep.probs, rows[sub], k, cells[k])
        strict = np.zeros(rows.size, dtype=bool)
        tied = np.zeros(rows.size, dtype=bool)
        strict[sub[strict_sub]] = True
        tied[sub[tied_sub]] = True
        for j in unresolved:
            margin = prep.probs[rows, j] - prep.probs[rows, k]
            c = int(cells[k, j])
            if c >= rows.size:
                strict[:] = True
                continue
            cut = np.partition(margin, rows.size - c)[rows.size - c]
            strict |= margin > cut
            tied |= margin == cut
        # Rows tied at a cut are all taken, unless that breaks the class's
        # min-examples cap: then none of them is (order-independent either way).
        picked = strict | tied
        if np.count_nonzero(picked) > caps[k]:
            picked = strict
        return rows[picked]

    # classes are independent: on threads for large inputs (numpy releases the GIL)
    classes = np.flatnonzero(cells.sum(axis=1) > 0)
    for rows in thread_map(pick, classes, parallel=prep.probs.size >= MIN_PARALLEL_ELEMENTS):
        mask[rows] = True
    return mask


def _limit_per_class(
    prep: _Prepared, candidates: np.ndarray, totals: np.ndarray, caps: np.ndarray
) -> np.ndarray:
    """Keep, per class, at most ``min(totals, caps)`` candidates: those with the lowest ``p_{i,s_i}``."""
    limits = np.minimum(totals, caps)
    per_class = np.bincount(prep.labels[candidates], minlength=prep.n_classes)
    over = np.flatnonzero(per_class > limits)
    if over.size == 0:
        return candidates
    mask = candidates.copy()
    for k in over:
        rows = prep.class_rows(k)
        rows = rows[candidates[rows]]
        mask[rows] = False
        mask[rows[_pick(prep.self_conf[rows], int(limits[k]), largest=False, limit=int(caps[k]))]] = True
    return mask


def _flag_low_score(
    prep: _Prepared, scores: np.ndarray, frac: float, ntr: np.ndarray | None, caps: np.ndarray
) -> np.ndarray:
    mask = np.zeros(prep.n_rows, dtype=bool)
    if ntr is not None:
        for k in np.flatnonzero(np.minimum(ntr, caps) > 0):
            rows = prep.class_rows(k)
            chosen = _pick(scores[rows], int(min(ntr[k], caps[k])), largest=False, limit=int(caps[k]))
            mask[rows[chosen]] = True
        return mask
    total = int(np.rint(frac * prep.estimated_num_issues))
    if total <= 0:
        return mask
    # Rows that may be flagged: per class, the caps[k] lowest-scoring ones. The
    # `total` lowest rows under the per-class caps are the `total` lowest of these.
    eligible = np.ones(prep.n_rows, dtype=bool)
    for k in np.flatnonzero(caps < prep.class_counts):
        rows = prep.class_rows(k)
        eligible[rows] = False
        eligible[rows[_pick(scores[rows], int(caps[k]), largest=False, limit=int(caps[k]))]] = True
    idx = np.flatnonzero(eligible)
    mask[idx[_pick(scores[idx], total, largest=False)]] = True
    return mask


def _find_issues(
    prep: _Prepared,
    filter_by: str,
    frac_noise: float,
    ntr: np.ndarray | None,
    min_examples: int,
) -> np.ndarray:
    caps = prep.caps(min_examples)
    frac = float(frac_noise)
    if filter_by == "prune_by_class":
        mask = _flag_prune_by_class(prep, frac, ntr, min_examples)
    elif filter_by == "prune_by_noise_rate":
        mask = _flag_prune_by_noise_rate(prep, frac, ntr, min_examples)
    elif filter_by == "both":
        mask = _flag_prune_by_class(prep, frac, ntr, min_examples) & _flag_prune_by_noise_rate(
            prep, frac, ntr, min_examples
        )
    elif filter_by in ("confident_learning", "predicted_neq_given"):
        cand = prep.off_diagonal if filter_by == "confident_learning" else np.ones(prep.n_rows, dtype=bool)
        cand = cand & ~prep.agrees
        counts = np.bincount(prep.labels[cand], minlength=prep.n_classes)
        totals = ntr if ntr is not None else np.rint(frac * counts).astype(np.int64)
        mask = _limit_per_class(prep, cand, totals, caps)
    elif filter_by == "low_self_confidence":
        mask = _flag_low_score(prep, prep.self_conf, frac, ntr, caps)
    elif filter_by == "low_normalized_margin":
        mask = _flag_low_score(prep, _normalized_margin(prep.labels, prep.probs), frac, ntr, caps)
    else:  # pragma: no cover - validated before
        raise LabelqaError(f"unknown filter_by {filter_by!r}", f"choose one of {', '.join(FILTER_METHODS)}")
    if filter_by in _AGREEMENT_RULE_METHODS:
        mask &= ~prep.agrees
    return mask


def find_label_issues(
    labels: Any,
    pred_probs: Any,
    *,
    filter_by: str = "prune_by_noise_rate",
    frac_noise: float = 1.0,
    num_to_remove_per_class: Sequence[int] | None = None,
    min_examples_per_class: int = 1,
) -> np.ndarray:
    """Flag likely label errors with confident learning.

    Methods (``filter_by``):

    - ``prune_by_noise_rate`` (default): for each pair ``k != j``, among the
      rows given ``k``, the ``C_cal[k, j]`` rows with the largest margin
      ``p_ij - p_ik`` (a row picked for several ``j`` counts once);
    - ``prune_by_class``: per class ``k``, the ``n_k - C_cal[k, k]`` rows
      given ``k`` with the lowest ``p_ik``;
    - ``both``: rows flagged by both of the above;
    - ``confident_learning``: rows counted off the diagonal of ``C``;
    - ``predicted_neq_given``: rows whose prediction disagrees with the label;
    - ``low_self_confidence`` / ``low_normalized_margin``: the ``T`` rows
      with the lowest score, ``T`` = the estimated number of issues.

    A row's prediction *agrees* with its label when
    ``p_{i,s_i} >= max_k p_ik - 1e-6``: the argmax is the label, ties and
    near-ties (within the confident-set epsilon) resolved toward the label.
    The *estimated number of issues* is the number of rows counted off the
    diagonal of the raw confident joint whose prediction disagrees with the
    label (what cleanlab 2.9 reports as ``num_label_issues`` by default).

    After the first five methods, a row whose prediction agrees with its label
    is unflagged: a prediction that agrees with the label is never an issue.
    In every "the c rows with the lowest/largest ..." selection, rows tied
    at the cut are all flagged (possibly more than c), or none of them when
    all would break ``min_examples_per_class``; so results do not depend on
    row order.

    Args:
        labels: Given labels, shape ``(N,)``, integer codes ``0..K-1``.
        pred_probs: Out-of-sample predicted probabilities, shape ``(N, K)``.
        filter_by: One of :data:`FILTER_METHODS`.
        frac_noise: Flag only this fraction of the estimate. PBC/PBNR/both:
            the off-diagonal cells of ``C_cal`` are scaled by it and each row
            rounded keeping ``n_k`` (see ``_noise_cells``);
            ``confident_learning``/``predicted_neq_given``: ``round(frac *
            candidates)`` per class, those with the lowest ``p_ik``; ``low_*``:
            ``T = round(frac * estimated number of issues)``. (cleanlab 2.9
            applies it to PBC/PBNR/both only.)
        num_to_remove_per_class: ``K`` integers replacing the estimated number
            of rows to flag per given class (``frac_noise`` is then not
            applied). For ``prune_by_noise_rate`` the count of class ``k`` is
            split across its off-diagonal cells in proportion to row ``k`` of
            ``C_cal`` (a class with no off-diagonal mass has nothing to
            split); for ``confident_learning``/``predicted_neq_given`` it is
            an upper bound on the class's candidates (lowest ``p_ik`` kept);
            for the ``low_*`` methods the lowest-scoring rows of each class.
        min_examples_per_class: Keep at least this many rows of every class
            unflagged (every method; a class with fewer rows keeps them all).
            For PBNR the diagonal of ``C_cal`` is raised to it, taking the
            same amount from each non-zero off-diagonal cell of the row, as
            cleanlab does; for the other methods the per-class count is
            capped, keeping the rows with the highest ``p_ik`` (or score).

    Returns:
        Bool mask, shape ``(N,)``, ``True`` = likely label issue.

    Raises:
        LabelqaError: On an unknown method or an invalid option.
    """
    labs, probs = _as_arrays(labels, pred_probs)
    ntr = _check_options(
        probs.shape[1],
        filter_by=filter_by,
        frac_noise=frac_noise,
        num_to_remove_per_class=num_to_remove_per_class,
        min_examples_per_class=min_examples_per_class,
    )
    if labs.size == 0:
        return np.zeros(0, dtype=bool)
    prep = _Prepared(labs, probs)
    return _find_issues(prep, filter_by, frac_noise, ntr, int(min_examples_per_class))


# --------------------------------------------------------------------------- scores
def _normalized_margin(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    out = np.empty(labels.size, dtype=np.float64)
    for sl in _chunks(*probs.shape):
        out[sl] = _normalized_margin_block(labels[sl], probs[sl].copy())
    return out


def _normalized_margin_block(labels: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Normalized margin of a (writable, own) block; overwrites the label column."""
    r = np.arange(labels.size)
    own = block[r, labels].astype(np.float64)
    if block.shape[1] == 1:
        return np.clip((own + 1.0) / 2.0, 0.0, 1.0)
    block[r, labels] = -np.inf
    other = block.max(axis=1).astype(np.float64)
    return np.clip((own - other + 1.0) / 2.0, 0.0, 1.0)


def _cwe_block(labels: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Confidence-weighted entropy of a block (logs in the block's dtype, sums in float64)."""
    k = block.shape[1]
    own = block[np.arange(labels.size), labels].astype(np.float64)
    plogp = np.log(np.maximum(block, np.finfo(block.dtype).tiny))
    plogp *= block  # 0 * log(tiny) = 0: 0 log 0 = 0
    entropy = -plogp.sum(axis=1, dtype=np.float64)
    norm = entropy / math.log(k) if k > 1 else np.zeros_like(entropy)
    ratio = np.maximum(norm, 0.0) / np.maximum(own, _CWE_FLOOR)
    return np.clip(np.log1p(ratio) / np.maximum(ratio, _CWE_FLOOR), 0.0, 1.0)


def _adjusted_block(block: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``p - t + max(t)``, negatives clipped to 0, rows renormalised (in the block's dtype)."""
    t = thresholds.astype(block.dtype)
    adj = block - t
    adj += t.max()
    np.maximum(adj, 0, out=adj)
    sums = adj.sum(axis=1, keepdims=True)
    np.divide(adj, sums, out=adj, where=sums > 0)
    return adj


def _scores(
    labels: np.ndarray,
    probs: np.ndarray,
    method: str,
    *,
    adjust: bool = False,
    thresholds: np.ndarray | None = None,
    self_conf: np.ndarray | None = None,
) -> np.ndarray:
    if not adjust and method == "self_confidence":
        sc = self_conf if self_conf is not None else probs[np.arange(labels.size), labels]
        return np.clip(sc.astype(np.float64), 0.0, 1.0)
    if not adjust and method == "normalized_margin":
        return _normalized_margin(labels, probs)
    out = np.empty(labels.size, dtype=np.float64)
    for sl in _chunks(*probs.shape):
        lab = labels[sl]
        block = _adjusted_block(probs[sl], thresholds) if adjust else probs[sl]
        if method == "self_confidence":
            out[sl] = np.clip(block[np.arange(lab.size), lab], 0.0, 1.0)
        elif method == "normalized_margin":
            out[sl] = _normalized_margin_block(lab, block)  # block is our own copy
        else:
            out[sl] = _cwe_block(lab, block)
    return out


def get_label_quality_scores(
    labels: Any,
    pred_probs: Any,
    *,
    method: str = "self_confidence",
    adjust_pred_probs: bool = False,
) -> np.ndarray:
    """Per-row label quality in [0, 1]; lower = more likely a label error.

    Methods:

    - ``self_confidence``: ``p_{i,s_i}``;
    - ``normalized_margin``: ``(p_{i,s_i} - max_{k != s_i} p_ik + 1) / 2``;
    - ``confidence_weighted_entropy``: with
      ``r = (H(p_i) / ln K) / max(p_{i,s_i}, 1e-6)`` (``0 log 0 = 0``), the
      score ``ln(1 + r) / max(r, 1e-6)``. As specified this is 0 when
      ``r == 0`` (a one-hot row, right or wrong) and close to 1 for small
      positive ``r``: it ranks uncertain rows, not confidently wrong ones.

    Args:
        labels: Given labels, shape ``(N,)``.
        pred_probs: Predicted probabilities, shape ``(N, K)``.
        method: One of :data:`SCORE_METHODS`.
        adjust_pred_probs: Score ``p' = p - t + max(t)`` instead of ``p``
            (``t`` the per-class thresholds; negatives clipped to 0 first,
            which cannot happen for probabilities in [0, 1]; rows
            renormalised). A class no row is given has ``t_k = 2.0``, which
            then dominates ``max(t)``.

    Returns:
        float64 scores, shape ``(N,)``.

    Raises:
        LabelqaError: On an unknown method.
    """
    labs, probs = _as_arrays(labels, pred_probs)
    _check_options(probs.shape[1], score_method=method)
    thresholds = ClassProbSums(probs.shape[1]).update(labs, probs).thresholds() if adjust_pred_probs else None
    return _scores(labs, probs, method, adjust=bool(adjust_pred_probs), thresholds=thresholds)


# --------------------------------------------------------------------------- detector
def _best_other_class(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``argmax_{k != s_i} p_ik`` (lowest index on ties)."""
    out = np.empty(labels.size, dtype=np.int64)
    if probs.shape[1] == 1:
        out[:] = 0
        return out
    for sl in _chunks(*probs.shape):
        block = probs[sl].copy()
        block[np.arange(block.shape[0]), labels[sl]] = -np.inf
        out[sl] = block.argmax(axis=1)
    return out


@dataclass(kw_only=True)
class ConfidentLearning(Detector):
    """Confident learning: flag and score rows from out-of-sample probabilities.

    Args:
        filter_by: How rows are flagged, one of :data:`FILTER_METHODS`.
        score_method: Per-row score, one of :data:`SCORE_METHODS`.
        adjust_pred_probs: Subtract per-class thresholds before scoring
            (see :func:`get_label_quality_scores`).
        frac_noise: Flag only this fraction of the estimated issues.
        num_to_remove_per_class: Per-class numbers of rows to flag, replacing
            the estimates (see :func:`find_label_issues`).
        min_examples_per_class: Keep at least this many rows of every class
            unflagged.

    :meth:`detect` returns scores in [0, 1] (lower = more suspect), flags,
    suggested labels (for a flagged row the confident-joint guess, else the
    best class other than the given one; unflagged rows keep their label)
    with their probability, and a summary with the thresholds, confident
    joint (raw and calibrated), noise matrix, inverse noise matrix, latent
    prior, estimated number of issues and noise rate, and per-class figures.
    """

    name: ClassVar[str] = "cl"

    filter_by: str = "prune_by_noise_rate"
    score_method: str = "self_confidence"
    adjust_pred_probs: bool = False
    frac_noise: float = 1.0
    num_to_remove_per_class: Sequence[int] | None = None
    min_examples_per_class: int = 1

    def detect(self, data: LabelData) -> DetectorResult:
        """Score, flag and suggest a label for every row of ``data``.

        Raises:
            LabelqaError: On an invalid parameter or non-multiclass data.
        """
        if data.task != "multiclass":
            raise LabelqaError(
                f"confident learning needs multiclass data, got task {data.task!r}",
                "use the multi-label detector for multi-label data",
            )
        if not isinstance(self.adjust_pred_probs, (bool, np.bool_)):
            raise LabelqaError(f"adjust_pred_probs must be True or False, got {self.adjust_pred_probs!r}")
        labels, probs = _as_arrays(data.labels, data.pred_probs)
        k = probs.shape[1]
        ntr = _check_options(
            k,
            filter_by=self.filter_by,
            score_method=self.score_method,
            frac_noise=self.frac_noise,
            num_to_remove_per_class=self.num_to_remove_per_class,
            min_examples_per_class=self.min_examples_per_class,
        )
        params = self.get_params()
        if labels.size == 0:
            empty = np.zeros(0)
            return DetectorResult(
                name=self.name, scores=empty, issues=np.zeros(0, dtype=bool),
                suggested=np.zeros(0, dtype=np.int64), suggested_confidence=empty,
                summary={}, params=params,
            )

        prep = _Prepared(labels, probs)
        issues = _find_issues(prep, self.filter_by, self.frac_noise, ntr, int(self.min_examples_per_class))
        scores = _scores(
            labels, probs, self.score_method, adjust=bool(self.adjust_pred_probs),
            thresholds=prep.thresholds, self_conf=prep.self_conf,
        )

        suggested = labels.copy()
        suggested_confidence = prep.self_conf.astype(np.float64)  # unflagged rows keep their label
        flagged = np.flatnonzero(issues)
        if flagged.size:
            guess = prep.guess[flagged]
            usable = (guess >= 0) & (guess != labels[flagged])
            suggested[flagged] = np.where(usable, guess, _best_other_class(labels[flagged], probs[flagged]))
            suggested_confidence[flagged] = probs[flagged, suggested[flagged]]

        return DetectorResult(
            name=self.name,
            scores=scores,
            issues=issues,
            suggested=suggested,
            suggested_confidence=suggested_confidence,
            summary=self._summary(prep),
            params=params,
        )

    def _summary(self, prep: _Prepared) -> dict[str, Any]:
        cal = prep.calibrated
        latent = estimate_latent(cal)
        n = prep.class_counts
        diag = np.diagonal(cal)
        rate_k = np.divide(n - diag, n, out=np.zeros(n.size), where=n > 0)
        return {
            "thresholds": [float(t) for t in prep.thresholds],
            "confident_joint": prep.joint.tolist(),
            "confident_joint_calibrated": cal.tolist(),
            "noise_matrix": latent.noise_matrix.tolist(),
            "inverse_noise_matrix": latent.inverse_noise_matrix.tolist(),
            "latent_prior": latent.latent_prior.tolist(),
            "estimated_num_issues": prep.estimated_num_issues,
            "estimated_noise_rate": float(1.0 - np.trace(latent.joint)) if cal.sum() > 0 else 0.0,
            "estimated_noise_rate_interval": list(noise_rate_interval(prep.joint, prep.class_counts)),
            "per_class": [
                {
                    "class_count": int(n[k]),
                    "threshold": float(prep.thresholds[k]),
                    "estimated_noise_rate": float(rate_k[k]),
                }
                for k in range(prep.n_classes)
            ],
            "filter_by": self.filter_by,
            "score_method": self.score_method,
        }
