"""The driver: detectors' plans on a runner, then one :class:`~labelqa.result.ScanResult` for every engine.

In memory (:func:`scan_memory`) each detector runs on the whole dataset as
one block (its plan, through :meth:`~labelqa.detectors.base.Detector.detect`,
or, for a detector that needs all rows, its own ``detect``). Out of core
(:func:`scan_out_of_core`) the driver runs the detectors' plans side by side
on a runner's batches: one pass per step (:func:`run_plans`), with several
detectors a pass folding each one's scores for the rank average, then a
*rows* pass that ranks every row and sums the totals the summary needs. The result keeps the runner:
writing the report is one more rows pass, each batch given its global ranks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from labelqa.data.model import LabelData
from labelqa.data.probabilities import sum_tolerance
from labelqa.detectors import ensemble
from labelqa.detectors.base import (
    Block,
    DatasetInfo,
    Detector,
    DetectorResult,
    DetectorRows,
    NamedRows,
    Plan,
    RowRule,
    Step,
    add_tallies,
)
from labelqa.errors import LabelqaError
from labelqa.result import DetectorOutcome, RowTotals, ScanResult, build_issues_table
from labelqa.runtime import trim_heap
from labelqa.stats.score_counts import ScoreCounts
from labelqa.stats.ranks import RankIndex

__all__ = ["Runner", "run_plans", "scan_memory", "scan_out_of_core"]

Progress = Callable[[str], None]

#: Up to this many rows a single detector's last pass also gathers every row's score for the ranks (no ranks
#: pass, :meth:`~labelqa.detectors.base.RowRule.named_rows`); beyond, the scores would be held beside the
#: selections' values (16M x 10: peak ~600 MB instead of ~520) and the ranks get their own pass.
GATHER_ROWS_MAX = 8_000_000


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


def _block_results(block: Block, rules: dict[str, RowRule]) -> dict[str, DetectorResult]:
    """Every detector's rows of one block, as results over those rows."""
    out = {}
    for name, rule in rules.items():
        rows = rule.rows(block)
        out[name] = DetectorResult(name=name, scores=rows.scores, issues=rows.issues, suggested=rows.suggested,
                                   suggested_confidence=rows.suggested_confidence, extra=rows.extra)
    return out


def _score_piece(block: Block, rules: dict[str, RowRule]) -> tuple[list[ScoreCounts], list[int]]:
    """One block's distinct scores and flag count per detector (the relative ranks need every row's)."""
    rows = [rule.rows(block) for rule in rules.values()]
    return [ScoreCounts.of(r.scores) for r in rows], [int(np.count_nonzero(r.issues)) for r in rows]


@dataclass(frozen=True)
class ScoreFolds:
    """Every row's scores folded per detector, and each detector's flag count: a batch's relative ranks."""

    counts: list[ScoreCounts]
    flagged: list[int]

    def relative(self, results: dict[str, DetectorResult]) -> np.ndarray:
        """The batch's mean relative ranks over the whole dataset (:func:`ensemble.relative_ranks`)."""
        before = [c.rows_before(np.asarray(r.scores)) for c, r in zip(self.counts, results.values())]
        return ensemble.relative_ranks(before, self.flagged)


def _rank_piece(block: Block, rules: dict[str, RowRule], n_classes: int, multilabel: bool, primary: str,
                issue_rule: str, folds: ScoreFolds | None) -> tuple[Any, ...]:
    """One block's rows: what the rank index, the row totals and the detectors' tallies need."""
    results = _block_results(block, rules)
    listed = list(results.values())
    relative = folds.relative(results) if folds is not None else None
    flags = ensemble.combined_flags(listed, primary, issue_rule, relative)
    suggested = ensemble.combined_suggestion(listed, primary, block.labels)[0]
    totals = RowTotals.of_rows(block.labels, flags, suggested, n_classes, multilabel=multilabel)
    own = {}
    for name, res in results.items():
        own[name] = RowTotals.of_rows(block.labels, res.issues, res.suggested, n_classes, multilabel=multilabel)
    tallies = {name: rules[name].tally(block, DetectorRows(res.scores, res.issues, res.suggested,
                                                           res.suggested_confidence, res.extra))
               for name, res in results.items()}
    quality = ensemble.combined_score(listed, relative)
    return tallies, totals, own, quality, np.asarray(flags, dtype=bool), block.offset


def _issues_piece(block: Block, rules: dict[str, RowRule], primary: str, issue_rule: str, classes: tuple[Any, ...],
                  task: str, folds: ScoreFolds | None) -> tuple[pa.Table, np.ndarray, np.ndarray, int]:
    """One block of the issues table (ranks still zero), with what its global ranks need."""
    results = _block_results(block, rules)
    relative = folds.relative(results) if folds is not None else None
    data = LabelData(labels=block.labels, pred_probs=block.pred_probs, classes=classes, ids=block.ids, task=task)
    table = build_issues_table(data, results, primary, issue_rule, ranks=np.zeros(block.n, dtype=np.int64),
                               relative=relative)
    flags = table.column("is_label_issue").to_numpy(zero_copy_only=False)
    quality = table.column("label_quality").to_numpy(zero_copy_only=False)
    return table, quality, flags, block.offset


def _named_totals(named: NamedRows, n_classes: int) -> RowTotals:
    """:meth:`RowTotals.of_rows` of every row, from a detector's gathered rows (its flagged rows' labels and
    suggestions; one detector: its flags and suggestions are the scan's)."""
    k = n_classes
    pairs = np.bincount(named.labels * k + named.suggested, minlength=k * k).reshape(k, k)
    counts = np.asarray(named.class_counts, dtype=np.int64).copy()
    return RowTotals(int(counts.sum()), int(named.labels.size), counts, pairs.sum(axis=1), pairs.sum(axis=0), pairs)


def _ranked_issues_piece(block: Block, rules: dict[str, RowRule], primary: str, issue_rule: str,
                         classes: tuple[Any, ...], task: str, folds: ScoreFolds | None,
                         index: RankIndex) -> tuple[pa.Table, tuple[Any, ...]]:
    """:func:`_issues_piece` with the rank index's searches for its rows (:meth:`RankIndex.prepare`), on the
    worker thread: the consumer only completes them in input order."""
    table, quality, flags, offset = _issues_piece(block, rules, primary, issue_rule, classes, task, folds)
    return table, index.prepare(quality, flags, np.arange(offset, offset + flags.size, dtype=np.int64))


class RunnerRows:
    """The issues table of an out-of-core scan, recomputed batch by batch by its runner."""

    def __init__(self, runner: Runner, rules: dict[str, RowRule], primary: str, issue_rule: str, index: RankIndex,
                 info: DatasetInfo, folds: ScoreFolds | None = None) -> None:
        self.runner = runner
        self.rules = rules
        self.primary = primary
        self.issue_rule = issue_rule
        self.index = index
        self.info = info
        self.folds = folds
        self.engine = runner.engine

    @property
    def passes(self) -> list[str]:
        return self.runner.passes

    def issue_batches(self) -> Iterator[pa.Table]:
        """Each batch's rows with their global ranks (and, with several detectors, dataset-wide relative ranks)."""
        self.index.restart()
        rank_col = None
        if self.runner.engine == "stream":  # threads of this process share the finished index
            for table, prepared in self.runner.map(_ranked_issues_piece, self.rules, self.primary, self.issue_rule,
                                                   self.info.classes, self.info.task, self.folds, self.index,
                                                   name="issues"):
                if rank_col is None:
                    rank_col = table.column_names.index("rank")
                yield table.set_column(rank_col, "rank", pa.array(self.index.ranks_of(prepared)))
            return
        for table, quality, flags, offset in self.runner.map(_issues_piece, self.rules, self.primary,
                                                             self.issue_rule, self.info.classes, self.info.task,
                                                             self.folds, name="issues"):
            positions = np.arange(offset, offset + flags.size, dtype=np.int64)
            if rank_col is None:
                rank_col = table.column_names.index("rank")
            yield table.set_column(rank_col, "rank", pa.array(self.index.ranks(quality, flags, positions)))

    def close(self) -> None:
        self.runner.close()


def scan_out_of_core(runner: Runner, detectors: Detector | Sequence[Detector], *, source: str | None,
                     meta: dict[str, Any], primary: str | None = None, issue_rule: str = "primary_or_2",
                     progress: Progress | None = None) -> ScanResult:
    """Run batch-capable detectors on a runner; the result writes its rows batch by batch.

    The detectors' plans run side by side (each pass over the data feeds
    every pending step). With several detectors one more pass folds each
    detector's scores and flag counts (:class:`ScoreFolds`)
    so that the combined label quality is the same rank average as in
    memory; flags and suggestions follow ``issue_rule`` and ``primary``
    (:mod:`labelqa.detectors.ensemble`).

    Args:
        runner: The streaming or Dask runner over the data.
        detectors: Detectors with a plan (``needs_all_rows`` unset), in run order.
        source: The data's path, for the summary.
        meta: Provenance of the data (input format, classes source...).
        primary: The primary detector (default the first).
        issue_rule: How flags combine with several detectors.
        progress: Callback receiving a short message before each pass.

    Raises:
        LabelqaError: A detector that needs all rows in memory, one given twice; invalid data.
    """
    dets = [detectors] if isinstance(detectors, Detector) else list(detectors)
    if not dets:
        raise LabelqaError("no detectors to run", "pass at least one detector")
    for det in dets:
        if det.needs_all_rows:
            raise LabelqaError(f"the {det.name} detector needs {det.needs_all_rows}, which "
                               f"--engine {runner.engine} cannot hold", "use --engine memory")
    names = [d.name for d in dets]
    if len(set(names)) != len(names):
        raise LabelqaError(f"detector {next(n for n in names if names.count(n) > 1)!r} given twice",
                           "pass each detector once")
    primary = primary or names[0]
    if primary not in names:
        raise LabelqaError(f"primary detector {primary!r} did not run", f"choose one of {sorted(names)}")
    if issue_rule not in ensemble.ISSUE_RULES:
        raise LabelqaError(f"unknown issue rule {issue_rule!r}", f"choose one of {', '.join(ensemble.ISSUE_RULES)}")
    say = _say(progress)
    info = runner.info
    for det in dets:
        det.check(info)
    plan_info = dataclasses.replace(info, gather_rows=len(dets) == 1 and info.n_rows <= GATHER_ROWS_MAX,
                                    out_of_core=True)
    rules = run_plans({d.name: d.plan(plan_info) for d in dets}, runner, say)
    rules = {name: rules[name] for name in names}  # run order
    named = rules[names[0]].named_rows() if len(dets) == 1 else None
    folds: ScoreFolds | None = None
    if len(dets) > 1:
        say(f"pass {len(runner.passes) + 1}: score ranks")
        counts, flagged = [ScoreCounts() for _ in dets], [0] * len(dets)
        for part, part_flagged in runner.map(_score_piece, rules, name="score ranks"):
            counts = [a.merge(b) for a, b in zip(counts, part)]
            flagged = [a + b for a, b in zip(flagged, part_flagged)]
        folds = ScoreFolds([c.finish() for c in counts], flagged)
    multilabel = info.task == "multilabel"
    totals: RowTotals | None = None
    own: dict[str, RowTotals] = {}
    tallies: dict[str, dict[str, Any]] = {name: {} for name in names}
    if named is not None:  # one detector whose last pass gathered its rows: no pass to rank them
        say("ranks and totals from the last pass")
        trim_heap()  # the selections' freed values, before the index sorts every row's score
        index = named.index
        totals, own[names[0]] = _named_totals(named, info.n_classes), _named_totals(named, info.n_classes)
        tallies[names[0]] = dict(named.tallies)
    else:
        say(f"pass {len(runner.passes) + 1}: ranks and totals")
        index = RankIndex()
        for tally, part, own_part, quality, flags, offset in runner.map(
                _rank_piece, rules, info.n_classes, multilabel, primary, issue_rule, folds, name="ranks"):
            index.add(quality, flags, np.arange(offset, offset + flags.size, dtype=np.int64))
            totals = part if totals is None else totals.merge(part)
            for name in names:
                own[name] = own_part[name] if name not in own else own[name].merge(own_part[name])
                tallies[name] = add_tallies(tallies[name], tally[name])
    index.finish()
    assert totals is not None, "a dataset has rows"
    options: dict[str, Any] = {"detectors": {d.name: d.get_params() for d in dets}}
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
    outcomes = {d.name: DetectorOutcome(d.name, own[d.name].n_flagged, d.get_params(),
                                        rules[d.name].summary(tallies[d.name])) for d in dets}
    return ScanResult.from_totals(
        source=source, task=info.task, classes=info.classes, meta=meta, primary=primary,
        outcomes=outcomes, totals=totals, options=options,
        rows=RunnerRows(runner, rules, primary, issue_rule, index, info, folds),
        issue_rule=issue_rule, detector_totals=own,
    )
