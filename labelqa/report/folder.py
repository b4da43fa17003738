"""Reading a report folder written by :func:`labelqa.write_report`: its issues table and summary,
and rebuilding its report.html from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from labelqa.atomic import write_atomic
from labelqa.errors import LabelqaError
from labelqa.report.html import file_histogram, render_html
from labelqa.result import MATRICES_FILE, with_matrices

__all__ = ["read_issues", "read_matrices", "read_summary", "write_html"]


_REWRITE = "re-run `labelqa scan` to rewrite the report"
#: summary.json fields every reader relies on, and their JSON types.
SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "schema_version": (int,), "task": (str,), "rows": (int,), "n_classes": (int,), "classes": (list,),
    "issues_found": (int,), "detectors": (dict,),
}


def read_issues(report_dir: str | Path, *, classes: list[Any] | None = None) -> pa.Table:
    """Read and validate issues.parquet from a report folder written by :func:`labelqa.write_report`.

    Args:
        report_dir: The report folder.
        classes: The classes the labels must be among; default those of the folder's summary.json, when present.

    Raises:
        LabelqaError: A missing or unreadable file, a missing column or one of the wrong type, or a given or
            suggested label that is not one of the classes (a modified or foreign report is never trusted).
    """
    path = Path(report_dir) / "issues.parquet"
    if not path.is_file():
        raise LabelqaError(
            f"no issues.parquet in report folder {report_dir}",
            "run `labelqa scan DATA --out DIR` first, or pass the folder it wrote",
        )
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise LabelqaError(f"cannot read {path}: {_first_line(exc)}", _REWRITE) from exc
    if classes is None and (Path(report_dir) / "summary.json").is_file():
        classes = read_summary(report_dir)["classes"]
    validate_issues(table, str(path), classes)
    return table


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:200] + ("..." if len(line) > 200 else "")


def validate_issues(table: pa.Table, where: str, classes: list[Any] | None = None) -> None:
    """Raise unless ``table`` has the issues columns, of the right types, with labels among ``classes``."""
    multilabel = _check_issue_schema(table.schema, where)
    _check_issue_values(table, where, classes, multilabel)


def validate_issues_file(path: str | Path, classes: list[Any] | None = None) -> None:
    """:func:`validate_issues` on an issues.parquet, batch by batch (a streamed report need not fit in memory)."""
    where = str(path)
    try:
        pf = pq.ParquetFile(path)
        multilabel = _check_issue_schema(pf.schema_arrow, where)
        columns = ["is_label_issue", "given_label", "suggested_label"] + (
            ["labels_to_remove", "labels_to_add"] if multilabel else [])
        batches = pf.iter_batches(batch_size=1 << 16, columns=columns)
        for batch in batches:
            _check_issue_values(pa.Table.from_batches([batch]), where, classes, multilabel)
    except LabelqaError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise LabelqaError(f"cannot read {path}: {_first_line(exc)}", _REWRITE) from exc


def _check_issue_schema(schema: pa.Schema, where: str) -> bool:
    """Raise unless the issues columns are there, of their types; return whether the report is multi-label."""
    from labelqa.data.arrays import is_list_type

    names = schema.names
    missing = [c for c in ("id", "given_label", "suggested_label", "is_label_issue", "suggested_confidence", "rank")
               if c not in names]
    if missing:
        raise LabelqaError(f"{where} is not a labelqa issues table: no column {', '.join(map(repr, missing))}",
                           _REWRITE)
    multilabel = is_list_type(schema.field("given_label").type)
    checks = [("is_label_issue", pa.types.is_boolean(schema.field("is_label_issue").type), "bool"),
              ("suggested_confidence", pa.types.is_floating(schema.field("suggested_confidence").type), "float"),
              ("rank", pa.types.is_integer(schema.field("rank").type), "integer"),
              ("suggested_label", is_list_type(schema.field("suggested_label").type) == multilabel
               and not pa.types.is_floating(schema.field("suggested_label").type), "like given_label")]
    if multilabel:
        for col in ("labels_to_remove", "labels_to_add"):
            if col not in names:
                raise LabelqaError(f"{where} is not a labelqa multi-label issues table: no column {col!r}", _REWRITE)
            checks.append((col, is_list_type(schema.field(col).type), "a list"))
    for col, ok, expected in checks:
        if not ok:
            raise LabelqaError(f"{where}: column {col!r} has type {schema.field(col).type}, expected {expected}",
                               _REWRITE)
    return multilabel


def _check_issue_values(table: pa.Table, where: str, classes: list[Any] | None, multilabel: bool) -> None:
    if table.column("is_label_issue").null_count:
        raise LabelqaError(f"{where}: column 'is_label_issue' has missing values", _REWRITE)
    if classes is not None:
        for col in ("given_label", "suggested_label", *(("labels_to_remove", "labels_to_add") if multilabel else ())):
            _check_among(table.column(col), classes, where, col)


def _check_among(column: Any, classes: list[Any], where: str, col: str) -> None:
    """Every non-null value (list item) of ``column`` is one of ``classes``."""
    import pyarrow.compute as pc

    from labelqa.data.arrays import is_list_type

    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if is_list_type(values.type):
        values = pc.list_flatten(values)
    values = values.drop_null().cast(pa.string())  # summary.json may hold integer classes as text
    allowed = pa.array([str(c) for c in classes], pa.string())
    outside = pc.invert(pc.is_in(values, value_set=allowed))
    if pc.any(outside).as_py():
        bad = values.filter(outside)[0].as_py()
        raise LabelqaError(f"{where}: column {col!r} holds {bad!r}, which is not one of the report's "
                           f"{len(classes)} classes", _REWRITE)


def read_summary(report_dir: str | Path, *, validate: bool = True) -> dict[str, Any]:
    """Read and validate summary.json from a report folder (the fields readers rely on, see :data:`SUMMARY_FIELDS`)."""
    spath = Path(report_dir) / "summary.json"
    if not spath.is_file():
        raise LabelqaError(
            f"no summary.json in report folder {report_dir}",
            "run `labelqa scan DATA --out DIR` first, or pass the folder it wrote",
        )
    try:
        summary = json.loads(spath.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise LabelqaError(f"cannot read {spath}: {_first_line(exc)}", _REWRITE) from exc
    if not isinstance(summary, dict):
        raise LabelqaError(f"{spath} is not a labelqa summary (not a JSON object)", _REWRITE)
    if validate:
        validate_summary(summary, str(spath))
    return summary


def validate_summary(summary: dict[str, Any], spath: str) -> None:
    """Raise unless ``summary`` has the fields readers rely on (:data:`SUMMARY_FIELDS`), of their types."""
    for key, kinds in SUMMARY_FIELDS.items():
        value = summary.get(key)
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise LabelqaError(f"{spath} is not a valid labelqa summary: field {key!r} is "
                               f"{'missing' if key not in summary else type(value).__name__}", _REWRITE)
    classes = summary["classes"]
    if len(classes) != summary["n_classes"] or not all(isinstance(c, (str, int)) and not isinstance(c, bool)
                                                        for c in classes):
        raise LabelqaError(f"{spath} is not a valid labelqa summary: 'classes' must list n_classes "
                           f"({summary['n_classes']}) class names", _REWRITE)


def read_matrices(report_dir: str | Path, summary: dict[str, Any]) -> dict[str, np.ndarray]:
    """The K x K matrices of a report folder (matrices.npy), by their place in summary.json.

    summary.json's ``matrices`` entry says where each one belongs
    (``{"index": {"noise_matrix": 2, "detectors.cl.summary.confident_joint": 0, ...}}``); the file is read
    with ``allow_pickle=False``. A report without matrices (no entry), or whose summary.json holds them
    inline (``"inline": true``, few classes), gives ``{}``; put them back with
    :func:`labelqa.result.with_matrices`.

    Raises:
        LabelqaError: The entry is malformed, or the file is missing, unreadable or of another shape.
    """
    entry = summary.get("matrices")
    if entry is None or (isinstance(entry, dict) and entry.get("inline") is True):
        return {}  # none, or summary.json holds them too (few classes)
    k = summary.get("n_classes")
    index = entry.get("index") if isinstance(entry, dict) else None
    path = Path(report_dir) / str(entry.get("file", "")) if isinstance(entry, dict) else None
    if (not isinstance(index, dict) or not isinstance(k, int) or path is None or path.name != MATRICES_FILE
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in index.values())):
        raise LabelqaError(f"{report_dir}/summary.json: malformed 'matrices' entry", _REWRITE)
    if not path.is_file():
        raise LabelqaError(f"no {MATRICES_FILE} in report folder {report_dir} (summary.json refers to it)", _REWRITE)
    try:
        stack = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for corrupt files
        raise LabelqaError(f"cannot read {path}: {_first_line(exc)}", _REWRITE) from exc
    m = max(index.values(), default=-1) + 1
    if stack.dtype != np.float64 or stack.ndim != 3 or stack.shape[1:] != (k, k) or stack.shape[0] < m:
        raise LabelqaError(f"{path} holds a {stack.dtype} array of shape {stack.shape}, not the {m} x {k} x {k} "
                           "matrices summary.json names", _REWRITE)
    return {name: np.asarray(stack[i]) for name, i in index.items()}


def write_html(report_dir: str | Path, *, max_rows: int = 1000) -> Path:
    """Rebuild ``report.html`` of a report folder from summary.json and issues.parquet.

    The file is replaced atomically (see :func:`labelqa.atomic.write_atomic`).

    Raises:
        LabelqaError: When the folder lacks summary.json or issues.parquet, or
            they cannot be read.
    """
    from labelqa.paths import refuse_overwriting_inputs

    report_dir = Path(report_dir)
    refuse_overwriting_inputs([("report_dir", report_dir / name) for name in ("summary.json", "issues.parquet",
                                                                           "evaluation.json", "shown.parquet",
                                                                           MATRICES_FILE)],
                              out_file=report_dir / "report.html")
    path = report_dir / "issues.parquet"
    summary = read_summary(report_dir, validate=False)
    if not path.is_file():
        read_issues(report_dir)  # the missing file first: the usual clear error
    validate_summary(summary, str(report_dir / "summary.json"))
    validate_issues_file(path, summary["classes"])  # validated before use, batch by batch
    try:
        histogram = file_histogram(path)
        issues = pq.read_table(path, filters=[("is_label_issue", "=", True), ("rank", "<=", max_rows)])
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise LabelqaError(f"cannot read {path}: {_first_line(exc)}", _REWRITE) from exc
    from labelqa.report.shown import attach, read_shown

    issues = attach(issues, read_shown(report_dir))  # --show-cols of the scan
    evaluation = None
    epath = report_dir / "evaluation.json"
    if epath.is_file():
        try:
            evaluation = json.loads(epath.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise LabelqaError(f"cannot read {epath}: {exc}", "re-run `labelqa evaluate --out DIR`") from exc
    summary = with_matrices(summary, read_matrices(report_dir, summary))  # the heatmap's noise matrix
    try:
        text = render_html(summary, issues, max_rows=max_rows, evaluation=evaluation, histogram=histogram)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a hand-edited file
        raise LabelqaError(f"{report_dir}: summary.json, issues.parquet or evaluation.json holds a value labelqa "
                           f"did not write ({type(exc).__name__}: {_first_line(exc)})", _REWRITE) from exc
    return write_atomic(report_dir / "report.html", lambda p: p.write_text(text, encoding="utf-8"))
