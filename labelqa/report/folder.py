"""Reading a report folder written by :func:`labelqa.write_report`: its issues table and summary,
and rebuilding its report.html from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from labelqa.atomic import write_atomic
from labelqa.errors import LabelqaError
from labelqa.report.html import file_histogram, render_html

__all__ = ["read_issues", "read_summary", "write_html"]


def read_issues(report_dir: str | Path) -> pa.Table:
    """Read issues.parquet from a report folder written by :func:`labelqa.write_report`."""
    path = Path(report_dir) / "issues.parquet"
    if not path.is_file():
        raise LabelqaError(
            f"no issues.parquet in report folder {report_dir}",
            "run `labelqa scan DATA --out DIR` first, or pass the folder it wrote",
        )
    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise LabelqaError(f"cannot read {path}: {exc}", "re-run `labelqa scan` to rewrite the report") from exc


def read_summary(report_dir: str | Path) -> dict[str, Any]:
    """Read summary.json from a report folder."""
    spath = Path(report_dir) / "summary.json"
    if not spath.is_file():
        raise LabelqaError(
            f"no summary.json in report folder {report_dir}",
            "run `labelqa scan DATA --out DIR` first, or pass the folder it wrote",
        )
    try:
        summary = json.loads(spath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabelqaError(f"cannot read {spath}: {exc}", "re-run `labelqa scan` to rewrite the report") from exc
    if not isinstance(summary, dict):
        raise LabelqaError(f"{spath} is not a labelqa summary (not a JSON object)",
                           "re-run `labelqa scan` to rewrite the report")
    return summary


def write_html(report_dir: str | Path, *, max_rows: int = 1000) -> Path:
    """Rebuild ``report.html`` of a report folder from summary.json and issues.parquet.

    The file is replaced atomically (see :func:`labelqa.atomic.write_atomic`).

    Raises:
        LabelqaError: When the folder lacks summary.json or issues.parquet, or
            they cannot be read.
    """
    report_dir = Path(report_dir)
    summary = read_summary(report_dir)
    path = report_dir / "issues.parquet"
    if not path.is_file():
        read_issues(report_dir)  # raises the usual clear error
    histogram = file_histogram(path)
    issues = pq.read_table(path, filters=[("is_label_issue", "=", True), ("rank", "<=", max_rows)])
    from labelqa.report.shown import attach, read_shown

    issues = attach(issues, read_shown(report_dir))  # --show-cols of the scan
    evaluation = None
    epath = report_dir / "evaluation.json"
    if epath.is_file():
        try:
            evaluation = json.loads(epath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LabelqaError(f"cannot read {epath}: {exc}", "re-run `labelqa evaluate --out DIR`") from exc
    text = render_html(summary, issues, max_rows=max_rows, evaluation=evaluation, histogram=histogram)
    return write_atomic(report_dir / "report.html", lambda p: p.write_text(text, encoding="utf-8"))
