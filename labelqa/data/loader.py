"""``load()``: a table file (plus optional ``.npy``) to a validated :class:`LabelData`.

Where the probabilities come from, first match wins:

1. ``pred_probs_file``: an N x K ``.npy`` (memory-mapped, never unpickled);
2. the ``pred_probs_col`` column (default ``pred_probs``) holding a list of
   floats per row (list, large_list or fixed_size_list; in CSV also a string
   such as ``"[0.1, 0.9]"``);
3. columns named ``prob_<class>``;
4. otherwise an error listing the columns and these three ways.

Several models: ``pred_probs_file`` a list of ``.npy`` files and/or
``pred_probs_col`` a list of column names (files first); each is one model,
validated on its own, and ``pred_probs`` is their combination
(``combine_models``, see :mod:`labelqa.models`), each kept in
``LabelData.model_pred_probs``.

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

Multi-label data (``task="multilabel"``, or ``"auto"`` with a list label
column or a ``label_sep``): each row's label is a set of classes, from a
list<string>/list<int> column (an empty list is the empty set, a null list is
an error naming the row) or from delimited strings such as ``"cat,dog"``
(``label_sep=","``; an empty or null cell is the empty set). Classes resolve
as above, with the label-set items in place of the labels. Probabilities come
from the same three sources but are independent per class: each in [0, 1],
rows need not sum to 1 (``renormalize`` is an error).

Embeddings (optional): ``embeddings_file`` (an N x D ``.npy``) or the
``embeddings_col`` column (default ``embedding``; list<float>); absent default
column and no file = no embeddings.

Training dynamics (optional): ``logits_by_epoch`` and ``threshold_samples``
are each an existing path or a column of the file, passed to
:func:`labelqa.aum.load_dynamics`; ``LabelData.logits_by_epoch`` is then a
validated :class:`labelqa.aum.Dynamics`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from labelqa.data.columns import (
    CLASSES_METADATA_KEY,
    EMBEDDING_WORDS,
    PROB_PREFIX,
    classes_from_metadata,
    find_prob_columns,
    given_classes,
    list_column_to_matrix,
    parquet_list_column_to_matrix,
    order_prob_columns,
    prob_columns_to_matrix,
    split_label_strings,
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
from labelqa.data.validate import Rows, build_label_data, is_list_type, type_name
from labelqa.errors import LabelqaError

DEFAULT_PRED_PROBS_COL = "pred_probs"
DEFAULT_EMBEDDINGS_COL = "embedding"
#: The ``task`` values of :func:`load`.
LOAD_TASKS = ("auto", "multiclass", "multilabel")


@dataclass
class _Plan:
    """What to read: the columns and where the probabilities come from."""

    kind: str  # "file" | "column" | "columns" | "models"
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
    model_cols: list[str] | None = None,
) -> _Plan:
    if label_col not in names:
        raise _missing_column(path, label_col, names, "--label-col")
    if id_col is not None and id_col not in names:
        raise _missing_column(path, id_col, names, "--id-col")
    base = [label_col] + ([id_col] if id_col is not None and id_col != label_col else [])

    if model_cols is not None:
        for col in model_cols:
            if col not in names:
                raise _missing_column(path, col, names, "--pred-probs-col")
        return _Plan("models", base + [c for c in model_cols if c not in base], classes=user_classes,
                     classes_source=classes_source)
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


def _model_sources(pred_probs_col: str | Sequence[str], pred_probs_file: Any) -> tuple[list[str], list[str]]:
    """The probability files and columns to load, one model each, files first.

    A string ``pred_probs_col`` keeps its single-model meaning (not used when
    a file is given); a list of names is always used, after the files.
    """
    if pred_probs_file is None:
        files: list[str] = []
    elif isinstance(pred_probs_file, (str, os.PathLike)):
        files = [os.fspath(pred_probs_file)]
    else:
        files = [os.fspath(f) for f in pred_probs_file]
    if isinstance(pred_probs_col, str):
        cols: list[str] = [] if files else [pred_probs_col]
    else:
        cols = [str(c) for c in pred_probs_col]
        if not cols and not files:
            cols = [DEFAULT_PRED_PROBS_COL]
    for what, values, option in (("column", cols, "--pred-probs-col"), ("file", files, "--pred-probs")):
        again = [v for i, v in enumerate(values) if v in values[:i]]
        if again:
            raise LabelqaError(f"probability {what} {again[0]!r} given more than once",
                               hint=f"give each {option} once")
    return files, cols


def _resolve_task(task: str, label_sep: str | None, label_type: pa.DataType, where: str) -> str:
    """The task from ``task``, ``label_sep`` and the label column's type."""
    if task not in LOAD_TASKS:
        raise LabelqaError(f"unknown task {task!r}", hint="use --task auto, multiclass or multilabel")
    if label_sep is not None and not label_sep:
        raise LabelqaError("the label separator is empty", hint="pass --label-sep ',' (or another non-empty string)")
    lists = is_list_type(label_type)
    if task == "multiclass":
        if label_sep is not None:
            raise LabelqaError(
                f"--label-sep {label_sep!r} is for multi-label data, but the task is multiclass",
                hint="drop --label-sep, or pass --task multilabel (or auto)",
            )
        if lists:
            raise LabelqaError(
                f"{where}: each row holds a list of labels ({type_name(label_type)}), which is multi-label data, "
                "but the task is multiclass",
                hint="pass --task multilabel (or auto) for label sets, or give one label per row",
            )
        return "multiclass"
    if task == "multilabel":
        if not lists and label_sep is None:
            raise LabelqaError(
                f"{where}: multi-label labels need a list column, got type {label_type}",
                hint="store a list<string> or list<int> column, or pass --label-sep ',' for delimited strings "
                "such as 'cat,dog'",
            )
        return "multilabel"
    return "multilabel" if lists or label_sep is not None else "multiclass"


def _path_or_column(value: Any, names: Sequence[str], option: str, path: str) -> tuple[str, str]:
    """``("path", p)`` for an existing file/folder, ``("column", name)`` for a column of the data."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if text is None:
        raise LabelqaError(f"{option} must be a path or a column name, got {type(value).__name__}",
                           hint="pass the path of the file/folder, or the name of a column")
    if os.path.exists(text):
        return "path", text
    if text in names:
        return "column", text
    raise LabelqaError(
        f"{option} {text} is neither a file/folder nor a column of {path} "
        f"(available columns: {format_columns(list(names))})",
        hint="check the path, or the column name",
    )


def load(
    path: str | os.PathLike[str],
    *,
    label_col: str = "label",
    pred_probs_col: str | Sequence[str] = DEFAULT_PRED_PROBS_COL,
    pred_probs_file: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    combine_models: str = "geometric",
    classes: Sequence[Any] | str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    id_col: str | None = None,
    input_format: str | None = None,
    renormalize: bool = False,
    task: str = "auto",
    label_sep: str | None = None,
    embeddings_col: str = DEFAULT_EMBEDDINGS_COL,
    embeddings_file: str | os.PathLike[str] | None = None,
    logits_by_epoch: str | os.PathLike[str] | None = None,
    threshold_samples: str | os.PathLike[str] | None = None,
) -> LabelData:
    """Load labels and out-of-sample predicted probabilities from a file.

    Args:
        path: Parquet (``.parquet``/``.pq``), CSV (``.csv``; ``.tsv`` tab
            separated), JSON lines (``.jsonl``/``.ndjson``) or Arrow IPC
            (``.arrow``/``.feather``/``.ipc``) file.
        label_col: Column of given labels (ints or strings; for multi-label
            data lists of them, or delimited strings with ``label_sep``).
        pred_probs_col: Column holding a list of K probabilities per row. If
            the default ``pred_probs`` is absent, ``prob_<class>`` columns are
            used; a non-default name that is absent is an error.
        pred_probs_file: An N x K ``.npy`` file; takes precedence over a
            ``pred_probs_col`` string.
        combine_models: How several models combine into ``pred_probs``:
            ``"geometric"`` (default), ``"mean"`` or ``"loss_weighted"`` (see
            :mod:`labelqa.models` and ``docs/multimodel.md``).

    Several models: ``pred_probs_col`` may be a list of column names and
    ``pred_probs_file`` a list of ``.npy`` files; every file and, when
    ``pred_probs_col`` is a list, every listed column is one model (files
    first). Each is loaded and validated like a single model (messages name
    its column or file) and all must have K probabilities per row in the same
    class order; ``pred_probs`` is then their combination, and
    ``model_pred_probs`` keeps each, with ``meta["models"]`` (e.g.
    ``["column resnet", "file swin.npy"]``) and ``meta["combine_models"]``.
    A one-element list is a single model.
        classes: Class values in probability-column order (a sequence, or a
            ``"a,b,c"`` string).
        classes_file: Text file with one class per line (blank lines ignored),
            or a JSON list. Not together with ``classes``.
        id_col: Column of unique row ids; default the row index 0..N-1.
        input_format: ``"parquet"``, ``"csv"``, ``"jsonl"`` or ``"arrow"``,
            overriding the suffix.
        renormalize: Divide each probability row by its sum instead of
            rejecting rows that do not sum to 1 (multiclass only; an error for
            multi-label data).
        task: ``"auto"`` (multi-label when the label column holds lists or
            ``label_sep`` is given, else multiclass), ``"multiclass"`` or
            ``"multilabel"``.
        label_sep: Separator of multi-label label sets held as strings
            (``"cat,dog"`` with ``","``): whitespace around names is
            stripped, an empty or null cell is the empty set.
        embeddings_col: Column of feature embeddings (list<float>, one
            length D for all rows). If the default ``embedding`` is absent
            and no file is given, there are no embeddings; a non-default
            name that is absent is an error.
        embeddings_file: An N x D ``.npy`` of embeddings; takes precedence
            over the column.
        logits_by_epoch: Training dynamics for AUM: a path (``.npy`` of shape
            (epochs, N, K), a folder of per-epoch files or a labelqa dynamics
            folder) or a column of the file holding list<list<float>>.
        threshold_samples: Threshold-sample marks for ``logits_by_epoch``: a
            path (``.npy``/``.txt``/``.parquet``) or a bool column of the file.

    Returns:
        Validated :class:`LabelData`; ``meta`` records ``input_format``,
        ``pred_probs_source`` (``"column pred_probs"``, ``"file x.npy"`` or
        ``"prob_* columns"``), ``classes_source``, ``task``, and when present
        ``label_format``, ``embeddings_source``, ``logits_source`` and
        ``threshold_samples_source`` (``"file ..."`` or ``"column ..."``).

    Raises:
        LabelqaError: Any problem with the file, the options or the data, with
            the file, column and row (plus id) and how to fix it.
    """
    p = check_file(path)
    fmt = resolve_format(p, input_format)
    if task not in LOAD_TASKS:
        raise LabelqaError(f"unknown task {task!r}", hint="use --task auto, multiclass or multilabel")
    user_classes, classes_source = given_classes(classes, classes_file)
    from labelqa.models import COMBINE_METHODS

    if combine_models not in COMBINE_METHODS:
        raise LabelqaError(f"unknown model combination {combine_models!r}",
                           hint=f"use --combine-models {', '.join(COMBINE_METHODS)}")
    model_files, model_cols = _model_sources(pred_probs_col, pred_probs_file)
    multi = len(model_files) + len(model_cols) > 1
    if not multi:  # one model: the single-model rules below
        pred_probs_file = model_files[0] if model_files else None
        pred_probs_col = model_cols[0] if model_cols else DEFAULT_PRED_PROBS_COL
    for f in model_files:
        check_file(f, what="probabilities file")
    if embeddings_file is not None:
        check_file(embeddings_file, what="embeddings file")
    if threshold_samples is not None and logits_by_epoch is None:
        raise LabelqaError("threshold samples given without training dynamics",
                           hint="pass --logits-by-epoch too, or drop --threshold-samples")
    schema = read_schema(p, input_format)
    kwargs = dict(
        label_col=label_col,
        pred_probs_col=pred_probs_col,
        pred_probs_file=pred_probs_file,
        id_col=id_col,
        user_classes=user_classes,
        classes_source=classes_source,
        model_cols=model_cols if multi else None,
    )
    table: pa.Table | None = None

    def extras(names: Sequence[str]) -> tuple[list[str], dict[str, tuple[str, str]]]:
        """Extra columns to read (embeddings, dynamics) and how each dynamics option resolved."""
        cols: list[str] = []
        if embeddings_file is None:
            if embeddings_col in names:
                cols.append(embeddings_col)
            elif embeddings_col != DEFAULT_EMBEDDINGS_COL:
                raise _missing_column(p, embeddings_col, names, "--embeddings-col")
        resolved = {}
        for option, value in (("--logits-by-epoch", logits_by_epoch), ("--threshold-samples", threshold_samples)):
            if value is not None:
                resolved[option] = _path_or_column(value, names, option, p)
                if resolved[option][0] == "column":
                    cols.append(resolved[option][1])
        return cols, resolved

    try:
        plan = _plan(p, schema.names, **kwargs)
        extra_cols, dyn = extras(schema.names)
    except LabelqaError:
        if fmt != "jsonl":
            raise
        # JSON lines: the schema comes from the first block only; keys first
        # seen further down need a full read.
        table = read_table(p, input_format)
        schema = table.schema
        plan = _plan(p, schema.names, **kwargs)
        extra_cols, dyn = extras(schema.names)
    columns = plan.columns + [c for c in extra_cols if c not in plan.columns]
    # Parquet probability lists are decoded row group by row group straight into the matrix (much less memory
    # traffic than reading the whole column first); the rest of the columns are read as usual.
    by_row_group = table is None and fmt == "parquet" and plan.kind == "column" and pred_probs_col not in (
        label_col, id_col, *extra_cols)
    if by_row_group:
        columns = [c for c in columns if c != pred_probs_col]
    table = table.select(columns) if table is not None else read_table(p, input_format, columns)
    n = table.num_rows

    label_where = f"{p}, column {label_col!r}"
    task_out = _resolve_task(task, label_sep, table.schema.field(label_col).type, label_where)
    meta: dict[str, Any] = {"input_format": fmt, "task": task_out}
    ids = table.column(id_col) if id_col is not None else None
    rows = Rows(ids, id_col)  # names rows in messages; ids are validated in build_label_data

    labels: Any = table.column(label_col)
    if task_out == "multilabel":
        if renormalize:
            raise LabelqaError(
                f"--renormalize does not apply to multi-label data ({label_where} holds label sets): "
                "its probabilities are independent per class and rows need not sum to 1",
                hint="drop --renormalize",
            )
        if is_list_type(labels.type):
            meta["label_format"] = "list column"
        else:
            assert label_sep is not None
            labels = split_label_strings(labels, label_sep, label_where)
            meta["label_format"] = f"delimited strings (separator {label_sep!r})"

    classes_out = plan.classes
    classes_from = plan.classes_source
    model_names: list[str] | None = None
    if plan.kind == "models":
        pred_probs = []
        model_names = []
        for f in model_files:
            pred_probs.append(_read_probs_file(f, n, p))
            model_names.append(f"file {f}")
        for col in model_cols:
            pred_probs.append(list_column_to_matrix(table.column(col), f"{p}, column {col!r}", rows))
            model_names.append(f"column {col}")
    elif plan.kind == "file":
        assert pred_probs_file is not None
        pred_probs = _read_probs_file(pred_probs_file, n, p)
        meta["pred_probs_source"] = f"file {os.fspath(pred_probs_file)}"
    elif plan.kind == "column":
        meta["pred_probs_source"] = f"column {pred_probs_col}"
        where = f"{p}, column {pred_probs_col!r}"
        filled = parquet_list_column_to_matrix(p, pred_probs_col, where, rows) if by_row_group else None
        if filled is None:
            if by_row_group:
                table = read_table(p, input_format, columns + [pred_probs_col])
            filled = list_column_to_matrix(table.column(pred_probs_col), where, rows)
        pred_probs = filled
    else:
        meta["pred_probs_source"] = "prob_* columns"
        meta["pred_probs_columns"] = list(plan.prob_cols)
        pred_probs = prob_columns_to_matrix(table, plan.prob_cols, p, rows)

    embeddings = None
    if embeddings_file is not None:
        embeddings = read_npy(
            embeddings_file, what="embeddings file", save_hint="save the N x D embeddings with np.save('emb.npy', emb)"
        )
        meta["embeddings_source"] = f"file {os.fspath(embeddings_file)}"
        if embeddings.ndim >= 1 and embeddings.shape[0] != n:
            raise LabelqaError(
                f"{os.fspath(embeddings_file)} has {embeddings.shape[0]} rows of embeddings but {p} has {n} rows",
                hint="the .npy must hold one embedding per table row, in the same order",
            )
    elif embeddings_col in table.column_names:
        meta["embeddings_source"] = f"column {embeddings_col}"
        embeddings = list_column_to_matrix(
            table.column(embeddings_col), f"{p}, column {embeddings_col!r}", rows, EMBEDDING_WORDS
        )

    if classes_out is None and fmt in ("parquet", "arrow"):
        md_classes = classes_from_metadata(schema)
        if md_classes is not None:
            classes_out, classes_from = md_classes, f"schema metadata {CLASSES_METADATA_KEY!r}"
    if classes_from is not None:
        meta["classes_source"] = classes_from

    data = build_label_data(
        labels,
        pred_probs,
        classes=classes_out,
        ids=ids,
        renormalize=renormalize,
        source=p,
        label_col=label_col,
        id_col=id_col,
        meta=meta,
        task=task_out,
        embeddings=embeddings,
        combine_models=combine_models,
        model_names=model_names,
    )
    if logits_by_epoch is None:
        return data
    return _attach_dynamics(data, table, dyn, p)


def _read_probs_file(pred_probs_file: str | os.PathLike[str], n: int, path: str) -> Any:
    """An N x K ``.npy`` of probabilities (memory-mapped), checked to have the table's N rows."""
    pred_probs = read_npy(pred_probs_file)
    if pred_probs.ndim >= 1 and pred_probs.shape[0] != n:
        raise LabelqaError(
            f"{os.fspath(pred_probs_file)} has {pred_probs.shape[0]} rows but {path} has {n} rows",
            hint="the .npy must hold one row of probabilities per table row, in the same order",
        )
    return pred_probs


def _attach_dynamics(data: LabelData, table: pa.Table, dyn: dict[str, tuple[str, str]], path: str) -> LabelData:
    """Load the training dynamics against the validated labels and attach them."""
    if data.task == "multilabel":
        raise LabelqaError(
            f"--logits-by-epoch: training dynamics (AUM) need one label per row, but {path} holds multi-label data",
            hint="drop --logits-by-epoch for multi-label data",
        )
    from labelqa.data.dynamics import load_dynamics  # lazily: only when dynamics are given

    kind, logits = dyn["--logits-by-epoch"]
    thr = dyn.get("--threshold-samples")
    dyn_cols = [name for k, name in (dyn["--logits-by-epoch"], thr or ("path", "")) if k == "column"]
    dynamics = load_dynamics(
        logits,
        data.n_rows,
        data.n_classes,
        threshold=thr[1] if thr is not None else None,
        table=table.select(dyn_cols) if dyn_cols else None,
        classes=list(data.classes),
        labels=data.labels,
    )
    meta = dict(data.meta)
    meta["logits_source"] = f"{_kind_word(kind, logits)} {logits}"
    if thr is not None:
        meta["threshold_samples_source"] = f"{_kind_word(*thr)} {thr[1]}"
    return dataclasses.replace(data, logits_by_epoch=dynamics, meta=meta)


def _kind_word(kind: str, value: str) -> str:
    if kind == "column":
        return "column"
    return "folder" if os.path.isdir(value) else "file"
