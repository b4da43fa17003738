"""Confident learning (Northcutt, Jiang, Chuang, JAIR 2021): find label errors
from out-of-sample predicted probabilities.

Implemented from the method's description (Northcutt, Jiang, Chuang, JAIR 2021), as
one plan that every runner executes unchanged (see
:mod:`labelqa.detectors.base`):

1. *statistics*: per-class thresholds ``t_k`` = mean ``p_ik`` over the rows
   given ``k`` (:class:`~labelqa.stats.confident.ClassProbSums`), then the
   confident joint ``C`` (rows = given label, columns = guessed true label)
   and the per-class candidate counts (:class:`JointCounts`); from them the
   calibrated joint and the latent estimates (joint ``Q``, noise matrix,
   inverse noise matrix, latent prior);
2. *selection* (:class:`FlagRule`): each "the c rows with the lowest/largest
   ..." of the chosen ``filter_by`` method, as bounded, mergeable selections
   (:mod:`labelqa.stats.selection`);
3. *per-row outputs* (:class:`ConfidentRule`): flags, scores
   (``score_method``) and suggested labels of any block of rows.

The probabilities must be out-of-sample (e.g. cross-validated): a model that
trained on the same rows has memorised their labels, errors included.

All matrices are laid out ``[given label, true label]``, like ``C``:
``noise_matrix[j, k] = P(s=j | y*=k)`` (columns sum to 1) and
``inverse_noise_matrix[j, k] = P(y*=k | s=j)`` (rows sum to 1).

Results do not depend on row order or batching: the counting is exact
(integers, fixed-point sums), and in every selection rows tied at the cut
share one fate: all of them are flagged, possibly more than c, unless that
would break ``min_examples_per_class``, in which case none of them is.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

import numpy as np

from labelqa.data.model import LabelData
from labelqa.detectors.base import (
    Block,
    DatasetInfo,
    Detector,
    DetectorResult,
    DetectorRows,
    NamedRows,
    Plan,
    RowRule,
    Step,
    lockless_cached_property,
    run_on_block,
    selection_stages,
)
from labelqa import options
from labelqa.errors import LabelqaError
from labelqa.jsonable import summary_matrix
from labelqa.parallel import MIN_PARALLEL_ELEMENTS, beside, for_row_blocks, row_ranges, thread_map
from labelqa.stats.confident import (
    PROB_SCALE,
    ClassProbSums,
    ConfidentJointCounts,
    LatentEstimates,
    calibrate_confident_joint,
    confident_guesses,
    estimate_latent,
    noise_rate,
    round_rows,
    row_max,
    row_top,
    scale_rows_to,
    trend_entropy,
    SMALL_K,
)
from labelqa.stats.noise_interval import bootstrap_noise_rates, interval_from_replicates
from labelqa.stats.histogram import GroupHistogram
from labelqa.stats.ranks import RankIndex
from labelqa.stats.selection import Cut, GroupedTop, Pick, Selections

__all__ = [
    "AGREEMENT_RULE_METHODS",
    "AGREEMENT_TOLERANCE",
    "CALIBRATED_ESTIMATOR",
    "CL_FILTER_METHODS",
    "FILTER_METHODS",
    "MIDPOINT_ESTIMATOR",
    "MIDPOINT_METHOD",
    "NUM_ISSUES_FLOOR_META",
    "PLUS_ESTIMATOR",
    "PLUS_METHOD",
    "SCORE_METHODS",
    "ConfidentLearning",
    "LatentEstimates",
    "calibrate_confident_joint",
    "compute_confident_joint",
    "estimate_latent",
    "find_label_issues",
    "get_label_quality_scores",
    "noise_rate_estimates",
    "plus_num_issues",
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
#: ``LabelData.meta`` key of several models' count floor: the plus rule's ``T`` is at least this
#: (set by the combination, :func:`labelqa.models.num_issues_floor`; docs/multimodel.md).
NUM_ISSUES_FLOOR_META = "num_issues_floor"
#: Multiclass only: the T rows with the lowest normalized margin, T = the
#: disputed-rows midpoint estimate (see :attr:`Estimates.midpoint_num_issues`
#: and docs/detection.md).
MIDPOINT_METHOD = "low_margin_midpoint"
#: Multiclass only, the scan default: ``prune_by_noise_rate``'s rows plus, up to ``T = A + min(W, R)``
#: (weighted disputes, dispute-margin trend), the lowest self-confidences among the other disputed rows
#: (see :attr:`Estimates.plus_num_issues` and docs/detection.md).
PLUS_METHOD = "prune_by_noise_rate_plus"
#: Every ``filter_by`` method of the multiclass detector.
CL_FILTER_METHODS = FILTER_METHODS + (MIDPOINT_METHOD, PLUS_METHOD)
#: Methods that flag the globally lowest-scoring rows (``low_*``).
_LOW_METHODS = ("low_self_confidence", "low_normalized_margin", MIDPOINT_METHOD)
#: The methods that select prune_by_noise_rate's cells (alone, with prune_by_class, or plus the extra rows).
_PBNR_METHODS = ("prune_by_noise_rate", "both", PLUS_METHOD)
SCORE_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")

#: Methods after which a row whose prediction agrees with its label is unflagged.
AGREEMENT_RULE_METHODS = frozenset(FILTER_METHODS[:5] + (PLUS_METHOD,))

#: A row's prediction agrees with its label when ``p_{i,s_i} >= max_k p_ik -
#: AGREEMENT_TOLERANCE``: near-ties count as ties, resolved toward the label
#: (the same 1e-6 as the confident-set epsilon; cleanlab 2.9 behaves alike).
AGREEMENT_TOLERANCE = 1e-6

#: Lower bound used in the confidence-weighted entropy score.
_CWE_FLOOR = 1e-6

#: About this many matrix elements per row chunk (bounds temporaries to a few MB).
_CHUNK_ELEMENTS = 1 << 21


# --------------------------------------------------------------------------- options
def _per_class_counts(num_to_remove_per_class: Sequence[int] | None, n_classes: int) -> np.ndarray | None:
    """``num_to_remove_per_class`` as K int64 counts (or None)."""
    if num_to_remove_per_class is None:
        return None
    arr = np.asarray(num_to_remove_per_class)
    if arr.shape != (n_classes,) or (arr.size and arr.dtype.kind not in "iu") or (arr.size and arr.min() < 0):
        raise LabelqaError(
            f"num_to_remove_per_class must be {n_classes} integers >= 0 (one per class), "
            f"got {num_to_remove_per_class!r}"
        )
    return arr.astype(np.int64)


def _as_arrays(labels: Any, pred_probs: Any, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Light checks of the array API: shapes, integer labels in range; float probabilities."""
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


def _chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    step = max(1024, _CHUNK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


# --------------------------------------------------------------------------- per-row state of a block
class _BlockRows:
    """Per-row quantities of one block, each computed once per block (and thresholds), when first asked for.

    The statistics pass asks for the confident joint: one threaded pass over
    the matrix (:func:`_confident_joint`) gives it with the guesses, the row
    maxima, the agreement masks and the block's candidate tallies. A
    selection pass over a fresh batch needs only the agreement masks: a
    lighter pass gives them (:func:`_agreement`, the same values); a rows
    pass whose flags are named by position needs neither.
    """

    def __init__(self, block: Block, thresholds: np.ndarray) -> None:
        self.offset = int(block.offset)
        self.labels = np.asarray(block.labels, dtype=np.int64)
        self.probs = block.pred_probs
        self.n, self.k = self.probs.shape
        self.thresholds = thresholds
        self.self_conf = self_confidence(block)
        self.row_arrays = _row_arrays(block)  # (not the block itself: it caches this object, no cycle)
        #: wide rows: each row's top class when the loaded data has it (the probability checks found it), which the
        #: joint pass then need not find again (200k x 1,000: ~0.1 s of threads)
        self.top = block.data.top_class() if block.data is not None and self.k > SMALL_K else None
        #: fill each row's entropy in the joint pass (for the trend: its transposed chunks serve both)
        self.entropy_wanted = False
        self._entropy: np.ndarray | None = None

    @lockless_cached_property
    def _joint_pass(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(joint, guess, tallies, unc_weight)`` (:func:`_confident_joint`); fills the agreement masks too."""
        if "_rows" in self.__dict__:
            max_prob, rows = self._rows
            rows = _RowOutputs(rows.self_conf, np.empty_like(rows.agrees), np.empty_like(rows.disagrees_strictly))
            max_prob = np.empty_like(max_prob)  # written again, equal: the masks above stay as they were
        else:  # the block's row arrays (the same values for any thresholds)
            arrays = self.row_arrays
            max_prob = arrays.max_prob
            rows = _RowOutputs(self.self_conf, arrays.agrees, arrays.disagrees_strictly)
            self.__dict__["_rows"] = (max_prob, rows)
        if self.entropy_wanted and self.probs.dtype.kind == "f":
            self._entropy = self.row_arrays.entropy  # the same values for any thresholds
        arrays = self.row_arrays
        guess = None if arrays.guess_taken else arrays.guess
        arrays.guess_taken = True
        return _confident_joint(self.labels, self.probs, self.thresholds, max_prob, rows, self._entropy, guess,
                                self.top)

    @lockless_cached_property
    def _rows(self) -> tuple[np.ndarray, _RowOutputs]:
        """``(max_prob, row outputs)``: from the joint pass when it ran first, else the lighter :func:`_agreement`."""
        return _agreement(self.labels, self.probs, self.self_conf, self.row_arrays)

    @property
    def joint(self) -> np.ndarray:
        return self._joint_pass[0]

    @property
    def guess(self) -> np.ndarray:
        """Each row's guessed true label (-1: no confident class)."""
        return self._joint_pass[1]

    @property
    def tallies(self) -> np.ndarray:
        return self._joint_pass[2]

    @property
    def unc_weight(self) -> np.ndarray:
        return self._joint_pass[3]

    @property
    def max_prob(self) -> np.ndarray:
        """Row maxima, in the probabilities' dtype."""
        return self._rows[0]

    @property
    def agrees(self) -> np.ndarray:
        """``p_{i,s_i} >= max_k p_ik - 1e-6``: the prediction agrees with the label (ties favour the label)."""
        return self._rows[1].agrees

    @property
    def disagrees_strictly(self) -> np.ndarray:
        """``max_k p_ik > p_{i,s_i}``: the only rows with a positive margin for some other class."""
        return self._rows[1].disagrees_strictly

    def guesses(self, rows: np.ndarray) -> np.ndarray:
        """:attr:`guess` of some rows, without the joint pass over the block when it has not run (same values)."""
        if "_joint_pass" in self.__dict__:
            return self.guess[rows]
        return ConfidentJointCounts(self.k).update(self.labels[rows], self.probs[rows], self.thresholds)

    @lockless_cached_property
    def trend(self) -> np.ndarray:
        """The block's :data:`TREND_SUMS` dispute-margin trend sums (:func:`trend_sums`), on threads for large blocks.

        Computed on first use: only ``prune_by_noise_rate_plus`` needs them.
        """
        disputed = ~self.agrees
        counted = self.guess >= 0
        entropy = self._entropy

        def one(sl: slice) -> np.ndarray:
            return trend_sums(self.probs[sl], self.self_conf[sl], self.max_prob[sl], disputed[sl], counted[sl],
                              None if entropy is None else entropy[sl])

        tasks = [slice(a, b) for a, b in row_ranges(self.n, _task_rows(self.probs.shape[1]))]
        parts = thread_map(one, tasks, parallel=self.probs.size >= MIN_PARALLEL_ELEMENTS)
        return sum(parts, np.zeros(TREND_SUMS, dtype=np.int64))

    @lockless_cached_property
    def off_diagonal(self) -> np.ndarray:
        """Rows counted off the diagonal of the raw confident joint."""
        return (self.guess >= 0) & (self.guess != self.labels)

    @lockless_cached_property
    def groups(self) -> tuple[np.ndarray, np.ndarray]:
        """``(order, starts)``: rows sorted stably by label; class k is ``order[starts[k]:starts[k+1]]``."""
        k = self.k
        order = np.argsort(self.labels.astype(_small_int(k), copy=False), kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(self.labels, minlength=k))])
        return order, starts

    def class_rows(self, k: int) -> np.ndarray:
        """Block positions of the rows given ``k``, in order."""
        order, starts = self.groups
        return order[starts[k] : starts[k + 1]]

    @lockless_cached_property
    def disagreeing_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, starts)``: the rows with ``max_k p_ik > p_{i,s_i}``, grouped stably by label (a share of the block).

        Joined from the row pass's per-task groups when there are few
        pieces (task order, then class order keeps every group ascending).
        """
        k = self.k
        parts = self._rows[1].disagreeing_parts
        sizes = sum((size for _, size in parts), np.zeros(k, dtype=np.int64))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        if parts and k * len(parts) <= _MAX_JOINED_PIECES:
            bounds = [np.concatenate([[0], np.cumsum(size)]) for _, size in parts]
            pieces = [rows[b[c] : b[c + 1]] for c in range(k) for (rows, _), b in zip(parts, bounds)]
            return np.concatenate(pieces), starts
        rows = np.flatnonzero(self.disagrees_strictly)
        order = np.argsort(self.labels[rows].astype(_small_int(k), copy=False), kind="stable")
        return rows[order], starts

    def disagreeing_rows(self, k: int) -> np.ndarray:
        """Block positions of the rows given ``k`` whose maximum is another class's, in order."""
        rows, starts = self.disagreeing_groups
        return rows[starts[k] : starts[k + 1]]

    @lockless_cached_property
    def normalized_margin(self) -> np.ndarray:
        return _normalized_margin(self.labels, self.probs)

    def candidates(self, method: str) -> np.ndarray:
        """Rows ``confident_learning`` / ``predicted_neq_given`` may flag."""
        cand = ~self.agrees
        if method == "confident_learning":
            cand = cand & self.off_diagonal
        return cand


class _RowArrays:
    """The per-row arrays a block keeps through its passes, carved from one allocation.

    ``self_conf`` and ``max_prob`` (the probabilities' dtype), ``guess`` (int8 up to :data:`SMALL_K`
    classes, else int64), ``agrees`` and ``disagrees_strictly`` (bool): 11 bytes a row at float32; then
    ``entropy`` (the probabilities' dtype), written only for the plus rule's trend. In
    one piece of 4 MiB or more (1M rows: 11 MB), numpy asks the kernel for transparent huge pages, so a
    process's first call takes a few hundred page faults for them instead of ~2,750 (page faults were
    about a quarter of a first call's time). Each array starts on a 64-byte boundary.
    """

    def __init__(self, n: int, dtype: np.dtype, k: int) -> None:
        layout = (("self_conf", np.dtype(dtype)), ("max_prob", np.dtype(dtype)),
                  ("guess", np.dtype(np.int8 if k <= SMALL_K else np.int64)),
                  ("agrees", np.dtype(bool)), ("disagrees_strictly", np.dtype(bool)),
                  ("entropy", np.dtype(dtype)))  # last: never touched (no memory) unless the trend wants it
        offsets, total = [], 0
        for _, dt in layout:
            total = -(-total // 64) * 64
            offsets.append(total)
            total += n * dt.itemsize
        buffer = np.empty(total, dtype=np.uint8)
        for (name, dt), at in zip(layout, offsets):
            setattr(self, name, buffer[at:at + n * dt.itemsize].view(dt))
        #: the guesses depend on the thresholds: the first row state to ask takes them, others get their own
        self.guess_taken = False


def _row_arrays(block: Block) -> _RowArrays:
    """The block's :class:`_RowArrays` (made on first use)."""
    probs = block.pred_probs
    return block.cached("cl.row arrays", lambda: _RowArrays(probs.shape[0], probs.dtype, probs.shape[1]))


def self_confidence(block: Block) -> np.ndarray:
    """``p_{i, s_i}`` of a block's rows, in the probabilities' dtype (computed once per block)."""
    def build() -> np.ndarray:
        return _given_probs_and_sums(np.asarray(block.labels, dtype=np.int64), block.pred_probs, with_sums=False,
                                     out=_row_arrays(block).self_conf)[0]

    return block.cached("cl.self_conf", build)


def given_probs(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``probs[i, labels[i]]`` for every row: flat gathers of row blocks, on threads for large inputs."""
    return _given_probs_and_sums(labels, probs, with_sums=False)[0]


#: Rows per flat gather of :func:`given_probs` (its int64 index stays in cache and is reused within a task).
_GATHER_ROWS = 1 << 14


def _given_probs_and_sums(labels: np.ndarray, probs: np.ndarray, with_sums: bool = True,
                          out: np.ndarray | None = None) -> tuple[np.ndarray, ClassProbSums | None]:
    """``(given_probs(labels, probs), their ClassProbSums)`` in one threaded pass over row blocks.

    Each task gathers its rows (flat gathers through one small reused index) and, with ``with_sums``, folds
    them into its own :class:`~labelqa.stats.confident.ClassProbSums` (exact integers, merged in task
    order): the bincounts, which hold the GIL, overlap the other thread's gathers. ``out``: where to write
    the gathered probabilities (shape ``(n,)``, ``probs``' dtype), else a new array.
    """
    n, k = probs.shape
    labels = np.asarray(labels, dtype=np.int64)
    if out is None:
        out = np.empty(n, dtype=probs.dtype)
    if not probs.flags.c_contiguous or n == 0:
        out[:] = probs[np.arange(n), labels]
        return out, (ClassProbSums(k).update_given(labels, out) if with_sums else None)
    flat = probs.reshape(-1)

    def task(ab: tuple[int, int]) -> ClassProbSums | None:
        a, b = ab
        offsets = np.arange(0, min(_GATHER_ROWS, b - a) * k, k)
        idx = np.empty_like(offsets)
        for start in range(a, b, _GATHER_ROWS):
            stop = min(start + _GATHER_ROWS, b)
            m = stop - start
            np.add(offsets[:m], labels[start:stop], out=idx[:m])
            idx[:m] += start * k
            np.take(flat, idx[:m], out=out[start:stop])
        return ClassProbSums(k).update_given(labels[a:b], out[a:b]) if with_sums else None

    sums = ClassProbSums(k) if with_sums else None
    for part in thread_map(task, row_ranges(n, _task_rows(k)), parallel=probs.size >= MIN_PARALLEL_ELEMENTS):
        if sums is not None:
            sums.merge(part)  # type: ignore[arg-type]
    return out, sums


def _block_rows(block: Block, thresholds: np.ndarray) -> _BlockRows:
    return block.cached(("cl.rows", thresholds.tobytes()), lambda: _BlockRows(block, thresholds))


@dataclass
class _RowOutputs:
    """What the detector's row pass fills besides the joint: agreement masks from ``p_{i,s_i}``."""

    self_conf: np.ndarray
    agrees: np.ndarray
    disagrees_strictly: np.ndarray
    #: per task, in order: its rows with ``max_k p_ik > p_{i,s_i}`` grouped stably by label, and the group sizes
    disagreeing_parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


#: Rows per task of the confident-joint pass: many small tasks keep both threads busy to the end.
_JOINT_TASK_ROWS = 1 << 16
#: ... and at most about this many probabilities per task: at 200k x 1,000, 2^16-row tasks made 4 tasks
#: (one nearly empty), so one thread did two of them while the other idled (scan 1.4-1.9 -> 1.2-1.5 s).
_JOINT_TASK_ELEMENTS = 1 << 24


def _task_rows(k: int) -> int:
    """Rows per task of the row passes over K classes (:data:`_JOINT_TASK_ROWS`, fewer for wide rows)."""
    return min(_JOINT_TASK_ROWS, max(1024, _JOINT_TASK_ELEMENTS // max(k, 1)))

#: At most this many (class, task) pieces are joined into the disagreeing groups; more: one sort instead.
_MAX_JOINED_PIECES = 4096


def _small_int(k: int) -> type:
    """The narrowest integer type holding class codes below ``k`` (stable sorts on it are radix sorts)."""
    return np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.int64


def _confident_joint(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, max_prob: np.ndarray | None = None,
    rows: _RowOutputs | None = None, entropy: np.ndarray | None = None, guess: np.ndarray | None = None,
    top: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One chunked pass (on threads for large inputs): ``(joint, guess, tallies, unc_weight)``.

    Fills ``max_prob`` (row maxima), ``entropy`` (:func:`~labelqa.stats.confident.trend_entropy`) and
    ``guess`` (int8 up to :data:`SMALL_K` classes, else int64) when given; ``top``: each row's argmax, when
    known. With ``rows``, also fills the agreement masks and returns, per given class, ``tallies``
    ``(K, 3)``: rows that disagree on ``C``'s diagonal, off it, with no guess; and ``unc_weight`` ``(K,)``:
    the fixed-point dispute weights of the last kind (:func:`dispute_weights`); else those two are zeros.
    Each chunk counts into its own integer partials, which are summed: the result does not depend on how
    chunks are scheduled.
    """
    n, k = probs.shape
    # int8 guesses while K fits (-1..K-1): an eighth of the fresh memory of int64 (fewer page faults)
    if guess is None:
        guess = np.empty(labels.size, dtype=np.int8 if k <= SMALL_K else np.int64)
    if max_prob is None and rows is not None:
        max_prob = np.empty(n, dtype=probs.dtype)

    # Up to SMALL_K classes each task counts its own small joint; wider, the rows are counted once at the end:
    # a K x K joint per task (8 MB at K = 1,000, zeroed and paged in by each of 12 tasks) cost ~0.2 s of threads.
    wide = k > SMALL_K

    def count(sl: slice) -> tuple[np.ndarray | None, Any, Any, Any]:
        lab = labels[sl]
        g = guess[sl]
        confident_guesses(probs[sl], thresholds, argmax=None if top is None else top[sl],
                          row_max=None if max_prob is None else max_prob[sl],
                          entropy=None if entropy is None else entropy[sl], guess_out=g)
        part_joint = None
        if not wide:
            own = ConfidentJointCounts(k)
            own.add_guesses(lab, g)
            part_joint = own.joint
        if rows is None:
            return part_joint, None, None, None
        sc, mx = rows.self_conf[sl], max_prob[sl]  # type: ignore[index]
        dis, strict = _agreement_masks(sc, mx, rows.agrees[sl], rows.disagrees_strictly[sl])
        ld, gd = lab[dis], g[dis]
        # code per disagreeing row: 0 on C's diagonal, 1 off it, 2 no guess (guess -1 differs from any label)
        code = ld * 3
        code += gd != ld
        unc = gd < 0
        code += unc
        tallies = np.bincount(code, minlength=3 * k).reshape(k, 3)
        strict_labels = lab[strict]
        order = np.argsort(strict_labels.astype(_small_int(k), copy=False), kind="stable")
        strict = strict[order]
        strict += sl.start
        part = (strict, np.bincount(strict_labels, minlength=k))
        # whole numbers below 2**32 + 1 each: float64 sums of a task's rows are exact
        dis_unc = dis[unc]
        weight = np.bincount(ld[unc], weights=dispute_weight_values(sc[dis_unc], mx[dis_unc]),
                             minlength=k).astype(np.int64)
        return part_joint, tallies, weight, part

    joint = np.zeros((k, k), dtype=np.int64)
    tallies = np.zeros((k, 3), dtype=np.int64)
    weight = np.zeros(k, dtype=np.int64)
    tasks = [slice(a, b) for a, b in row_ranges(n, _task_rows(k))]
    for part, tal, w, dis in thread_map(count, tasks, parallel=probs.size >= MIN_PARALLEL_ELEMENTS):
        if part is not None:
            joint += part
        if tal is not None:
            tallies += tal
            weight += w
            rows.disagreeing_parts.append(dis)  # type: ignore[union-attr]
    if wide:
        ConfidentJointCounts(k, joint).add_guesses(labels, guess)  # counts into ``joint`` in place
    return joint, guess, tallies, weight


def _agreement_masks(self_conf: np.ndarray, max_prob: np.ndarray, agrees: np.ndarray,
                     disagrees_strictly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``agrees`` (``s >= m - AGREEMENT_TOLERANCE`` in float64) and ``disagrees_strictly`` (``m > s``);
    return the positions of the rows that do not agree, and of those that disagree strictly.

    The float64 test runs only on the rows with ``m > s`` (the others agree, or hold NaN and do not),
    so the whole block is compared once in its own dtype, with no float64 copies.
    """
    np.greater(max_prob, self_conf, out=disagrees_strictly)
    np.less_equal(max_prob, self_conf, out=agrees)  # False for NaN, as the float64 test
    strict = np.flatnonzero(disagrees_strictly)
    near = self_conf[strict].astype(np.float64) >= max_prob[strict].astype(np.float64) - AGREEMENT_TOLERANCE
    agrees[strict[near]] = True
    dis = strict[~near]
    if dis.size != agrees.size - np.count_nonzero(agrees):  # NaN rows: neither agree nor disagree strictly
        dis = np.flatnonzero(~agrees)
    return dis, strict


def _agreement(labels: np.ndarray, probs: np.ndarray, self_conf: np.ndarray,
               arrays: _RowArrays | None = None) -> tuple[np.ndarray, _RowOutputs]:
    """``(max_prob, row outputs)``: the row maxima and agreement masks of :func:`_confident_joint`, without the joint.

    The same values (row maxima over transposed chunks at small K,
    :func:`~labelqa.stats.confident.row_max`); the rows that disagree
    strictly come as one part grouped stably by label.
    """
    n, k = probs.shape
    if arrays is not None:  # the block's row arrays (a later joint pass writes its own)
        max_prob, agrees, strictly = arrays.max_prob, arrays.agrees, arrays.disagrees_strictly
    else:
        max_prob = np.empty(n, dtype=probs.dtype)
        agrees, strictly = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    for_row_blocks(lambda a, b: row_max(probs[a:b], out=max_prob[a:b]), n, _task_rows(k), elements=probs.size)
    _, strict = _agreement_masks(self_conf, max_prob, agrees, strictly)
    strict_labels = labels[strict]
    order = np.argsort(strict_labels.astype(_small_int(k), copy=False), kind="stable")
    rows = _RowOutputs(self_conf, agrees, strictly, [(strict[order], np.bincount(strict_labels, minlength=k))])
    return max_prob, rows


# --------------------------------------------------------------------------- statistics passes
class ClassSumsStep(Step):
    """Pass 1: per-class sums of ``p_{i, s_i}`` and class counts -> thresholds."""

    name = "class sums"

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes

    def start(self) -> ClassProbSums:
        return ClassProbSums(self.n_classes)

    def feed(self, partial: ClassProbSums, block: Block) -> ClassProbSums:
        fused: list[ClassProbSums] = []

        def build() -> np.ndarray:  # the block's p_{i,s_i} and their sums in one pass
            given, sums = _given_probs_and_sums(np.asarray(block.labels, dtype=np.int64), block.pred_probs,
                                                out=_row_arrays(block).self_conf)
            fused.append(sums)  # type: ignore[arg-type]
            return given

        given = block.cached("cl.self_conf", build)
        return partial.merge(fused[0]) if fused else partial.update_given(block.labels, given)


@dataclass
class JointCounts:
    """Pass-2 partial: the confident joint plus per-class candidate counts of two methods."""

    n_classes: int
    joint: np.ndarray = None  # type: ignore[assignment]
    cand_cl: np.ndarray = None  # type: ignore[assignment]  # off-diagonal and disagreeing, per class
    cand_png: np.ndarray = None  # type: ignore[assignment]  # disagreeing, per class
    cand_unc: np.ndarray = None  # type: ignore[assignment]  # disagreeing and not counted in C, per class
    #: per class, sum over those uncertain disputes of (m - s) / (m + s), fixed point (PROB_SCALE): exact
    unc_weight: np.ndarray = None  # type: ignore[assignment]
    #: fixed-point sums of the dispute-margin trend (:func:`trend_sums`), kept when ``with_trend``
    trend: np.ndarray = None  # type: ignore[assignment]
    with_trend: bool = False
    #: out of core, prune_by_noise_rate's margins counted per cell (:func:`margin_histogram`): they bound its cuts
    margins: GroupHistogram | None = None

    def __post_init__(self) -> None:
        k = self.n_classes
        self.trend = np.zeros(TREND_SUMS, dtype=np.int64) if self.trend is None else self.trend
        self.joint = np.zeros((k, k), dtype=np.int64) if self.joint is None else self.joint
        self.cand_cl = np.zeros(k, dtype=np.int64) if self.cand_cl is None else self.cand_cl
        self.cand_png = np.zeros(k, dtype=np.int64) if self.cand_png is None else self.cand_png
        self.cand_unc = np.zeros(k, dtype=np.int64) if self.cand_unc is None else self.cand_unc
        self.unc_weight = np.zeros(k, dtype=np.int64) if self.unc_weight is None else self.unc_weight

    def update(self, rs: _BlockRows) -> JointCounts:
        if self.with_trend:
            rs.entropy_wanted = True  # from the joint pass's transposed chunks, if it has not run yet
        self.joint += rs.joint
        # rs.tallies columns, all disagreeing rows: on C's diagonal, off it, not counted in C
        self.cand_png += rs.tallies.sum(axis=1)
        self.cand_cl += rs.tallies[:, 1]
        self.cand_unc += rs.tallies[:, 2]
        self.unc_weight += rs.unc_weight
        if self.with_trend:
            self.trend += rs.trend
        if self.margins is not None:
            self.margins.update(*_disagreeing_margins(rs))
        return self

    def merge(self, other: JointCounts) -> JointCounts:
        self.joint += other.joint
        self.cand_cl += other.cand_cl
        self.cand_png += other.cand_png
        self.cand_unc += other.cand_unc
        self.unc_weight += other.unc_weight
        self.trend += other.trend
        if self.margins is not None and other.margins is not None:
            self.margins.merge(other.margins)
        return self


#: The margin histogram (:func:`margin_histogram`) holds at most this many counters (K x K cells x bins: 1 MB, which
#: Dask ships back from every piece).
MARGIN_HISTOGRAM_COUNTERS = 1 << 17
#: Fewer bins a cell than this would bound its cut too loosely to pay for counting them (from ~45 classes on).
MARGIN_HISTOGRAM_MIN_BINS = 64


def margin_histogram(n_classes: int) -> GroupHistogram | None:
    """An empty histogram of the disagreeing rows' margins ``p_ij - p_ic`` over ``[-1, 1)``, one group per cell
    ``(c, j)`` (``c * K + j``), with as many bins as fit :data:`MARGIN_HISTOGRAM_COUNTERS`; ``None`` when fewer
    than :data:`MARGIN_HISTOGRAM_MIN_BINS` fit (K > 45).

    Out of core, the joint pass counts them; once the joint gives each PBNR cell its count, the histogram
    bounds the cell's cut (:meth:`GroupHistogram.bounds`), and the cuts pass drops at once the margins that
    cannot reach it instead of keeping and compacting them in each lane (4M x 10: ~3.7M values kept along
    the way -> about the 0.5M it selects).
    """
    cells = n_classes * n_classes
    bins = 1 << max(int(MARGIN_HISTOGRAM_COUNTERS // max(cells, 1)).bit_length() - 1, 0)
    return GroupHistogram(cells, bins) if bins >= MARGIN_HISTOGRAM_MIN_BINS else None


def _disagreeing_margins(rs: _BlockRows) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, margins)``: each disagreeing row's margins ``p_ij - p_ic`` over every column ``j`` (``c`` its
    label), computed as the cuts pass computes them (in the probabilities' type), and their cells ``c * K + j``."""
    rows, _ = rs.disagreeing_groups
    k = rs.k
    margins = np.take(rs.probs, rows, axis=0)
    labels = rs.labels[rows].astype(np.int64)
    margins -= margins[np.arange(rows.size), labels][:, None]
    return labels[:, None] * k + np.arange(k), margins


class JointStep(Step):
    """Pass 2: the confident joint and candidate counts, given the thresholds (and the trend sums on request)."""

    name = "confident joint"

    def __init__(self, thresholds: np.ndarray, trend: bool = False, margins: bool = False) -> None:
        self.thresholds = thresholds
        self.trend = bool(trend)
        self.margins = bool(margins)

    def start(self) -> JointCounts:
        k = self.thresholds.size
        return JointCounts(k, with_trend=self.trend, margins=margin_histogram(k) if self.margins else None)

    def feed(self, partial: JointCounts, block: Block) -> JointCounts:
        return partial.update(_block_rows(block, self.thresholds))


@dataclass
class Estimates:
    """Dataset-level figures after the statistics passes."""

    class_counts: np.ndarray
    thresholds: np.ndarray
    joint: np.ndarray
    cand_cl: np.ndarray
    cand_png: np.ndarray
    cand_unc: np.ndarray
    unc_weight: np.ndarray = None  # type: ignore[assignment]
    #: the dispute-margin trend sums (:func:`trend_sums`); None when the plan did not need them
    trend: np.ndarray | None = None
    #: several models: the ``T`` of the member fitting the given labels best (:data:`NUM_ISSUES_FLOOR_META`)
    num_issues_floor: int = 0

    def __post_init__(self) -> None:
        if self.unc_weight is None:
            self.unc_weight = np.zeros(self.class_counts.size, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Dask ships the rule to its workers) without the side thread's future, drawn again if asked."""
        state = dict(self.__dict__)
        state.pop("noise_rate_draws", None)
        return state

    @cached_property
    def noise_rate_draws(self) -> Future[tuple[np.ndarray, float]]:
        """:func:`~labelqa.stats.noise_interval.bootstrap_noise_rates` of the joint (seed 0), drawn on a side
        thread from the first access: ~60 ms at K = 1,000, which the draws spend without the GIL."""
        return beside(bootstrap_noise_rates, self.joint, self.class_counts, name="labelqa-bootstrap")

    @property
    def n_classes(self) -> int:
        return int(self.class_counts.size)

    @cached_property
    def calibrated(self) -> np.ndarray:
        return calibrate_confident_joint(self.joint, self.class_counts)

    @property
    def estimated_num_issues(self) -> int:
        """Rows off the diagonal of ``C`` whose prediction also disagrees with the label."""
        return int(self.cand_cl.sum())

    @property
    def disputed_bounds(self) -> tuple[int, int]:
        """``(A, A + U)``: rows the model disputes confidently (``A``), and all it disputes.

        ``A`` = :attr:`estimated_num_issues` (off the diagonal of ``C`` and
        disagreeing); ``U`` = rows that disagree with their label but that no
        class's threshold claims (not counted in ``C``). The number of
        disputed rows whose label is wrong lies between the two.
        """
        a = self.estimated_num_issues
        return a, a + int(self.cand_unc.sum())

    @property
    def midpoint_num_issues(self) -> int:
        """``A + U/2`` (half up): each uncertain dispute counted as half an error (docs/detection.md)."""
        low, high = self.disputed_bounds
        return (low + high + 1) // 2

    @property
    def weighted_disputes(self) -> float:
        """``W = sum over U of (m_i - s_i) / (m_i + s_i)``: each uncertain dispute weighted by its margin.

        ``s_i`` = ``p_{i,s_i}``, ``m_i`` = the largest other probability; the
        weight is the share of the pair's mass by which the model prefers
        the other class (0 for a tie, 1 when ``s_i = 0``). Exact: the weights
        are summed in fixed point (docs/detection.md).
        """
        return int(self.unc_weight.sum()) / PROB_SCALE

    @property
    def trend_issues(self) -> float:
        """``R``: the dispute-margin trend of the counted rows extrapolated to the uncounted ones (:func:`trend_count`)."""
        if self.trend is None:
            raise LabelqaError("the trend sums were not computed (only prune_by_noise_rate_plus needs them)")
        return trend_count(self.trend)

    @property
    def plus_num_issues(self) -> int:
        """``T = A + min(W, R)`` (half up): the confident disputes plus the expected errors among the uncertain rows.

        ``W`` (:attr:`weighted_disputes`) bounds what the uncertain disputes
        can hold by the model's own margins; ``R`` (:attr:`trend_issues`)
        estimates it from how the confident rows' disputes grow with the
        model's uncertainty (docs/detection.md). With several models, at
        least :attr:`num_issues_floor` (docs/multimodel.md).
        """
        own = self.estimated_num_issues + int(math.floor(min(self.weighted_disputes, self.trend_issues) + 0.5))
        return max(own, int(self.num_issues_floor))

    def caps(self, min_examples: int) -> np.ndarray:
        """Most rows of each class that may be flagged, keeping ``min_examples`` unflagged."""
        return np.maximum(self.class_counts - min_examples, 0)


#: Number of fixed-point sums of the dispute-margin trend: over the rows counted in ``C`` ``n, Sx, Sy, Sxx, Sxy``,
#: over the rows not counted ``n, Sx`` (x = normalized entropy, y = dispute margin; :func:`trend_sums`).
TREND_SUMS = 7
#: Fixed-point unit of the trend's x and y (2**-16): products stay below 2**32, so int64 sums of up to
#: 2**31 rows are exact, whatever the batching.
TREND_SCALE = 1 << 16
#: Rows whose trend sums are exact float64 sums (x * x and x * y below 2**32 + 1: partial sums below 2**53).
_TREND_SUM_ROWS = 1 << 20
#: Bytes a gather from memory reads per value: a cache line (:meth:`FlagRule._margins`).
_CACHE_LINE = 64
#: Average rows a class from which per-class work on a block runs on threads (:func:`_classes_in_parallel`).
_CLASS_TASK_ROWS = 2048


def trend_sums(probs: np.ndarray, self_conf: np.ndarray, max_prob: np.ndarray, disputed: np.ndarray,
               counted: np.ndarray, entropy: np.ndarray | None = None) -> np.ndarray:
    """The trend's :data:`TREND_SUMS` integer sums over one chunk of rows.

    ``x_i`` = the normalized entropy ``H(p_i) / ln K`` and ``y_i`` = the
    dispute margin ``(m_i - s_i) / (m_i + s_i)`` of a disputed row (0 for the
    others), both rounded to multiples of ``1 / TREND_SCALE``; ``counted``:
    the rows the confident joint counts (some class reaches its threshold).
    The entropy is summed class by class in the probabilities' dtype
    (:func:`~labelqa.stats.confident.row_entropy`, or ``entropy`` when the
    caller has it), or along each row from :data:`~labelqa.stats.confident.ROWWISE_ENTROPY_K` classes
    (:func:`~labelqa.stats.confident.trend_entropy`): either way each row's value does not depend on
    the chunk. The margins are computed for the disputed rows only (the
    others' are 0), and the sums of each :data:`_TREND_SUM_ROWS` rows are
    float64 sums of whole numbers below 2**53: exact, whatever the order of
    the additions.
    """
    n, k = probs.shape
    out = np.zeros(TREND_SUMS, dtype=np.int64)
    if n == 0:
        return out
    if k > 1 and entropy is None:
        entropy = trend_entropy(probs if probs.dtype.kind == "f" else probs.astype(np.float64))
    log_k = math.log(k) if k > 1 else 1.0
    dis = np.flatnonzero(disputed)
    margin = dispute_weight_values(self_conf[dis], max_prob[dis], TREND_SCALE)
    margin_counted = np.asarray(counted, dtype=bool)[dis]
    totals = [0] * TREND_SUMS
    for start in range(0, n, _TREND_SUM_ROWS):
        stop = min(start + _TREND_SUM_ROWS, n)
        if k > 1:  # whole numbers <= 2**16 (the same operations as rint(clip(e / log K, 0, 1) * scale), in place)
            x = entropy[start:stop].astype(np.float64)
            x /= log_k
            np.clip(x, 0.0, 1.0, out=x)
            x *= TREND_SCALE
            np.rint(x, out=x)
        else:
            x = np.zeros(stop - start)
        here = np.asarray(counted[start:stop], dtype=bool)
        xc = x * here  # the counted rows' x, 0 elsewhere: the same exact sums as x[here], without a compress
        a, b = np.searchsorted(dis, (start, stop))
        on = margin_counted[a:b]
        y = margin[a:b][on]
        xc_sum = float(xc.sum())
        xy = x[dis[a:b][on] - start]
        xy *= y
        xc *= xc
        # (not np.dot: BLAS starts its own threads for every small vector, and these run on threads already)
        for i, value in enumerate((np.count_nonzero(here), xc_sum, y.sum(), xc.sum(), xy.sum(),
                                   here.size - np.count_nonzero(here), float(x.sum()) - xc_sum)):
            totals[i] += int(value)
    out[:] = totals
    return out


def trend_count(sums: np.ndarray) -> float:
    """``R = a n_u + b Sx_u``, clipped to ``[0, n_u]``: the least-squares line ``y = a + b x`` of the counted rows,
    summed over the uncounted rows (see :func:`trend_sums`; docs/detection.md).

    With fewer than two distinct ``x`` among the counted rows the line is
    flat (``b = 0``, ``a`` their mean ``y``); with no counted row, 0.
    """
    n, sx, sy, sxx, sxy, nu, sxu = (int(v) for v in sums)
    if n == 0 or nu == 0:
        return 0.0
    scale = float(TREND_SCALE)
    den = n * sxx - sx * sx  # exact integers
    b = (n * sxy - sx * sy) / den if den > 0 else 0.0  # slope: y units per x unit, both in TREND_SCALE
    a = (sy - b * sx) / n / scale  # intercept in y = 1 units
    r = a * nu + b * sxu / scale
    return float(min(max(r, 0.0), float(nu)))


def dispute_weights(self_conf: np.ndarray, max_prob: np.ndarray, scale: float = PROB_SCALE) -> np.ndarray:
    """``(m - s) / (m + s)`` of disputed rows in fixed point (int64, ``scale`` = 1), computed in float64."""
    return dispute_weight_values(self_conf, max_prob, scale).astype(np.int64)


def dispute_weight_values(self_conf: np.ndarray, max_prob: np.ndarray, scale: float = PROB_SCALE) -> np.ndarray:
    """:func:`dispute_weights` as float64 whole numbers (for float sums, which are exact below 2**53).

    In place on one float64 array; the masked division only when some ``m + s`` is not positive (disputed
    rows have ``m > s >= 0``, so usually none is): the same values, several passes fewer.
    """
    s = np.asarray(self_conf, dtype=np.float64)
    w = np.array(max_prob, dtype=np.float64)  # a copy: m, then m - s, then the weight
    total = w + s
    w -= s
    if total.size and total.min() > 0:
        w /= total
    else:  # (NaN fails both tests: masked, 0, as before)
        w = np.divide(w, total, out=np.zeros_like(total), where=total > 0)
    np.clip(w, 0.0, 1.0, out=w)
    w *= scale
    return np.rint(w, out=w)


def noise_cells(est: Estimates, frac: float, ntr: np.ndarray | None, min_examples: int) -> np.ndarray:
    """How many rows to flag per cell (given ``k``, true ``j != k``); diagonal 0.

    From ``C_cal`` (integers):

    - ``num_to_remove_per_class`` given: row ``k``'s off-diagonal is split in
      proportion to ``C_cal``'s to sum to ``min(ntr[k], cap_k)`` (rounded with
      :func:`~labelqa.stats.confident.round_rows`).
    - otherwise cleanlab 2.9's count matrix, implemented from its
      description: where ``C_cal[k, k] < min_examples`` the diagonal is raised
      to ``min_examples`` and every entry of the row is lowered by the raise
      divided by ``max(nonzero entries of the row - 1, 1)`` (entries stop at
      0); then the off-diagonal cells are multiplied by ``frac_noise`` and
      truncated to integers (so ``frac_noise < 1`` rounds every cell down).
      With ``frac_noise = 1`` and no raise the cells are ``C_cal``'s.

    The selection still keeps ``min_examples`` rows of every class unflagged
    (:meth:`Estimates.caps`), whatever the cells say.
    """
    cal = est.calibrated.astype(np.float64)
    if ntr is not None:
        off = cal.copy()
        np.fill_diagonal(off, 0.0)
        return scale_rows_to(off, np.minimum(ntr, est.caps(min_examples).astype(np.float64)))
    cells = (_guarded_joint(est, min_examples) * frac).astype(np.int64)  # truncation, on cleanlab's floats
    np.fill_diagonal(cells, 0)
    return cells


def _guarded_joint(est: Estimates, min_examples: int) -> np.ndarray:
    """``C_cal`` (float) with diagonals below ``min_examples`` raised to it, the raise taken from the row."""
    cal = est.calibrated.astype(np.float64)
    diag = np.diagonal(cal).copy()
    raise_by = np.maximum(diag, min_examples) - diag
    if (raise_by > 0).any():
        per_entry = raise_by / np.maximum(np.count_nonzero(cal, axis=1) - 1.0, 1.0)
        cal = np.maximum(cal - per_entry[:, None], 0.0)
        np.fill_diagonal(cal, diag + raise_by)
    return cal


def prune_by_class_counts(est: Estimates, frac: float, min_examples: int) -> np.ndarray:
    """Rows ``prune_by_class`` flags per class: ``n_k`` minus the kept diagonal, as in cleanlab 2.9.

    The kept diagonal is the guarded ``C_cal[k, k]`` plus what ``frac_noise``
    takes off the row's off-diagonal cells, truncated to an integer. (With
    ``frac_noise < 1`` this is up to K-1 more than the sum of the truncated
    cells that ``prune_by_noise_rate`` uses, since every cell is rounded down
    separately there.)
    """
    guarded = _guarded_joint(est, min_examples)
    off = guarded.copy()
    np.fill_diagonal(off, 0.0)
    kept = (np.diagonal(guarded) + (off - off * frac).sum(axis=1)).astype(np.int64)
    return np.maximum(est.class_counts - kept, 0)


# --------------------------------------------------------------------------- selection
class FlagRule:
    """The ``filter_by`` rule for one dataset: what to select, the selections' results, and flags for any block.

    Built from the :class:`Estimates`; :meth:`stages` yields the selection
    steps (usually one; PBNR may need one more for cells that the rows which
    disagree with their label cannot settle and one counting pass for ties
    against the ``min_examples`` cap; the ``low_*`` methods one more for a
    global cut); then :meth:`flags` gives any block's flags.
    """

    def __init__(self, est: Estimates, method: str, frac: float, ntr: np.ndarray | None, min_examples: int,
                 dtype: np.dtype) -> None:
        self.est = est
        self.method = method
        self.frac = float(frac)
        self.ntr = ntr
        self.min_ex = int(min_examples)
        self.caps = est.caps(self.min_ex)
        self.n_k = est.class_counts
        self.dtype = np.dtype(dtype)
        self.token = uuid.uuid4().hex  # names this rule's per-block work in block caches
        self.cuts: dict[tuple, Cut] = {}
        k = est.n_classes
        self.allow_ties = np.ones(k, dtype=bool)
        self.eligible_cut: Cut | None = None
        self.cells = np.zeros((k, k), dtype=np.int64)
        self.resolved = np.zeros((k, k), dtype=bool)  # PBNR cells settled among the disagreeing rows
        self.cell_cut = np.zeros((k, k), dtype=self.dtype)
        self.selected = np.zeros((k, k), dtype=np.int64)  # PBNR rows at or beyond each resolved cell's cut
        self.need_count = np.zeros(k, dtype=bool)
        self.total = 0
        self.plus_extra = 0  # PLUS_METHOD: rows to add to prune_by_noise_rate's
        self.plus_cut: Cut | None = None
        self.plus_counts: dict[str, np.ndarray] = {}
        #: prune_by_noise_rate's rows by global position (sorted), once the cuts pass settled them (see _settle)
        self.pbnr_positions: np.ndarray | None = None
        self.plus_settled = False  # PLUS_METHOD: the extra rows' cut is known
        #: every flagged row by global position (sorted), when the selections named them all: flags by lookup
        self.flag_positions: np.ndarray | None = None
        #: ``(score_method, adjust)`` of the row rule: the cuts pass then also gathers every row's score (see
        #: GatheredRows), and ``named`` holds what the driver's ranks pass would count when the rows were named
        self.scoring: tuple[str, bool] | None = None
        self.named: NamedRows | None = None
        self.name_pbnr_rows = False
        #: the joint pass's histogram of the disagreeing rows' margins (out of core): bounds the PBNR cuts
        self.margin_counts: GroupHistogram | None = None

    # ---- planning ------------------------------------------------------------
    def _pick(self, count: int, n: int, largest: bool = False, dtype: np.dtype | None = None) -> Pick:
        return Pick(int(count), int(n), largest=largest, dtype=dtype or self.dtype)

    @property
    def _low(self) -> bool:
        return self.method in _LOW_METHODS

    def _low_total(self) -> int:
        """Rows the global ``low_*`` cut flags: ``frac`` of the method's estimated number of issues."""
        est = self.est
        count = est.midpoint_num_issues if self.method == MIDPOINT_METHOD else est.estimated_num_issues
        return int(np.rint(self.frac * count))

    def _low_dtype(self) -> np.dtype:
        return self.dtype if self.method == "low_self_confidence" else np.dtype(np.float64)

    @property
    def _pbnr(self) -> bool:
        return self.method in _PBNR_METHODS

    @property
    def _names_rows(self) -> bool:
        """Whether the cuts pass keeps each PBNR candidate's position (flags by position): PLUS_METHOD (its own
        passes fold into the cuts pass), and PBNR when later passes read the data again (``name_pbnr_rows``;
        in memory the margins' masks cost less than the positions)."""
        return self.method == PLUS_METHOD or (self.method == "prune_by_noise_rate" and self.name_pbnr_rows)

    @property
    def _plus_target(self) -> int:
        """PLUS_METHOD's ``T`` rows to flag in all, ``frac_noise`` applied."""
        return int(np.rint(self.frac * self.est.plus_num_issues))

    def stages(self) -> Iterator[tuple[str, Selections]]:
        """The selection stages, in order; each is fed every block, then :meth:`finish` ed."""
        m, est = self.method, self.est
        first = Selections()
        if m in ("prune_by_class", "both"):
            totals = (np.minimum(self.ntr, self.caps) if self.ntr is not None
                      else prune_by_class_counts(est, self.frac, self.min_ex))
            for c in np.flatnonzero(totals > 0):
                first.picks[("pbc", int(c))] = self._pick(totals[c], self.n_k[c])
        if self._pbnr:
            self.cells = noise_cells(est, self.frac, self.ntr, self.min_ex)
            # positions as int32 while they fit (4 bytes a kept value less)
            ids_dtype = np.int32 if int(est.class_counts.sum()) < 2**31 - 1 else np.int64
            if self.cells.any():
                top = first.tops["pbnr"] = GroupedTop(self.cells.ravel(), largest=True, dtype=self.dtype,
                                                      ids=self._names_rows, ids_dtype=ids_dtype)
                if self.margin_counts is not None:  # the cuts pass drops what the histogram rules out
                    top.bound(*self.margin_counts.bounds(self.cells.ravel(), largest=True))
            self.margin_counts = None  # read once: the rule travels to Dask's workers without it
            if m == PLUS_METHOD and self.ntr is None and self._plus_target > 0:
                # The T lowest self-confidences of the disputed rows, by position: the extra rows' cut lies among
                # them (see _settle), so the plus count and plus passes are not needed.
                first.tops["plus candidates"] = GroupedTop(np.array([self._plus_target]), dtype=self.dtype, ids=True,
                                                           ids_dtype=ids_dtype)
            if self._names_rows and self.scoring is not None:
                first.gathered["rows"] = GatheredRows()
        if m in ("confident_learning", "predicted_neq_given"):
            counts = est.cand_cl if m == "confident_learning" else est.cand_png
            totals = self.ntr if self.ntr is not None else np.rint(self.frac * counts).astype(np.int64)
            self.limits = np.minimum(totals, self.caps)
            for c in np.flatnonzero(counts > self.limits):
                first.picks[("lim", int(c))] = self._pick(self.limits[c], counts[c])
        if self._low:
            if self.ntr is not None:
                for c in np.flatnonzero(np.minimum(self.ntr, self.caps) > 0):
                    first.picks[("low", int(c))] = self._pick(min(self.ntr[c], self.caps[c]), self.n_k[c],
                                                              dtype=self._low_dtype())
            else:
                self.total = self._low_total()
                if self.total > 0:
                    for c in np.flatnonzero(self.caps < self.n_k):
                        first.picks[("elig", int(c))] = self._pick(self.caps[c], self.n_k[c], dtype=self._low_dtype())
        if first:
            yield "cuts", first
        if self._pbnr and self.pbnr_positions is None:
            full = Selections()
            for c, j in zip(*np.nonzero((self.cells > 0) & ~self.resolved)):
                full.picks[("pbnr", int(c), int(j))] = self._pick(self.cells[c, j], self.n_k[c], largest=True)
            if full.picks:
                yield "pbnr cells", full
            need = self._need_count()
            if need.any():
                self.need_count = need
                yield "pbnr ties", Selections(counts={"union": np.zeros(est.n_classes, dtype=np.int64)})
        if m == PLUS_METHOD and self.ntr is None and not self.plus_settled:
            yield from self._plus_stages()
        if self._low and self.ntr is None and self.total > 0:
            n_elig = 0
            for c in range(est.n_classes):
                cut = self.cuts.get(("elig", c))
                n_elig += int(self.n_k[c]) if cut is None else cut.selected
            yield "global", Selections({("global",): self._pick(self.total, n_elig, dtype=self._low_dtype())})

    def _plus_stages(self) -> Iterator[tuple[str, Selections]]:
        """PLUS_METHOD after PBNR: count its flags and the other disputed rows, cap per class, one global cut."""
        k = self.est.n_classes
        zeros = np.zeros(k, dtype=np.int64)
        if not self.plus_counts:  # known already when the cuts pass named prune_by_noise_rate's rows
            yield "plus count", Selections(counts={"pbnr": zeros.copy(), "other": zeros.copy()})
        flagged, other = self.plus_counts["pbnr"], self.plus_counts["other"]
        self.plus_extra = max(self._plus_target - int(flagged.sum()), 0)
        if self.plus_extra == 0 or not other.any():
            return
        room = np.maximum(self.caps - flagged, 0)  # keep min_examples_per_class rows of every class unflagged
        capped = Selections()
        for c in np.flatnonzero(other > room):
            capped.picks[("plus cap", int(c))] = self._pick(room[c], other[c])
        n_other = int(np.minimum(other, room).sum())
        if capped.picks:
            yield "plus caps", capped
            n_other = sum(int(other[c]) if ("plus cap", c) not in self.cuts else self.cuts[("plus cap", c)].selected
                          for c in range(k))
        if n_other:
            yield "plus", Selections({("plus",): self._pick(self.plus_extra, n_other)})

    def _plus_other(self, rs: _BlockRows) -> np.ndarray:
        """Disputed rows that ``prune_by_noise_rate`` did not flag, within each class's cap."""
        other = ~rs.agrees & ~self._pbnr_mask(rs)
        for key, cut in self.cuts.items():
            if key[0] == "plus cap":
                rows = rs.class_rows(key[1])
                rows = rows[other[rows]]
                other[rows] = cut.select(rs.self_conf[rows])
        return other

    def _settle(self, acc: Selections) -> None:
        """After the cuts pass: name prune_by_noise_rate's rows, and for PLUS_METHOD settle the extra rows.

        When every PBNR cell was settled among the rows that disagree with
        their label and no class's cap can bind (no tie count needed), the
        flagged rows are those the cells' tops kept (ids: positions, negative
        for a row whose prediction agrees with its label within the
        tolerance, which is never flagged). Then PLUS_METHOD's counts need no
        pass, and, when no class's cap binds, its extra rows are the lowest
        self-confidences among the other disputed rows: fewer than ``T``
        disputed rows score below their cut (the PBNR rows plus fewer than
        the ``T - flagged`` extra ones), so the ``T`` lowest, kept with their
        positions, hold it and all its ties. Otherwise the remaining passes
        run as before (same results).
        """
        k, est = self.est.n_classes, self.est
        if self.cells.any():
            if not (self.resolved | (self.cells == 0)).all() or self._need_count().any():
                return
            groups, _, ids = acc.tops["pbnr"].kept()
            positions, classes = _named_rows(groups, ids, k)
        else:
            positions, classes = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self.pbnr_positions = positions
        if self.method != PLUS_METHOD or self.ntr is not None:
            self.flag_positions = positions
            return
        flagged = np.bincount(classes, minlength=k).astype(np.int64)
        other = est.cand_png - flagged  # disputed rows prune_by_noise_rate left
        self.plus_counts = {"pbnr": flagged, "other": other}
        self.plus_extra = max(self._plus_target - int(flagged.sum()), 0)
        if self.plus_extra == 0 or not other.any():
            self.plus_settled = True
            self.flag_positions = positions
            return
        if (other > np.maximum(self.caps - flagged, 0)).any() or "plus candidates" not in acc.tops:
            return  # a class's cap binds: the plus caps and plus passes decide
        n_other = int(other.sum())
        _, values, ids = acc.tops["plus candidates"].kept()
        others = ~_in_sorted(ids, positions)
        values, ids = values[others], ids[others]
        if self.plus_extra >= n_other or ids.size < self.plus_extra:
            return  # every other disputed row (T = all disputes), or not held (a cap binds): the plus pass decides
        cut = np.partition(values, self.plus_extra - 1)[self.plus_extra - 1]
        picked = values <= cut
        self.plus_cut = Cut("ties", cut, False, int(np.count_nonzero(picked)))  # what Pick.cut gives
        self.flag_positions = _sorted_positions(np.concatenate([positions, ids[picked]]))  # disjoint: no repeats
        self.plus_settled = True

    def _need_count(self) -> np.ndarray:
        """Classes whose PBNR selections might together exceed the cap (then ties are counted)."""
        k = self.est.n_classes
        need = np.zeros(k, dtype=bool)
        for c in np.flatnonzero(self.cells.sum(axis=1) > 0):
            selected = int(self.selected[c][self.resolved[c]].sum())
            every = False
            for j in np.flatnonzero((self.cells[c] > 0) & ~self.resolved[c]):
                cut = self.cuts[("pbnr", int(c), int(j))]
                every |= cut.mode == "all"
                selected += cut.selected
            if not every and selected > self.caps[c]:
                need[c] = True
        return need

    def finish(self, stage: str, acc: Selections) -> None:
        """Record a fed stage's results."""
        if stage in ("cuts", "pbnr cells"):
            for key, p in acc.picks.items():
                limit = None if key[0] == "pbnr" else int(self.caps[key[1]])
                self.cuts[key] = p.cut(limit)
            if "pbnr" in acc.tops:
                k = self.est.n_classes
                complete, cut, strict, equal = acc.tops["pbnr"].cuts()
                self.resolved = (complete & (cut > 0)).reshape(k, k)
                self.cell_cut = cut.astype(self.dtype).reshape(k, k)
                self.selected = (strict + equal).reshape(k, k)
            if stage == "cuts" and self._names_rows:
                self._settle(acc)
                acc.tops.clear()  # read: free their values before the gathered rows are joined
                if self.flag_positions is not None and "rows" in acc.gathered:
                    self.named = acc.gathered["rows"].named(self.flag_positions, self.est.class_counts)
                acc.gathered.clear()
        elif stage == "pbnr ties":
            self.allow_ties = ~(self.need_count & (acc.counts["union"] > self.caps))
        elif stage == "global":
            self.eligible_cut = acc.picks[("global",)].cut(None)
        elif stage == "plus count":
            self.plus_counts = {key: c.copy() for key, c in acc.counts.items()}
        elif stage == "plus caps":
            for key, p in acc.picks.items():
                self.cuts[key] = p.cut(p.count)  # never more than the class's room
        elif stage == "plus":
            self.plus_cut = acc.picks[("plus",)].cut(None)

    # ---- feeding -------------------------------------------------------------
    def _low_scores(self, rs: _BlockRows) -> np.ndarray:
        return rs.self_conf if self.method == "low_self_confidence" else rs.normalized_margin

    def feed(self, stage: str, acc: Selections, block: Block) -> None:
        """Fold one block into a stage's selections."""
        rs = _block_rows(block, self.est.thresholds)
        if stage in ("cuts", "pbnr cells"):
            low = self._low_scores(rs) if self._low else None
            cand = None
            for key, p in acc.picks.items():
                kind, c = key[0], key[1]
                rows = rs.class_rows(c)
                if kind == "pbc":
                    p.update(rs.self_conf[rows])
                elif kind == "pbnr":
                    j = key[2]
                    p.update(rs.probs[rows, j] - rs.probs[rows, c])
                elif kind == "lim":
                    if cand is None:
                        cand = rs.candidates(self.method)
                    p.update(rs.self_conf[rows[cand[rows]]])
                else:  # "low" / "elig"
                    p.update(low[rows])  # type: ignore[index]
            if "pbnr" in acc.tops:
                self._feed_margins(acc.tops["pbnr"], rs)
            if "rows" in acc.gathered:
                acc.gathered["rows"].add(rs, _scores(rs.labels, rs.probs, self.scoring[0], adjust=self.scoring[1],  # type: ignore[index]
                                                     thresholds=self.est.thresholds, self_conf=rs.self_conf))
            if "plus candidates" in acc.tops:
                disputed = np.flatnonzero(~rs.agrees)
                top = acc.tops["plus candidates"]
                ids = disputed.astype(top.ids_dtype)  # positions fit: the dtype was chosen for the dataset's rows
                ids += rs.offset
                top.update(np.zeros(disputed.size, dtype=np.uint8), rs.self_conf[disputed], ids)
        elif stage == "pbnr ties":
            for c in np.flatnonzero(self.need_count):
                _, strict, tied = self._pbnr_class(rs, int(c))
                acc.counts["union"][c] += int(np.count_nonzero(strict | tied))
        elif stage == "global":
            elig = self._eligible(rs)
            acc.picks[("global",)].update(self._low_scores(rs)[elig])
        elif stage == "plus count":
            pbnr = self._pbnr_mask(rs)
            acc.counts["pbnr"] += np.bincount(rs.labels[pbnr], minlength=rs.k)
            acc.counts["other"] += np.bincount(rs.labels[~rs.agrees & ~pbnr], minlength=rs.k)
        elif stage == "plus caps":
            other = ~rs.agrees & ~self._pbnr_mask(rs)
            for key, p in acc.picks.items():
                rows = rs.class_rows(key[1])
                p.update(rs.self_conf[rows[other[rows]]])
        elif stage == "plus":
            other = self._plus_other(rs)
            acc.picks[("plus",)].update(rs.self_conf[other])

    def _pbnr_classes(self) -> np.ndarray:
        return np.flatnonzero(self.cells.sum(axis=1) > 0)

    def _feed_margins(self, top: GroupedTop, rs: _BlockRows) -> None:
        """PBNR cuts among the rows whose argmax is not their label, vectorised over each class's cells.

        A row whose argmax is its label has every margin ``p_ij - p_ik <= 0``.
        So when a cell's c-th largest margin among the other rows is > 0, the
        top c of the whole class are among them, ties included: only those
        (usually a small share of the class) are ranked; the other cells get
        a pass over all their rows (:meth:`finish` decides).
        """
        k = rs.k

        def reduce(c: int) -> tuple[Any, ...]:
            cells = c * k + np.flatnonzero(self.cells[c])
            margins = self._margins(rs, c)
            if not top.ids:
                return cells, margins.shape[1], *top.reduce_rows(cells, margins)
            rows, values, cols = top.reduce_rows(cells, margins, columns=True)
            at = rs.disagreeing_rows(c)[cols]
            ids = at + rs.offset
            return cells, margins.shape[1], rows, values, np.where(rs.agrees[at], -ids - 1, ids)

        rs.disagreeing_groups  # noqa: B018 - computed here, not raced for by the threads below
        if self._gathers_all(rs):  # every class's margins at once: a few padded reductions instead of one a class
            for got in _reduce_gathered(top, rs, self._margin_slabs(rs)):
                top.add_reduced(*got)
            return
        if not self._names_rows:
            self._margin_slabs(rs)  # likewise
        classes = self._pbnr_classes()
        for got in thread_map(reduce, classes, parallel=_classes_in_parallel(rs, classes.size)):
            top.add_reduced(*got)

    def _margin_slabs(self, rs: _BlockRows) -> _Slabs:
        """Per class with cells, the ``(J, m)`` array its kept margins are written to, all from one allocation.

        The kept margins (8.6 MB at 1M x 10) in one piece of 4 MiB or more, for which numpy asks for
        transparent huge pages: a first call takes a few dozen page faults for them instead of ~2,000.
        The returned :class:`_Slabs` are ``filled`` when every class's margins were gathered into them at
        once (many classes with few cells each: :func:`_gather_margins`); else :meth:`_margins` fills a
        class's slab when first asked.
        """
        def build() -> _Slabs:
            _, starts = rs.disagreeing_groups
            classes = self._pbnr_classes()
            layout = _SlabLayout.of(classes, self.cells[classes] > 0, starts)
            buffer = np.empty(int(layout.offsets[-1]), dtype=rs.probs.dtype)
            slabs = {c: buffer[a:b].reshape(j, m) for c, a, b, j, m in zip(
                classes.tolist(), layout.offsets[:-1].tolist(), layout.offsets[1:].tolist(),
                layout.n_cells.tolist(), layout.rows_per_class.tolist())}
            filled = self._gathers_all(rs)
            if filled:
                _gather_margins(rs, layout, buffer)
            return _Slabs(slabs, filled, layout, buffer)

        return rs_cache(rs, (self.token, "pbnr margin slabs"), build)

    def _gathers_all(self, rs: _BlockRows) -> bool:
        """Whether every class's margins are gathered at once (:func:`_gather_margins`): many classes with
        PBNR cells, each with few of many columns. They are then kept for the block, also when the flags go
        by position (a share of the block's rows times a few cells)."""
        def build() -> bool:
            classes = self._pbnr_classes()
            most = int(np.count_nonzero(self.cells[classes], axis=1).max(initial=0))
            return classes.size >= _GATHERED_SLAB_CLASSES and _gathers_cells(rs.probs, most)

        return rs_cache(rs, (self.token, "pbnr margins gathered"), build)

    def _margins(self, rs: _BlockRows, c: int) -> np.ndarray:
        """``(J, m)`` margins ``p_ij - p_ic`` of class ``c``'s ``m`` disagreeing rows, for its cells' columns ``j``.

        Kept on the block's row state: in memory the selection stage and the
        flags share them.
        """
        def build(margins: np.ndarray | None = None) -> np.ndarray:
            sub = rs.disagreeing_rows(c)
            cols = np.flatnonzero(self.cells[c])
            probs = rs.probs
            if margins is None:
                margins = np.empty((cols.size, sub.size), dtype=probs.dtype)
            k = probs.shape[1]
            if _gathers_cells(probs, cols.size):
                # few of many columns (K = 1,000: a class's cells are a few dozen): gather just those cells, a
                # cache line each, instead of copying the rows whole (200k x 1,000: ~0.12 s of CPU -> ~0.01 s)
                flat = probs.reshape(-1)
                base = sub.astype(np.int64) * k
                np.take(flat, base[None, :] + cols[:, None], out=margins)
                margins -= flat.take(base + c)
                return margins
            rows = np.take(probs, sub, axis=0)
            if cols.size > SMALL_K:  # many cells: one transposed copy of the rows, one vectorised subtraction
                values = np.ascontiguousarray(rows.T)
                np.take(values, cols, axis=0, out=margins)  # contiguous per column j
                margins -= values[c]
                return margins
            # few cells: each cell's column minus the label's straight into its row of margins, no transposed
            # copy of the rows (1M x 10: ~18% less time here)
            own = rows[:, c].copy()
            for i, j in enumerate(cols):
                np.subtract(rows[:, j], own, out=margins[i])
            return margins

        if self._names_rows and not self._gathers_all(rs):  # flags by position: needed in the cuts pass only
            return build()
        slabs = self._margin_slabs(rs)
        if slabs.filled:  # every class's margins gathered at once already
            return slabs.by_class[c]
        return rs_cache(rs, (self.token, "pbnr margins", c), lambda: build(slabs.by_class.get(c)))

    # ---- flags -----------------------------------------------------------------
    def _pbnr_class(self, rs: _BlockRows, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, strict, tied)``: rows of class ``c`` beyond (strict) and at (tied) one of its PBNR cuts.

        ``rows`` are the class's disagreeing rows when every cell of the
        class was settled among them (no other row can be beyond a cut),
        else all its rows.
        """
        def build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            unresolved = np.flatnonzero((self.cells[c] > 0) & ~self.resolved[c])
            rows = rs.class_rows(c) if unresolved.size else rs.disagreeing_rows(c)
            strict = np.zeros(rows.size, dtype=bool)
            tied = np.zeros(rows.size, dtype=bool)
            active = self.resolved[c][self.cells[c] > 0]  # over the columns of _margins
            if active.any():
                sub = np.flatnonzero(rs.disagrees_strictly[rows]) if unresolved.size else np.arange(rows.size)
                if sub.size:
                    margins = self._margins(rs, c)
                    if not active.all():
                        margins = margins[active]
                    cut = self.cell_cut[c, (self.cells[c] > 0) & self.resolved[c]][:, None]
                    test = np.empty(margins.shape, dtype=bool)  # one (cells, rows) buffer for both tests
                    if unresolved.size:
                        strict[sub] = np.logical_or.reduce(np.greater(margins, cut, out=test), axis=0)
                        tied[sub] = np.logical_or.reduce(np.equal(margins, cut, out=test), axis=0)
                    else:  # sub is every row: reduce straight into the masks
                        np.logical_or.reduce(np.greater(margins, cut, out=test), axis=0, out=strict)
                        np.logical_or.reduce(np.equal(margins, cut, out=test), axis=0, out=tied)
            for j in unresolved:
                cut = self.cuts[("pbnr", int(c), int(j))]
                if cut.mode == "all":
                    strict[:] = True
                    continue
                margin = rs.probs[rows, j] - rs.probs[rows, c]
                strict |= margin > cut.value
                tied |= margin == cut.value
            return rows, strict, tied

        return rs_cache(rs, (self.token, "pbnr", c), build)

    def _eligible(self, rs: _BlockRows) -> np.ndarray:
        elig = np.ones(rs.n, dtype=bool)
        low = self._low_scores(rs)
        for key, cut in self.cuts.items():
            if key[0] == "elig":
                rows = rs.class_rows(key[1])
                elig[rows] = cut.select(low[rows])
        return elig

    def _pbnr_mask(self, rs: _BlockRows) -> np.ndarray:
        """``prune_by_noise_rate``'s rows of one block (agreeing rows removed), memoised per block."""
        def build() -> np.ndarray:
            if self.pbnr_positions is not None:
                return _position_mask(self.pbnr_positions, rs.offset, rs.n)
            pbnr = np.zeros(rs.n, dtype=bool)
            rs.disagreeing_groups  # noqa: B018 - computed here, not raced for by the threads
            if not self._names_rows or self._gathers_all(rs):
                self._margin_slabs(rs)  # likewise
            if ((self.cells > 0) & ~self.resolved).any():
                rs.groups  # noqa: B018 - likewise

            def one(c: int) -> tuple[np.ndarray, np.ndarray]:
                rows, strict, tied = self._pbnr_class(rs, c)
                return rows, strict | tied if self.allow_ties[c] else strict

            classes = self._pbnr_classes()
            if self._gathers_all(rs):  # the classes whose every cell was settled among the disagreeing rows: at once
                settled = ~((self.cells[classes] > 0) & ~self.resolved[classes]).any(axis=1)
                pbnr[self._settled_pbnr_rows(rs, settled)] = True
                classes = classes[~settled]
            for rows, picked in thread_map(one, classes, parallel=_classes_in_parallel(rs, classes.size)):
                pbnr[rows] = picked
            return np.greater(pbnr, rs.agrees, out=pbnr)  # pbnr & ~agrees, in place

        return rs_cache(rs, (self.token, "pbnr mask"), build)

    def _settled_pbnr_rows(self, rs: _BlockRows, settled: np.ndarray) -> np.ndarray:
        """Block positions of the rows :meth:`_pbnr_class` picks in the classes of ``settled`` (by slot of the
        gathered margins): a margin beyond its cell's cut, or at it where the class allows ties. The same
        tests as per class, over every class's gathered margins at once."""
        slabs = self._margin_slabs(rs)
        layout, values = slabs.layout, slabs.buffer
        rows, _ = rs.disagreeing_groups

        def picked(ab: tuple[int, int]) -> np.ndarray:
            slot, col, at = layout.positions(*ab)
            c = layout.classes[slot]
            cut = self.cell_cut[c, col]
            part = values[ab[0]:ab[1]]
            take = np.greater(part, cut)
            take |= np.equal(part, cut) & self.allow_ties[c]
            take &= settled[slot]
            return at[take]

        parts = list(thread_map(picked, row_ranges(values.size, _SLAB_TASK_VALUES),
                                parallel=values.size >= MIN_PARALLEL_ELEMENTS))
        return rows[np.concatenate(parts)] if parts else np.zeros(0, dtype=np.int64)

    def flags(self, rs: _BlockRows) -> np.ndarray:
        """The rule's flags for the rows of one block."""
        m = self.method
        if self.flag_positions is not None:
            return _position_mask(self.flag_positions, rs.offset, rs.n)
        if m == PLUS_METHOD:
            mask = self._pbnr_mask(rs).copy()
            if self.plus_cut is not None:
                other = self._plus_other(rs)
                mask[other] = self.plus_cut.select(rs.self_conf[other])
        elif m in ("prune_by_class", "both", "prune_by_noise_rate"):
            mask = np.zeros(rs.n, dtype=bool)
            if m != "prune_by_noise_rate":
                for key, cut in self.cuts.items():
                    if key[0] == "pbc":
                        rows = rs.class_rows(key[1])
                        mask[rows] = cut.select(rs.self_conf[rows])
            if m != "prune_by_class":
                pbnr = self._pbnr_mask(rs)
                mask = pbnr.copy() if m == "prune_by_noise_rate" else mask & pbnr
        elif m in ("confident_learning", "predicted_neq_given"):
            mask = rs.candidates(m).copy()
            for key, cut in self.cuts.items():
                rows = rs.class_rows(key[1])
                rows = rows[mask[rows]]
                mask[rows] = cut.select(rs.self_conf[rows])
        else:
            mask = np.zeros(rs.n, dtype=bool)
            if self.ntr is not None:
                low = self._low_scores(rs)
                for key, cut in self.cuts.items():
                    rows = rs.class_rows(key[1])
                    mask[rows] = cut.select(low[rows])
            elif self.eligible_cut is not None:
                elig = self._eligible(rs)
                mask[elig] = self.eligible_cut.select(self._low_scores(rs)[elig])
        if m in AGREEMENT_RULE_METHODS:
            np.greater(mask, rs.agrees, out=mask)  # mask & ~agrees, without a temporary
        return mask


def _named_rows(cells: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, classes)``: the distinct non-negative ``ids`` (ascending, in ``ids``' dtype) and the given
    class of each, ``cell // k`` (a row sits only in cells of its own class, so any of its cells gives it).

    One sort of ``id * k + class`` keys, then dropping repeats: the same as ``np.unique(ids, return_index=True)``
    and the first cell of each id, without the stable argsort (135k ids at 1M x 10: 5.8 -> ~2 ms).
    """
    named = ids >= 0  # not the rows that agree with their label within the tolerance
    span = int(ids.max(initial=-1)) + 1
    if _dense(int(np.count_nonzero(named)), span):  # a code a position, no sort: rows sit in one class each
        codes = np.full(span, -1, dtype=np.int16 if k < 2**15 else np.int64)
        codes[ids[named]] = np.asarray(cells)[named] // k
        positions = np.flatnonzero(codes >= 0)
        return positions.astype(ids.dtype, copy=False), codes[positions].astype(np.int64)
    key = ids[named].astype(np.int64)
    key *= k
    key += np.asarray(cells)[named] // k
    key.sort()
    if key.size:
        fresh = np.empty(key.size, dtype=bool)
        fresh[0] = True
        np.not_equal(key[1:], key[:-1], out=fresh[1:])
        key = key[fresh]
    positions, classes = np.divmod(key, k)
    return positions.astype(ids.dtype, copy=False), classes


#: Positions at least 1 in this many of their range: a byte (or code) per position of the range, then one
#: pass, costs less than sorting them (numpy sorts 64-bit words without SIMD on our VM: ~50 ms a million).
_DENSE_SHARE = 32


def _dense(count: int, span: int) -> bool:
    """Whether ``count`` distinct positions in ``range(span)`` are dense enough to mark rather than sort."""
    return 0 < span <= _DENSE_SHARE * count


def _sorted_positions(positions: np.ndarray) -> np.ndarray:
    """``np.sort(positions)`` of distinct non-negative positions (in their dtype): marked in a mask when dense
    (4M rows streamed, 0.5M flagged: ~20 -> ~3 ms)."""
    span = int(positions.max(initial=-1)) + 1
    if not _dense(positions.size, span):
        return np.sort(positions)
    marked = np.zeros(span, dtype=bool)
    marked[positions] = True
    return np.flatnonzero(marked).astype(positions.dtype, copy=False)


def _in_sorted(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_values)`` for a sorted ``sorted_values``.

    Positions of rows span a range not much wider than the values: numpy's lookup table (a byte per
    position in the range) then beats a binary search per value (150k in 135k positions at 1M x 10:
    ~0.9 ms instead of 2-18 ms of cache misses); wider ranges: one binary search per value.
    """
    if sorted_values.size == 0 or values.size == 0:
        return np.zeros(values.shape, dtype=bool)
    span = int(sorted_values[-1]) - int(sorted_values[0])
    if span <= 8 * (values.size + sorted_values.size):
        return np.isin(values, sorted_values, kind="table")
    at = np.minimum(np.searchsorted(sorted_values, values), sorted_values.size - 1)
    return sorted_values[at] == values


def _suggestions(rs: _BlockRows, rows: np.ndarray) -> np.ndarray:
    """Suggested labels of some (flagged) rows: the confident-joint guess when it names another class, else the best
    other class."""
    guess = rs.guesses(rows)
    given = rs.labels[rows]
    other = np.flatnonzero((guess < 0) | (guess == given))  # usually few: only their rows are read again
    out = guess.copy()
    if other.size:
        out[other] = _best_other_class(given[other], rs.probs, rows[other])
    return out


class GatheredRows:
    """Every row's score, gathered by the cuts pass for the ranks that a later pass would otherwise count.

    Only rows that disagree with their label can be flagged (PBNR and
    PLUS_METHOD): the others' scores go straight into a
    :class:`~labelqa.stats.ranks.RankIndex` as unflagged; the disputed rows
    are kept with their position, label and suggestion until the cuts name
    the flagged ones (:meth:`named`). Mergeable in any order, like a
    selection.
    """

    def __init__(self) -> None:
        self.index = RankIndex()
        #: the disputed rows' positions, labels, suggestions and scores, a list of block pieces each
        self.parts: tuple[list[np.ndarray], ...] = ([], [], [], [])

    def empty(self) -> GatheredRows:
        return GatheredRows()

    def merge(self, other: GatheredRows) -> GatheredRows:
        self.index.merge(other.index)
        for mine, theirs in zip(self.parts, other.parts):
            mine += theirs
        return self

    def add(self, rs: _BlockRows, scores: np.ndarray) -> None:
        """One block's rows and their scores (the row rule's); disputed rows kept in narrow types."""
        disputed = ~rs.agrees
        calm = np.flatnonzero(~disputed)
        self.index.add(scores[calm], np.zeros(calm.size, dtype=bool), calm + rs.offset)
        rows = np.flatnonzero(disputed)
        codes = _small_int(rs.k)
        at = rows + rs.offset
        held = scores[rows]
        narrow = held.astype(np.float32)
        for column, piece in zip(self.parts, (at.astype(np.int32) if rs.offset + rs.n < 2**31 else at,
                                              rs.labels[rows].astype(codes), _suggestions(rs, rows).astype(codes),
                                              narrow if np.array_equal(narrow, held, equal_nan=True) else held)):
            column.append(piece)

    def named(self, flagged_positions: np.ndarray, class_counts: np.ndarray) -> NamedRows | None:
        """The rows of the index and totals once the flagged rows are named (``None`` if one was not gathered)."""
        if not self.parts[0]:
            return None
        positions, labels, suggested, scores = (self._joined(i) for i in range(4))  # pieces freed as joined
        marked = np.zeros(int(class_counts.sum()), dtype=bool)  # a byte a row: one lookup per disputed row
        marked[flagged_positions] = True
        flagged = marked[positions]
        del marked
        if int(np.count_nonzero(flagged)) != flagged_positions.size:
            return None
        index = self.index
        calm = ~flagged
        n_calm = int(np.count_nonzero(calm))
        # unflagged rows need no position (a view of one zero stands for them); scores stay in their narrow type
        index.add(scores[calm], np.zeros(n_calm, dtype=bool), np.broadcast_to(np.int64(0), (n_calm,)))
        del calm
        index.add(scores[flagged], np.ones(flagged_positions.size, dtype=bool), positions[flagged].astype(np.int64))
        return NamedRows(index, labels[flagged].astype(np.int64), suggested[flagged].astype(np.int64),
                         class_counts.copy())

    def _joined(self, column: int) -> np.ndarray:
        """One column of the disputed rows in one array; its pieces are dropped."""
        pieces = self.parts[column]
        out = np.concatenate(pieces)
        pieces.clear()
        return out


def _position_mask(positions: np.ndarray, offset: int, n: int) -> np.ndarray:
    """Bool mask of rows ``offset .. offset + n - 1`` that are in ``positions`` (sorted global positions)."""
    mask = np.zeros(n, dtype=bool)
    a, b = np.searchsorted(positions, [offset, offset + n])
    mask[positions[a:b] - offset] = True
    return mask


def _gathers_cells(probs: np.ndarray, n_cells: int) -> bool:
    """Whether a class's margins over ``n_cells`` of the columns are gathered cell by cell (a cache line each)
    rather than copied with the rows whole: few of many columns of a row-major matrix."""
    return probs.flags.c_contiguous and (n_cells + 1) * _CACHE_LINE <= probs.shape[1] * probs.itemsize


#: From this many classes with PBNR cells, the margins of them all are gathered at once
#: (:func:`_gather_margins`): per class, a gather is a dozen numpy calls on a few dozen rows
#: (200k x 1,000: ~35 ms of Python for the 1,000 classes, ~5 ms at once).
_GATHERED_SLAB_CLASSES = 64


class _SlabLayout(NamedTuple):
    """Where the ``(J, m)`` margins of each class with PBNR cells lie in one flat buffer, class after class
    (:meth:`FlagRule._margin_slabs`): value ``(a, r)`` of class slot ``s`` is the margin of the class's
    ``a``-th cell column and its ``r``-th disagreeing row."""

    classes: np.ndarray  # (S,) the classes
    cols: np.ndarray  # each class's cell columns, in order, class after class
    n_cells: np.ndarray  # (S,) J: how many columns each class has
    col_starts: np.ndarray  # (S,) where each class's columns start in ``cols``
    rows_per_class: np.ndarray  # (S,) m: each class's disagreeing rows
    row_starts: np.ndarray  # (S,) where they start among the block's disagreeing rows (``disagreeing_groups``)
    offsets: np.ndarray  # (S + 1,) where each class's values start in the buffer

    @classmethod
    def of(cls, classes: np.ndarray, cells: np.ndarray, starts: np.ndarray) -> _SlabLayout:
        """The layout for ``classes`` with cell columns ``cells[s]`` (bool, S x K) and the groups' ``starts``."""
        n_cells = np.count_nonzero(cells, axis=1)
        rows_per_class = starts[classes + 1] - starts[classes]
        return cls(classes, np.nonzero(cells)[1], n_cells,
                   np.concatenate([[0], np.cumsum(n_cells)])[:-1].astype(np.int64), rows_per_class,
                   starts[classes], np.concatenate([[0], np.cumsum(n_cells * rows_per_class)]))

    def places(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(slot, cell, row)`` of the buffer's values ``a .. b - 1``: the class slot, and the value's place
        ``(cell, row)`` in that class's ``(J, m)`` slab."""
        at = np.arange(a, b, dtype=np.int64)
        slot = np.searchsorted(self.offsets, at, side="right") - 1
        cell, row = np.divmod(at - self.offsets[slot], self.rows_per_class[slot])
        return slot, cell, row

    def positions(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(slot, column, row)`` of the buffer's values ``a .. b - 1``: the class slot, the cell's column and
        the row's index among the block's disagreeing rows."""
        slot, cell, row = self.places(a, b)
        return slot, self.cols[self.col_starts[slot] + cell], self.row_starts[slot] + row


class _Slabs(NamedTuple):
    """:meth:`FlagRule._margin_slabs`: each class's margins array, views of one buffer laid out by ``layout``."""

    by_class: dict[int, np.ndarray]
    filled: bool  # every class's margins gathered already (_gather_margins)
    layout: _SlabLayout
    buffer: np.ndarray


#: Values of the margin buffer per task of :func:`_gather_margins` and :meth:`FlagRule._settled_pbnr_rows`.
_SLAB_TASK_VALUES = 1 << 18


def _gather_margins(rs: _BlockRows, layout: _SlabLayout, buffer: np.ndarray) -> None:
    """Fill ``buffer`` with every class's margins ``p_ij - p_ic`` as laid out by ``layout``: the same values as
    the per-class gather of :meth:`FlagRule._margins`, in one pass (on threads when large)."""
    k = rs.probs.shape[1]
    flat = rs.probs.reshape(-1)
    rows, _ = rs.disagreeing_groups

    def fill(a: int, b: int) -> None:
        slot, col, at = layout.positions(a, b)
        base = rows[at].astype(np.int64) * k
        np.take(flat, base + col, out=buffer[a:b])
        buffer[a:b] -= flat.take(base + layout.classes[slot])

    # a value costs about as much as eight of a plain pass (index arithmetic, two scattered reads)
    for_row_blocks(fill, buffer.size, _SLAB_TASK_VALUES, elements=buffer.size * 8)


def _reduce_gathered(top: GroupedTop, rs: _BlockRows, slabs: _Slabs) -> Iterator[tuple[Any, ...]]:
    """:meth:`GroupedTop.reduce_rows` of every class's cells (the rows of its slab), as ``add_reduced``
    arguments, from one call per bucket of classes whose row counts ``m`` share a power of two.

    A bucket's slabs are stacked into one matrix as wide as its largest ``m``, shorter rows padded with
    values that are never selected before a real one (-inf when the top keeps the largest); a cut that
    falls on padding keeps the whole row. What the padding lets through is dropped by its column; each
    group is fed its own ``m``. The same values, ids and counts as one call a class.
    """
    layout, buffer = slabs.layout, slabs.buffer
    k = rs.k
    rows_all, _ = rs.disagreeing_groups
    n_cells, m = layout.n_cells, layout.rows_per_class
    pad = -np.inf if top.largest else np.inf
    slot, cell, row = layout.places(0, buffer.size)
    bucket = np.ceil(np.log2(np.maximum(m, 1))).astype(np.int64)  # classes of 1, 2, 3-4, 5-8, ... rows
    for b in np.unique(bucket[(m > 0) & (n_cells > 0)]):
        slots = np.flatnonzero((bucket == b) & (m > 0) & (n_cells > 0))
        first = np.zeros(layout.classes.size, dtype=np.int64)  # each slot's first row in the stacked matrix
        first[slots] = np.concatenate([[0], np.cumsum(n_cells[slots])])[:-1]
        width = int(m[slots].max())
        stacked = np.full((int(n_cells[slots].sum()), width), pad, dtype=buffer.dtype)
        mine = np.isin(slot, slots) if slots.size < layout.classes.size else slice(None)
        stacked[first[slot[mine]] + cell[mine], row[mine]] = buffer[mine]
        owner = np.repeat(slots, n_cells[slots])  # the slot of each stacked row
        groups = layout.classes[owner] * k + layout.cols[layout.col_starts[owner] + (
            np.arange(owner.size) - first[owner])]
        got_rows, values, cols = top.reduce_rows(groups, stacked, columns=True)
        real = cols < m[owner[got_rows]]
        got_rows, values, cols = got_rows[real], values[real], cols[real]
        if not top.ids:
            yield groups, m[owner], got_rows, values
            continue
        at = rows_all[layout.row_starts[owner[got_rows]] + cols]
        ids = at + rs.offset
        yield groups, m[owner], got_rows, values, np.where(rs.agrees[at], -ids - 1, ids)


def _classes_in_parallel(rs: _BlockRows, n_classes: int) -> bool:
    """Whether per-class work on a block runs on threads: a large block with classes of
    :data:`_CLASS_TASK_ROWS` rows or more on average. Smaller classes are mostly Python per class, which
    threads only fight over the GIL for (200k x 1,000: the cuts and plus-count stages took 170-200 and
    150-160 ms on two threads, 60 and 45-50 ms on one; 1M x 100, 10k rows a class: 185 -> 101-112 ms on two)."""
    return rs.probs.size >= MIN_PARALLEL_ELEMENTS and rs.n >= _CLASS_TASK_ROWS * max(n_classes, 1)


def rs_cache(rs: _BlockRows, key: Any, build: Any) -> Any:
    """Per-block memo on a :class:`_BlockRows` (lives as long as the block's row state)."""
    cache = rs.__dict__.setdefault("_memo", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


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


def _best_other_class(labels: np.ndarray, probs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``argmax_{k != s_i} p_ik`` (lowest index on ties) of ``rows`` of ``probs`` (default all), ``labels`` theirs.

    The rows are gathered chunk by chunk, on threads: at K = 1,000 gathering 30k flagged rows at once was a
    120 MB copy (~0.12 s, single-threaded).
    """
    n = labels.size
    out = np.empty(n, dtype=np.int64)
    if probs.shape[1] == 1:
        out[:] = 0
        return out

    def chunk(sl: slice) -> None:
        block = probs[sl].copy() if rows is None else probs[rows[sl]]  # a copy either way: written below
        block[np.arange(block.shape[0]), labels[sl]] = -np.inf
        out[sl] = row_top(block)[0]  # numpy's argmax, over transposed chunks at small K

    for _ in thread_map(chunk, list(_chunks(n, probs.shape[1])),
                        parallel=n * probs.shape[1] >= MIN_PARALLEL_ELEMENTS):
        pass
    return out


# --------------------------------------------------------------------------- per-row outputs and summary
class ConfidentRule(RowRule):
    """Flags, scores and suggestions of any block; the summary from the aggregates."""

    def __init__(self, est: Estimates, flag: FlagRule, score_method: str, adjust: bool) -> None:
        self.est = est
        self.flag = flag
        self.score_method = score_method
        self.adjust = bool(adjust)

    def rows(self, block: Block) -> DetectorRows:
        rs = _block_rows(block, self.est.thresholds)
        issues = self.flag.flags(rs)
        scores = _scores(rs.labels, rs.probs, self.score_method, adjust=self.adjust,
                         thresholds=self.est.thresholds, self_conf=rs.self_conf)
        suggested = rs.labels.copy()
        suggested_confidence = rs.self_conf.astype(np.float64)  # unflagged rows keep their label
        flagged = np.flatnonzero(issues)
        if flagged.size:
            suggested[flagged] = _suggestions(rs, flagged)
            suggested_confidence[flagged] = rs.probs[flagged, suggested[flagged]]
        return DetectorRows(scores, issues, suggested, suggested_confidence)

    def named_rows(self) -> NamedRows | None:
        """What the cuts pass gathered when it named every flagged row (see :class:`GatheredRows`)."""
        return self.flag.named

    def summary(self, tallies: dict[str, Any]) -> dict[str, Any]:
        est = self.est
        cal = est.calibrated
        latent = estimate_latent(cal)
        n = est.class_counts
        diag = np.diagonal(cal)
        rate_k = np.divide(n - diag, n, out=np.zeros(n.size), where=n > 0)
        estimates = noise_rate_estimates(est)
        chosen = ESTIMATOR_OF.get(self.flag.method, CALIBRATED_ESTIMATOR)
        floor = {"num_issues_floor": est.num_issues_floor} if est.num_issues_floor else {}
        return floor | {
            "thresholds": [float(t) for t in est.thresholds],
            "confident_joint": summary_matrix(est.joint),
            "confident_joint_calibrated": summary_matrix(cal),
            "noise_matrix": summary_matrix(latent.noise_matrix),
            "inverse_noise_matrix": summary_matrix(latent.inverse_noise_matrix),
            "latent_prior": latent.latent_prior.tolist(),
            "estimated_num_issues": est.estimated_num_issues,
            "estimated_num_issues_midpoint": est.midpoint_num_issues,
            "estimated_num_issues_weighted": est.plus_num_issues if est.trend is not None else None,
            "weighted_disputes": est.weighted_disputes,
            "trend_issues": est.trend_issues if est.trend is not None else None,
            "disputed_bounds": list(est.disputed_bounds),
            "estimated_noise_rate": estimates[chosen]["rate"],
            "estimated_noise_rate_interval": estimates[chosen]["interval"],
            "estimated_noise_rate_estimator": chosen,
            "noise_rate_estimates": estimates,
            "per_class": [
                {
                    "class_count": int(n[k]),
                    "threshold": float(est.thresholds[k]),
                    "estimated_noise_rate": float(rate_k[k]),
                }
                for k in range(est.n_classes)
            ],
            "filter_by": self.flag.method,
            "score_method": self.score_method,
        }


# --------------------------------------------------------------------------- noise-rate estimators
#: The calibrated confident joint's noise rate, with its bootstrap 95% interval (cleanlab's estimate).
CALIBRATED_ESTIMATOR = "calibrated_confident_joint"
#: ``(A + U/2) / N`` with the bounds ``[A/N, (A + U)/N]`` (docs/detection.md).
MIDPOINT_ESTIMATOR = "disputed_midpoint"
#: ``max(T / N, the calibrated confident joint's rate)``, ``T = A + min(W, R)`` (docs/detection.md).
PLUS_ESTIMATOR = "disputed_weighted_trend"
#: The estimator behind each ``filter_by`` whose count is not the calibrated confident joint's.
ESTIMATOR_OF = {MIDPOINT_METHOD: MIDPOINT_ESTIMATOR, PLUS_METHOD: PLUS_ESTIMATOR}


def noise_rate_estimates(est: Estimates) -> dict[str, dict[str, Any]]:
    """The noise-rate estimators of a dataset: ``{name: {"rate", "interval", "interval_kind"}}``.

    ``disputed_weighted_trend`` is listed when the trend sums were computed
    (``filter_by`` = ``prune_by_noise_rate_plus``, the default).

    The summary's ``estimated_noise_rate`` is the one matching ``filter_by``
    (``disputed_midpoint`` for ``low_margin_midpoint``, ``disputed_weighted_trend``
    for ``prune_by_noise_rate_plus``, else ``calibrated_confident_joint``),
    so the gate judges the estimate behind the flags.

    ``disputed_weighted_trend`` is ``max(T/N, calibrated rate)``: the
    calibrated joint spreads its off-diagonal mass over every row of a
    class, so it can exceed ``T/N`` (when the model disputes few rows but
    confidently); each is then a lower estimate of the other's errors. Its
    interval runs from the lower of the calibrated bootstrap interval's low
    end and ``T/N`` to the higher of its high end and ``T/N``.
    """
    n_rows = int(est.class_counts.sum())
    low, high = est.disputed_bounds
    per_row = 1.0 / n_rows if n_rows else 0.0
    cal_rate = noise_rate(est.calibrated)
    cal_interval = list(interval_from_replicates(*est.noise_rate_draws.result(), cal_rate))
    out: dict[str, dict[str, Any]] = {
        CALIBRATED_ESTIMATOR: {
            "rate": cal_rate,
            "interval": cal_interval,
            "interval_kind": "bootstrap 95%",
        },
        MIDPOINT_ESTIMATOR: {
            "rate": est.midpoint_num_issues * per_row,
            "interval": [low * per_row, high * per_row],
            "interval_kind": "bounds: confident disputes to all disputes",
        },
    }
    if est.trend is not None:
        plus_rate = est.plus_num_issues * per_row
        out[PLUS_ESTIMATOR] = {
            "rate": max(plus_rate, cal_rate),
            "interval": [min(cal_interval[0], plus_rate), max(cal_interval[1], plus_rate)],
            "interval_kind": "bootstrap 95% of the calibrated joint, widened to hold T/N",
        }
    return out


# --------------------------------------------------------------------------- detector
@dataclass(kw_only=True)
class ConfidentLearning(Detector):
    """Confident learning: flag and score rows from out-of-sample probabilities.

    Args:
        filter_by: How rows are flagged, one of :data:`CL_FILTER_METHODS`
            (default :data:`PLUS_METHOD`; the array functions keep cleanlab's
            ``prune_by_noise_rate``).
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

    filter_by: str = PLUS_METHOD
    score_method: str = "self_confidence"
    adjust_pred_probs: bool = False
    frac_noise: float = 1.0
    num_to_remove_per_class: Sequence[int] | None = None
    min_examples_per_class: int = 1

    def check(self, info: DatasetInfo) -> None:
        """Validate the parameters for ``info`` (multiclass data, K classes)."""
        self.check_params()
        if info.task != "multiclass":
            raise LabelqaError(
                f"confident learning needs multiclass data, got task {info.task!r}",
                "use the multi-label detector for multi-label data",
            )
        self._ntr(info.n_classes)

    def _ntr(self, n_classes: int) -> np.ndarray | None:
        return _per_class_counts(self.num_to_remove_per_class, n_classes)

    def plan(self, info: DatasetInfo, num_issues_floor: int = 0) -> Plan:
        """Class sums, confident joint, the selection stages of ``filter_by``; then the row rule.

        ``num_issues_floor``: the least ``T`` of ``prune_by_noise_rate_plus`` (several models' combination).
        """
        k = info.n_classes
        ntr = self._ntr(k)
        sums: ClassProbSums = yield ClassSumsStep(k)
        thresholds = sums.thresholds()
        p2: JointCounts = yield JointStep(thresholds, trend=self.filter_by == PLUS_METHOD,
                                          margins=self.filter_by in _PBNR_METHODS and info.out_of_core)
        est = Estimates(sums.counts.copy(), thresholds, p2.joint.copy(), p2.cand_cl.copy(), p2.cand_png.copy(),
                        p2.cand_unc.copy(), p2.unc_weight.copy(), p2.trend.copy() if p2.with_trend else None,
                        int(num_issues_floor))
        est.calibrated  # noqa: B018 - first the calibration, whose row sorts take both cores (K = 1,000: ~60 ms)
        est.noise_rate_draws  # noqa: B018 - then the summary's bootstrap starts, beside the selection passes
        flag = FlagRule(est, self.filter_by, float(self.frac_noise), ntr, int(self.min_examples_per_class),
                        info.prob_dtype)
        flag.margin_counts = p2.margins
        if info.gather_rows:  # out of core: later passes read the data again
            flag.scoring = (self.score_method, bool(self.adjust_pred_probs))
            flag.name_pbnr_rows = True
        yield from selection_stages(flag)
        return ConfidentRule(est, flag, self.score_method, bool(self.adjust_pred_probs))

    def detect(self, data: LabelData) -> DetectorResult:
        """Score, flag and suggest a label for every row of ``data``.

        Raises:
            LabelqaError: On an invalid parameter or non-multiclass data.
        """
        info = DatasetInfo.of(data)
        self.check(info)
        if data.n_rows == 0:
            empty = np.zeros(0)
            return DetectorResult(
                name=self.name, scores=empty, issues=np.zeros(0, dtype=bool),
                suggested=np.zeros(0, dtype=np.int64), suggested_confidence=empty,
                summary={}, params=self.get_params(),
            )
        floor = int((data.meta or {}).get(NUM_ISSUES_FLOOR_META, 0) or 0)
        if not floor:
            return super().detect(data)
        block = Block.of(data)  # several models: the plan with the best-fitting member's count as the floor of T
        rule = run_on_block(self.plan(info, num_issues_floor=floor), block)
        rows = rule.rows(block)
        return DetectorResult(name=self.name, scores=rows.scores, issues=rows.issues, suggested=rows.suggested,
                              suggested_confidence=rows.suggested_confidence,
                              summary=rule.summary(rule.tally(block, rows)), params=self.get_params(),
                              extra=rows.extra)


# --------------------------------------------------------------------------- array API
def _array_block(labels: Any, pred_probs: Any) -> tuple[Block, DatasetInfo]:
    labs, probs = _as_arrays(labels, pred_probs)
    info = DatasetInfo(labs.size, tuple(range(probs.shape[1])), "multiclass", np.dtype(probs.dtype))
    return Block(labs, probs), info


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
    joint, guess, _, _ = _confident_joint(labs, probs, thr)
    return joint, guess.astype(np.int64, copy=False)


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
      with the lowest score, ``T`` = the estimated number of issues;
    - ``low_margin_midpoint``: the ``T`` rows with the lowest normalized
      margin, ``T = A + U/2`` (half up): ``A`` the estimated number of
      issues, ``U`` the rows that disagree with their label but that the
      confident joint does not count (no class clears its threshold).
      Better counts on real human noise (docs/detection.md).
    - ``prune_by_noise_rate_plus`` (the default of ``labelqa scan`` and of
      :class:`ConfidentLearning`; this function keeps cleanlab's):
      ``prune_by_noise_rate``'s rows plus, up to ``T = A + min(W, R)``, the
      lowest self-confidences among the other disputed rows; ``W`` the
      uncertain disputes weighted by their margins, ``R`` the least-squares
      trend of the dispute margin against normalized entropy over the rows
      ``C`` counts, summed over the rows it does not (docs/detection.md).

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
        filter_by: One of :data:`CL_FILTER_METHODS`.
        frac_noise: Flag only this fraction of the estimate. PBNR/both: each
            off-diagonal cell of ``C_cal`` times it, truncated; PBC: ``n_k``
            minus the truncated diagonal that takes the rest, as cleanlab 2.9
            (see :func:`noise_cells`, :func:`prune_by_class_counts`);
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
            For PBNR/PBC the diagonal of ``C_cal`` is first raised to it, the
            raise taken from the row's entries as cleanlab 2.9 does; for
            every method the per-class count is also capped, keeping the rows
            with the highest ``p_ik`` (or score) -- cleanlab applies no such
            cap to the union of a class's PBNR cells (docs/detection.md).

    Returns:
        Bool mask, shape ``(N,)``, ``True`` = likely label issue.

    Raises:
        LabelqaError: On an unknown method or an invalid option.
    """
    block, info = _array_block(labels, pred_probs)
    det = ConfidentLearning(filter_by=filter_by, frac_noise=frac_noise,
                            num_to_remove_per_class=num_to_remove_per_class,
                            min_examples_per_class=min_examples_per_class)
    det.check(info)
    if info.n_rows == 0:
        return np.zeros(0, dtype=bool)
    rule = run_on_block(det.plan(info), block)
    assert isinstance(rule, ConfidentRule)
    return rule.flag.flags(_block_rows(block, rule.est.thresholds))


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
    options.check(options.OPTIONS["score_method"], method)
    thresholds = ClassProbSums(probs.shape[1]).update(labs, probs).thresholds() if adjust_pred_probs else None
    return _scores(labs, probs, method, adjust=bool(adjust_pred_probs), thresholds=thresholds)


def plus_num_issues(labels: Any, pred_probs: Any) -> int:
    """``T = A + min(W, R)`` of ``prune_by_noise_rate_plus`` for one model's probabilities (docs/detection.md)."""
    block, info = _array_block(labels, pred_probs)
    if info.n_rows == 0:
        return 0
    rule = run_on_block(ConfidentLearning(filter_by=PLUS_METHOD).plan(info), block)
    assert isinstance(rule, ConfidentRule)
    return rule.est.plus_num_issues
