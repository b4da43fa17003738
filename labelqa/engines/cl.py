"""Confident learning over batches: the in-memory detector's rules, as partial aggregates.

Everything per row is computed per batch with the detector's own code
(:class:`~labelqa.kernels.confident.ConfidentJointCounts`, the score
functions of :mod:`labelqa.detectors.confident`); everything per dataset is a
partial aggregate with ``update``/``merge``:

* pass 1: :class:`~labelqa.kernels.confident.ClassProbSums` -> thresholds;
* pass 2: :class:`Pass2` (confident joint + per-class candidate counts) ->
  the calibrated joint, the estimated number of issues and, through the
  detector's ``_noise_cells``, how many rows each selection takes;
* selection passes (:class:`FlagPlan`): each "the c lowest/largest" choice of
  the detector becomes a :class:`~labelqa.engines.selection.Pick` fed with
  the same values, whose result (a cut value and whether the ties at it are
  in) is a rule any batch can apply. ``prune_by_noise_rate`` may need one
  more counting pass (ties across cells vs the ``min_examples`` cap), the
  ``low_*`` methods without ``num_to_remove_per_class`` one more (a global
  cut among the per-class eligible rows). Most methods need one.

So flags are those of :class:`~labelqa.detectors.confident.ConfidentLearning`
row for row, with memory bounded by the number of rows to flag, not N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from labelqa.detectors import confident as cl
from labelqa.engines.selection import Cut, Pick
from labelqa.engines.source import Batch
from labelqa.kernels.confident import ClassProbSums, ConfidentJointCounts

__all__ = ["Estimates", "FlagPlan", "Pass2", "RowState", "pass1", "pass2"]


class RowState:
    """Per-row quantities of one batch, as ``_Prepared`` computes them for all rows."""

    def __init__(self, batch: Batch, thresholds: np.ndarray) -> None:
        self.batch = batch
        self.labels = batch.labels
        self.probs = batch.probs
        self.n = batch.n
        self.k = self.probs.shape[1]
        self.thresholds = thresholds
        r = np.arange(self.n)
        top = self.probs.argmax(axis=1)
        self.max_prob = self.probs[r, top]
        self.self_conf = self.probs[r, self.labels]
        self.joint = ConfidentJointCounts(self.k)
        self.guess = self.joint.update(self.labels, self.probs, thresholds, argmax=top)

    @cached_property
    def agrees(self) -> np.ndarray:
        return self.self_conf.astype(np.float64) >= self.max_prob.astype(np.float64) - cl.AGREEMENT_TOLERANCE

    @cached_property
    def off_diagonal(self) -> np.ndarray:
        return (self.guess >= 0) & (self.guess != self.labels)

    @cached_property
    def _groups(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(self.labels, minlength=self.k))])
        return order, starts

    def class_rows(self, k: int) -> np.ndarray:
        """Batch positions of the rows given ``k``, in order."""
        order, starts = self._groups
        return order[starts[k] : starts[k + 1]]

    @cached_property
    def normalized_margin(self) -> np.ndarray:
        return cl._normalized_margin(self.labels, self.probs)

    def scores(self, method: str, adjust: bool) -> np.ndarray:
        """The detector's per-row scores (``score_method``, ``adjust_pred_probs``)."""
        return cl._scores(self.labels, self.probs, method, adjust=adjust, thresholds=self.thresholds,
                          self_conf=self.self_conf)

    def suggestions(self, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(suggested, suggested_confidence)`` exactly as ``ConfidentLearning.detect``."""
        suggested = self.labels.copy()
        flagged = np.flatnonzero(flags)
        if flagged.size:
            guess = self.guess[flagged]
            usable = (guess >= 0) & (guess != self.labels[flagged])
            suggested[flagged] = np.where(usable, guess, cl._best_other_class(self.labels[flagged], self.probs[flagged]))
        conf = self.probs[np.arange(self.n), suggested].astype(np.float64)
        return suggested, conf


# --------------------------------------------------------------------------- passes 1-2
def pass1(batch: Batch, partial: ClassProbSums | None = None) -> ClassProbSums:
    """Fold a batch into the class sums (a new partial when ``partial`` is None)."""
    part = partial if partial is not None else ClassProbSums(batch.probs.shape[1])
    return part.update(batch.labels, batch.probs)


@dataclass
class Pass2:
    """Confident joint plus per-class counts of the CL / predicted-neq-given candidates."""

    n_classes: int
    joint: ConfidentJointCounts = None  # type: ignore[assignment]
    cand_cl: np.ndarray = None  # type: ignore[assignment]  # off-diagonal and disagreeing, per class
    cand_png: np.ndarray = None  # type: ignore[assignment]  # disagreeing, per class

    def __post_init__(self) -> None:
        k = self.n_classes
        if self.joint is None:
            self.joint = ConfidentJointCounts(k)
        if self.cand_cl is None:
            self.cand_cl = np.zeros(k, dtype=np.int64)
        if self.cand_png is None:
            self.cand_png = np.zeros(k, dtype=np.int64)

    def merge(self, other: Pass2) -> Pass2:
        self.joint.merge(other.joint)
        self.cand_cl += other.cand_cl
        self.cand_png += other.cand_png
        return self


def pass2(batch: Batch, thresholds: np.ndarray, partial: Pass2 | None = None) -> Pass2:
    """Fold a batch into the confident joint and candidate counts."""
    k = batch.probs.shape[1]
    part = partial if partial is not None else Pass2(k)
    rs = RowState(batch, thresholds)
    part.joint.merge(rs.joint)
    dis = ~rs.agrees
    part.cand_png += np.bincount(rs.labels[dis], minlength=k)
    part.cand_cl += np.bincount(rs.labels[dis & rs.off_diagonal], minlength=k)
    return part


@dataclass
class Estimates:
    """Dataset-level figures after pass 2; duck-types ``_Prepared`` for the detector's helpers."""

    class_counts: np.ndarray
    thresholds: np.ndarray
    joint: np.ndarray
    cand_cl: np.ndarray
    cand_png: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(self.class_counts.size)

    @property
    def n_rows(self) -> int:
        return int(self.class_counts.sum())

    @cached_property
    def calibrated(self) -> np.ndarray:
        return cl.calibrate_confident_joint(self.joint, self.class_counts)

    @property
    def estimated_num_issues(self) -> int:
        return int(self.cand_cl.sum())

    def caps(self, min_examples: int) -> np.ndarray:
        return np.maximum(self.class_counts - min_examples, 0)

    def detector_summary(self, detector: cl.ConfidentLearning) -> dict[str, Any]:
        """The detector's ``summary`` (same code: ``ConfidentLearning._summary``)."""
        return detector._summary(self)  # type: ignore[arg-type]


def estimates(sums: ClassProbSums, p2: Pass2) -> Estimates:
    return Estimates(sums.counts.copy(), sums.thresholds(), p2.joint.joint.copy(), p2.cand_cl.copy(), p2.cand_png.copy())


# --------------------------------------------------------------------------- selection
@dataclass
class _Stage:
    """One selection pass: picks keyed by name, or per-class counters."""

    name: str
    picks: dict[tuple, Pick] = field(default_factory=dict)
    counts: np.ndarray | None = None

    def empty(self) -> _Stage:
        fresh = {key: Pick(p.count, p.n, largest=p.largest, dtype=p.dtype)
                 for key, p in self.picks.items()}
        return _Stage(self.name, fresh, None if self.counts is None else np.zeros_like(self.counts))

    def merge(self, other: _Stage) -> _Stage:
        for key, p in other.picks.items():
            self.picks[key].merge(p)
        if self.counts is not None and other.counts is not None:
            self.counts += other.counts
        return self


class FlagPlan:
    """The detector's flag rule for one dataset, computed over batches.

    Usage: while :meth:`next_stage` returns a stage, feed every batch to it
    (:meth:`feed`, or per partition into ``stage.empty()`` then ``merge``) and
    :meth:`finish` it; then :meth:`flags` gives any batch's flags.
    """

    def __init__(
        self,
        est: Estimates,
        *,
        filter_by: str = "prune_by_noise_rate",
        frac_noise: float = 1.0,
        num_to_remove_per_class: Sequence[int] | None = None,
        min_examples_per_class: int = 1,
        dtype: np.dtype | type = np.float64,
    ) -> None:
        k = est.n_classes
        self.est = est
        self.method = filter_by
        self.ntr = cl._check_options(k, filter_by=filter_by, frac_noise=frac_noise,
                                     num_to_remove_per_class=num_to_remove_per_class,
                                     min_examples_per_class=min_examples_per_class)
        self.frac = float(frac_noise)
        self.min_ex = int(min_examples_per_class)
        self.caps = est.caps(self.min_ex)
        self.n_k = est.class_counts
        self.dtype = np.dtype(dtype)
        self.cuts: dict[tuple, Cut] = {}
        self.allow_ties = np.ones(k, dtype=bool)  # PBNR: ties at the cuts within the cap
        self.eligible_cut: Cut | None = None
        self._stages = self._first_stages()

    # ---- stage construction --------------------------------------------
    def _pick(self, count: int, n: int, largest: bool = False, dtype: np.dtype | None = None) -> Pick:
        return Pick(int(count), int(n), largest=largest, dtype=dtype or self.dtype)

    def _first_stages(self) -> list[_Stage]:
        m, k = self.method, self.est.n_classes
        st = _Stage("cuts")
        self.pbc_limit: dict[int, int] = {}
        if m in ("prune_by_class", "both"):
            totals = (np.minimum(self.ntr, self.caps) if self.ntr is not None
                      else cl._noise_cells(self.est, self.frac, None, self.min_ex).sum(axis=1))  # type: ignore[arg-type]
            for c in np.flatnonzero(totals > 0):
                st.picks[("pbc", int(c))] = self._pick(totals[c], self.n_k[c])
        if m in ("prune_by_noise_rate", "both"):
            self.cells = cl._noise_cells(self.est, self.frac, self.ntr, self.min_ex)  # type: ignore[arg-type]
            for c in np.flatnonzero(self.cells.sum(axis=1) > 0):
                for j in np.flatnonzero(self.cells[c]):
                    st.picks[("pbnr", int(c), int(j))] = self._pick(self.cells[c, j], self.n_k[c], largest=True)
        if m in ("confident_learning", "predicted_neq_given"):
            counts = self.est.cand_cl if m == "confident_learning" else self.est.cand_png
            totals = self.ntr if self.ntr is not None else np.rint(self.frac * counts).astype(np.int64)
            self.limits = np.minimum(totals, self.caps)
            for c in np.flatnonzero(counts > self.limits):
                st.picks[("lim", int(c))] = self._pick(self.limits[c], counts[c])
        if m in ("low_self_confidence", "low_normalized_margin"):
            sdt = self.dtype if m == "low_self_confidence" else np.dtype(np.float64)
            if self.ntr is not None:
                for c in np.flatnonzero(np.minimum(self.ntr, self.caps) > 0):
                    st.picks[("low", int(c))] = self._pick(min(self.ntr[c], self.caps[c]), self.n_k[c], dtype=sdt)
            else:
                self.total = int(np.rint(self.frac * self.est.estimated_num_issues))
                if self.total > 0:
                    for c in np.flatnonzero(self.caps < self.n_k):
                        st.picks[("elig", int(c))] = self._pick(self.caps[c], self.n_k[c], dtype=sdt)
        del k
        return [st] if st.picks else self._after_cuts()

    def _after_cuts(self) -> list[_Stage]:
        """Stages that depend on the cuts: PBNR tie counting, the global low-score cut."""
        out = []
        m, k = self.method, self.est.n_classes
        if m in ("prune_by_noise_rate", "both"):
            need = np.zeros(k, dtype=bool)
            for c in np.flatnonzero(self.cells.sum(axis=1) > 0):
                cuts = [self.cuts[("pbnr", int(c), int(j))] for j in np.flatnonzero(self.cells[c])]
                if any(ct.mode == "all" for ct in cuts):
                    continue  # every row strict: the detector keeps them (count <= cap)
                if sum(ct.selected for ct in cuts) > self.caps[c]:
                    need[c] = True  # ties might break the cap: count the union
            self.need_count = need
            if need.any():
                out.append(_Stage("pbnr_count", counts=np.zeros(k, dtype=np.int64)))
        if m in ("low_self_confidence", "low_normalized_margin") and self.ntr is None and getattr(self, "total", 0) > 0:
            n_elig = 0
            for c in range(k):
                cut = self.cuts.get(("elig", c))
                n_elig += int(self.n_k[c]) if cut is None else cut.selected
            sdt = self.dtype if m == "low_self_confidence" else np.dtype(np.float64)
            out.append(_Stage("global", {("global",): self._pick(self.total, n_elig, dtype=sdt)}))
        return out

    def next_stage(self) -> _Stage | None:
        """The next selection stage to feed, or None when the rule is complete."""
        return self._stages[0] if self._stages else None

    def finish(self, stage: _Stage) -> None:
        """Record a fed stage's results and plan what follows."""
        self._stages.pop(0)
        if stage.name == "cuts":
            for key, p in stage.picks.items():
                limit = None if key[0] == "pbnr" else int(self.caps[key[1]])
                self.cuts[key] = p.cut(limit)
            self._stages = self._after_cuts() + self._stages
        elif stage.name == "pbnr_count":
            assert stage.counts is not None
            self.allow_ties = ~(self.need_count & (stage.counts > self.caps))
        elif stage.name == "global":
            self.eligible_cut = stage.picks[("global",)].cut(None)

    # ---- feeding ---------------------------------------------------------
    def _low_scores(self, rs: RowState) -> np.ndarray:
        return rs.self_conf if self.method == "low_self_confidence" else rs.normalized_margin

    def feed(self, stage: _Stage, rs: RowState) -> None:
        """Fold one batch into ``stage`` (its picks or counters)."""
        if stage.name == "cuts":
            low = self._low_scores(rs) if self.method.startswith("low_") else None
            cand = None
            for key, p in stage.picks.items():
                kind, c = key[0], key[1]
                rows = rs.class_rows(c)
                if kind == "pbc":
                    p.update(rs.self_conf[rows])
                elif kind == "pbnr":
                    j = key[2]
                    p.update(rs.probs[rows, j] - rs.probs[rows, c])
                elif kind == "lim":
                    if cand is None:
                        cand = self._candidates(rs)
                    p.update(rs.self_conf[rows[cand[rows]]])
                else:  # "low" / "elig"
                    p.update(low[rows])  # type: ignore[index]
        elif stage.name == "pbnr_count":
            assert stage.counts is not None
            for c in np.flatnonzero(self.need_count):
                strict, tied = self._pbnr_class(rs, int(c))
                stage.counts[c] += int(np.count_nonzero(strict | tied))
        elif stage.name == "global":
            elig = self._eligible(rs)
            stage.picks[("global",)].update(self._low_scores(rs)[elig])

    # ---- flags -------------------------------------------------------------
    def _candidates(self, rs: RowState) -> np.ndarray:
        cand = ~rs.agrees
        if self.method == "confident_learning":
            cand = cand & rs.off_diagonal
        return cand

    def _pbnr_class(self, rs: RowState, c: int) -> tuple[np.ndarray, np.ndarray]:
        rows = rs.class_rows(c)
        strict = np.zeros(rows.size, dtype=bool)
        tied = np.zeros(rows.size, dtype=bool)
        for j in np.flatnonzero(self.cells[c]):
            cut = self.cuts[("pbnr", c, int(j))]
            if cut.mode == "all":
                strict[:] = True
                continue
            if cut.mode == "none":
                continue
            margin = rs.probs[rows, j] - rs.probs[rows, c]
            strict |= margin > cut.value
            tied |= margin == cut.value
        return strict, tied

    def _eligible(self, rs: RowState) -> np.ndarray:
        elig = np.ones(rs.n, dtype=bool)
        low = self._low_scores(rs)
        for key, cut in self.cuts.items():
            if key[0] == "elig":
                rows = rs.class_rows(key[1])
                elig[rows] = cut.select(low[rows])
        return elig

    def flags(self, rs: RowState) -> np.ndarray:
        """The detector's flags for the rows of one batch."""
        m = self.method
        if m in ("prune_by_class", "both", "prune_by_noise_rate"):
            mask = np.zeros(rs.n, dtype=bool)
            if m != "prune_by_noise_rate":
                for key, cut in self.cuts.items():
                    if key[0] == "pbc":
                        rows = rs.class_rows(key[1])
                        mask[rows] = cut.select(rs.self_conf[rows])
            if m != "prune_by_class":
                pbnr = np.zeros(rs.n, dtype=bool)
                for c in np.flatnonzero(self.cells.sum(axis=1) > 0):
                    strict, tied = self._pbnr_class(rs, int(c))
                    pbnr[rs.class_rows(int(c))] = strict | tied if self.allow_ties[c] else strict
                mask = pbnr if m == "prune_by_noise_rate" else mask & pbnr
        elif m in ("confident_learning", "predicted_neq_given"):
            mask = self._candidates(rs).copy()
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
        if m in cl._AGREEMENT_RULE_METHODS:
            mask &= ~rs.agrees
        return mask

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for s in self._stages for p in s.picks.values())
