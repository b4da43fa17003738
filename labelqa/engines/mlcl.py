"""Multi-label confident learning over batches: the in-memory detector's rules as partial aggregates.

:class:`~labelqa.detectors.multilabel.MultilabelConfidentLearning` solves K
binary confident-learning problems (one per class, given value
``b = [k in labels]``). Out of core:

* pass 1: :class:`~labelqa.kernels.multilabel.MultilabelSums` -> the
  ``(K, 2)`` thresholds and the per-class mean ``q`` (summary);
* pass 2: :class:`~labelqa.kernels.multilabel.MultilabelJoint` -> raw and
  calibrated ``(K, 2, 2)`` joints, estimated issues, candidate counts, and,
  through the detector's own ``_noise_cells``, how many pairs each
  (class, value) selection takes;
* selection (:class:`MultilabelPlan`): every "the c lowest/largest of class
  k, value b" of the detector becomes a
  :class:`~labelqa.engines.selection.Pick` (same values, same tie rule:
  ties at the cut all in unless that breaks ``min_examples_per_class``);
  ``low_*`` without ``num_to_remove_per_class`` take one more pass (the
  per-value cap applied to the rows the class cut selected, whose values are
  collected: at most the selected rows).

Then :meth:`MultilabelPlan.flags` gives any batch's ``(n, K)`` flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelqa.detectors import multilabel as ml
from labelqa.engines.selection import Cut, Pick
from labelqa.kernels.multilabel import MultilabelJoint, MultilabelRows, MultilabelSums

__all__ = ["Collect", "MultilabelEstimates", "MultilabelPlan", "estimates"]


@dataclass
class MultilabelEstimates:
    """Dataset figures after pass 2; duck-types ``_Block`` (``counts``, ``calibrated``) for ``_noise_cells``."""

    counts: np.ndarray  # (K, 2)
    thresholds: np.ndarray  # (K, 2)
    joint: np.ndarray  # (K, 2, 2)
    calibrated: np.ndarray  # (K, 2, 2)
    est: np.ndarray  # (K,)
    cand_cl: np.ndarray  # (K, 2)
    cand_png: np.ndarray  # (K, 2)
    quality: np.ndarray  # (K,)

    @property
    def n_classes(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.counts[0].sum()) if self.counts.size else 0


def estimates(sums: MultilabelSums, p2: MultilabelJoint) -> MultilabelEstimates:
    counts = sums.counts.copy()
    return MultilabelEstimates(counts, sums.thresholds(), p2.joint.copy(), p2.calibrated(counts), p2.est.copy(),
                               p2.cand_cl.copy(), p2.cand_png.copy(), sums.quality())


class Collect:
    """All values of a (small) set, for a selection whose size is only known at the end."""

    def __init__(self, dtype: np.dtype | type = np.float64) -> None:
        self.dtype = np.dtype(dtype)
        self.parts: list[np.ndarray] = []

    def update(self, values: np.ndarray) -> Collect:
        values = np.asarray(values, dtype=self.dtype)
        if values.size:
            self.parts.append(values.copy())
        return self

    def merge(self, other: Collect) -> Collect:
        self.parts.extend(other.parts)
        return self

    def empty(self) -> Collect:
        return Collect(self.dtype)

    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.empty(0, dtype=self.dtype)

    @property
    def nbytes(self) -> int:
        return sum(int(p.nbytes) for p in self.parts)


def _empty(acc: Any) -> Any:
    if isinstance(acc, Pick):
        return Pick(acc.count, acc.n, largest=acc.largest, dtype=acc.dtype)
    return acc.empty()


@dataclass
class _Stage:
    name: str
    picks: dict[tuple, Any] = field(default_factory=dict)

    def empty(self) -> _Stage:
        return _Stage(self.name, {key: _empty(p) for key, p in self.picks.items()})

    def merge(self, other: _Stage) -> _Stage:
        for key, p in other.picks.items():
            self.picks[key].merge(p)
        return self


class MultilabelPlan:
    """The multi-label detector's flag rule for one dataset, computed over batches.

    Same protocol as :class:`labelqa.engines.cl.FlagPlan`: while
    :meth:`next_stage` returns a stage, feed every batch (:meth:`feed`) and
    :meth:`finish` it; then :meth:`flags`.
    """

    def __init__(self, est: MultilabelEstimates, *, filter_by: str = "prune_by_noise_rate", frac_noise: float = 1.0,
                 num_to_remove_per_class: Any = None, min_examples_per_class: int = 1,
                 dtype: np.dtype | type = np.float64) -> None:
        k = est.n_classes
        self.est = est
        self.method = filter_by
        self.ntr = ml._check_options(k, filter_by=filter_by, frac_noise=frac_noise,
                                     num_to_remove_per_class=num_to_remove_per_class,
                                     min_examples_per_class=min_examples_per_class)
        self.frac = float(frac_noise)
        self.min_ex = int(min_examples_per_class)
        self.caps = np.maximum(est.counts - self.min_ex, 0)
        self.dtype = np.dtype(dtype)
        self.cuts: dict[tuple, Cut] = {}
        self.cap_cuts: dict[tuple, Cut] = {}
        self._stages = self._first_stages()

    # ---- stages ------------------------------------------------------------
    def _score_dtype(self) -> np.dtype:
        return self.dtype if self.method == "low_self_confidence" else np.dtype(np.float64)

    def _first_stages(self) -> list[_Stage]:
        m, est, caps, ntr = self.method, self.est, self.caps, self.ntr
        st = _Stage("cuts")
        n = est.counts

        def add(kind: str, totals: np.ndarray, sizes: np.ndarray, dtype: np.dtype, largest: bool = False) -> None:
            for k, b in zip(*np.nonzero(totals > 0)):
                st.picks[(kind, int(k), int(b))] = Pick(int(totals[k, b]), int(sizes[k, b]), largest=largest,
                                                        dtype=dtype)

        if m in ("prune_by_class", "both"):
            totals = np.minimum(ntr, caps) if ntr is not None else ml._noise_cells(est, self.frac, None, self.min_ex)  # type: ignore[arg-type]
            add("pbc", totals, n, self.dtype)
        if m in ("prune_by_noise_rate", "both"):
            cells = ml._noise_cells(est, self.frac, ntr, self.min_ex)  # type: ignore[arg-type]
            add("pbnr", cells, n, self.dtype)
        if m in ("confident_learning", "predicted_neq_given"):
            counts = est.cand_cl if m == "confident_learning" else est.cand_png
            totals = ntr if ntr is not None else np.rint(self.frac * counts).astype(np.int64)
            self.limits = np.minimum(totals, caps)
            for k, b in zip(*np.nonzero(counts > self.limits)):
                st.picks[("lim", int(k), int(b))] = Pick(int(self.limits[k, b]), int(counts[k, b]), dtype=self.dtype)
        if m in ("low_self_confidence", "low_normalized_margin"):
            sdt = self._score_dtype()
            if ntr is not None:
                add("low", np.minimum(ntr, caps), n, sdt)
            else:
                totals = np.rint(self.frac * est.est).astype(np.int64)
                for k in np.flatnonzero(totals > 0):
                    st.picks[("top", int(k), -1)] = Pick(int(totals[k]), est.n_rows, dtype=sdt)
        return [st] if st.picks else []

    def next_stage(self) -> _Stage | None:
        return self._stages[0] if self._stages else None

    def finish(self, stage: _Stage) -> None:
        self._stages.pop(0)
        if stage.name == "cuts":
            for key, p in stage.picks.items():
                kind, k, b = key
                limit = None if kind == "top" else int(self.caps[k, b])
                self.cuts[key] = p.cut(limit)
            caps_stage = _Stage("caps")
            for key, cut in self.cuts.items():
                if key[0] != "top" or cut.mode == "none":
                    continue
                k = key[1]
                for b in (0, 1):
                    if cut.selected > self.caps[k, b]:  # the group may hold more than its cap
                        caps_stage.picks[("cap", k, b)] = Collect(self._score_dtype())
            if caps_stage.picks:
                self._stages.insert(0, caps_stage)
        elif stage.name == "caps":
            for key, coll in stage.picks.items():
                _kind, k, b = key
                values = coll.values()
                cap = int(self.caps[k, b])
                if values.size > cap:
                    pick = Pick(cap, values.size, dtype=coll.dtype).update(values)
                    self.cap_cuts[(k, b)] = pick.cut(cap)

    # ---- values --------------------------------------------------------------
    def _scores(self, rs: MultilabelRows) -> np.ndarray:
        return rs.self_conf if self.method == "low_self_confidence" else rs.normalized_margin

    def _values(self, rs: MultilabelRows, kind: str, k: int) -> np.ndarray:
        if kind in ("pbc", "lim"):
            return rs.self_conf[k]
        if kind == "pbnr":
            return rs.self_conf[k] - rs.other[k]  # smallest q - other == largest margin (same rounding)
        return self._scores(rs)[k]

    def _rows(self, rs: MultilabelRows, kind: str, k: int, b: int) -> np.ndarray | slice:
        if kind == "top":
            return slice(None)
        grp = rs.y[k] if b else ~rs.y[k]
        if kind == "lim":
            grp = grp & rs.candidates(self.method)[k]
        return grp

    def feed(self, stage: _Stage, rs: MultilabelRows) -> None:
        """Fold one batch into ``stage``."""
        if stage.name == "cuts":
            for (kind, k, b), p in stage.picks.items():
                p.update(self._values(rs, kind, k)[self._rows(rs, kind, k, b)])
        elif stage.name == "caps":
            scores = self._scores(rs)
            for (_kind, k, b), coll in stage.picks.items():
                sel = self.cuts[("top", k, -1)].select(scores[k])
                grp = rs.y[k] if b else ~rs.y[k]
                coll.update(scores[k][sel & grp])

    # ---- flags ---------------------------------------------------------------
    def _apply(self, rs: MultilabelRows, kind: str) -> np.ndarray:
        mask = np.zeros((rs.k, rs.n), dtype=bool)
        for key, cut in self.cuts.items():
            if key[0] != kind:
                continue
            _kind, k, b = key
            rows = self._rows(rs, kind, k, b)
            mask[k, rows] = cut.select(self._values(rs, kind, k)[rows])
        return mask

    def flags_t(self, rs: MultilabelRows) -> np.ndarray:
        """``(K, n)`` flags of one batch."""
        m = self.method
        if m == "prune_by_class":
            mask = self._apply(rs, "pbc")
        elif m == "prune_by_noise_rate":
            mask = self._apply(rs, "pbnr")
        elif m == "both":
            mask = self._apply(rs, "pbc") & self._apply(rs, "pbnr")
        elif m in ("confident_learning", "predicted_neq_given"):
            cand = rs.candidates(m)
            mask = cand.copy()
            for key, cut in self.cuts.items():
                _kind, k, b = key
                rows = self._rows(rs, "lim", k, b)
                mask[k, rows] = cut.select(rs.self_conf[k][rows])
        elif self.ntr is not None:
            mask = self._apply(rs, "low")
        else:
            mask = np.zeros((rs.k, rs.n), dtype=bool)
            scores = self._scores(rs)
            for key, cut in self.cuts.items():
                k = key[1]
                sel = cut.select(scores[k])
                for b in (0, 1):
                    cap_cut = self.cap_cuts.get((k, b))
                    if cap_cut is not None:
                        g = sel & (rs.y[k] if b else ~rs.y[k])
                        sel[g] = cap_cut.select(scores[k][g])
                mask[k] = sel
        if m in ml._AGREEMENT_RULE_METHODS:
            mask &= rs.disagrees
        return mask

    def flags(self, rs: MultilabelRows) -> np.ndarray:
        """``(n, K)`` flags of one batch (the detector's ``run.flags`` rows)."""
        return np.ascontiguousarray(self.flags_t(rs).T)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for s in self._stages for p in s.picks.values())
