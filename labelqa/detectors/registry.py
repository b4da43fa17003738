"""The detectors a user can name, what each needs, and how one is built from option values."""

from __future__ import annotations

import dataclasses
from typing import Any

from labelqa.detectors.base import Detector
from labelqa.errors import LabelqaError

__all__ = ["DETECTORS", "available_detectors", "make_detector"]

#: Detector names a user can ask for, and what each needs.
DETECTORS = {
    "cl": "confident learning (labels + predicted probabilities)",
    "aum": "area under the margin (per-epoch training logits: --logits-by-epoch)",
    "nrg": "neural relation graph (embeddings: --embeddings-col / --embeddings)",
    "dup": "duplicates with conflicting labels (--dup-cols and/or embeddings)",
}


def available_detectors(task: str, *, dynamics: bool = False, embeddings: bool = False) -> list[str]:
    """Names of the detectors data with these inputs can feed, in run order."""
    names = ["cl"]
    if task == "multiclass" and dynamics:
        names.append("aum")
    if task == "multiclass" and embeddings:
        names.append("nrg")
    return names


def make_detector(name: str, task: str, params: dict[str, Any] | None = None, *, dynamics: bool = True,
                  embeddings: bool = True) -> Detector:
    """Build detector ``name`` for data of ``task`` with keyword ``params`` (option names).

    ``cl`` is the multi-label confident-learning detector on multi-label data.
    ``dynamics``/``embeddings``: whether the data has those inputs.

    Raises:
        LabelqaError: For an unknown name, an option the detector does not
            take, or a detector the data cannot feed.
    """
    params = dict(params or {})
    if name == "cl":
        if task == "multilabel":
            from labelqa.detectors.multilabel import MultilabelConfidentLearning

            return _build(MultilabelConfidentLearning, params, "multi-label data")
        from labelqa.detectors.confident import ConfidentLearning

        return _build(ConfidentLearning, params, "multiclass data")
    if name == "aum":
        if task == "multilabel":
            raise LabelqaError("AUM is not defined for multi-label data", "drop aum from --detectors")
        if not dynamics:
            raise LabelqaError("the aum detector needs training dynamics", "pass --logits-by-epoch PATH")
        from labelqa.detectors.aum import AreaUnderMargin

        return _build(AreaUnderMargin, params, "the aum detector")
    if name == "nrg":
        if task == "multilabel":
            raise LabelqaError("the nrg detector is not defined for multi-label data", "drop nrg from --detectors")
        if not embeddings:
            raise LabelqaError("the nrg detector needs embeddings", "pass --embeddings-col COLUMN or --embeddings FILE")
        from labelqa.detectors.nrg import NeuralRelationGraph

        return _build(NeuralRelationGraph, params, "the nrg detector")
    if name == "dup":
        if task == "multilabel":
            raise LabelqaError("the dup detector is defined for multiclass data", "drop dup from --detectors")
        if not embeddings and not params.get("dup_cols"):
            raise LabelqaError("the dup detector needs columns to hash or embeddings",
                               "pass --dup-cols COL,... or --embeddings-col COLUMN")
        from labelqa.detectors.duplicates import DuplicateDetector

        return _build(DuplicateDetector, params, "the dup detector")
    raise LabelqaError(f"unknown detector {name!r}", f"choose from {', '.join(DETECTORS)}")


def _build(cls: type, params: dict[str, Any], what: str) -> Detector:
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise LabelqaError(
            f"option {', '.join(unknown)} does not apply to {what}",
            f"{cls.__name__} takes {', '.join(sorted(fields))}",
        )
    return cls(**params)
