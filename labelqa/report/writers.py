"""Write a scan's report files: issues.parquet/.csv, summary.json/.md, report.html.

All files are written to a staging folder first and only published into the
output folder once every one of them is complete (see :mod:`labelqa.atomic`).
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from labelqa.atomic import publish, staging_dir
from labelqa.errors import LabelqaError
from labelqa.report.html import render_html
from labelqa.report.markdown import render_markdown
from labelqa.report.textlists import lists_to_text
from labelqa.result import ScanResult

#: Report files written by :func:`write_report`.
REPORT_FILES = ("issues.parquet", "issues.csv", "summary.json", "summary.md", "report.html")


def summary_json(summary: dict[str, Any]) -> str:
    """summary.json text: 2-space indent, each list of numbers on one line, trailing newline.

    Number lists (thresholds, matrix rows) are encoded by the C encoder, so a
    100-class summary with several K x K matrices stays fast and readable.
    """
    leaves: list[str] = []
    token = uuid.uuid4().hex  # placeholders no dataset string can forge

    def compact(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: compact(v) for k, v in value.items()}
        if isinstance(value, list):
            if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                leaves.append(json.dumps(value, allow_nan=False))
                return f"\x00{token}:{len(leaves) - 1}\x00"
            return [compact(v) for v in value]
        return value

    text = json.dumps(compact(summary), indent=2, allow_nan=False, default=str)
    text = re.sub(rf'"\\u0000{token}:(\d+)\\u0000"', lambda m: leaves[int(m.group(1))], text)
    return text + "\n"


def write_report(
    result: ScanResult,
    out_dir: str | Path,
    *,
    summary: dict[str, Any] | None = None,
    csv: bool = True,
    evaluation: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the report files of ``result`` into ``out_dir`` atomically.

    Args:
        result: The scan to write.
        out_dir: Destination folder, created if needed. Existing report files
            there are replaced; other files are left alone.
        summary: The summary dict to write (default ``result.summary()``);
            pass one to include extra sections such as the gate outcome.
        csv: Also write issues.csv.
        evaluation: An evaluation (``labelqa evaluate``): written as
            evaluation.json and shown in summary.md and report.html.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LabelqaError(f"output path {out_dir} exists and is not a folder", "pass --out with a folder path")
    summary = result.summary() if summary is None else summary
    table = result.issues_table()
    with staging_dir(out_dir) as tmp, ThreadPoolExecutor(max_workers=3) as pool:
        # The writers release the GIL for most of their work: run them side by side.
        jobs = [pool.submit(pq.write_table, table, tmp / "issues.parquet", compression="zstd")]
        if csv:
            jobs.append(pool.submit(pacsv.write_csv, lists_to_text(table), tmp / "issues.csv"))
        jobs.append(pool.submit(_write_text, tmp / "summary.json", summary_json(summary)))
        jobs.append(pool.submit(_write_text, tmp / "summary.md", render_markdown(summary, table, evaluation=evaluation)))
        jobs.append(pool.submit(_write_text, tmp / "report.html", render_html(summary, table, evaluation=evaluation)))
        if evaluation is not None:
            from labelqa.evaluate import evaluation_json

            jobs.append(pool.submit(_write_text, tmp / "evaluation.json", evaluation_json(evaluation)))
        for job in jobs:
            job.result()  # re-raise the first failure before anything is published
        return publish(tmp, out_dir)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def read_issues(report_dir: str | Path) -> pa.Table:
    """Read issues.parquet from a report folder written by :func:`write_report`."""
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
