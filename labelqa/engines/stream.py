"""The streaming engine: confident learning over record batches, bounded memory.

``scan_stream(path, out_dir=...)`` gives the report of
``labelqa.scan(path, detectors=[ConfidentLearning(...)])`` +
``write_report`` (same flags, scores, suggestions, ranks, summary), reading
the data batch by batch with ``pyarrow.dataset``:

======  ==========================================================  ==========
pass    what                                                        memory
======  ==========================================================  ==========
0       label column only, when the classes must be inferred        K
1       validate every batch; class sums -> thresholds              K
2       confident joint, candidate counts -> calibration, counts    K^2
3..     selection stages (1, sometimes 2; see engines.cl)           ~ issues
r       final flags, scores -> global ranks, summary figures        4-8 B/row
w       issues.parquet/.csv written batch by batch, then summary    batch
======  ==========================================================  ==========

Multi-label data (a list label column or ``label_sep``, as :func:`labelqa.load`
decides) runs :class:`~labelqa.detectors.multilabel.MultilabelConfidentLearning`
the same way (:func:`run_multilabel_scan`, :mod:`labelqa.engines.mlcl`).

The per-batch functions (``piece_*``) take ``(source, table, offset, ...)``
and return a mergeable partial; the Dask engine runs the same functions on
partitions (:mod:`labelqa.engines.dask_engine`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from labelqa.data.probabilities import sum_tolerance
from labelqa.detectors import multilabel as ml
from labelqa.detectors.confident import ConfidentLearning, _check_options
from labelqa.detectors.multilabel import MultilabelConfidentLearning
from labelqa.engines import cl as clx
from labelqa.engines import mlcl
from labelqa.engines.output import (
    RankIndex,
    RankPart,
    ReportWriter,
    build_multilabel_summary,
    build_summary,
    issues_piece,
    multilabel_issues_piece,
)
from labelqa.engines.source import Source, open_source
from labelqa.errors import LabelqaError
from labelqa.kernels.confident import ClassProbSums
from labelqa.kernels.multilabel import EmaBlockScores, MultilabelJoint, MultilabelRows, MultilabelSums

__all__ = ["DEFAULT_BATCH_SIZE", "StreamSummary", "scan_stream"]

DEFAULT_BATCH_SIZE = 262_144

Progress = Callable[[str], None]


@dataclass
class StreamSummary:
    """What a streaming (or Dask) scan did.

    Attributes:
        summary: The summary.json dict (``ScanResult.summary()`` schema).
        paths: Report files written.
        n_rows: Rows scanned.
        n_issues: Rows flagged.
        passes: Passes over the data, by name.
        seconds: Wall time.
    """

    summary: dict[str, Any]
    paths: list[Path]
    n_rows: int
    n_issues: int
    passes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def issue_rate(self) -> float:
        return self.n_issues / self.n_rows if self.n_rows else 0.0


# --------------------------------------------------------------------------- per-piece functions
def piece_pass1(src: Source, table: pa.Table, offset: int) -> tuple[ClassProbSums, int]:
    """Validate a piece; its class sums and renormalized-row count."""
    batch = src.decode(table, offset)
    return clx.pass1(batch), batch.renormalized_rows


def piece_pass2(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray) -> clx.Pass2:
    return clx.pass2(src.decode(table, offset, validate=False), thresholds)


def piece_stage(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: clx.FlagPlan,
                stage: Any) -> Any:
    """Feed a piece into ``stage`` (mutated and returned)."""
    plan.feed(stage, clx.RowState(src.decode(table, offset, validate=False), thresholds))
    return stage


def _final(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: clx.FlagPlan,
           det: ConfidentLearning) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    batch = src.decode(table, offset, validate=False)
    rs = clx.RowState(batch, thresholds)
    flags = plan.flags(rs)
    scores = rs.scores(det.score_method, bool(det.adjust_pred_probs))
    suggested, conf = rs.suggestions(flags)
    return batch, flags, scores, suggested, conf


def piece_ranks(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: clx.FlagPlan,
                det: ConfidentLearning, score_dtype: np.dtype) -> RankPart:
    batch, flags, scores, suggested, _ = _final(src, table, offset, thresholds, plan, det)
    return RankPart(scores, flags, batch.positions, batch.labels, suggested, src.n_classes, score_dtype)


def piece_issues(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: clx.FlagPlan,
                 det: ConfidentLearning) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]:
    """The piece's issues rows (local ``rank``) plus scores, flags, positions for the global ranks."""
    batch, flags, scores, suggested, conf = _final(src, table, offset, thresholds, plan, det)
    t = issues_piece(src.classes, batch.labels, batch.probs, batch.ids, scores, flags, suggested, conf)
    return t, scores, flags, batch.positions


# --------------------------------------------------------------------------- multi-label pieces
def piece_ml_pass1(src: Source, table: pa.Table, offset: int, acc: MultilabelSums,
                   scorer: EmaBlockScores | None = None) -> MultilabelSums:
    """Validate a piece and fold it into ``acc`` (and ``scorer``); pieces must come in input order."""
    batch = src.decode(table, offset)
    acc.update(MultilabelRows(batch.labels, batch.probs))
    if scorer is not None:
        scorer.update(ml._class_scores(batch.labels, batch.probs))
    return acc


def piece_ml_pass2(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray) -> MultilabelJoint:
    batch = src.decode(table, offset, validate=False)
    return MultilabelJoint(src.n_classes).update(MultilabelRows(batch.labels, batch.probs, thresholds))


def piece_ml_stage(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: mlcl.MultilabelPlan,
                   stage: Any) -> Any:
    batch = src.decode(table, offset, validate=False)
    plan.feed(stage, MultilabelRows(batch.labels, batch.probs, thresholds))
    return stage


def _ml_final(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: mlcl.MultilabelPlan,
              det: MultilabelConfidentLearning, scores_path: str | None = None,
              ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Flags ``(n, K)``, row scores and suggested confidence, as ``MultilabelConfidentLearning.detect``.

    ``scores_path``: the row scores of pass 1 (:class:`EmaBlockScores`), read for these rows.
    """
    batch = src.decode(table, offset, validate=False)
    y, probs = batch.labels, batch.probs
    flags = plan.flags(MultilabelRows(y, probs, thresholds))
    class_scores = ml._class_scores(y, probs)
    if isinstance(scores_path, np.ndarray):  # the piece's scores, shipped with the task (Dask)
        scores = scores_path
    elif scores_path is not None:
        scores = np.fromfile(scores_path, dtype=np.float64, count=batch.n, offset=8 * offset)
    else:
        scores = ml.aggregate_scores(class_scores, det.aggregation, alpha=det.alpha, temperature=det.temperature)
    backing = np.where(flags, class_scores.dtype.type(1) - class_scores, class_scores)
    conf = backing.min(axis=1).astype(np.float64) if y.shape[1] else np.ones(y.shape[0], dtype=np.float64)
    return batch, flags, scores, conf


@dataclass
class MultilabelCounts:
    """Per-class counts of the final flags (rows with an issue holding the class, pairs to remove/add)."""

    issues: np.ndarray
    remove: np.ndarray
    add: np.ndarray

    def merge(self, other: MultilabelCounts) -> MultilabelCounts:
        self.issues += other.issues
        self.remove += other.remove
        self.add += other.add
        return self


def piece_ml_ranks(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: mlcl.MultilabelPlan,
                   det: MultilabelConfidentLearning, scores_path: str | None = None,
                   ) -> tuple[RankPart, MultilabelCounts]:
    batch, flags, scores, _ = _ml_final(src, table, offset, thresholds, plan, det, scores_path)
    y = batch.labels
    rows = flags.any(axis=1)
    zeros = np.zeros(batch.n, dtype=np.int64)
    part = RankPart(scores, rows, batch.positions, zeros, zeros, 1, np.dtype(np.float64))
    counts = MultilabelCounts(np.count_nonzero(y[rows], axis=0).astype(np.int64),
                              np.count_nonzero(flags & y, axis=0).astype(np.int64),
                              np.count_nonzero(flags & ~y, axis=0).astype(np.int64))
    return part, counts


def piece_ml_issues(src: Source, table: pa.Table, offset: int, thresholds: np.ndarray, plan: mlcl.MultilabelPlan,
                    det: MultilabelConfidentLearning, scores_path: str | None = None,
                    ) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]:
    batch, flags, scores, conf = _ml_final(src, table, offset, thresholds, plan, det, scores_path)
    t = multilabel_issues_piece(src.classes, batch.labels, batch.probs, batch.ids, scores, flags, conf, det.name)
    return t, scores, flags.any(axis=1), batch.positions


# --------------------------------------------------------------------------- driver
class LocalRunner:
    """Runs piece functions over the record batches of a source, in this process."""

    inplace = True

    def __init__(self, src: Source, batch_size: int) -> None:
        self.src = src
        self.batch_size = int(batch_size)

    def map(self, fn: Callable[..., Any], *args: Any) -> Iterator[Any]:
        for offset, table in self.src.tables(self.batch_size):
            yield fn(self.src, table, offset, *args)

    def fold(self, fn: Callable[..., Any], acc: Any, *args: Any) -> Any:
        """``acc = fn(src, table, offset, acc, *args)`` over the pieces in input order."""
        for offset, table in self.src.tables(self.batch_size):
            acc = fn(self.src, table, offset, acc, *args)
        return acc


def make_detector(
    *, filter_by: str, score_method: str, adjust_pred_probs: bool, frac_noise: float,
    num_to_remove_per_class: Sequence[int] | None, min_examples_per_class: int, n_classes: int,
) -> ConfidentLearning:
    det = ConfidentLearning(filter_by=filter_by, score_method=score_method, adjust_pred_probs=adjust_pred_probs,
                            frac_noise=frac_noise, num_to_remove_per_class=num_to_remove_per_class,
                            min_examples_per_class=min_examples_per_class)
    if not isinstance(adjust_pred_probs, (bool, np.bool_)):
        raise LabelqaError(f"adjust_pred_probs must be True or False, got {adjust_pred_probs!r}")
    _check_options(n_classes, filter_by=filter_by, score_method=score_method, frac_noise=frac_noise,
                   num_to_remove_per_class=num_to_remove_per_class, min_examples_per_class=min_examples_per_class)
    return det


def make_multilabel_detector(
    *, filter_by: str, aggregation: str, alpha: float, temperature: float, frac_noise: float,
    num_to_remove_per_class: Any, min_examples_per_class: int, n_classes: int,
) -> MultilabelConfidentLearning:
    det = MultilabelConfidentLearning(filter_by=filter_by, aggregation=aggregation, alpha=alpha,
                                      temperature=temperature, frac_noise=frac_noise,
                                      num_to_remove_per_class=num_to_remove_per_class,
                                      min_examples_per_class=min_examples_per_class)
    ml._check_aggregation(aggregation, alpha, temperature)
    ml._check_options(n_classes, filter_by=filter_by, frac_noise=frac_noise,
                      num_to_remove_per_class=num_to_remove_per_class, min_examples_per_class=min_examples_per_class)
    return det


def run_multilabel_scan(src: Source, runner: Any, det: MultilabelConfidentLearning, out_dir: str | Path, *,
                        csv: bool = True, progress: Progress | None = None) -> StreamSummary:
    """All passes of a multi-label scan over ``runner``'s pieces; writes the report into ``out_dir``."""
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    k = src.n_classes

    # EMA row scores depend (in the last bits) on the row blocks of the in-memory matrix product:
    # in process they are computed on those very blocks in pass 1 and kept in a temporary file.
    with contextlib.ExitStack() as stack:
        scores_path = None
        scorer = None
        if det.aggregation == "ema" and getattr(runner, "inplace", False):
            fd, scores_path = tempfile.mkstemp(prefix="labelqa-scores-", suffix=".f64")
            stack.callback(os.remove, scores_path)
            fh = stack.enter_context(os.fdopen(fd, "wb"))
            scorer = EmaBlockScores(src.n_rows, k, det.alpha, fh)
        return _run_multilabel(src, runner, det, out_dir, csv=csv, say=say, t0=t0, scorer=scorer,
                               scores_path=scores_path)


def piece_ml_pass1_scored(src: Source, table: pa.Table, offset: int,
                          state: tuple[MultilabelSums, EmaBlockScores]) -> tuple[Any, np.ndarray]:
    """:func:`piece_ml_pass1` carrying the scorer, returning the scores its blocks completed (Dask)."""
    acc, scorer = state
    piece_ml_pass1(src, table, offset, acc, scorer)
    return (acc, scorer), scorer.take()


def _run_multilabel(src: Source, runner: Any, det: MultilabelConfidentLearning, out_dir: str | Path, *, csv: bool,
                    say: Callable[[str], None], t0: float, scorer: EmaBlockScores | None, scores_path: str | None,
                    ) -> StreamSummary:
    passes = []
    k = src.n_classes
    say("pass 1: validating, class sums")
    per_piece: Any = None
    if scorer is not None:
        sums = runner.fold(piece_ml_pass1, MultilabelSums(k), scorer)
        scorer.close()
        scorer.out.close()
    elif det.aggregation == "ema" and hasattr(runner, "fold_outputs"):
        (sums, last), outputs = runner.fold_outputs(piece_ml_pass1_scored,
                                                    (MultilabelSums(k), EmaBlockScores(src.n_rows, k, det.alpha, None)))
        last.close()
        all_scores = np.concatenate(outputs) if outputs else np.empty(0)
        per_piece = runner.split(all_scores)
        del all_scores, outputs
    else:
        sums = runner.fold(piece_ml_pass1, MultilabelSums(k))
    passes.append("class sums")
    thresholds = sums.thresholds()
    dtype = src.prob_dtype()
    meta = dict(src.meta)
    meta["renormalized"] = False

    say("pass 2: confident joints")
    p2 = MultilabelJoint(k)
    for part in runner.map(piece_ml_pass2, thresholds):
        p2.merge(part)
    passes.append("confident joint")
    est = mlcl.estimates(sums, p2)
    plan = mlcl.MultilabelPlan(est, filter_by=det.filter_by, frac_noise=det.frac_noise,
                               num_to_remove_per_class=det.num_to_remove_per_class,
                               min_examples_per_class=det.min_examples_per_class, dtype=dtype)

    _run_selection(runner, piece_ml_stage, thresholds, plan, passes, say)

    say(f"pass {len(passes) + 1}: ranks")
    index = RankIndex(src.n_rows, 1, np.float64)
    counts = MultilabelCounts(np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64))
    for part, cnt in _map_scored(runner, piece_ml_ranks, per_piece, thresholds, plan, det, scores_path):
        index.add(part)
        counts.merge(cnt)
    index.finish()
    passes.append("ranks")

    summary = build_multilabel_summary(
        source=src.path, classes=src.classes, counts=est.counts, thresholds=est.thresholds, joint=est.joint,
        est=est.est, quality=est.quality, issues=counts.issues, remove=counts.remove, add=counts.add,
        n_issues=index.n_flagged, params=det.get_params(), meta=meta, name=det.name)
    say(f"pass {len(passes) + 1}: writing {out_dir}")
    with ReportWriter(out_dir, csv=csv) as writer:
        rank_col = None
        for table, scores, flags, positions in _map_scored(runner, piece_ml_issues, per_piece, thresholds, plan, det,
                                                           scores_path):
            ranks = index.ranks(scores, flags, positions)
            if rank_col is None:
                rank_col = table.column_names.index("rank")
            writer.write(table.set_column(rank_col, "rank", pa.array(ranks)))
        paths = writer.close(summary)
    passes.append("write")
    return StreamSummary(summary=summary, paths=paths, n_rows=src.n_rows, n_issues=index.n_flagged,
                         passes=passes, seconds=time.perf_counter() - t0)


def _map_scored(runner: Any, fn: Callable[..., Any], per_piece: list[np.ndarray] | None, *args: Any) -> Iterator[Any]:
    """``runner.map(fn, *args)``; with ``per_piece``, the last argument is each piece's own scores."""
    if per_piece is None:
        return runner.map(fn, *args)
    return runner.map_per_piece(fn, per_piece, *args[:-1])


def run_scan(src: Source, runner: Any, det: ConfidentLearning, out_dir: str | Path, *, csv: bool = True,
             progress: Progress | None = None) -> StreamSummary:
    """All passes of a scan over ``runner``'s pieces; writes the report into ``out_dir``."""
    if isinstance(det, MultilabelConfidentLearning):
        return run_multilabel_scan(src, runner, det, out_dir, csv=csv, progress=progress)
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    passes = []
    k = src.n_classes

    say("pass 1: validating, class sums")
    sums, renorm = ClassProbSums(k), 0
    dtype = None
    for part, nr in runner.map(piece_pass1):
        sums.merge(part)
        renorm += nr
    passes.append("class sums")
    thresholds = sums.thresholds()
    dtype = src.prob_dtype()
    meta = dict(src.meta)
    if src.renormalize:
        meta.update({"renormalized": True, "renormalized_rows": renorm, "sum_tolerance": sum_tolerance(dtype, k)})
    else:
        meta.update({"renormalized": False, "sum_tolerance": sum_tolerance(dtype, k)})

    say("pass 2: confident joint")
    p2 = clx.Pass2(k)
    for part in runner.map(piece_pass2, thresholds):
        p2.merge(part)
    passes.append("confident joint")
    est = clx.estimates(sums, p2)
    plan = clx.FlagPlan(est, filter_by=det.filter_by, frac_noise=det.frac_noise,
                        num_to_remove_per_class=det.num_to_remove_per_class,
                        min_examples_per_class=det.min_examples_per_class, dtype=dtype)

    _run_selection(runner, piece_stage, thresholds, plan, passes, say)

    say(f"pass {len(passes) + 1}: ranks")
    narrow = dtype == np.float32 and det.score_method == "self_confidence" and not det.adjust_pred_probs
    score_dtype = np.dtype(np.float32 if narrow else np.float64)
    index = RankIndex(src.n_rows, k, score_dtype)
    for part in runner.map(piece_ranks, thresholds, plan, det, score_dtype):
        index.add(part)
    index.finish()
    passes.append("ranks")

    summary = build_summary(source=src.path, classes=src.classes, class_counts=est.class_counts, pairs=index.pairs,
                            detector_summary=est.detector_summary(det), params=det.get_params(), meta=meta)
    say(f"pass {len(passes) + 1}: writing {out_dir}")
    with ReportWriter(out_dir, csv=csv) as writer:
        rank_col = None
        for table, scores, flags, positions in runner.map(piece_issues, thresholds, plan, det):
            ranks = index.ranks(scores, flags, positions)
            if rank_col is None:
                rank_col = table.column_names.index("rank")
            writer.write(table.set_column(rank_col, "rank", pa.array(ranks)))
        paths = writer.close(summary)
    passes.append("write")
    return StreamSummary(summary=summary, paths=paths, n_rows=src.n_rows, n_issues=index.n_flagged,
                         passes=passes, seconds=time.perf_counter() - t0)


def _run_selection(runner: Any, piece: Any, thresholds: Any, plan: Any, passes: list[str], say: Any) -> None:
    """Run the plan's selection stages, one pass over the data each, merging the pieces' partials."""
    while (stage := plan.next_stage()) is not None:
        say(f"pass {len(passes) + 1}: selection ({stage.name})")
        target = stage if runner.inplace else stage.empty()
        for part in runner.map(piece, thresholds, plan, target):
            if part is not stage:
                stage.merge(part)
        plan.finish(stage)
        passes.append(f"selection ({stage.name})")


def scan_stream(
    source: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] = "labelqa-report",
    label_col: str = "label",
    pred_probs_col: str = "pred_probs",
    classes: Sequence[Any] | str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    id_col: str | None = None,
    input_format: str | None = None,
    renormalize: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    filter_by: str = "prune_by_noise_rate",
    score_method: str = "self_confidence",
    adjust_pred_probs: bool = False,
    frac_noise: float = 1.0,
    num_to_remove_per_class: Sequence[int] | None = None,
    min_examples_per_class: int = 1,
    csv: bool = True,
    progress: Progress | None = None,
    task: str = "auto",
    label_sep: str | None = None,
    aggregation: str = "ema",
    alpha: float = 0.8,
    temperature: float = 0.1,
) -> StreamSummary:
    """Scan a Parquet/Arrow file, folder or hive dataset with confident learning, out of core.

    Same results as ``labelqa.scan(path, detectors=[ConfidentLearning(...)])``
    followed by ``write_report(result, out_dir)`` (issues.parquet, issues.csv,
    summary.json, summary.md; not report.html), with memory bounded by the
    batch, K^2, the issues and 4-8 bytes per row for the global ranks.

    Args:
        source: A ``.parquet``/``.arrow`` file, or a folder of them (hive
            partitions such as ``split=train/`` become columns).
        out_dir: Report folder (files replaced atomically).
        label_col, pred_probs_col, classes, classes_file, id_col,
        input_format, renormalize: As for :func:`labelqa.load`.
        batch_size: Rows per record batch.
        filter_by, score_method, adjust_pred_probs, frac_noise,
        num_to_remove_per_class, min_examples_per_class: As for
            :class:`labelqa.detectors.confident.ConfidentLearning` (for
            multi-label data ``num_to_remove_per_class`` is ``(K, 2)``, as for
            :class:`~labelqa.detectors.multilabel.MultilabelConfidentLearning`).
        csv: Also write issues.csv.
        progress: Callback receiving a short message before each pass.
        task, label_sep: As for :func:`labelqa.load`: multi-label data when
            the label column holds lists or ``label_sep`` is given (``task``
            ``"auto"``), or ``task="multilabel"``; then the scan is
            ``labelqa.scan(path, task=..., label_sep=...)`` with the
            multi-label confident-learning detector (``mlcl``).
        aggregation, alpha, temperature: Multi-label row scores, as for
            :class:`~labelqa.detectors.multilabel.MultilabelConfidentLearning`
            (not for multiclass data). ``score_method`` and
            ``adjust_pred_probs`` are for multiclass data only.

    Raises:
        LabelqaError: Invalid input or options (rows named by global index).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise LabelqaError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if progress:
        progress(f"opening {os.fspath(source)}")
    src = open_source(source, label_col=label_col, pred_probs_col=pred_probs_col, classes=classes,
                      classes_file=classes_file, id_col=id_col, input_format=input_format,
                      renormalize=renormalize, batch_size=batch_size, task=task, label_sep=label_sep)
    det = detector_for(src, filter_by=filter_by, score_method=score_method, adjust_pred_probs=adjust_pred_probs,
                       frac_noise=frac_noise, num_to_remove_per_class=num_to_remove_per_class,
                       min_examples_per_class=min_examples_per_class, aggregation=aggregation, alpha=alpha,
                       temperature=temperature)
    return run_scan(src, LocalRunner(src, batch_size), det, out_dir, csv=csv, progress=progress)


def detector_for(
    src: Source, *, filter_by: str, score_method: str, adjust_pred_probs: bool, frac_noise: float,
    num_to_remove_per_class: Any, min_examples_per_class: int, aggregation: str, alpha: float, temperature: float,
) -> ConfidentLearning | MultilabelConfidentLearning:
    """The detector ``labelqa.scan`` would run on ``src``'s task, with the options checked."""
    if src.multilabel:
        if score_method != "self_confidence" or adjust_pred_probs:
            raise LabelqaError(
                "option score_method/adjust_pred_probs does not apply to multi-label data",
                "multi-label row scores are set by aggregation (ema or softmin), alpha and temperature",
            )
        return make_multilabel_detector(filter_by=filter_by, aggregation=aggregation, alpha=alpha,
                                        temperature=temperature, frac_noise=frac_noise,
                                        num_to_remove_per_class=num_to_remove_per_class,
                                        min_examples_per_class=min_examples_per_class, n_classes=src.n_classes)
    if (aggregation, alpha, temperature) != ("ema", 0.8, 0.1):
        raise LabelqaError(
            "option aggregation/alpha/temperature does not apply to multiclass data",
            "they set multi-label row scores; for multiclass data use score_method",
        )
    return make_detector(filter_by=filter_by, score_method=score_method, adjust_pred_probs=adjust_pred_probs,
                         frac_noise=frac_noise, num_to_remove_per_class=num_to_remove_per_class,
                         min_examples_per_class=min_examples_per_class, n_classes=src.n_classes)
