"""The driver: detectors' plans on a runner, then one :class:`~labelqa.result.ScanResult` for every engine.

In memory (:func:`scan_memory`) each detector runs on the whole dataset as
one block (its plan, through :meth:`~labelqa.detectors.base.Detector.detect`,
or, for a detector that needs all rows, its own ``detect``). Out of core
(:func:`scan_out_of_core`) the driver runs the detector's plan on a runner's
batches: one pass per step (:func:`run_plans`), then a *rows* pass that ranks
every row and sums the totals the summary needs. The result keeps the runner:
writing the report is one more rows pass, each batch given its global ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from labelqa.data.model import LabelData
from labelqa.data.probabilities import sum_tolerance
from labelqa.detectors.base import Block, DatasetInfo, Detector, DetectorResult, Plan, RowRule, Step, add_tallies
from labelqa.errors import LabelqaError
from labelqa.result import DetectorOutcome, RowTotals, ScanResult, build_issues_table
from labelqa.stats.ranks import RankIndex

__all__ = ["Runner", "run_plans", "scan_memory", "scan_out_of_core"]

Progress = Callable[[str], None]


class Runner(Protocol):
    """What the driver needs of a runner (:class:`~labelqa.run.stream.StreamRunner`, :class:`~labelqa.run.dask.DaskRunner`)."""

    engine: str
    info: DatasetInfo
    renormalized_rows: int
    passes: list[str]

    def fold(self, steps: Sequence[Step]) -> list[Any]:
        """One pass feeding every step every block; the merged partials."""

    def map(self, fn: Callable[..., Any], *args: Any, name: str = "rows") -> Iterator[Any]:
        """One pass: ``fn(block, *args)`` per block, in input order."""

    def close(self) -> None:
        """Release resources."""


def _say(progress: Progress | None) -> Progress:
    return progress or (lambda _message: None)


# --------------------------------------------------------------------------- in memory
def scan_memory(data: LabelData, detectors: Sequence[Detector], *, primary: str | None = None,
                issue_rule: str = "relative_rank", progress: Progress | None = None) -> ScanResult:
    """Run detectors on loaded data, each on the whole dataset as one block.

    Raises:
        LabelqaError: No detector, one given twice, or a primary that did not run.
    """
    say = _say(progress)
    if not detectors:
        raise LabelqaError("no detectors to run", "pass at least one detector")
    results: dict[str, DetectorResult] = {}
    for det in detectors:
        if det.name in results:
            raise LabelqaError(f"detector {det.name!r} given twice", "pass each detector once")
        say(f"running detector {det.name}")
        results[det.name] = det.detect(data)
    primary = primary or detectors[0].name
    if primary not in results:
        raise LabelqaError(f"primary detector {primary!r} did not run", f"choose one of {sorted(results)}")
    options: dict[str, Any] = {"detectors": {d.name: d.get_params() for d in detectors}}
    options.update(data.meta)
    options["engine"] = "memory"
    return ScanResult(data=data, results=results, primary=primary, issue_rule=issue_rule, options=options)


# --------------------------------------------------------------------------- out of core
def run_plans(plans: dict[str, Plan], runner: Runner, progress: Progress | None = None) -> dict[str, RowRule]:
    """Run plans side by side: each pass over the data feeds every plan's pending step."""
    say = _say(progress)
    rules: dict[str, RowRule] = {}
    pending: dict[str, Step] = {}

    def advance(name: str, value: Any = None, first: bool = False) -> None:
        try:
            pending[name] = next(plans[name]) if first else plans[name].send(value)
        except StopIteration as done:
            pending.pop(name, None)
            rules[name] = done.value

    for name in plans:
        advance(name, first=True)
    while pending:
        names = list(pending)
        steps = [pending[n] for n in names]
        say(f"pass {len(runner.passes) + 1}: {', '.join(s.name for s in steps)}")
        for name, partial in zip(names, runner.fold(steps)):
            advance(name, partial)
    return rules


def _rank_piece(block: Block, rule: RowRule, n_classes: int, multilabel: bool) -> tuple[Any, ...]:
    """One block's rows: what the rank index, the row totals and the detector's tallies need."""
    rows = rule.rows(block)
    totals = RowTotals.of_rows(block.labels, rows.issues, rows.suggested, n_classes, multilabel=multilabel)
    return rule.tally(block, rows), totals, np.asarray(rows.scores), np.asarray(rows.issues, dtype=bool), block.offset


def _issues_piece(block: Block, rule: RowRule, name: str, classes: tuple[Any, ...],
                  task: str) -> tuple[pa.Table, np.ndarray, np.ndarray, int]:
    """One block of the issues table (ranks still zero), with what its global ranks need."""
    rows = rule.rows(block)
    data = LabelData(labels=block.labels, pred_probs=block.pred_probs, classes=classes, ids=block.ids, task=task)
    res = DetectorResult(name=name, scores=rows.scores, issues=rows.issues, suggested=rows.suggested,
                         suggested_confidence=rows.suggested_confidence, extra=rows.extra)
    table = build_issues_table(data, {name: res}, name, "primary", ranks=np.zeros(block.n, dtype=np.int64))
    return table, np.asarray(rows.scores), np.asarray(rows.issues, dtype=bool), block.offset


class RunnerRows:
    """The issues table of an out-of-core scan, recomputed batch by batch by its runner."""

    def __init__(self, runner: Runner, rule: RowRule, name: str, index: RankIndex, info: DatasetInfo) -> None:
        self.runner = runner
        self.rule = rule
        self.name = name
        self.index = index
        self.info = info
        self.engine = runner.engine

    @property
    def passes(self) -> list[str]:
        return self.runner.passes

    def issue_batches(self) -> Iterator[pa.Table]:
        """Each batch's rows with their global ranks, in input order."""
        self.index.restart()
        rank_col = None
        for table, scores, flags, offset in self.runner.map(_issues_piece, self.rule, self.name, self.info.classes,
                                                            self.info.task, name="issues"):
            positions = np.arange(offset, offset + scores.size, dtype=np.int64)
            if rank_col is None:
                rank_col = table.column_names.index("rank")
            yield table.set_column(rank_col, "rank", pa.array(self.index.ranks(scores, flags, positions)))

    def close(self) -> None:
        self.runner.close()


def scan_out_of_core(runner: Runner, detector: Detector, *, source: str | None, meta: dict[str, Any],
                     progress: Progress | None = None) -> ScanResult:
    """Run one batch-capable detector on a runner; the result writes its rows batch by batch.

    Args:
        runner: The streaming or Dask runner over the data.
        detector: A detector with a plan (``needs_all_rows`` unset).
        source: The data's path, for the summary.
        meta: Provenance of the data (input format, classes source...).
        progress: Callback receiving a short message before each pass.

    Raises:
        LabelqaError: A detector that needs all rows in memory; invalid data.
    """
    if detector.needs_all_rows:
        raise LabelqaError(f"the {detector.name} detector needs {detector.needs_all_rows}, which "
                           f"--engine {runner.engine} cannot hold", "use --engine memory")
    say = _say(progress)
    info = runner.info
    detector.check(info)
    rule = run_plans({detector.name: detector.plan(info)}, runner, say)[detector.name]
    say(f"pass {len(runner.passes) + 1}: ranks and totals")
    multilabel = info.task == "multilabel"
    index = RankIndex()
    totals: RowTotals | None = None
    tallies: dict[str, Any] = {}
    for tally, part, scores, flags, offset in runner.map(_rank_piece, rule, info.n_classes, multilabel,
                                                           name="ranks"):
        index.add(scores, flags, np.arange(offset, offset + scores.size, dtype=np.int64))
        totals = part if totals is None else totals.merge(part)
        tallies = add_tallies(tallies, tally)
    index.finish()
    assert totals is not None, "a dataset has rows"
    summary = rule.summary(tallies)
    options: dict[str, Any] = {"detectors": {detector.name: detector.get_params()}}
    options.update(meta)
    if not multilabel:
        tol = sum_tolerance(np.dtype(info.prob_dtype), info.n_classes)
        if options.get("renormalized"):
            options.update({"renormalized": True, "renormalized_rows": runner.renormalized_rows,
                            "sum_tolerance": tol})
        else:
            options.update({"renormalized": False, "sum_tolerance": tol})
    else:
        options["renormalized"] = False
    options["engine"] = runner.engine
    outcome = DetectorOutcome(detector.name, totals.n_flagged, detector.get_params(), summary)
    return ScanResult.from_totals(
        source=source, task=info.task, classes=info.classes, meta=meta, primary=detector.name,
        outcomes={detector.name: outcome}, totals=totals, options=options,
        rows=RunnerRows(runner, rule, detector.name, index, info),
    )
