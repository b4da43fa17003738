"""`labelqa evaluate`: score the detectors against true labels or injected noise."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from labelqa.cli import options as o
from labelqa.cli.console import ProgressLog, stdout_console

TRUTH = "Ground truth"


class EvalFormat(str, Enum):
    """What `evaluate` prints to stdout."""

    table = "table"
    json = "json"
    markdown = "markdown"


def evaluate(
    data: o.DataArg,
    truth_col: Annotated[
        Optional[str],
        typer.Option("--truth-col", help="Column of true labels, read only for scoring (never given to a detector).",
                     rich_help_panel=TRUTH, show_default=False),
    ] = None,
    inject_noise: Annotated[
        Optional[str],
        typer.Option("--inject-noise", help="Flip the given labels first, KIND:RATE with KIND uniform or pairflip "
                     "(e.g. uniform:0.2); the original labels are then the truth.", rich_help_panel=TRUTH,
                     show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --inject-noise.", rich_help_panel=TRUTH)] = 0,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Write the scan report plus evaluation.json (shown in report.html and "
                     "summary.md) into this folder.",
                     rich_help_panel=o.OUT, show_default=False),
    ] = None,
    output_format: Annotated[
        EvalFormat,
        typer.Option("--format", help="stdout: table (rich), json (evaluation.json) or markdown.",
                     rich_help_panel=o.OUT),
    ] = EvalFormat.table,
    label_col: o.LabelCol = "label",
    pred_probs_col: o.PredProbsCol = None,
    pred_probs: o.PredProbsFile = None,
    combine_models: o.CombineModels = "geometric",
    classes: o.Classes = None,
    classes_file: o.ClassesFile = None,
    id_col: o.IdCol = None,
    input_format: o.InputFormat = None,
    renormalize: o.Renormalize = False,
    embeddings_col: o.EmbeddingsCol = "embedding",
    embeddings: o.EmbeddingsFile = None,
    logits_by_epoch: o.LogitsByEpoch = None,
    threshold_samples: o.ThresholdSamples = None,
    detectors: o.Detectors = None,
    issue_rule: o.IssueRule = "primary_or_2",
    filter_by: o.FilterBy = "prune_by_noise_rate",
    score_method: o.ScoreMethod = "self_confidence",
    adjust_pred_probs: o.AdjustPredProbs = False,
    frac_noise: o.FracNoise = 1.0,
    min_examples_per_class: o.MinExamples = 1,
    num_to_remove_per_class: o.NumToRemove = None,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", help="TOML configuration with scan and evaluate tables (default: labelqa.toml, "
                     "or the tool.labelqa table of pyproject.toml, in the current folder).", show_default=False),
    ] = None,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> int:
    """Score the detectors on DATA against true labels (--truth-col) or injected noise (--inject-noise).

    Prints precision, recall, F1, AUROC, AP and precision at the true error count per detector (and for the
    ensemble); --out writes evaluation.json. Injected noise is optimistic: the pred_probs model never saw it.
    """
    given = dict(locals())
    from labelqa.config import explicit_params, load_config, merge_cli

    cfg = load_config(given.pop("config"))
    # input and detector options from [scan]; its output options belong to scan
    defaults = {k: v for k, v in cfg.section("scan").items() if k not in ("out", "format", "top")}
    explicit = explicit_params()  # None outside a click command: then every value given wins
    values = merge_cli({**defaults, **cfg.section("evaluate")}, given,
                       explicit=set(given) if explicit is None else explicit)
    return _run(**values)


def _run(
    *, data: Path, truth_col: str | None, inject_noise: str | None, seed: int, out: Path | None,
    output_format: EvalFormat, label_col: str, pred_probs_col: list[str] | None, pred_probs: list[Path] | None,
    combine_models: str, classes: str | None,
    classes_file: Path | None, id_col: str | None, input_format: str | None, renormalize: bool,
    embeddings_col: str, embeddings: Path | None, logits_by_epoch: str | None, threshold_samples: str | None,
    detectors: str | None, issue_rule: str, filter_by: str, score_method: str, adjust_pred_probs: bool,
    frac_noise: float, min_examples_per_class: int, num_to_remove_per_class: str | None, quiet: bool,
    verbose: bool,
) -> int:
    from labelqa.data import load
    from labelqa.errors import LabelqaError
    from labelqa.evaluate import (
        INJECTION_CAVEAT, evaluate as run_evaluate, evaluation_json, inject_into, parse_noise_spec,
        read_truth_codes,
    )
    from labelqa.scan import scan as run_scan

    if truth_col is None and inject_noise is None:
        raise LabelqaError("evaluate needs ground truth", "pass --truth-col COLUMN or --inject-noise uniform:0.2")
    noise = parse_noise_spec(inject_noise) if inject_noise is not None else None
    load_kwargs = o.load_options(
        label_col=label_col, pred_probs_col=pred_probs_col, pred_probs=pred_probs, combine_models=combine_models,
        classes=classes,
        classes_file=classes_file, id_col=id_col, input_format=input_format, renormalize=renormalize,
        task="multiclass", embeddings_col=embeddings_col if embeddings_col != "embedding" else None,
        embeddings_file=embeddings, logits_by_epoch=logits_by_epoch, threshold_samples=threshold_samples,
    )
    if truth_col is not None and truth_col in {*(pred_probs_col or ["pred_probs"]), embeddings_col, id_col, logits_by_epoch,
                                                threshold_samples}:
        raise LabelqaError(f"--truth-col {truth_col!r} is also a detector input", "pass the column of true labels")
    cl: dict[str, Any] = {
        "filter_by": filter_by, "frac_noise": frac_noise, "min_examples_per_class": min_examples_per_class,
        "num_to_remove_per_class": o.parse_int_list(num_to_remove_per_class, "--num-to-remove-per-class"),
        "score_method": score_method, "adjust_pred_probs": adjust_pred_probs,
    }
    names = o.split_names(detectors)

    with ProgressLog(quiet=quiet or output_format is not EvalFormat.table, verbose=verbose) as log:
        log(f"loading {data}")
        labeled = load(data, **load_kwargs)  # the truth column is not among the columns read
        truth_info: dict[str, Any]
        if truth_col is not None:
            log(f"reading true labels from column {truth_col!r}")
            truth = read_truth_codes(data, truth_col, labeled, input_format)
            truth_info = {"kind": "column", "column": truth_col}
        if noise is not None:
            kind, rate = noise
            log(f"injecting {kind} noise at rate {rate} (seed {seed})")
            labeled, original = inject_into(labeled, kind, rate, seed)
            injected = {"noise": kind, "rate": rate, "seed": seed, "caveat": INJECTION_CAVEAT}
            if truth_col is None:
                truth, truth_info = original, {"kind": "injected", **injected}
            else:
                truth_info["injected"] = injected
        result = run_scan(labeled, detectors=names, params={"cl": cl}, issue_rule=issue_rule, progress=log)
        log("scoring")
        evaluation = run_evaluate(result, truth, truth=truth_info)
        if out is not None:
            from labelqa.report.writers import write_report

            log(f"writing the report with evaluation.json to {out}/")
            write_report(result, out, evaluation=evaluation)

    if output_format is EvalFormat.json:
        typer.echo(evaluation_json(evaluation), nl=False)
    elif output_format is EvalFormat.markdown:
        from labelqa.evaluate import describe_truth, render_markdown_table

        typer.echo(f"{describe_truth(evaluation)}\n\n{render_markdown_table(evaluation)}", nl=False)
    elif not quiet:
        print_evaluation(evaluation)
    return 0


def print_evaluation(evaluation: dict[str, Any]) -> None:
    """The evaluation as a rich table on stdout."""
    from rich.table import Table

    from labelqa.evaluate import METRICS, describe_truth, fmt_metric, table_rows

    console = stdout_console()
    table = Table(title="Detector evaluation", title_justify="left")
    table.add_column("Detector")
    table.add_column("Flagged", justify="right")
    for _, title in METRICS:
        table.add_column(title, justify="right")
    for name, m in table_rows(evaluation):
        table.add_row(name, f"{m['flagged']:,}", *(fmt_metric(m.get(key)) for key, _ in METRICS))
    console.print(describe_truth(evaluation), highlight=False, markup=False)
    console.print(table)
    truth = evaluation.get("truth") or {}
    if truth.get("kind") == "injected" or truth.get("injected"):
        console.print(f"Note: {truth.get('caveat') or truth['injected']['caveat']}.", highlight=False, markup=False)
