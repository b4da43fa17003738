"""LabelData: the validated, in-memory view of a dataset that detectors consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from labelqa.data.build import validated_fields
from labelqa.models import DEFAULT_COMBINE

Task = Literal["multiclass", "multilabel"]


@dataclass(frozen=True, eq=False)
class LabelData:
    """Validated labels and model outputs.

    Validation happens once, when the data is built by :func:`labelqa.load`
    (or by :meth:`from_arrays`); detectors trust what they get.

    Attributes:
        labels: Given labels. Multiclass: integer class codes, shape ``(N,)``
            (int64). Multi-label: an ``(N, K)`` bool matrix, ``labels[i, k]``
            true when row ``i`` has class ``classes[k]`` (a row may have none).
        pred_probs: Out-of-sample predicted probabilities, shape ``(N, K)``,
            float32 or float64; column ``k`` belongs to ``classes[k]``. Rows
            sum to 1 for multiclass data; for multi-label data each value is an
            independent probability in [0, 1].
        classes: The class values in probability-column order, as they appear
            in the label column (``str`` or ``int``).
        ids: Row identifiers, shape ``(N,)``: the ``--id-col`` values, or the
            row index.
        task: ``"multiclass"`` or ``"multilabel"``.
        embeddings: Optional feature embeddings, shape ``(N, D)``, float32,
            finite, no all-zero row (for the NRG detector).
        logits_by_epoch: Optional per-epoch training logits for
            training-dynamics detectors: a :class:`labelqa.data.dynamics.Dynamics` when
            loaded by :func:`labelqa.load` (see :mod:`labelqa.detectors.aum`).
        source: Where the data came from (a path), for messages and reports.
        label_col: Name of the label column in the source.
        id_col: Name of the id column in the source, or ``None`` for the row
            index.
        meta: Free-form provenance (input format, probability source...).
        model_pred_probs: When several models' probabilities were given
            (``pred_probs_col=["a", "b"]``, several files, or a list of
            matrices), each model's validated ``(N, K)`` matrix, in the order
            given; ``pred_probs`` is then their combination
            (``meta["combine_models"]``: ``log_linear``, ``geometric``, ``mean``
            or ``loss_weighted``, see :mod:`labelqa.models`) and
            ``meta["models"]`` names their sources (``"column a"``,
            ``"file p.npy"``). ``None`` for a single model. Detectors read
            ``pred_probs``; reports use these to show where the models
            disagree (:func:`labelqa.models.disagreement_columns`).
        known_top: ``(pred_probs, top)``: each row's most probable class
            (``pred_probs.argmax(axis=1)``, int32) as the probability checks
            found it, or ``None``; read it with :meth:`top_class`, which
            ignores it for any other ``pred_probs`` (e.g. after
            ``dataclasses.replace``).
    """

    labels: np.ndarray
    pred_probs: np.ndarray
    classes: tuple[Any, ...]
    ids: np.ndarray
    task: Task = "multiclass"
    embeddings: np.ndarray | None = None
    logits_by_epoch: Any = None
    source: str | None = None
    label_col: str = "label"
    id_col: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    model_pred_probs: tuple[np.ndarray, ...] | None = None
    known_top: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def top_class(self) -> np.ndarray | None:
        """Each row's most probable class (``pred_probs.argmax(axis=1)``) when the checks found it, else ``None``."""
        if self.known_top is None or self.known_top[0] is not self.pred_probs:
            return None
        return self.known_top[1]

    @property
    def n_models(self) -> int:
        """Number of models whose probabilities were given (1 unless ``model_pred_probs`` is set)."""
        return 1 if self.model_pred_probs is None else len(self.model_pred_probs)

    @property
    def n_rows(self) -> int:
        """Number of rows N."""
        return int(self.pred_probs.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """Class values as strings, for display."""
        return [str(c) for c in self.classes]

    def class_counts(self) -> np.ndarray:
        """Number of rows given each class, shape ``(K,)`` (for multi-label data:
        rows whose label set holds the class)."""
        if self.task == "multilabel":
            return np.count_nonzero(self.labels, axis=0).astype(np.int64)
        return np.bincount(self.labels, minlength=self.n_classes)

    def label_values(self, codes: np.ndarray) -> np.ndarray:
        """Map integer class codes back to class values (object array)."""
        values = np.asarray(self.classes, dtype=object)
        return values[np.asarray(codes, dtype=np.int64)]

    @classmethod
    def from_arrays(
        cls,
        labels: Any,
        pred_probs: Any,
        *,
        classes: Any = None,
        ids: Any = None,
        renormalize: bool = False,
        source: str | None = None,
        task: Task = "multiclass",
        embeddings: Any = None,
        combine_models: str = DEFAULT_COMBINE,
        model_names: Any = None,
    ) -> LabelData:
        """Build validated data from in-memory arrays.

        Args:
            labels: Given labels. Multiclass: shape ``(N,)``, integer codes
                ``0..K-1`` or class values (strings or ints) found in
                ``classes``. Multi-label: an ``(N, K)`` 0/1 or bool matrix (a
                2-D numpy array or DataFrame), or N label sets (a list of
                lists, a pandas Series of lists, a pyarrow list array) of class
                values or codes, possibly empty.
            pred_probs: Predicted probabilities, shape ``(N, K)``; or a list
                of such matrices, one per model (each validated, all the same
                shape), combined by ``combine_models`` into ``pred_probs``
                and kept in ``model_pred_probs``.
            classes: Class values in column order. Default: ``0..K-1`` when
                labels are integer codes (or a label matrix), else the sorted
                unique labels when their count equals K.
            ids: Row identifiers; default the row index.
            renormalize: Divide each probability row by its sum instead of
                rejecting rows that do not sum to 1 (multiclass only).
            source: A name for messages.
            task: ``"multiclass"`` or ``"multilabel"`` (probabilities are
                then independent per class, each in [0, 1]).
            embeddings: Optional ``(N, D)`` feature embeddings, stored as
                float32.
            combine_models: ``"log_linear"`` (default), ``"geometric"``, ``"mean"``
                or ``"loss_weighted"``; see :mod:`labelqa.models`.
            model_names: Names of the models for messages and
                ``meta["models"]`` (default ``pred_probs[0]``, ...).

        Raises:
            LabelqaError: On any invalid input, with what and where.
        """
        return cls(**validated_fields(
            labels, pred_probs, classes=classes, ids=ids, renormalize=renormalize, source=source,
            task=task, embeddings=embeddings, combine_models=combine_models, model_names=model_names,
        ))
