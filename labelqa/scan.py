"""The scan pipeline: data -> detectors -> ScanResult."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector
from labelqa.errors import LabelqaError
from labelqa.result import ScanResult

#: Callback for progress messages: ``progress("confident learning", done=False)``.
Progress = Callable[[str], None]


#: Detector names a user can ask for, and what each needs.
DETECTORS = {
    "cl": "confident learning (labels + predicted probabilities)",
    "aum": "area under the margin (per-epoch training logits: --logits-by-epoch)",
    "nrg": "neural relation graph (embeddings: --embeddings-col / --embeddings)",
}


def available_detectors(data: LabelData) -> list[str]:
    """Names of the detectors the data has inputs for, in run order."""
    names = ["cl"]
    if data.task == "multiclass" and data.logits_by_epoch is not None:
        names.append("aum")
    if data.task == "multiclass" and data.embeddings is not None:
        names.append("nrg")
    return names


def make_detector(name: str, data: LabelData, params: dict[str, Any] | None = None) -> Detector:
    """Build detector ``name`` for ``data`` with keyword ``params``.

    ``cl`` is the multi-label confident-learning detector on multi-label data.

    Raises:
        LabelqaError: For an unknown name, or a detector the data cannot feed.
    """
    params = dict(params or {})
    if name == "cl":
        if data.task == "multilabel":
            from labelqa.detectors.multilabel import MultilabelConfidentLearning

            return _build(MultilabelConfidentLearning, params, "multi-label data")
        from labelqa.detectors.confident import ConfidentLearning

        return _build(ConfidentLearning, params, "multiclass data")
    if name == "aum":
        if data.task == "multilabel":
            raise LabelqaError("AUM is not defined for multi-label data", "drop aum from --detectors")
        if data.logits_by_epoch is None:
            raise LabelqaError("the aum detector needs training dynamics", "pass --logits-by-epoch PATH")
        from labelqa.detectors.aum import AreaUnderMargin

        return _build(AreaUnderMargin, params, "the aum detector")
    if name == "nrg":
        if data.task == "multilabel":
            raise LabelqaError("the nrg detector is not defined for multi-label data", "drop nrg from --detectors")
        if data.embeddings is None:
            raise LabelqaError("the nrg detector needs embeddings", "pass --embeddings-col COLUMN or --embeddings FILE")
        from labelqa.detectors.nrg import NeuralRelationGraph

        return _build(NeuralRelationGraph, params, "the nrg detector")
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


def default_detectors(data: LabelData, params: dict[str, dict[str, Any]] | None = None) -> list[Detector]:
    """The detectors a scan runs when none are given: every one the data has inputs for."""
    params = params or {}
    return [make_detector(name, data, params.get(name)) for name in available_detectors(data)]


def scan(
    data: LabelData | str | os.PathLike[str],
    *,
    detectors: Sequence[Detector | str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    primary: str | None = None,
    issue_rule: str = "primary_or_2",
    progress: Progress | None = None,
    **load_options: Any,
) -> ScanResult:
    """Run label-error detectors on a dataset.

    Args:
        data: Validated :class:`LabelData`, or a path to load with
            :func:`labelqa.load` (``load_options`` are passed on).
        detectors: Detector instances or names (``cl``, ``aum``, ``nrg``) to
            run; default every detector the data has inputs for.
        params: Keyword parameters per detector name, for detectors given by
            name or chosen by default (e.g. ``{"cl": {"filter_by": "both"}}``).
        primary: Name of the primary detector; default the first one.
        issue_rule: How flags combine when several detectors run:
            ``primary_or_2`` (default), ``primary``, ``any``, ``all`` or
            ``majority`` (see :mod:`labelqa.detectors.ensemble`).
        progress: Optional callback receiving a short message before each step.
        **load_options: Options of :func:`labelqa.load` when ``data`` is a path.

    Returns:
        The :class:`ScanResult`, ready for report writers, the gate and fix.

    Raises:
        LabelqaError: On invalid input or options.
    """
    if not isinstance(data, LabelData):
        from labelqa.data import load

        if progress:
            progress(f"loading {data}")
        data = load(data, **load_options)
    elif load_options:
        raise LabelqaError(f"load options {sorted(load_options)} given, but data is already loaded")
    params = params or {}
    if detectors is None:
        dets = default_detectors(data, params)
    else:
        dets = [make_detector(d, data, params.get(d)) if isinstance(d, str) else d for d in detectors]
    if not dets:
        raise LabelqaError("no detectors to run", "pass at least one detector")
    results = {}
    for det in dets:
        if det.name in results:
            raise LabelqaError(f"detector {det.name!r} given twice", "pass each detector once")
        if progress:
            progress(f"running detector {det.name}")
        results[det.name] = det.detect(data)
    primary = primary or dets[0].name
    if primary not in results:
        raise LabelqaError(f"primary detector {primary!r} did not run", f"choose one of {sorted(results)}")
    options = {"detectors": {d.name: d.get_params() for d in dets}}
    options.update(data.meta)
    return ScanResult(data=data, results=results, primary=primary, issue_rule=issue_rule, options=options)
