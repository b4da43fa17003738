"""`labelqa export`: write a report's flagged rows for review in a labeling tool's format."""

from __future__ import annotations

import typer

from labelqa.cli.console import EXIT_OK
from labelqa.cli.params import command
from labelqa.options import Settings


def run(s: Settings) -> int:
    """Export and say what was written."""
    from labelqa.export import export_review

    result = export_review(s["report_dir"], **s.select(api=True))
    if not s["quiet"]:
        also = f" (labeling config: {result.config})" if result.config else ""
        typer.echo(f"Wrote {result.rows:,} flagged rows to {result.path}{also}")
    return EXIT_OK


export = command("export", run, """Write REPORT_DIR's flagged rows, best-ranked first, for review: Label Studio tasks
    with the suggested label pre-selected, or a CSV/JSONL with a decision column. Bring the answers back with
    `labelqa fix DATA --decisions FILE`.
    """)
