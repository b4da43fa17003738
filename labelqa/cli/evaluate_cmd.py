"""`labelqa evaluate`: score the detectors against true labels or injected noise."""

from __future__ import annotations

from typing import Any

import typer

from labelqa.cli.console import EXIT_OK, ProgressLog, stdout_console
from labelqa.cli.params import command
from labelqa.options import Settings


def run(s: Settings) -> int:
    """Evaluate and print the metrics as ``--format`` says."""
    from labelqa.evaluate import describe_truth, evaluation_json, render_markdown_table
    from labelqa.evaluate_run import evaluate_detectors
    from labelqa.runtime import skip_pyarrow_pandas_probe

    fmt = s["format"]
    skip_pyarrow_pandas_probe()
    with ProgressLog(quiet=s["quiet"] or fmt != "table", verbose=s["verbose"]) as log:
        evaluation = evaluate_detectors(s["data"], progress=log, **s.select(api=True))
    if fmt == "json":
        typer.echo(evaluation_json(evaluation), nl=False)
    elif fmt == "markdown":
        typer.echo(f"{describe_truth(evaluation)}\n\n{render_markdown_table(evaluation)}", nl=False)
    elif not s["quiet"]:
        print_evaluation(evaluation)
    return EXIT_OK


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


evaluate = command("evaluate", run, """Score the detectors on DATA against true labels (--truth-col) or injected noise (--inject-noise).

    Prints precision, recall, F1, AUROC, AP and precision at the true error count per detector (and for the
    ensemble); --out writes evaluation.json. Injected noise is optimistic: the pred_probs model never saw it.
    Option defaults can come from the scan and evaluate tables of the configuration.
    """)
