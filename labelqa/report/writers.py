"""Write a scan's report files: issues.parquet/.csv, summary.json/.md, report.html.

All files are written to a staging folder first and only published into the
output folder once every one of them is complete (see :mod:`labelqa.atomic`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
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
    summary: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    csv: bool = True,
    evaluation: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the report files of ``result`` into ``out_dir`` atomically.

    issues.parquet and issues.csv (the large files, whose encoders release
    the GIL) are written on worker threads while this thread builds the
    summary and renders summary.json, summary.md and report.html.

    Args:
        result: The scan to write.
        out_dir: Destination folder, created if needed. Existing report files
            there are replaced; other files are left alone.
        summary: The summary dict to write (default ``result.summary()``);
            pass one to include extra sections such as the gate outcome, or a
            function returning it (called while the issue files are written).
        csv: Also write issues.csv.
        evaluation: An evaluation (``labelqa evaluate``): written as
            evaluation.json and shown in summary.md and report.html.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LabelqaError(f"output path {out_dir} exists and is not a folder", "pass --out with a folder path")
    table = result.issues_table()
    with staging_dir(out_dir) as tmp, ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [pool.submit(write_issues_parquet, table, tmp / "issues.parquet")]
        if csv:
            jobs.append(pool.submit(write_issues_csv, table, tmp / "issues.csv", pool=pool))
        try:
            if summary is None:
                summary = result.summary()
            elif callable(summary):
                summary = summary()
            _write_text(tmp / "summary.json", summary_json(summary))
            _write_text(tmp / "summary.md", render_markdown(summary, table, evaluation=evaluation))
            _write_text(tmp / "report.html", render_html(summary, table, evaluation=evaluation))
            if evaluation is not None:
                from labelqa.evaluate import evaluation_json

                _write_text(tmp / "evaluation.json", evaluation_json(evaluation))
        except BaseException:
            wait(jobs)  # no writer may outlive the staging folder
            raise
        for job in jobs:
            job.result()  # re-raise the first failure before anything is published
        return publish(tmp, out_dir)


def write_issues_parquet(table: pa.Table, path: Path) -> None:
    """issues.parquet, zstd; dictionary encoding only for the text columns (numbers are mostly unique)."""
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_list(f.type) or pa.types.is_large_list(f.type)]
    pq.write_table(table, path, compression="zstd", use_dictionary=text or False)


#: Rows below which issues.csv is encoded on one thread.
CSV_SPLIT_ROWS = 200_000


def write_issues_csv(table: pa.Table, path: Path, *, pool: ThreadPoolExecutor | None = None) -> None:
    """issues.csv (list columns as text). Large tables are encoded in two halves at once.

    The second half is encoded to memory on ``pool`` (without a header)
    while this thread writes the first half to ``path``; then it is
    appended. CSV rows do not depend on each other, so the bytes are those
    of encoding the whole table at once.
    """
    table = lists_to_text(table)
    n = table.num_rows
    if pool is None or n < CSV_SPLIT_ROWS:
        pacsv.write_csv(table, path)
        return
    half = n // 2

    def encode_tail() -> pa.Buffer:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table.slice(half), sink, write_options=pacsv.WriteOptions(include_header=False))
        return sink.getvalue()

    tail = pool.submit(encode_tail)
    with open(path, "wb") as f:
        pacsv.write_csv(table.slice(0, half), f)
        f.write(tail.result())


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
