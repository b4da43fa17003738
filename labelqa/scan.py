"""The scan pipeline: data -> detectors -> ScanResult."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector
from labelqa.errors import LabelqaError
from labelqa.result import ScanResult

#: Callback for progress messages: ``progress("confident learning", done=False)``.
Progress = Callable[[str], None]


def default_detectors(data: LabelData) -> list[Detector]:
    """The detectors a scan runs when none are given: those the data supports."""
    from labelqa.detectors.confident import ConfidentLearning

    return [ConfidentLearning()]


def scan(
    data: LabelData | str | os.PathLike[str],
    *,
    detectors: Sequence[Detector] | None = None,
    primary: str | None = None,
    progress: Progress | None = None,
    **load_options: Any,
) -> ScanResult:
    """Run label-error detectors on a dataset.

    Args:
        data: Validated :class:`LabelData`, or a path to load with
            :func:`labelqa.load` (``load_options`` are passed on).
        detectors: Detector instances to run; default :func:`default_detectors`.
        primary: Name of the detector whose score and flags drive the report;
            default the first detector.
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
    dets = list(detectors) if detectors is not None else default_detectors(data)
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
    return ScanResult(data=data, results=results, primary=primary, options=options)
