"""The shared detector interface and the result every detector returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from labelqa.data.model import LabelData


@dataclass(eq=False)
class DetectorResult:
    """What a detector found, in the same shape for every detector.

    Attributes:
        name: Detector name; report columns are ``<name>_score`` and
            ``<name>_issue``.
        scores: Per-row label quality, shape ``(N,)``, lower = more suspect.
            The documented range depends on the detector ([0, 1] for
            confident learning).
        issues: Per-row flag, shape ``(N,)``, bool.
        suggested: Per-row suggested label as a class code, shape ``(N,)``;
            for multi-label detectors the suggested label set as an N x K
            bool matrix. Unflagged rows suggest their given label.
        suggested_confidence: Per-row probability of the suggested label,
            shape ``(N,)``, or ``None`` when the detector has no such notion.
        summary: Dataset-level figures, JSON-serialisable (lists, floats,
            ints, strings); e.g. noise matrix and thresholds.
        params: The detector's parameters, as given.
        extra: Further per-row arrays, length N in the first axis (e.g. for
            multi-label: ``labels_to_remove``/``labels_to_add`` as N x K
            bool; for NRG: ``outlier_score``). Report writers turn each into
            a column.
    """

    name: str
    scores: np.ndarray
    issues: np.ndarray
    suggested: np.ndarray
    suggested_confidence: np.ndarray | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_issues(self) -> int:
        """Number of flagged rows."""
        return int(np.count_nonzero(self.issues))


class Detector:
    """Base class of detectors, in the spirit of a scikit-learn estimator.

    Subclasses are keyword-only dataclasses: parameters are stored as given and
    validated in :meth:`detect`; learned state lives on the returned
    :class:`DetectorResult`, never on the detector.
    """

    name: ClassVar[str] = "detector"
    #: Why the detector needs every row in memory at once (a few words, e.g.
    #: "the neighbour graph over all embeddings"), or ``None`` when it can run
    #: on batches. The engine chooser asks this instead of guessing.
    needs_all_rows: ClassVar[str | None] = None

    def get_params(self) -> dict[str, Any]:
        """The detector's parameters as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def detect(self, data: LabelData) -> DetectorResult:  # pragma: no cover - interface
        """Score and flag every row of ``data``."""
        raise NotImplementedError
