"""`labelqa report`: rebuild report.html from a report folder's files."""

from __future__ import annotations

import typer

from labelqa.cli.console import EXIT_OK
from labelqa.cli.params import command
from labelqa.options import Settings


def run(s: Settings) -> int:
    """Rebuild report.html and say where it is."""
    from labelqa.report.folder import write_html

    path = write_html(s["report_dir"])
    if not s["quiet"]:
        typer.echo(f"Wrote {path}")  # plain: a long path must stay on one line for scripts
    return EXIT_OK


report = command("report", run, "Rebuild REPORT_DIR/report.html, the self-contained HTML report, from summary.json "
                 "and issues.parquet.")
