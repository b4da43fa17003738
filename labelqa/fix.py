"""Export cleaned labels: relabel, drop or flag the rows a scan flagged.

The input file is never modified: the cleaned copy goes to a new file,
written atomically, with provenance columns ``label_original``,
``label_fixed`` and ``fix_action``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.atomic import write_atomic
from labelqa.data.arrays import is_list_type
from labelqa.errors import LabelqaError
from labelqa.provenance import PROVENANCE_COLUMNS, with_provenance

Strategy = Literal["relabel", "drop", "flag"]
STRATEGIES: tuple[str, ...] = ("relabel", "drop", "flag")

#: fix_action values.
KEEP, RELABEL, DROP, FLAG = "keep", "relabel", "drop", "flag"

_WRITERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".arrow": "arrow", ".feather": "arrow"}


@dataclass(frozen=True)
class FixResult:
    """What :func:`fix` did.

    Attributes:
        table: The cleaned table (dropped rows removed).
        actions: Number of input rows per action (keep, relabel, flag, drop).
        out: Where the table was written, or ``None`` when not written.
    """

    table: pa.Table
    actions: dict[str, int]
    out: Path | None = None


def plan_actions(
    is_issue: np.ndarray,
    confidence: np.ndarray,
    *,
    strategy: Strategy = "relabel",
    min_confidence: float = 0.0,
) -> np.ndarray:
    """Decide the action of every row.

    Args:
        is_issue: Per-row issue flag.
        confidence: Per-row probability of the suggested label (NaN = unknown,
            which passes only ``min_confidence == 0``).
        strategy: ``relabel`` flagged rows to the suggested label, ``drop``
            them, or only ``flag`` them.
        min_confidence: Relabel or drop only when the suggested label's
            probability is at least this; other flagged rows are flagged.

    Returns:
        Object array of ``keep`` / ``relabel`` / ``drop`` / ``flag``.
    """
    if strategy not in STRATEGIES:
        raise LabelqaError(f"unknown fix strategy {strategy!r}", f"choose one of {', '.join(STRATEGIES)}")
    if not 0.0 <= min_confidence <= 1.0:
        raise LabelqaError(f"--min-confidence must be between 0 and 1, got {min_confidence}")
    is_issue = np.asarray(is_issue, dtype=bool)
    conf = np.asarray(confidence, dtype=np.float64)
    confident = conf >= min_confidence
    if min_confidence == 0.0:
        confident |= np.isnan(conf)
    actions = np.full(is_issue.shape, KEEP, dtype=object)
    actions[is_issue] = FLAG
    if strategy != "flag":
        actions[is_issue & confident] = RELABEL if strategy == "relabel" else DROP
    return actions


def apply_fix(
    table: pa.Table,
    issues: pa.Table,
    *,
    label_col: str = "label",
    id_col: str | None = None,
    strategy: Strategy = "relabel",
    min_confidence: float = 0.0,
    pred_probs: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
    label_sep: str | None = None,
) -> FixResult:
    """Apply a fix strategy to the input table, using a scan's issues table.

    The label column gets the cleaned label (so the output drops in for the
    input); ``label_original``, ``label_fixed`` and ``fix_action`` record what
    changed. With ``drop``, dropped rows are removed.

    Args:
        table: The input table, every column.
        issues: issues.parquet of a scan of the same data.
        label_col: Name of the label column.
        id_col: Name of the id column, or ``None`` when ids are row positions.
        strategy: ``relabel``, ``drop`` or ``flag``.
        min_confidence: See :func:`plan_actions`. For multi-label data it
            applies per class: a label is removed when ``1 - p >= P`` and
            added when ``p >= P``; this needs ``pred_probs`` unless ``P == 0``.
        pred_probs: Multi-label only: the N x K probabilities of the scan.
        classes: Multi-label only: class values in ``pred_probs`` column order.
        label_sep: Multi-label only: the separator when the label column is a
            delimited string rather than a list.

    Raises:
        LabelqaError: When the issues do not belong to this table.
    """
    if is_list_type(issues.schema.field("given_label").type):
        return _apply_multilabel_fix(
            table, issues, label_col=label_col, id_col=id_col, strategy=strategy, min_confidence=min_confidence,
            pred_probs=pred_probs, classes=classes, label_sep=label_sep,
        )
    _check_alignment(table, issues, label_col=label_col, id_col=id_col)
    actions = plan_actions(
        issues.column("is_label_issue").to_numpy(zero_copy_only=False),
        issues.column("suggested_confidence").to_numpy(zero_copy_only=False),
        strategy=strategy,
        min_confidence=min_confidence,
    )
    original = table.column(label_col)
    suggested = issues.column("suggested_label").cast(original.type)
    fixed = pc.if_else(pa.array(actions == RELABEL), suggested, original)
    return _finish(table, label_col, original, fixed, actions, strategy)


def _finish(table: pa.Table, label_col: str, original: Any, fixed: Any, actions: np.ndarray,
            strategy: str) -> FixResult:
    """Put the fixed label in place, add provenance columns, drop rows for ``drop``."""
    out = with_provenance(table, label_col, original, fixed, actions)
    if strategy == "drop":
        out = out.filter(pa.array(actions != DROP))
    counts = {a: int(np.count_nonzero(actions == a)) for a in (KEEP, RELABEL, FLAG, DROP)}
    return FixResult(table=out, actions=counts)


def _sets_to_matrix(col: Any, classes: Sequence[Any], what: str) -> np.ndarray:
    """A list column of class values -> N x K bool matrix (vectorised)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    values = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    try:
        value_set = pa.array(list(classes))
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # classes of mixed types (names and integers): compare as text
        value_set = pa.array([str(c) for c in classes], pa.string())
    if values.type != value_set.type:
        values = pc.cast(values, pa.string())
        value_set = pa.array([str(c) for c in classes], pa.string())
    codes = pc.index_in(values, value_set=value_set)
    if codes.null_count:
        bad = int(np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))[0])
        raise LabelqaError(
            f"{what}: row {int(parents[bad])} has label {values[bad].as_py()!r}, which is not one of the classes",
            "re-run `labelqa scan` on this data, or omit --report",
        )
    matrix = np.zeros((n, len(classes)), dtype=bool)
    matrix[parents, codes.to_numpy(zero_copy_only=False)] = True
    return matrix


def _apply_multilabel_fix(
    table: pa.Table,
    issues: pa.Table,
    *,
    label_col: str,
    id_col: str | None,
    strategy: Strategy,
    min_confidence: float,
    pred_probs: np.ndarray | None,
    classes: Sequence[Any] | None,
    label_sep: str | None,
) -> FixResult:
    """Multi-label fix: apply add/remove per class under the confidence rule."""
    plan_actions(np.zeros(0, bool), np.zeros(0), strategy=strategy, min_confidence=min_confidence)
    _check_alignment(table, issues, label_col=label_col, id_col=id_col, compare_labels=False)
    original = table.column(label_col)
    if classes is None:
        if min_confidence > 0:
            raise LabelqaError("multi-label --min-confidence needs the scan's probabilities",
                               "pass the same input options as the scan")
        values = pc.unique(pc.list_flatten(issues.column("given_label").combine_chunks()))
        more = pc.unique(pc.list_flatten(issues.column("suggested_label").combine_chunks()))
        classes = sorted(set(values.to_pylist()) | set(more.to_pylist()))
    given = _sets_to_matrix(issues.column("given_label"), classes, "report")
    if is_list_type(original.type):
        data_sets = _sets_to_matrix(original, classes, f"column {label_col!r}")
    elif label_sep is not None:
        data_sets = _sets_to_matrix(_split(original, label_sep), classes, f"column {label_col!r}")
    else:
        raise LabelqaError(f"column {label_col!r} holds text, not label lists",
                           "pass --label-sep to say how labels are separated")
    differ = np.flatnonzero((data_sets != given).any(axis=1))
    if differ.size:
        raise LabelqaError(
            f"the report does not match the data: row {int(differ[0])} has a different label set in the data",
            "re-run `labelqa scan` on this data (with the same --id-col and --label-col), or omit --report",
        )
    remove = _sets_to_matrix(issues.column("labels_to_remove"), classes, "report")
    add = _sets_to_matrix(issues.column("labels_to_add"), classes, "report")
    if pred_probs is not None:
        probs = np.asarray(pred_probs, dtype=np.float64)
        confident = (remove & (1.0 - probs >= min_confidence)) | (add & (probs >= min_confidence))
    else:
        confident = remove | add
    change = remove | add
    flagged = issues.column("is_label_issue").to_numpy(zero_copy_only=False).astype(bool)
    actions = np.full(len(flagged), KEEP, dtype=object)
    actions[flagged] = FLAG
    if strategy == "relabel":
        applied = change & confident
        actions[flagged & applied.any(axis=1)] = RELABEL
    elif strategy == "drop":
        all_confident = ~(change & ~confident).any(axis=1)
        actions[flagged & change.any(axis=1) & all_confident] = DROP
        applied = np.zeros_like(change)
    else:
        applied = np.zeros_like(change)
    fixed_sets = given ^ applied
    from labelqa.result import class_sets

    fixed = class_sets(fixed_sets, tuple(classes))
    if is_list_type(original.type):
        if not pa.types.is_null(original.type.value_type):  # all sets empty: list<null> cannot hold a class name
            fixed = fixed.cast(original.type)
    else:
        fixed = pc.binary_join(fixed.cast(pa.list_(pa.string())), label_sep)
    return _finish(table, label_col, original, fixed, actions, strategy)


def _split(col: Any, sep: str) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    parts = pc.split_pattern(pc.fill_null(arr, ""), pattern=sep)
    parts = pc.list_flatten(parts), pc.list_parent_indices(parts)
    values = pc.utf8_trim_whitespace(parts[0])
    keep = pc.not_equal(values, "")
    parents = pc.filter(parts[1], keep).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=len(arr)), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pc.filter(values, keep))


def _check_alignment(table: pa.Table, issues: pa.Table, *, label_col: str, id_col: str | None,
                     compare_labels: bool = True) -> None:
    if label_col not in table.column_names:
        raise LabelqaError(
            f"label column {label_col!r} not found; columns are {table.column_names}", "pass --label-col NAME"
        )
    if issues.num_rows != table.num_rows:
        raise LabelqaError(
            f"the report has {issues.num_rows} rows but the data has {table.num_rows}",
            "re-run `labelqa scan` on this data, or omit --report to scan now",
        )
    report_ids = issues.column("id")
    if id_col is not None:
        if id_col not in table.column_names:
            raise LabelqaError(f"id column {id_col!r} not found; columns are {table.column_names}", "pass --id-col NAME")
        data_ids = table.column(id_col)
    else:
        data_ids = pa.array(np.arange(table.num_rows, dtype=np.int64))
    _first_mismatch(data_ids, report_ids, "id")
    if compare_labels:
        _first_mismatch(table.column(label_col), issues.column("given_label"), "label")


def _first_mismatch(data_col: Any, report_col: Any, what: str) -> None:
    a, b = _comparable(data_col, report_col)
    differ = pc.fill_null(pc.not_equal(a, b), True)
    if pc.any(differ).as_py():
        row = int(np.flatnonzero(differ.to_numpy(zero_copy_only=False))[0])
        raise LabelqaError(
            f"the report does not match the data: row {row} has {what} {data_col[row].as_py()!r} in the data "
            f"but {report_col[row].as_py()!r} in the report",
            "re-run `labelqa scan` on this data (with the same --id-col and --label-col), or omit --report",
        )


def _comparable(data_col: Any, report_col: Any) -> tuple[Any, Any]:
    """Both columns in one type: the report's when the data's text reads as it (text ``1.0`` and label 1), else text."""
    if data_col.type == report_col.type:
        return data_col, report_col
    if pa.types.is_string(data_col.type) and not pa.types.is_string(report_col.type):
        try:
            typed = pc.cast(data_col, report_col.type)
            if pc.all(pc.equal(pc.cast(typed, pa.string()), data_col)).as_py() is not False:
                return typed, report_col
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    a = pc.cast(data_col, pa.string()) if not pa.types.is_string(data_col.type) else data_col
    b = pc.cast(report_col, pa.string()) if not pa.types.is_string(report_col.type) else report_col
    return a, b


# --------------------------------------------------------------- JSON lines written as read

#: A temporary column numbering the input rows while a JSON lines file is fixed.
_ROW_COLUMN = "__labelqa_row__"


class _RawNumber(str):
    """A JSON number kept as the text read (``1e5`` stays ``1e5``, ``0.10`` stays ``0.10``)."""


class _JsonObject(list):
    """A JSON object as its ``(key, value)`` pairs, in file order (duplicate keys kept)."""


def _raw_json_lines(path: Path, n_rows: int) -> list[_JsonObject] | None:
    """Every row of a JSON lines file as read, numbers as their text; ``None`` when the lines do not match the
    table's rows one to one (then the table is written as usual)."""
    import json

    with pa.input_stream(str(path), compression="detect") as stream:
        text = stream.read().decode("utf-8")
    rows: list[_JsonObject] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        value = json.loads(line, object_pairs_hook=_JsonObject, parse_int=_RawNumber, parse_float=_RawNumber,
                           parse_constant=_RawNumber)
        if not isinstance(value, _JsonObject):
            return None
        rows.append(value)
    return rows if len(rows) == n_rows else None


def _dump_json(value: Any) -> str:
    """JSON text of a value read by :func:`_raw_json_lines` (numbers as read) or a plain Python value."""
    import json

    if isinstance(value, _RawNumber):
        return str.__str__(value)
    if isinstance(value, _JsonObject):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump_json(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump_json(v) for v in value) + "]"
    return json.dumps(value, default=str)


def _write_json_lines_as_read(path: Path, raw: list[_JsonObject], kept: np.ndarray, fixed: pa.Table,
                              label_col: str) -> None:
    """Each kept input line with only its label changed and the provenance keys appended."""
    provenance = PROVENANCE_COLUMNS
    labels = fixed.column(label_col).to_pylist()
    actions = fixed.column("fix_action").to_pylist()
    with open(path, "w", encoding="utf-8") as fh:
        for row, label, action in zip(kept.tolist(), labels, actions):
            pairs = [(k, v) for k, v in raw[row] if k not in provenance]
            original = next((v for k, v in pairs if k == label_col), None)
            new = label if action == RELABEL else original
            pairs = [(k, new if k == label_col else v) for k, v in pairs]
            pairs += [("label_original", original), ("label_fixed", new), ("fix_action", action)]
            fh.write(_dump_json(_JsonObject(pairs)) + "\n")


def write_table(table: pa.Table, path: Path, *, csv_formulas: bool = False) -> Path:
    """Write a table by the file suffix (.parquet, .csv, .jsonl, .arrow), atomically.

    In CSV, text cells that a spreadsheet would run as formulas get a leading ``'`` unless
    ``csv_formulas`` (see :func:`labelqa.report.escape.neutralize_formulas`; numbers stay as written).
    The temporary file beside ``path`` is removed on failure or interruption (:mod:`labelqa.atomic`).
    """
    kind = _WRITERS.get(path.suffix.lower())
    if kind is None:
        raise LabelqaError(
            f"cannot tell the output format of {path}", f"use one of the suffixes {', '.join(sorted(_WRITERS))}"
        )

    def writer(tmp: Path) -> None:
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, compression="zstd")
        elif kind == "csv":
            from labelqa.data.csvwrite import write_csv
            from labelqa.report.escape import neutralize_formulas
            from labelqa.report.textlists import lists_to_text

            text = lists_to_text(table)
            write_csv(text if csv_formulas else neutralize_formulas(text), tmp)
        elif kind == "arrow":
            import pyarrow.feather as feather

            feather.write_feather(table, tmp)
        else:
            import json

            with open(tmp, "w", encoding="utf-8") as fh:
                for batch in table.to_batches(65536):
                    for row in batch.to_pylist():
                        fh.write(json.dumps(row, default=str) + "\n")

    return write_atomic(path, writer)


def fix(
    data: str | os.PathLike[str] | Any = None,
    *,
    out: str | os.PathLike[str] | None = None,
    report: str | os.PathLike[str] | None = None,
    strategy: Strategy = "relabel",
    min_confidence: float = 0.0,
    force: bool = False,
    csv_formulas: bool = False,
    decisions: str | os.PathLike[str] | None = None,
    undecided: str = "keep",
    progress: Any = None,
    **options: Any,
) -> Any:
    """Clean the labels of ``data``: a cleaned copy written to ``out``, or returned for in-memory data.

    Args:
        data: Input file (never modified), or in-memory data as :func:`labelqa.scan` takes it (a
            pandas/polars DataFrame, pyarrow Table or RecordBatchReader, datasets.Dataset, dict of
            arrays; ``labels=``/``pred_probs=`` arrays with or without it).
        out: Output file; its suffix picks the format. Required for a file; for in-memory data
            without it nothing is written and the cleaned data is returned.
        report: A report folder from ``labelqa scan``; without it the data is
            scanned now with ``options`` (as :func:`labelqa.scan` would, in memory).
        strategy: ``relabel`` (default), ``drop`` or ``flag``.
        min_confidence: Act on a flagged row only when its suggested label's
            probability is at least this; other flagged rows are flagged.
        force: Overwrite an existing output file.
        csv_formulas: In a CSV output, write text cells that start like a
            spreadsheet formula as they are (default: prefixed with ``'``).
        decisions: Reviewers' answers (:mod:`labelqa.decisions`), applied with ``fix_action`` ``reviewed_*``.
        undecided: With ``decisions``: rows without one ``keep`` their label (no scan), or follow ``strategy``.
        progress: Optional callback receiving a short message before each step of a scan.
        **options: The load, detector and run options of :mod:`labelqa.options`
            (``label_col``, ``id_col``, ``input_format``, ``label_sep``, ``filter_by``...).

    Returns:
        A :class:`FixResult` when ``out`` is given (what was written). For in-memory data without
        ``out``: the cleaned data in the kind given (a pandas DataFrame keeps its index and columns;
        polars -> polars, datasets -> Dataset, a dict or arrays -> a dict of numpy arrays, Arrow -> a
        pyarrow Table), the label column cleaned, with ``label_original``, ``label_fixed`` and
        ``fix_action``; with ``strategy="drop"`` the dropped rows are left out.

    Raises:
        LabelqaError: On bad options, a mismatched report, a file without ``out``, or an output that
            would overwrite the input or an existing file without ``force``.
        TypeError: An unknown keyword argument.
    """
    import labelqa.options as opts
    from labelqa.data.frames import ARRAY_COLUMNS, split_arrays
    from labelqa.data.model import LabelData
    from labelqa.scan import in_memory_data

    original = data
    in_memory = not isinstance(data, (str, os.PathLike))
    added: set[str] = set()
    if in_memory:
        if isinstance(data, LabelData):
            raise LabelqaError("fix needs the data's rows, not loaded LabelData",
                               "pass the path, DataFrame or table that was loaded")
        given_arrays, _ = split_arrays(options)
        data, options = in_memory_data(data, options)  # one Arrow table; arrays become its columns
        added = {options[ARRAY_COLUMNS[key][0]] for key in given_arrays}
    elif out is None:
        raise LabelqaError("fix of a file needs an output file", "pass out='clean.parquet' (--out)")
    given = {"report": report, "strategy": strategy, "min_confidence": min_confidence, "force": force,
             "decisions": decisions, "undecided": undecided, "csv_formulas": csv_formulas}
    if out is not None:  # required by `labelqa fix`; optional here for in-memory data
        given["out"] = out
    own = opts.resolve("fix", given=given, function="fix", groups=("output", "fix"))
    settings = opts.resolve("fix", given=options, function="fix", groups=opts.SCAN_GROUPS)
    dest, label_col = (own["out"] if out is not None else None), settings["label_col"]
    from labelqa.paths import option_inputs, refuse_overwriting_inputs

    inputs = {"report": own["report"], **settings} if in_memory else {"data": data, "report": own["report"],
                                                                      **settings}
    if dest is not None:
        dest = Path(dest)
        refuse_overwriting_inputs(option_inputs(inputs), out_file=dest)
        if dest.exists() and not own["force"]:
            raise LabelqaError(f"output file {dest} already exists",
                               "choose another --out, or pass --force to overwrite it")
        if dest.suffix.lower() not in _WRITERS:
            raise LabelqaError(
                f"cannot tell the output format of {dest}", f"use one of the suffixes {', '.join(sorted(_WRITERS))}"
            )
    src = data if in_memory else Path(data)
    if in_memory:  # a row number column tells which input rows a result row is
        src = src.append_column(_ROW_COLUMN, pa.array(np.arange(src.num_rows, dtype=np.int64)))
    if own["decisions"] is not None:  # reviewers' answers (labelqa.decisions)
        fixed, raw_lines = _fix_with_decisions(src, own, settings, progress), None
    else:
        fixed, raw_lines = _fix_with_scan(src, own, settings, progress)
    if not in_memory:
        return _write_file(dest, fixed, raw_lines, csv_formulas=own["csv_formulas"], label_col=label_col)
    rows = fixed.table.column(_ROW_COLUMN).to_numpy(zero_copy_only=False)
    table = fixed.table.drop_columns([_ROW_COLUMN])
    if dest is not None:
        write_table(table, dest, csv_formulas=own["csv_formulas"])
        return FixResult(table=table, actions=fixed.actions, out=dest)
    table = table.drop_columns([c for c in added if c != label_col and c in table.column_names])
    from labelqa.data.frames import like_input

    return like_input(original, table, rows, replace=(label_col, "label_original", "label_fixed", "fix_action"))


def _without_row_numbers(src: Any) -> Any:
    return src.drop_columns([_ROW_COLUMN]) if isinstance(src, pa.Table) else src


def _fix_with_scan(src: Any, own: Any, settings: Any, progress: Any) -> tuple[FixResult, list[_JsonObject] | None]:
    """Apply the strategy to the rows a scan flagged (the report's, or a scan now) of a file or in-memory table.

    Returns the fixed table and, when a JSON lines file is written as JSON lines, its lines as read.
    """
    from labelqa.scan import load_options, scan

    data_arrays: dict[str, Any] = {}
    data = _without_row_numbers(src)
    if own["report"] is not None:
        from labelqa.report.folder import read_issues

        issues = read_issues(own["report"])
        if is_list_type(issues.schema.field("given_label").type) and own["min_confidence"] > 0:
            from labelqa.data import load

            loaded = load(data, **load_options(settings.select("load")))
            data_arrays = {"pred_probs": loaded.pred_probs, "classes": loaded.classes}
    else:
        result = scan(data, progress=progress, engine="memory", **settings.select())
        issues = result.issues_table()
        if result.multilabel:
            data_arrays = {"pred_probs": result.data.pred_probs, "classes": result.data.classes}
    raw_lines = None
    if isinstance(src, pa.Table):
        table = src
    else:
        from labelqa.data import read_table
        from labelqa.data.readers import resolve_format

        # A text file written as text keeps every cell it does not change exactly as read (zip 00003, 1e5).
        in_fmt = resolve_format(src, settings["input_format"])
        out_kind = _WRITERS.get(Path(own["out"]).suffix.lower())
        table = read_table(src, input_format=settings["input_format"],
                           text=in_fmt == "csv" and out_kind in ("csv", "jsonl"))
        raw_lines = _raw_json_lines(src, table.num_rows) if in_fmt == "jsonl" and out_kind == "jsonl" else None
        if raw_lines is not None:
            table = table.append_column(_ROW_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    fixed = apply_fix(table, issues, label_col=settings["label_col"], id_col=settings["id_col"],
                      strategy=own["strategy"], min_confidence=own["min_confidence"], label_sep=settings["label_sep"],
                      **data_arrays)
    return fixed, raw_lines


def _write_file(dest: Path, fixed: FixResult, raw_lines: list[_JsonObject] | None, *, csv_formulas: bool,
                label_col: str) -> FixResult:
    """Write the fixed table of a file input; JSON lines written as JSON lines keep every line as read."""
    table = fixed.table
    if raw_lines is not None:
        kept = table.column(_ROW_COLUMN).to_numpy(zero_copy_only=False)
        table = table.drop_columns([_ROW_COLUMN])
        final = table
        write_atomic(dest, lambda tmp: _write_json_lines_as_read(tmp, raw_lines, kept, final, label_col))
    else:
        write_table(table, dest, csv_formulas=csv_formulas)
    return FixResult(table=table, actions=fixed.actions, out=dest)


def _fix_with_decisions(src: Any, own: Any, settings: Any, progress: Any) -> FixResult:
    """Apply a decisions file; undecided rows keep their label or follow the strategy on a scan's issues."""
    from labelqa.decisions import apply_decisions, read_decisions

    decided = read_decisions(own["decisions"])
    if isinstance(src, pa.Table):
        table = src
    else:
        from labelqa.data import read_table

        table = read_table(src, input_format=settings["input_format"])
    base: dict[str, Any] = {}
    if own["undecided"] == "strategy":
        if own["report"] is not None:
            from labelqa.report.folder import read_issues

            issues = read_issues(own["report"])
        else:
            from labelqa.scan import scan

            issues = scan(_without_row_numbers(src), progress=progress, engine="memory",
                          **settings.select()).issues_table()
        _check_alignment(table, issues, label_col=settings["label_col"], id_col=settings["id_col"])
        base["base_actions"] = plan_actions(
            issues.column("is_label_issue").to_numpy(zero_copy_only=False),
            issues.column("suggested_confidence").to_numpy(zero_copy_only=False),
            strategy=own["strategy"], min_confidence=own["min_confidence"])
        base["base_labels"] = issues.column("suggested_label")
    out, actions = apply_decisions(table, decided, label_col=settings["label_col"], id_col=settings["id_col"],
                                   classes=settings["classes"], **base)
    return FixResult(table=out, actions=actions)
