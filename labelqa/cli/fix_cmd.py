"""`labelqa fix`: export cleaned labels to a new file."""

from __future__ import annotations

from labelqa.cli.console import EXIT_OK, ProgressLog, stdout_console
from labelqa.cli.params import command
from labelqa.options import Settings


def run(s: Settings) -> int:
    """Fix (scanning first without ``--report``) and print what was done."""
    from labelqa.fix import fix as run_fix
    from labelqa.runtime import skip_pyarrow_pandas_probe

    skip_pyarrow_pandas_probe()
    with ProgressLog(quiet=s["quiet"], verbose=s["verbose"]) as log:
        log(f"scanning {s['data']} (no --report given)" if s["report"] is None else f"using report {s['report']}/")
        result = run_fix(s["data"], progress=log, **s.select(api=True))
    if not s["quiet"]:
        from labelqa.report.escape import terminal_markup

        a = result.actions
        stdout_console().print(
            f"Wrote {result.table.num_rows:,} rows to [bold]{terminal_markup(s['out'])}[/bold]: "
            f"{a['relabel']:,} relabelled, {a['drop']:,} dropped, {a['flag']:,} flagged, {a['keep']:,} kept."
            + (f" Reviewed: {a['reviewed_relabel']:,} relabelled, {a['reviewed_drop']:,} dropped, "
               f"{a['reviewed_keep']:,} kept." if "reviewed_keep" in a else ""),
            highlight=False,
        )
    return EXIT_OK


fix = command("fix", run, """Write a cleaned copy of DATA: every input column, the fixed label, and provenance columns.

    Without --report, DATA is scanned now with the scan options (flags, else the scan table of the configuration).
    """)
