"""`labelqa train`: from features to everything the detectors need (see :mod:`labelqa.train.pipeline`)."""

from __future__ import annotations

from typing import Any

import typer

from labelqa.cli.console import EXIT_OK, progress_logger
from labelqa.cli.params import command
from labelqa.options import Settings


def run(s: Settings) -> int:
    """Train with a progress bar on a terminal, then say what was written and what to run next."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from labelqa.train.pipeline import train_from_file

    err = Console(stderr=True, emoji=False)
    bar = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), console=err,
                   disable=s["quiet"] or not err.is_terminal, transient=False)
    tasks: dict[str, Any] = {}

    def step(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total, unit="folds" if label == "cross-validation" else "epochs")
        bar.update(tasks[label], completed=done)

    with bar:
        res = train_from_file(s["data"], progress=progress_logger(s["quiet"], s["verbose"]), step=step,
                              **s.select(api=True))
    if not s["quiet"]:
        typer.echo(f"Wrote {res.data} ({s['pred_probs_col']} column: {s['folds']}-fold {s['model']}"
                   f"{' one-vs-rest' if res.task == 'multilabel' else ''}, "
                   f"accuracy vs given labels {res.cv_accuracy:.3f})")
        if res.dynamics is not None:
            typer.echo(f"Wrote {res.dynamics} ({s['runs']} run(s) x {s['epochs']} epochs, "
                       f"threshold samples per run: {', '.join(str(r['n_threshold']) for r in res.runs)})")
        elif res.note:
            typer.echo(f"Note: {res.note}")
        typer.echo(f"Next: {res.next_command_line}")
    return EXIT_OK


train = command("train", run, "Out-of-sample pred_probs for DATA by cross-validation (scikit-learn or torch), and "
                "AUM training dynamics when torch is installed.\n\n    Option defaults can come from the train table "
                "of the configuration.")
