"""`labelqa fix`: export cleaned labels to a new file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from labelqa.cli import options as o
from labelqa.cli.console import ProgressLog, stdout_console


class StrategyChoice(str, Enum):
    """How flagged rows are fixed."""

    relabel = "relabel"
    drop = "drop"
    flag = "flag"


def fix(
    data: o.DataArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output file (.parquet, .csv, .jsonl, .arrow); never the input.",
                     show_default=False),
    ],
    report: Annotated[
        Optional[Path],
        typer.Option("--report", help="Report folder from `labelqa scan` (default: scan DATA now).", show_default=False),
    ] = None,
    strategy: Annotated[
        StrategyChoice,
        typer.Option("--strategy", help="relabel flagged rows to the suggested label, drop them, or only flag them."),
    ] = StrategyChoice.relabel,
    min_confidence: Annotated[
        float,
        typer.Option("--min-confidence", min=0.0, max=1.0,
                     help="Relabel/drop only when the suggested label's probability is at least this; "
                     "other flagged rows are flagged."),
    ] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    label_col: o.LabelCol = "label",
    pred_probs_col: o.PredProbsCol = None,
    pred_probs: o.PredProbsFile = None,
    combine_models: o.CombineModels = "geometric",
    classes: o.Classes = None,
    classes_file: o.ClassesFile = None,
    id_col: o.IdCol = None,
    input_format: o.InputFormat = None,
    renormalize: o.Renormalize = False,
    task: o.Task = "auto",
    label_sep: o.LabelSep = None,
    filter_by: o.FilterBy = "prune_by_noise_rate",
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> int:
    """Write a cleaned copy of DATA: every input column, the fixed label, and provenance columns."""
    from labelqa.fix import fix as run_fix

    load_kwargs = o.load_options(
        label_col=label_col, pred_probs_col=pred_probs_col, pred_probs=pred_probs, combine_models=combine_models,
        classes=classes,
        classes_file=classes_file, id_col=id_col, input_format=input_format, renormalize=renormalize,
        task=task if task != "auto" else None, label_sep=label_sep,
    )
    scan_kwargs = {k: v for k, v in load_kwargs.items() if k not in ("label_col", "id_col", "input_format")}
    with ProgressLog(quiet=quiet, verbose=verbose) as log:
        if report is None:
            log(f"scanning {data} (no --report given)")
            scan_kwargs["detectors"] = ["cl"]
            scan_kwargs["params"] = {"cl": {"filter_by": filter_by}}
            scan_kwargs["progress"] = log
        else:
            log(f"using report {report}/")
        result = run_fix(
            data, out=out, report=report, strategy=strategy.value, min_confidence=min_confidence, force=force,
            label_col=label_col, id_col=id_col, input_format=input_format, **scan_kwargs,
        )
    if not quiet:
        a = result.actions
        stdout_console().print(
            f"Wrote {result.table.num_rows:,} rows to [bold]{out}[/bold]: "
            f"{a['relabel']:,} relabelled, {a['drop']:,} dropped, {a['flag']:,} flagged, {a['keep']:,} kept.",
            highlight=False,
        )
    return 0
