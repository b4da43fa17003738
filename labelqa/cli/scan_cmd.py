"""`labelqa scan`: run the detectors, write the report, render it, exit 1 when the gate fails."""

from __future__ import annotations

from typing import Any

import typer

from labelqa.cli.console import EXIT_GATE_FAILED, EXIT_OK, ProgressLog, error_line, stdout_console
from labelqa.cli.params import command
from labelqa.options import Settings


def run(s: Settings) -> int:
    """Scan, write the report, print it as ``--format`` says, and pick the exit code."""
    import os

    import labelqa
    from labelqa.atomic import check_report_folder
    from labelqa.paths import option_inputs, refuse_overwriting_inputs
    from labelqa.runtime import skip_pyarrow_pandas_probe

    step_summary = os.environ.get("GITHUB_STEP_SUMMARY") if s["format"] == "github" else None
    refuse_overwriting_inputs(option_inputs(s), out_dir=s["out"], out_file=step_summary or None)  # before any work
    skip_pyarrow_pandas_probe()
    check_report_folder(s["out"])  # before any work: a folder with other files is refused
    with ProgressLog(quiet=s["quiet"] or s["format"] != "human", verbose=s["verbose"]) as log:
        result = labelqa.scan(s["data"], progress=log, **s.select(api=True))
    with result:  # an out-of-core scan keeps its runner (a local Dask cluster) until the report is shown
        return _report(s, result)


def _report(s: Settings, result: Any) -> int:
    import labelqa
    from labelqa.scan import top_issues

    out, fmt, top, quiet = s["out"], s["format"], s["top"], s["quiet"]
    with ProgressLog(quiet=quiet or fmt != "human", verbose=s["verbose"]) as log:
        log(f"writing report to {out}/")
        labelqa.write_report(result, out, show_cols=s["show_cols"], id_col=s["id_col"],
                             csv=s["csv"], csv_formulas=s["csv_formulas"])
        summary = result.summary()  # the one the report holds, built once (at K = 1,000 it takes ~0.1 s)
        log(f"done: {summary['issues_found']:,} of {summary['rows']:,} rows flagged")
    warning = (summary.get("models") or {}).get("warning")
    if warning:  # a model that looks in-sample hides label errors: said even with --quiet or a machine format
        from labelqa.cli.console import error_text

        typer.echo(f"labelqa: warning: {error_text(warning)}", err=True)
    if fmt == "json":
        from labelqa.report.writers import summary_json

        typer.echo(summary_json(summary), nl=False)
    elif fmt in ("markdown", "github"):
        from labelqa.report.github import append_step_summary, github_annotations
        from labelqa.report.markdown import render_markdown

        markdown = render_markdown(summary, top_issues(result, max(top, 20)))
        if fmt == "markdown":
            typer.echo(markdown, nl=False)
        else:
            typer.echo(github_annotations(summary, top_issues(result, top), cap=top, file=str(s["data"])), nl=False)
            append_step_summary(markdown)
    elif not quiet:
        from labelqa.report.escape import terminal_markup
        from labelqa.report.terminal import print_summary  # rich: only imported when something is shown
        from labelqa.report.writers import REPORT_FILES

        console = stdout_console()
        print_summary(console, summary, top_issues(result, max(top, 20)) if top else None, top=top)
        files = ", ".join(name for name in REPORT_FILES if (out / name).exists())
        console.print(f"Report written to [bold]{terminal_markup(f'{out}/')}[/bold] ({files})", highlight=False)
    if result.gate.passed:
        return EXIT_OK
    if not s["exit_zero"]:
        error_line(f"quality gate failed: {result.gate.reason}")
        return EXIT_GATE_FAILED
    if not quiet:
        error_line(f"quality gate failed (ignored by --exit-zero): {result.gate.reason}")
    return EXIT_OK


scan = command("scan", run, """Find label issues in DATA and write a report (report.html, issues.parquet,
    summary.json/.md; issues.csv with --csv).

    Option defaults can come from the scan and gate tables of a labelqa.toml
    (or tool.labelqa.scan / tool.labelqa.gate in pyproject.toml); flags given on the command line win.
    """)
