"""GitHub Actions output: workflow-command annotations and the job step summary.

:func:`github_annotations` renders ``--format github``: one ``::warning`` per
top issue (at most ``cap``), one ``::notice`` counting the flagged rows not
shown, and an ``::error`` when the quality gate failed. GitHub shows them on
the run page and, for a file in the repository, in the pull request's diff.

Dataset text is made inert: control characters (ANSI escape sequences)
but line breaks are shown as ``\\x1b``-style text, then GitHub's
workflow-command rules apply: in the message ``%`` ->
``%25``, ``\\r`` -> ``%0D``, ``\\n`` -> ``%0A``; in property values also
``:`` -> ``%3A`` and ``,`` -> ``%2C``.

:func:`append_step_summary` appends Markdown (e.g. summary.md) to the file
named by ``$GITHUB_STEP_SUMMARY``, shown on the job's summary page.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from labelqa.report.escape import terminal_text

__all__ = ["append_step_summary", "escape_data", "escape_property", "github_annotations", "workflow_command"]

#: Line breaks: escaped by GitHub's rules (``%0A``), not shown as ``\\x0a``.
_BREAKS = "\r\n"

#: Files whose rows map to lines: data line of row i (0-based) = i + offset.
_LINE_OFFSETS = {".csv": 2, ".tsv": 2, ".jsonl": 1, ".ndjson": 1}


def escape_data(text: str) -> str:
    """Escape a workflow-command message."""
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (``file``, ``title``...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: Any) -> str:
    """``::command key=value,...::message`` with escaping; ``None`` properties are left out.

    Control characters but line breaks are shown as text first (:func:`labelqa.report.escape.terminal_text`):
    the job log runs ANSI escape sequences. Line breaks are GitHub-escaped (``%0A``).
    """
    props = ",".join(f"{k}={escape_property(terminal_text(v, keep=_BREAKS))}" for k, v in properties.items() if v is not None)
    return f"::{command}{' ' + props if props else ''}::{escape_data(terminal_text(message, keep=_BREAKS))}"


def _label(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(str(v) for v in value) + "}"
    return str(value)


def _line_of(file: str | None, position: int) -> int | None:
    if not file:
        return None
    offset = _LINE_OFFSETS.get(Path(file).suffix.lower())
    return position + offset if offset is not None else None


def github_annotations(
    summary: Mapping[str, Any],
    issues_table: pa.Table | None,
    *,
    cap: int = 10,
    file: str | None = None,
) -> str:
    """Workflow commands for a scan: top issues, the rest counted, a failed gate.

    Args:
        summary: The scan summary (``ScanResult.summary()``, with ``gate``
            when the gate ran).
        issues_table: ``ScanResult.issues_table()`` (input order, with
            ``rank``), or ``None`` to annotate only the counts and the gate.
        cap: At most this many ``::warning`` lines (the best-ranked issues).
        file: Path to annotate (as the repository sees it); default the
            summary's ``source``. For CSV/TSV (header on line 1) and JSON
            lines files each warning also names the row's ``line`` (this
            assumes no cell spans several lines).

    Returns:
        The lines, each ending with a newline ("" when there is nothing to say).
    """
    file = file if file is not None else summary.get("source")
    lines: list[str] = []
    gate = summary.get("gate") or {}
    if gate and gate.get("passed") is False:
        lines.append(workflow_command("error", f"labelqa quality gate failed: {gate.get('reason', '')}",
                                      file=file, title="labelqa quality gate failed"))
    n_issues = int(summary.get("issues_found") or 0)
    shown = 0
    if issues_table is not None and n_issues and cap > 0:
        import numpy as np

        flags = np.asarray(issues_table.column("is_label_issue").to_numpy(zero_copy_only=False), dtype=bool)
        pos = np.flatnonzero(flags)
        ranks = np.asarray(issues_table.column("rank").to_numpy(zero_copy_only=False))[pos]
        pos = pos[np.argsort(ranks, kind="stable")[:cap]]
        top = issues_table.take(pa.array(pos, pa.int64())).to_pylist()
        for row, p in zip(top, pos.tolist()):
            row["_pos"] = p
            shown += 1
            given, suggested = _label(row.get("given_label")), _label(row.get("suggested_label"))
            parts = [f"row {row['_pos']} (id {row.get('id')}): given label {given!r}, suggested {suggested!r}"]
            conf = row.get("suggested_confidence")
            if conf is not None and conf == conf:
                parts.append(f"confidence {conf:.2f}")
            quality = row.get("label_quality")
            if quality is not None and quality == quality:
                parts.append(f"label quality {quality:.3f}")
            message = ", ".join(parts)
            if row.get("reason"):
                message += f" -- {row['reason']}"
            lines.append(workflow_command(
                "warning", message, file=file, line=_line_of(file, int(row["_pos"])),
                title=f"labelqa: suspect label (rank {row.get('rank')})",
            ))
    rest = n_issues - shown
    if rest > 0:
        rows = summary.get("rows")
        of = f" of {rows:,} rows" if isinstance(rows, int) else ""
        lines.append(workflow_command(
            "notice",
            f"{rest:,} more suspect label{'s' if rest != 1 else ''} not annotated "
            f"({n_issues:,} flagged{of}); see the labelqa report",
            file=file, title="labelqa: more label issues",
        ))
    return "".join(line + "\n" for line in lines)


def append_step_summary(markdown: str, env: Mapping[str, str] = os.environ) -> Path | None:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY`` when it is set.

    Returns:
        The file appended to, or ``None`` when the variable is unset or empty
        (not running in GitHub Actions).
    """
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
    return path
