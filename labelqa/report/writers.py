"""Write a scan's report files: issues.parquet/.csv, summary.json/.md, report.html.

The issues table arrives batch by batch (one batch for an in-memory scan,
record batches for the streaming and Dask engines):
:class:`IssueFiles` appends each to issues.parquet and issues.csv on writer
threads (their encoders release the GIL) while this thread produces the next
batch, keeps the best-ranked rows and the quality histogram, and renders
summary.json, summary.md and report.html.

All files are written to a staging folder beside the output folder first;
once every one of them is complete the staging folder replaces the output
folder in one step, for every engine (see :mod:`labelqa.atomic`).
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from labelqa.atomic import check_report_folder, located, publish, staging_dir
from labelqa.errors import LabelqaError
from labelqa.report.folder import read_issues
from labelqa.report.html import QualityHistogram, file_histogram, render_html
from labelqa.report.escape import neutralize_formulas
from labelqa.report.markdown import render_markdown
from labelqa.report.textlists import lists_to_text
from labelqa.report.toprows import TopRows
from labelqa.result import MATRICES_FILE, ScanResult, with_matrices, write_matrices

__all__ = ["CSV_SPLIT_ROWS", "HTML_ROWS", "PARQUET_ROW_GROUP_ROWS", "REPORT_FILES", "IssueFiles", "parquet_options",
           "read_issues", "summary_json", "write_report"]

#: Report files written by :func:`write_report` (issues.csv only with ``csv=True``, matrices.npy only when
#: a detector reports K x K matrices).
REPORT_FILES = ("issues.parquet", "issues.csv", "summary.json", "matrices.npy", "summary.md", "report.html")

#: Best-ranked issues listed in report.html (summary.md lists the first 20 of them).
HTML_ROWS = 1000


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
    csv: bool = False,
    evaluation: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    csv_formulas: bool = False,
    show_cols: list[str] | None = None,
    id_col: str | None = None,
) -> list[Path]:
    """Write the report files of ``result`` into ``out_dir`` atomically.

    The summary (with the gate, when :func:`labelqa.scan` judged one) comes
    from ``result.summary()``: the gate is decided before anything is
    written, the same way for every engine.

    Args:
        result: The scan to write.
        out_dir: Destination folder, created if needed. A previous report
            there is replaced as a whole (its files, evaluation.json
            included, are removed); a folder holding files labelqa does not
            write is refused (see :func:`labelqa.atomic.check_report_folder`).
        csv: Also write issues.csv (every row, like issues.parquet; the CLI's ``--csv``). Off by
            default: issues.parquet is complete, and at a million rows the CSV is ~5x larger and
            takes most of the report's writing time.
        evaluation: An evaluation (``labelqa evaluate``): written as
            evaluation.json and shown in summary.md and report.html.
        summary: The summary to write instead of ``result.summary()``.
        csv_formulas: Write issues.csv text cells that a spreadsheet would
            run as formulas as they are (default: prefixed with ``'``, see
            :func:`labelqa.report.escape.neutralize_formulas`).
        show_cols: Data columns shown beside the best-ranked flagged rows (text, numbers, image
            thumbnails; :mod:`labelqa.report.shown`), kept in shown.parquet.
        id_col: The data's id column for ``show_cols`` (default: the loaded data's; out of core: row positions).

    Returns:
        The paths written.
    """
    from labelqa.paths import option_inputs, refuse_overwriting_inputs

    out_dir = Path(out_dir)
    source = result.source
    refuse_overwriting_inputs(option_inputs({**result.options, "data": source} if source else result.options),
                              out_dir=out_dir)
    check_report_folder(out_dir)
    result.prefetch_ranks()  # the rank sort runs beside the summary
    if summary is None:
        summary = result.summary()
    with located(out_dir), staging_dir(out_dir) as tmp:
        top = TopRows(HTML_ROWS)
        histogram = QualityHistogram()
        with IssueFiles(tmp, csv=csv, csv_formulas=csv_formulas) as files:
            for table in result.iter_issue_batches():
                files.write(table)
                top.add(table)
                histogram.add(table)
            top_rows = top.table()
            if show_cols:
                top_rows = _with_shown(result, top_rows, show_cols, id_col, tmp)
            result.keep_top(top_rows)
            matrices = result.matrices()
            if matrices:  # written beside summary.json and the pages (at K = 1,000: 32 MB, ~40 ms)
                files.beside(write_matrices, tmp / MATRICES_FILE, matrices)
            _write_text(tmp / "summary.json", summary_json(summary))
            _write_text(tmp / "summary.md", render_markdown(summary, top_rows, evaluation=evaluation))
            if evaluation is not None:
                from labelqa.evaluate import evaluation_json

                _write_text(tmp / "evaluation.json", evaluation_json(evaluation))
            hist = histogram.result()
            full = with_matrices(summary, matrices) if matrices else summary  # the heatmap reads the noise matrix
            if hist is not None or not files.rows:  # rendered while the last batch is encoded
                _write_text(tmp / "report.html", render_html(full, top_rows, evaluation=evaluation, histogram=hist))
        if hist is None and files.rows:  # scores outside [0, 1] over several batches: bins need their range
            hist = file_histogram(tmp / "issues.parquet")
            _write_text(tmp / "report.html", render_html(full, top_rows, evaluation=evaluation, histogram=hist))
        written = publish(tmp, out_dir)  # the whole folder: no shown.parquet of an earlier scan survives
    return written


def _with_shown(result: ScanResult, top_rows: pa.Table, show_cols: list[str], id_col: str | None,
                folder: Path) -> pa.Table:
    """The top rows with the shown data columns; shown.parquet written into ``folder``."""
    from labelqa.report.shown import SHOWN_FILE, attach, shown_columns

    data = result.data
    if result.source is None:
        raise LabelqaError("--show-cols reads the data file, but the data was built in memory",
                           "scan a file, or drop --show-cols")
    id_col = id_col if id_col is not None else (data.id_col if data is not None else None)
    fmt = (data.meta if data is not None else result.options).get("input_format")
    shown = shown_columns(result.source, show_cols, top_rows.column("id") if top_rows.num_rows else pa.array([]),
                          id_col=id_col, input_format=fmt)
    pq.write_table(shown, folder / SHOWN_FILE)
    return attach(top_rows, shown)


#: Rows per row group of issues.parquet (readers skip row groups by their rank and flag statistics).
PARQUET_ROW_GROUP_ROWS = 1 << 18
#: Integer columns of the issues table that hold class values: few distinct values, dictionary-encoded.
_CLASS_COLUMNS = ("given_label", "suggested_label")
#: Text columns of the issues table holding phrases that are mostly distinct: plain-encoded.
_PHRASE_COLUMNS = ("reason",)
#: The rank column: a permutation of 1..N, stored delta-packed and uncompressed.
_RANK_COLUMN = "rank"


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """issues.parquet's writer options for ``schema``: per column the encoding and codec that suit it.

    Text, lists and class values (few distinct values): dictionary, but for :data:`_PHRASE_COLUMNS`
    (mostly distinct phrases: the dictionary would be built, then dropped). Floats (scores,
    confidences): byte-stream split. Other integers (ids, ranks, mostly increasing or unique):
    delta. Codecs: zstd, but LZ4 (raw) for floats and phrases (within 10% of zstd's size on
    byte-split floats, in half the time) and none for ``rank`` (a permutation: delta-packed, nothing
    left for zstd to find). Statistics (min/max per row group, for readers that skip row groups) for
    numbers and flags only: nobody filters on the min of a phrase. Every reader of Parquet 2
    (pyarrow, polars, DuckDB, Spark) reads them. At 1M x 10 the file is 11.9 MB (13.8 with these
    codecs; 15.1 with zstd and the default encodings) and encoding it takes 0.095 s (0.11; 0.19).
    """
    dictionary: list[str] = []
    encoding: dict[str, str] = {}
    statistics: list[str] = []
    codec: dict[str, str] = {}
    for f in schema:
        t = f.type
        text = (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_list(t)
                or pa.types.is_large_list(t))
        codec[f.name] = "zstd"
        if not text:
            statistics.append(f.name)
        if (text and f.name not in _PHRASE_COLUMNS) or (f.name in _CLASS_COLUMNS and pa.types.is_integer(t)):
            dictionary.append(f.name)
        elif pa.types.is_floating(t) and t.bit_width in (32, 64):
            encoding[f.name] = "BYTE_STREAM_SPLIT"
            codec[f.name] = "lz4"
        elif pa.types.is_int32(t) or pa.types.is_int64(t):
            encoding[f.name] = "DELTA_BINARY_PACKED"
            codec[f.name] = "none" if f.name == _RANK_COLUMN else "zstd"
        elif f.name in _PHRASE_COLUMNS:
            codec[f.name] = "lz4"
    return {"compression": codec, "use_dictionary": dictionary or False, "column_encoding": encoding or None,
            "write_statistics": statistics or False}


#: Rows from which one batch of issues.csv is encoded in two halves at once.
CSV_SPLIT_ROWS = 200_000


class IssueFiles:
    """issues.parquet and issues.csv of a staging folder, appended batch by batch on writer threads.

    :meth:`write` hands a batch to the writers and returns; a writer holds
    at most one batch besides the one it encodes, so memory stays bounded
    by a few batches. Leaving the context waits for both and closes the
    files (re-raising the first failure).

    issues.parquet: each column's encoding and codec chosen by :func:`parquet_options`,
    row groups of :data:`PARQUET_ROW_GROUP_ROWS` rows (a batch is split). issues.csv: list columns as text, text cells that
    start like a formula prefixed with ``'`` (unless ``csv_formulas``); a large batch is
    encoded in two halves at once (rows do not depend on each other, so the
    bytes are those of one encoder).
    """

    def __init__(self, folder: Path, *, csv: bool = False, csv_formulas: bool = False) -> None:
        self.folder = folder
        self.csv = csv
        self.csv_formulas = csv_formulas
        self.rows = 0
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="labelqa-write")
        self._pending: dict[str, Future[None] | None] = {"parquet": None, "csv": None}
        self._beside: list[Future[None]] = []
        self._parquet: pq.ParquetWriter | None = None
        self._csv_file: Any = None

    def __enter__(self) -> IssueFiles:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            for job in [*self._pending.values(), *self._beside]:
                if job is not None:
                    job.result()
        finally:
            if self._parquet is not None:
                self._parquet.close()
            if self._csv_file is not None:
                self._csv_file.close()
            self._pool.shutdown(wait=True)

    def write(self, table: pa.Table) -> None:
        """Append one batch of the issues table (in input order)."""
        first = self.rows == 0
        self.rows += table.num_rows
        self._submit("parquet", self._write_parquet, table)
        if self.csv:
            self._submit("csv", self._write_csv, table, first)

    def beside(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` (another file of the folder) on a writer thread; leaving the context waits for it."""
        self._beside.append(self._pool.submit(fn, *args))

    def _submit(self, key: str, fn: Any, *args: Any) -> None:
        previous = self._pending[key]
        if previous is not None:
            previous.result()  # one batch in flight per file: bounded memory, ordered appends
        self._pending[key] = self._pool.submit(fn, *args)

    def _write_parquet(self, table: pa.Table) -> None:
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.folder / "issues.parquet", table.schema,
                                             **parquet_options(table.schema))
        self._parquet.write_table(table, row_group_size=PARQUET_ROW_GROUP_ROWS)

    def _write_csv(self, table: pa.Table, header: bool) -> None:
        table = lists_to_text(table)
        if not self.csv_formulas:
            table = neutralize_formulas(table)
        if self._csv_file is None:
            self._csv_file = open(self.folder / "issues.csv", "wb")  # noqa: SIM115 - closed in __exit__
        n = table.num_rows
        if n < CSV_SPLIT_ROWS:
            pacsv.write_csv(table, self._csv_file, write_options=pacsv.WriteOptions(include_header=header))
            return
        half = n // 2

        def encode_tail() -> pa.Buffer:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table.slice(half), sink, write_options=pacsv.WriteOptions(include_header=False))
            return sink.getvalue()

        tail = self._pool.submit(encode_tail)
        pacsv.write_csv(table.slice(0, half), self._csv_file, write_options=pacsv.WriteOptions(include_header=header))
        self._csv_file.write(tail.result())


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
