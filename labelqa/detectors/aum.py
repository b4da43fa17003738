"""Area Under the Margin (AUM): flag rows a model keeps ranking another class above during training.

Spec: docs/aum.md (Pleiss, Zhang, Elenberg, Weinberger,
NeurIPS 2020). The margin of row ``i`` at epoch ``t`` is its label's raw
logit minus the largest other logit::

    M_t(i) = z[i, s_i] - max_{k != s_i} z[i, k]

AUM is the mean margin over the recorded epochs. Mislabeled rows are learned
late (or never), so their AUM is low or negative.

This module is the AUM math and the detector that owns its flag rule:

* :func:`margins`, :func:`aum`, :func:`block_margins`: the formulas on
  in-memory arrays;
* :func:`run_aum`: one run's AUM streamed epoch by epoch in row blocks
  (memory ``O(N*K)`` however many epochs);
* :func:`threshold_cutoff`, :func:`combine_run_flags`: the threshold-sample
  cutoff and the two-run flag combination;
* :class:`AreaUnderMargin`: the detector; :meth:`AreaUnderMargin.flag` is the
  flag rule, :meth:`AreaUnderMargin.score` gives :class:`AUMScores`;
  :func:`score_dynamics` is the same as a function.

Reading the dynamics is :mod:`labelqa.data.dynamics`; writing and recording
them is :mod:`labelqa.train.dynamics_writer` and :mod:`labelqa.train.recorder`.

Scores: ``sigmoid(AUM)`` in (0, 1), lower = more suspect. The map is monotone,
so the ranking is the AUM ranking; 0.5 is AUM = 0 (for two classes it is the
softmax probability of the given label at the mean logits). The raw AUM is
kept in ``extra["aum"]`` (a per-row report column).

Flag rule (first that applies, recorded in ``summary["rule"]``):

1. ``aum_cutoff`` given: flag AUM < aum_cutoff (``cutoff``).
2. ``aum_percentile`` given: flag AUM below that percentile of all rows' AUM
   (``percentile``).
3. threshold samples recorded: per run, cutoff = ``threshold_percentile``
   (99) percentile of the threshold samples' AUM; a row is flagged only if its
   AUM is below the cutoff in every run where it was an ordinary row
   (``threshold_samples``).
4. otherwise: flag AUM < 0 (rank only; another class was ahead on average)
   (``default_negative``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from labelqa.data.dynamics import Dynamics, DynamicsRun, as_numpy, check_finite, check_labels, load_dynamics
from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.errors import LabelqaError

__all__ = [
    "BLOCK_ROWS",
    "AUMScores",
    "AreaUnderMargin",
    "RunResult",
    "aum",
    "block_margins",
    "combine_run_flags",
    "margins",
    "run_aum",
    "score_dynamics",
    "threshold_cutoff",
]

#: Rows processed at once when streaming an epoch (bounds temporary memory).
BLOCK_ROWS = 1 << 16


# ----------------------------------------------------------------------------- formulas


def block_margins(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Margins of a float64 block ``z`` against int64 ``labels``, unchecked (the fast path).

    ``z`` is modified in place (label logits set to -inf): pass a copy you own.
    Callers validate first (:func:`margins` does; the recorder and
    :func:`run_aum` check labels and finiteness themselves).
    """
    rows = np.arange(z.shape[0])
    assigned = z[rows, labels].copy()
    z[rows, labels] = -np.inf
    return assigned - z.max(axis=1)


def margins(logits: Any, labels: Any) -> np.ndarray:
    """Margin of every row: its label's logit minus the largest other logit.

    Args:
        logits: Raw logits (not probabilities), shape ``(N, K)``, K >= 2.
        labels: Integer labels the model was trained with, shape ``(N,)``,
            each in ``0..K-1``.

    Returns:
        float64 margins, shape ``(N,)``. A tie between the label's logit and
        the largest other logit gives 0; negative = another class is ahead.

    Raises:
        LabelqaError: Wrong shapes, labels out of range, non-finite logits.
    """
    z = np.array(as_numpy(logits), dtype=np.float64)  # a copy: modified below
    y = as_numpy(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise LabelqaError(f"logits must have shape (N, K) with K >= 2, got {z.shape}")
    y = check_labels(y, z.shape[0], z.shape[1], "labels")
    check_finite(z, "logits")
    return block_margins(z, y)


def aum(logits_by_epoch: Any, labels: Any) -> np.ndarray:
    """AUM of every row: the mean margin over epochs.

    Args:
        logits_by_epoch: Shape ``(E, N, K)`` array (or memmap), or a sequence
            of E arrays of shape ``(N, K)``. Consumed epoch by epoch.
        labels: Integer labels the model was trained with, shape ``(N,)``.

    Returns:
        float64 AUM, shape ``(N,)``.
    """
    total: np.ndarray | None = None
    n_epochs = 0
    for epoch in logits_by_epoch:
        m = margins(epoch, labels)
        total = m if total is None else total + m
        n_epochs += 1
    if total is None:
        raise LabelqaError("no epochs of logits given", "record at least one epoch")
    return total / n_epochs


def threshold_cutoff(aum_values: Any, threshold: Any, percentile: float = 99.0) -> float:
    """The AUM cutoff learned from threshold samples.

    Args:
        aum_values: AUM of every row of one run, shape ``(N,)``.
        threshold: Bool mask of that run's threshold samples, shape ``(N,)``.
        percentile: Percentile of the threshold samples' AUM (99 in the
            paper), with linear interpolation.

    Returns:
        The cutoff; an ordinary row with AUM strictly below it is flagged.
    """
    a = np.asarray(aum_values, dtype=np.float64)
    t = np.asarray(threshold, dtype=bool)
    if not 0.0 <= percentile <= 100.0:
        raise LabelqaError(f"threshold percentile {percentile} is not in [0, 100]")
    if not t.any():
        raise LabelqaError("no threshold samples in this run", "mark about N/(K+1) rows as threshold samples")
    return float(np.percentile(a[t], percentile))


def combine_run_flags(flags: Any, ordinary: Any) -> np.ndarray:
    """Combine per-run flags: a row is flagged only if flagged in every run where it was ordinary.

    Args:
        flags: Bool, shape ``(R, N)``: run ``r`` flags row ``i``.
        ordinary: Bool, shape ``(R, N)``: row ``i`` was an ordinary (not a
            threshold) row in run ``r``. Flags of non-ordinary entries are
            ignored.

    Returns:
        Bool, shape ``(N,)``. A row that was ordinary in no run is not flagged.
    """
    f = np.atleast_2d(np.asarray(flags, dtype=bool))
    o = np.atleast_2d(np.asarray(ordinary, dtype=bool))
    if f.shape != o.shape:
        raise LabelqaError(f"flags {f.shape} and ordinary {o.shape} must have the same shape (R, N)")
    return np.all(f | ~o, axis=0) & np.any(o, axis=0)


# ----------------------------------------------------------------------------- streaming


@dataclass
class RunResult:
    """Streaming result of one run: AUM of every row and the mean logits."""

    aum: np.ndarray
    mean_logits: np.ndarray
    assigned: np.ndarray
    threshold: np.ndarray | None
    n_epochs: int


def run_aum(run: DynamicsRun, labels: np.ndarray, n_classes: int,
            progress: Callable[[int, int], None] | None = None) -> RunResult:
    """AUM of one run, streamed epoch by epoch in row blocks.

    Args:
        run: The run.
        labels: Given labels (int codes ``0..K-1``), shape ``(N,)``.
        n_classes: K. Threshold rows are scored against label K.
        progress: Called as ``progress(epoch_done, n_epochs)``.
    """
    src = run.logits
    n, k_out = src.n_rows, src.n_outputs
    assigned = np.asarray(labels, dtype=np.int64)
    if run.threshold is not None:
        assigned = np.where(run.threshold, n_classes, assigned)
    total_margin = np.zeros(n, dtype=np.float64)
    total_logits = np.zeros((n, k_out), dtype=np.float64)
    n_epochs = 0
    for e, epoch in enumerate(src.iter_epochs()):
        if epoch.shape != (n, k_out):
            raise LabelqaError(f"{src.where(e)}: shape {epoch.shape}, expected {(n, k_out)}")
        for a in range(0, n, BLOCK_ROWS):
            b = min(n, a + BLOCK_ROWS)
            z = np.array(epoch[a:b], dtype=np.float64)
            check_finite(z, src.where(e), a)
            total_logits[a:b] += z
            total_margin[a:b] += block_margins(z, assigned[a:b])
        n_epochs += 1
        del epoch
        if progress:
            progress(n_epochs, src.n_epochs)
    if n_epochs == 0:
        raise LabelqaError(f"{src.description}: no epochs recorded")
    return RunResult(total_margin / n_epochs, total_logits / n_epochs, assigned, run.threshold, n_epochs)


@dataclass
class AUMScores:
    """AUM of every row, the flags and the rule that produced them.

    Attributes:
        aum: AUM per row (mean margin), averaged over the runs where the row
            was ordinary (over all runs when it never was), shape ``(N,)``.
        flags: Flagged rows, bool ``(N,)``.
        suggested: Class (``0..K-1``) with the highest mean logit among the
            real classes, shape ``(N,)``.
        rule: ``"threshold_samples"``, ``"cutoff"``, ``"percentile"`` or
            ``"default_negative"``.
        cutoffs: The AUM cutoff of each run (threshold rule) or the single
            cutoff used.
        per_run_aum: AUM of each run, shape ``(R, N)``.
        threshold: Threshold marks ``(R, N)`` or ``None``.
        epochs: Epochs of each run.
    """

    aum: np.ndarray
    flags: np.ndarray
    suggested: np.ndarray
    rule: str
    cutoffs: list[float]
    per_run_aum: np.ndarray
    threshold: np.ndarray | None
    epochs: list[int]
    mean_logits: np.ndarray
    threshold_percentile: float = 99.0

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable figures: rule, cutoffs, runs, epochs, threshold samples."""
        descriptions = {
            "threshold_samples": f"flag rows whose AUM is below the {self.threshold_percentile:g}th percentile of "
                                 "the threshold samples' AUM in every run where they were ordinary rows",
            "cutoff": "flag rows with AUM below the given cutoff",
            "percentile": "flag rows with AUM below the given percentile of all rows' AUM",
            "default_negative": "no threshold samples and no cutoff given: rows ranked by AUM, flagged when "
                                "AUM < 0 (another class ahead on average)",
        }
        out: dict[str, Any] = {
            "rule": self.rule,
            "rule_description": descriptions[self.rule],
            "cutoffs": [float(c) for c in self.cutoffs],
            "n_runs": int(self.per_run_aum.shape[0]),
            "epochs": [int(e) for e in self.epochs],
            "n_threshold_samples": [] if self.threshold is None else [int(t.sum()) for t in self.threshold],
            "n_flagged": int(self.flags.sum()),
            "aum_mean": float(np.mean(self.aum)) if self.aum.size else None,
            "aum_min": float(np.min(self.aum)) if self.aum.size else None,
            "aum_max": float(np.max(self.aum)) if self.aum.size else None,
        }
        return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


# ----------------------------------------------------------------------------- detector


@dataclass(kw_only=True, eq=False)
class AreaUnderMargin(Detector):
    """AUM detector; reads the training dynamics in ``data.logits_by_epoch``.

    Args:
        aum_cutoff: Flag rows with AUM below this value (overrides the
            threshold samples).
        aum_percentile: Flag rows whose AUM is below this percentile (0..100)
            of all rows' AUM (overrides the threshold samples).
        threshold_percentile: Percentile of the threshold samples' AUM used as
            the cutoff (99 in the paper).
        threshold_samples: Threshold-sample marks for a single-run source that
            is not yet loaded (a path, column name or bool array); see
            :func:`labelqa.data.dynamics.load_dynamics`.

    ``data.logits_by_epoch`` may be a :class:`labelqa.data.dynamics.Dynamics`
    (from :func:`labelqa.data.dynamics.load_dynamics`) or anything
    ``load_dynamics`` accepts (a path, an ``(E, N, K)`` array...), loaded here
    against the data's N and K.
    """

    name: ClassVar[str] = "aum"
    #: ``threshold_samples`` here holds the marks themselves (an array), not the load option's path or column.
    shaped_params: ClassVar[tuple[str, ...]] = ("threshold_samples",)
    needs_all_rows: ClassVar[str] = "every row's per-epoch training logits, and cutoffs over all rows' AUM"

    aum_cutoff: float | None = None
    aum_percentile: float | None = None
    threshold_percentile: float = 99.0
    threshold_samples: Any = None

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        thr = params.get("threshold_samples")
        if thr is not None and not isinstance(thr, (str, int, float, bool)):
            params["threshold_samples"] = str(thr) if hasattr(thr, "__fspath__") else "<array>"
        return params

    def check_params(self) -> None:
        """Raise for invalid parameters, naming them as the user spells them (declared options as their flags)."""
        super().check_params()
        if self.aum_cutoff is not None and self.aum_percentile is not None:
            raise LabelqaError("aum_cutoff and aum_percentile both given", "pass only one of them")
        if not 0.0 <= self.threshold_percentile <= 100.0:
            raise LabelqaError(f"threshold_percentile={self.threshold_percentile} is not in [0, 100]")

    def flag(self, aum_rows: np.ndarray, per_run_aum: np.ndarray, threshold: np.ndarray | None,
             ordinary: np.ndarray) -> tuple[str, list[float], np.ndarray]:
        """The flag rule: which rows are flagged, by which rule, with which cutoffs.

        First that applies: ``aum_cutoff`` -> AUM < aum_cutoff; ``aum_percentile``
        -> AUM below that percentile of all rows' AUM; threshold samples ->
        per run, AUM below the ``threshold_percentile`` percentile of that
        run's threshold samples' AUM, kept only if every run where the row was
        ordinary flags it; otherwise AUM < 0.

        Args:
            aum_rows: AUM per row, shape ``(N,)``.
            per_run_aum: AUM per run and row, shape ``(R, N)``.
            threshold: Threshold marks ``(R, N)``, or ``None`` without them.
            ordinary: Bool ``(R, N)``: the row was ordinary in that run.

        Returns:
            ``(rule, cutoffs, flags)``: the rule's name (``cutoff``,
            ``percentile``, ``threshold_samples``, ``default_negative``), the
            cutoff of each run (threshold rule) or the single cutoff used, and
            bool flags ``(N,)``.
        """
        if self.aum_cutoff is not None:
            rule, cutoffs = "cutoff", [float(self.aum_cutoff)]
            flags = aum_rows < self.aum_cutoff
        elif self.aum_percentile is not None:
            c = float(np.percentile(aum_rows, self.aum_percentile)) if aum_rows.size else float("nan")
            rule, cutoffs = "percentile", [c]
            flags = aum_rows < c
        elif threshold is not None:
            rule = "threshold_samples"
            cutoffs = [threshold_cutoff(per_run_aum[r], threshold[r], self.threshold_percentile)
                       for r in range(per_run_aum.shape[0])]
            run_flags = per_run_aum < np.asarray(cutoffs)[:, None]
            flags = combine_run_flags(run_flags, ordinary)
        else:
            rule, cutoffs = "default_negative", [0.0]
            flags = aum_rows < 0.0
        return rule, cutoffs, np.asarray(flags, dtype=bool)

    def score(self, dynamics: Dynamics, labels: Any,
              progress: Callable[[str], None] | None = None) -> AUMScores:
        """AUM, flags and suggestions from loaded dynamics (streamed run by run, epoch by epoch).

        Args:
            dynamics: From :func:`labelqa.data.dynamics.load_dynamics`.
            labels: Given labels, int codes ``0..K-1``, shape ``(N,)``.
            progress: Optional message callback (one message per run and a
                few per run's epochs).
        """
        k = dynamics.n_classes
        y = check_labels(np.asarray(labels), dynamics.n_rows, k, "labels")
        self.check_params()

        n, r_count = dynamics.n_rows, len(dynamics.runs)
        per_run = np.zeros((r_count, n), dtype=np.float64)
        ordinary = np.ones((r_count, n), dtype=bool)
        for r, run in enumerate(dynamics.runs):
            if run.threshold is not None:
                ordinary[r] = ~run.threshold
        any_ord = ordinary.any(axis=0)
        # rows are averaged over the runs where they were ordinary (over all runs if never)
        weight = np.where(any_ord, ordinary, True)
        n_weight = weight.sum(axis=0)
        logit_sum = np.zeros((n, k), dtype=np.float64)
        for r, run in enumerate(dynamics.runs):
            def tick(done: int, total: int, name: str = run.name) -> None:
                if progress and (done == total or done % max(1, total // 4) == 0):
                    progress(f"AUM {name}: epoch {done}/{total}")

            res = run_aum(run, y, k, tick)
            per_run[r] = res.aum
            if weight[r].all():
                logit_sum += res.mean_logits[:, :k]
            else:
                logit_sum += res.mean_logits[:, :k] * weight[r][:, None]
            del res

        aum_rows = (per_run * weight).sum(axis=0) / n_weight
        mean_logits = logit_sum
        mean_logits /= n_weight[:, None]
        suggested = np.argmax(mean_logits, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
        thr = (np.stack([run.threshold for run in dynamics.runs]) if dynamics.has_threshold_samples else None)
        rule, cutoffs, flags = self.flag(aum_rows, per_run, thr, ordinary)
        return AUMScores(aum=aum_rows, flags=flags, suggested=suggested, rule=rule,
                         cutoffs=cutoffs, per_run_aum=per_run, threshold=thr, epochs=dynamics.epochs,
                         mean_logits=mean_logits, threshold_percentile=float(self.threshold_percentile))

    def detect(self, data: LabelData) -> DetectorResult:
        """Score every row by AUM and flag likely label errors."""
        if getattr(data, "task", "multiclass") == "multilabel":
            raise LabelqaError("AUM is not defined for multi-label data",
                               "AUM needs one given label per row; use the multi-label detectors instead")
        source = data.logits_by_epoch
        if source is None:
            raise LabelqaError("the AUM detector needs training dynamics (per-epoch logits)",
                               "pass --logits-by-epoch PATH, or produce them with `labelqa train`")
        n, k = int(np.asarray(data.labels).shape[0]), data.n_classes
        labels = np.asarray(data.labels, dtype=np.int64)
        if isinstance(source, Dynamics) and self.threshold_samples is None:
            dyn = load_dynamics(source, n, k, classes=list(data.classes), labels=labels)
        else:
            dyn = load_dynamics(source, n, k, threshold=self.threshold_samples, classes=list(data.classes),
                                labels=labels)
        res = self.score(dyn, labels)
        flags = res.flags
        suggested = np.where(flags, res.suggested, labels).astype(np.int64)
        confidence = None
        probs = getattr(data, "pred_probs", None)
        if probs is not None and np.shape(probs) == (n, k):
            confidence = np.asarray(probs)[np.arange(n), suggested].astype(np.float64)
        summary = res.summary()
        summary.update({
            "source": dyn.source,
            "threshold_percentile": float(self.threshold_percentile),
            "score": "sigmoid(AUM): monotone in AUM, 0.5 = AUM 0; raw AUM in the extra column 'aum'",
        })
        return DetectorResult(
            name=self.name,
            scores=_sigmoid(res.aum),
            issues=flags,
            suggested=suggested,
            suggested_confidence=confidence,
            summary=summary,
            params=self.get_params(),
            extra={"aum": res.aum},
        )


def score_dynamics(
    dynamics: Dynamics,
    labels: Any,
    *,
    aum_cutoff: float | None = None,
    aum_percentile: float | None = None,
    threshold_percentile: float = 99.0,
    progress: Callable[[str], None] | None = None,
) -> AUMScores:
    """AUM, flags and suggestions from recorded dynamics: :meth:`AreaUnderMargin.score` as a function.

    Args:
        dynamics: From :func:`labelqa.data.dynamics.load_dynamics`.
        labels: Given labels, int codes ``0..K-1``, shape ``(N,)``.
        aum_cutoff: Fixed AUM cutoff.
        aum_percentile: Percentile of all rows' AUM, in [0, 100].
        threshold_percentile: Percentile of the threshold samples' AUM.
        progress: Optional message callback.

    The flag rule is :meth:`AreaUnderMargin.flag`.
    """
    detector = AreaUnderMargin(aum_cutoff=aum_cutoff, aum_percentile=aum_percentile,
                               threshold_percentile=threshold_percentile)
    return detector.score(dynamics, labels, progress)
