"""``load()``: a table file (plus optional ``.npy``) to a validated :class:`LabelData`.

Where the probabilities come from, first match wins:

1. ``pred_probs_file``: an N x K ``.npy`` (memory-mapped, never unpickled);
2. the ``pred_probs_col`` column (default ``pred_probs``) holding a list of
   floats per row (list, large_list or fixed_size_list; in CSV also a string
   such as ``"[0.1, 0.9]"``);
3. columns named ``prob_<class>``;
4. otherwise an error listing the columns and these three ways.

Which class each probability column belongs to, first match wins:

1. ``classes`` (e.g. ``--classes a,b,c``) or ``classes_file`` (one class per
   line, or a JSON list);
2. the ``prob_<class>`` column names, in file order;
3. Parquet/Arrow schema metadata ``labelqa.classes`` (a JSON list);
4. integer labels all within [0, K): classes ``0..K-1`` (label ``k`` is
   column ``k``);
5. the sorted unique labels, when there are exactly K of them;
6. otherwise an error asking for ``--classes``.

Class values take the label column's type: with integer labels, ``--classes
0,1,2`` (strings on the command line) become the ints 0, 1, 2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from labelqa.data.columns import (
    CLASSES_METADATA_KEY,
    PROB_PREFIX,
    classes_from_metadata,
    find_prob_columns,
    given_classes,
    list_column_to_matrix,
    order_prob_columns,
    prob_columns_to_matrix,
)
from labelqa.data.model import LabelData
from labelqa.data.readers import (
    check_file,
    format_columns,
    read_npy,
    read_schema,
    read_table,
    resolve_format,
)
from labelqa.data.validate import Rows, build_label_data
from labelqa.errors import LabelqaError

DEFAULT_PRED_PROBS_COL = "pred_probs"


@dataclass
class _Plan:
    """What to read: the columns and where the probabilities come from."""

    kind: str  # "file" | "column" | "columns"
    columns: list[str]
    prob_cols: list[str] = field(default_factory=list)
    classes: list[Any] | None = None
    classes_source: str | None = None


def _missing_column(path: str, col: str, names: Sequence[str], option: str) -> LabelqaError:
    return LabelqaError(
        f"{path}: no column {col!r} (available columns: {format_columns(list(names))})",
        hint=f"pass {option} NAME to choose the column",
    )


def _plan(
    path: str,
    names: Sequence[str],
    *,
    label_col: str,
    pred_probs_col: str,
    pred_probs_file: str | os.PathLike[str] | None,
    id_col: str | None,
    user_classes: list[Any] | None,
    classes_source: str | None,
) -> _Plan:
    if label_col not in names:
        raise _missing_column(path, label_col, names, "--label-col")
    if id_col is not None and id_col not in names:
        raise _missing_column(path, id_col, names, "--id-col")
    base = [label_col] + ([id_col] if id_col is not None and id_col != label_col else [])

    if pred_probs_file is not None:
        return _Plan("file", base, classes=user_classes, classes_source=classes_source)
    if pred_probs_col in names:
        return _Plan("column", base + [pred_probs_col], classes=user_classes, classes_source=classes_source)
    if pred_probs_col != DEFAULT_PRED_PROBS_COL:
        raise _missing_column(path, pred_probs_col, names, "--pred-probs-col")
    prob_cols = find_prob_columns(names, exclude=[label_col, id_col])
    if prob_cols:
        if user_classes is not None:
            ordered = order_prob_columns(prob_cols, user_classes, path, classes_source or "--classes")
            return _Plan("columns", base + ordered, ordered, user_classes, classes_source)
        classes = [c[len(PROB_PREFIX) :] for c in prob_cols]
        return _Plan("columns", base + prob_cols, prob_cols, classes, "prob_* column names")
    raise LabelqaError(
        f"{path}: no predicted probabilities: no column {pred_probs_col!r} and no prob_<class> columns "
        f"(available columns: {format_columns(list(names))})",
        hint="pass --pred-probs-col NAME for a column holding a list of probabilities per row, "
        "name per-class columns prob_<class>, or pass --pred-probs probs.npy (an N x K .npy file)",
    )


def load(
    path: str | os.PathLike[str],
    *,
    label_col: str = "label",
    pred_probs_col: str = DEFAULT_PRED_PROBS_COL,
    pred_probs_file: str | os.PathLike[str] | None = None,
    classes: Sequence[Any] | str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    id_col: str | None = None,
    input_format: str | None = None,
    renormalize: bool = False,
) -> LabelData:
    """Load labels and out-of-sample predicted probabilities from a file.

    Args:
        path: Parquet (``.parquet``/``.pq``), CSV (``.csv``; ``.tsv`` tab
            separated), JSON lines (``.jsonl``/``.ndjson``) or Arrow IPC
            (``.arrow``/``.feather``/``.ipc``) file.
        label_col: Column of given labels (ints or strings).
        pred_probs_col: Column holding a list of K probabilities per row. If
            the default ``pred_probs`` is absent, ``prob_<class>`` columns are
            used; a non-default name that is absent is an error.
        pred_probs_file: An N x K ``.npy`` file; takes precedence over columns.
        classes: Class values in probability-column order (a sequence, or a
            ``"a,b,c"`` string).
        classes_file: Text file with one class per line (blank lines ignored),
            or a JSON list. Not together with ``classes``.
        id_col: Column of unique row ids; default the row index 0..N-1.
        input_format: ``"parquet"``, ``"csv"``, ``"jsonl"`` or ``"arrow"``,
            overriding the suffix.
        renormalize: Divide each probability row by its sum instead of
            rejecting rows that do not sum to 1.

    Returns:
        Validated :class:`LabelData`; ``meta`` records ``input_format``,
        ``pred_probs_source`` (``"column pred_probs"``, ``"file x.npy"`` or
        ``"prob_* columns"``) and ``classes_source``.

    Raises:
        LabelqaError: Any problem with the file, the options or the data, with
            the file, column and row (plus id) and how to fix it.
    """
    p = check_file(path)
    fmt = resolve_format(p, input_format)
    user_classes, classes_source = given_classes(classes, classes_file)
    if pred_probs_file is not None:
        check_file(pred_probs_file, what="probabilities file")
    schema = read_schema(p, input_format)
    kwargs = dict(
        label_col=label_col,
        pred_probs_col=pred_probs_col,
        pred_probs_file=pred_probs_file,
        id_col=id_col,
        user_classes=user_classes,
        classes_source=classes_source,
    )
    table: pa.Table | None = None
    try:
        plan = _plan(p, schema.names, **kwargs)
    except LabelqaError:
        if fmt != "jsonl":
            raise
        # JSON lines: the schema comes from the first block only; keys first
        # seen further down need a full read.
        table = read_table(p, input_format)
        schema = table.schema
        plan = _plan(p, schema.names, **kwargs)
    table = table.select(plan.columns) if table is not None else read_table(p, input_format, plan.columns)
    n = table.num_rows

    meta: dict[str, Any] = {"input_format": fmt}
    ids = table.column(id_col) if id_col is not None else None
    rows = Rows(ids, id_col)  # names rows in messages; ids are validated in build_label_data

    classes_out = plan.classes
    classes_from = plan.classes_source
    if plan.kind == "file":
        assert pred_probs_file is not None
        pred_probs = read_npy(pred_probs_file)
        meta["pred_probs_source"] = f"file {os.fspath(pred_probs_file)}"
        if pred_probs.ndim >= 1 and pred_probs.shape[0] != n:
            raise LabelqaError(
                f"{os.fspath(pred_probs_file)} has {pred_probs.shape[0]} rows but {p} has {n} rows",
                hint="the .npy must hold one row of probabilities per table row, in the same order",
            )
    elif plan.kind == "column":
        meta["pred_probs_source"] = f"column {pred_probs_col}"
        pred_probs = list_column_to_matrix(table.column(pred_probs_col), f"{p}, column {pred_probs_col!r}", rows)
    else:
        meta["pred_probs_source"] = "prob_* columns"
        meta["pred_probs_columns"] = list(plan.prob_cols)
        pred_probs = prob_columns_to_matrix(table, plan.prob_cols, p, rows)

    if classes_out is None and fmt in ("parquet", "arrow"):
        md_classes = classes_from_metadata(schema)
        if md_classes is not None:
            classes_out, classes_from = md_classes, f"schema metadata {CLASSES_METADATA_KEY!r}"
    if classes_from is not None:
        meta["classes_source"] = classes_from

    return build_label_data(
        table.column(label_col),
        pred_probs,
        classes=classes_out,
        ids=ids,
        renormalize=renormalize,
        source=p,
        label_col=label_col,
        id_col=id_col,
        meta=meta,
    )
