"""`labelqa report`: rebuild report.html from a report folder's files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labelqa.cli import options as o


def report(
    report_dir: Annotated[
        Path,
        typer.Argument(help="Report folder written by `labelqa scan` (holds summary.json and issues.parquet).",
                       show_default=False, metavar="REPORT_DIR"),
    ],
    quiet: o.Quiet = False,
) -> int:
    """Rebuild REPORT_DIR/report.html, the self-contained HTML report, from summary.json and issues.parquet."""
    from labelqa.report.html import write_html

    path = write_html(report_dir)
    if not quiet:
        typer.echo(f"Wrote {path}")  # plain: a long path must stay on one line for scripts
    return 0
