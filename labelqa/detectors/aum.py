"""Area Under the Margin (AUM): flag rows a model keeps ranking another class above during training.

Spec: ``ALGORITHMS.md`` section 3 (Pleiss, Zhang, Elenberg, Weinberger,
NeurIPS 2020). The margin of row ``i`` at epoch ``t`` is its label's raw
logit minus the largest other logit; AUM is the mean margin over the recorded
epochs. Mislabeled rows are learned late (or never), so their AUM is low or
negative.

Scores: ``sigmoid(AUM)`` in (0, 1), lower = more suspect. The map is monotone,
so the ranking is the AUM ranking; 0.5 is AUM = 0 (for two classes it is the
softmax probability of the given label at the mean logits). The raw AUM is
kept in ``extra["aum"]`` (a per-row report column).

Flag rule (first that applies, recorded in ``summary["rule"]``):

1. ``cutoff`` given: flag AUM < cutoff.
2. ``percentile`` given: flag AUM below that percentile of all rows' AUM.
3. threshold samples recorded: per run, cutoff = ``threshold_percentile``
   (99) percentile of the threshold samples' AUM; a row is flagged only if its
   AUM is below the cutoff in every run where it was an ordinary row.
4. otherwise: flag AUM < 0 (rank only; another class was ahead on average).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from labelqa.aum import Dynamics, load_dynamics, score_dynamics
from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.errors import LabelqaError


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@dataclass(kw_only=True, eq=False)
class AreaUnderMargin(Detector):
    """AUM detector; reads the training dynamics in ``data.logits_by_epoch``.

    Args:
        cutoff: Flag rows with AUM below this value (overrides the threshold
            samples).
        percentile: Flag rows whose AUM is below this percentile (0..100) of
            all rows' AUM (overrides the threshold samples).
        threshold_percentile: Percentile of the threshold samples' AUM used as
            the cutoff (99 in the paper).
        threshold_samples: Threshold-sample marks for a single-run source that
            is not yet loaded (a path, column name or bool array); see
            :func:`labelqa.aum.load_dynamics`.

    ``data.logits_by_epoch`` may be a :class:`labelqa.aum.Dynamics` (from
    :func:`labelqa.aum.load_dynamics`) or anything ``load_dynamics`` accepts
    (a path, an ``(E, N, K)`` array...), loaded here against the data's N and K.
    """

    name: ClassVar[str] = "aum"

    cutoff: float | None = None
    percentile: float | None = None
    threshold_percentile: float = 99.0
    threshold_samples: Any = None

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        thr = params.get("threshold_samples")
        if thr is not None and not isinstance(thr, (str, int, float, bool)):
            params["threshold_samples"] = str(thr) if hasattr(thr, "__fspath__") else "<array>"
        return params

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
        res = score_dynamics(dyn, labels, cutoff=self.cutoff, percentile=self.percentile,
                             threshold_percentile=self.threshold_percentile)
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
