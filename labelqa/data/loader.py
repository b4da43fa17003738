"""``load()``: a table file (plus optional ``.npy``) to a validated :class:`LabelData`.

Where the probabilities come from, first match wins:

1. ``pred_probs``: an N x K ``.npy`` (memory-mapped, never unpickled);
2. the ``pred_probs_col`` column (default ``pred_probs``) holding a list of
   floats per row (list, large_list or fixed_size_list; in CSV also a string
   such as ``"[0.1, 0.9]"``);
3. columns named ``prob_<class>``;
4. otherwise an error listing the columns and these three ways.

Several models: ``pred_probs`` a list of ``.npy`` files and/or
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

Embeddings (optional): ``embeddings`` (an N x D ``.npy``) or the
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
from typing import Any

import pyarrow as pa

from labelqa.models import DEFAULT_COMBINE
from labelqa.data.build import validated_fields
from labelqa.data.classes import given_classes
from labelqa.data.columns import EMBEDDING_WORDS, list_column_to_matrix, parquet_list_column_to_matrix
from labelqa.data.embeddings import read_parquet_embeddings
from labelqa.data.model import LabelData
from labelqa.data.readers import check_file, read_npy, read_schema, read_table, resolve_format
from labelqa.data.rows import Rows
from labelqa.data.probabilities import RowFacts
from labelqa.data.schema import (
    DEFAULT_EMBEDDINGS_COL,
    DEFAULT_PRED_PROBS_COL,
    LOAD_TASKS,
    check_task,
    model_sources,
    resolve_schema,
)
from labelqa.errors import LabelqaError
from labelqa.runtime import small_pages

__all__ = ["DEFAULT_EMBEDDINGS_COL", "DEFAULT_PRED_PROBS_COL", "LOAD_TASKS", "load"]


@small_pages
def load(
    path: str | os.PathLike[str] | Any,
    *,
    label_col: str = "label",
    pred_probs_col: str | Sequence[str] = DEFAULT_PRED_PROBS_COL,
    pred_probs_cols: str | Sequence[str] | None = None,
    pred_probs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    combine_models: str = DEFAULT_COMBINE,
    classes: Sequence[Any] | str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    id_col: str | None = None,
    input_format: str | None = None,
    renormalize: bool = False,
    task: str = "auto",
    label_sep: str | None = None,
    embeddings_col: str = DEFAULT_EMBEDDINGS_COL,
    embeddings: str | os.PathLike[str] | None = None,
    logits_by_epoch: str | os.PathLike[str] | None = None,
    threshold_samples: str | os.PathLike[str] | None = None,
    trust_class_order: bool = False,
) -> LabelData:
    """Load labels and out-of-sample predicted probabilities from a file.

    Args:
        path: A DataFrame (pandas, polars), pyarrow Table, datasets.Dataset or dict of
            arrays (see :mod:`labelqa.data.frames`), or a Parquet (``.parquet``/``.pq``), CSV (``.csv``; ``.tsv`` tab
            separated), JSON lines (``.jsonl``/``.ndjson``) or Arrow IPC
            (``.arrow``/``.feather``/``.ipc``) file.
        label_col: Column of given labels (ints or strings; for multi-label
            data lists of them, or delimited strings with ``label_sep``).
        pred_probs_col: Column holding a list of K probabilities per row. If
            the default ``pred_probs`` is absent, ``prob_<class>`` columns are
            used; a non-default name that is absent is an error.
        pred_probs_cols: Per-class probability columns by name or glob pattern (``"p_*"``, a list or a
            comma-separated string); a column's class is the part the ``*`` matched (``p_cat`` -> ``cat``).
        pred_probs: An N x K ``.npy`` file (or a list of them); takes precedence over a
            ``pred_probs_col`` string.
        combine_models: How several models combine into ``pred_probs``:
            ``"log_linear"`` (default), ``"geometric"``, ``"mean"`` or ``"loss_weighted"`` (see
            :mod:`labelqa.models` and ``docs/multimodel.md``).

    Several models: ``pred_probs_col`` may be a list of column names and
    ``pred_probs`` a list of ``.npy`` files; every file and, when
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
        embeddings: An N x D ``.npy`` of embeddings; takes precedence
            over the column.
        logits_by_epoch: Training dynamics for AUM: a path (``.npy`` of shape
            (epochs, N, K), a folder of per-epoch files or a labelqa dynamics
            folder) or a column of the file holding list<list<float>>.
        threshold_samples: Threshold-sample marks for ``logits_by_epoch``: a
            path (``.npy``/``.txt``/``.parquet``) or a bool column of the file.
        trust_class_order: Go on even when the labels fit another order of
            the probability columns far better than the one resolved (see
            :mod:`labelqa.data.class_order` and docs/safety.md).

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
    in_memory = None
    if not isinstance(path, (str, os.PathLike)):  # a DataFrame, Arrow table, dict... (labelqa.data.frames)
        from labelqa.data.frames import as_table, describe

        in_memory, p, fmt = as_table(path), describe(path), "arrow"
    else:
        p = check_file(path)
        fmt = resolve_format(p, input_format)
    check_task(task)
    user_classes, classes_source = given_classes(classes, classes_file)
    from labelqa.models import COMBINE_METHODS

    if combine_models not in COMBINE_METHODS:
        raise LabelqaError(f"unknown model combination {combine_models!r}",
                           hint=f"use --combine-models {', '.join(COMBINE_METHODS)}")
    model_files, model_cols = model_sources(pred_probs_col, pred_probs)
    multi = len(model_files) + len(model_cols) > 1
    for f in model_files:
        check_file(f, what="probabilities file")
    if embeddings is not None:
        check_file(embeddings, what="embeddings file")
    if threshold_samples is not None and logits_by_epoch is None:
        raise LabelqaError("threshold samples given without training dynamics",
                           hint="pass --logits-by-epoch too, or drop --threshold-samples")
    options: dict[str, Any] = dict(
        label_col=label_col, id_col=id_col, classes=user_classes, classes_source=classes_source, task=task,
        label_sep=label_sep, renormalize=renormalize, embeddings_col=embeddings_col,
        embeddings_file=os.fspath(embeddings) if embeddings is not None else None,
        logits_by_epoch=logits_by_epoch, threshold_samples=threshold_samples,
    )
    if multi:
        options.update(model_files=model_files, model_cols=model_cols)
    else:  # one model: the single-model rules
        options.update(pred_probs_file=model_files[0] if model_files else None,
                       pred_probs_col=model_cols[0] if model_cols else DEFAULT_PRED_PROBS_COL)
    if pred_probs_cols is not None:
        options["pred_probs_cols"] = ([p.strip() for p in pred_probs_cols.split(",") if p.strip()]
                                      if isinstance(pred_probs_cols, str) else list(pred_probs_cols))
    schema = in_memory.schema if in_memory is not None else read_schema(p, input_format)
    table: pa.Table | None = in_memory
    try:
        layout = resolve_schema(p, fmt, schema, **options)
    except LabelqaError:
        if fmt != "jsonl" or in_memory is not None:
            raise
        # JSON lines: the schema comes from the first block only; keys first
        # seen further down need a full read.
        table = read_table(p, input_format)
        schema = table.schema
        layout = resolve_schema(p, fmt, schema, **options)
    columns = layout.columns
    probs_col = layout.pred_probs_col
    # Parquet probability lists are decoded row group by row group straight into the matrix (much less memory
    # traffic than reading the whole column first); the rest of the columns are read as usual.
    by_row_group = table is None and fmt == "parquet" and layout.probs == "column" and probs_col not in (
        label_col, id_col, *layout.extra_columns)
    if by_row_group:
        columns = [c for c in columns if c != probs_col]
    # Parquet embedding lists likewise, in small batches (labelqa.data.embeddings.read_parquet_embeddings).
    emb_col = layout.embeddings_col if layout.embeddings_file is None else None
    emb_by_row_group = table is None and fmt == "parquet" and emb_col is not None and emb_col not in (
        label_col, id_col, probs_col, *layout.prob_cols, *layout.model_cols,
        *[value for _option, (kind, value) in layout.dynamics if kind == "column"])
    if emb_by_row_group:
        columns = [c for c in columns if c != emb_col]
    table = table.select(columns) if table is not None else read_table(p, input_format, columns)
    label_type = table.schema.field(label_col).type
    if label_type != schema.field(label_col).type:  # text formats: a full read may type the labels otherwise
        i = schema.get_field_index(label_col)
        layout = resolve_schema(p, fmt, schema.set(i, schema.field(i).with_type(label_type)), **options)
    n = table.num_rows

    meta = layout.meta()
    ids = table.column(id_col) if id_col is not None else None
    rows = Rows(ids, id_col)  # names rows in messages; ids are validated in validated_fields
    labels: Any = table.column(label_col)
    if layout.multilabel:
        labels = layout.label_sets(table)

    model_names: list[str] | None = None
    prob_facts: RowFacts | None = None
    if layout.probs == "models":
        pred_probs: Any = []
        model_names = []
        for f in layout.prob_files:
            pred_probs.append(_read_probs_file(f, n, p))
            model_names.append(f"file {f}")
        for col in layout.model_cols:
            pred_probs.append(list_column_to_matrix(table.column(col), f"{p}, column {col!r}", rows))
            model_names.append(f"column {col}")
    elif layout.probs == "file":
        pred_probs = _read_probs_file(layout.prob_files[0], n, p)
    else:
        # the checks' row sums, extremes and top classes, gathered while the rows are decoded (still in cache)
        prob_facts = RowFacts(n, top=not trust_class_order) if by_row_group and not layout.multilabel else None
        pred_probs = parquet_list_column_to_matrix(
            p, probs_col, layout.probs_where, rows, None if prob_facts is None else prob_facts.add,
        ) if by_row_group else None
        if pred_probs is None:
            if by_row_group:
                table = read_table(p, input_format, columns + [probs_col])
            pred_probs = layout.table_probs(table, rows)

    embeddings = None
    if layout.embeddings_file is not None:
        embeddings = read_npy(
            layout.embeddings_file, what="embeddings file",
            save_hint="save the N x D embeddings with np.save('emb.npy', emb)",
        )
        if embeddings.ndim >= 1 and embeddings.shape[0] != n:
            raise LabelqaError(
                f"{layout.embeddings_file} has {embeddings.shape[0]} rows of embeddings but {p} has {n} rows",
                hint="the .npy must hold one embedding per table row, in the same order",
            )
    elif emb_by_row_group and (embeddings := read_parquet_embeddings(
            p, emb_col, f"{p}, column {emb_col!r}", rows)) is not None:
        pass
    elif layout.embeddings_col is not None:
        if emb_by_row_group:  # a file without row groups: read the column the usual way
            table = read_table(p, input_format, columns + [emb_col])
        embeddings = list_column_to_matrix(
            table.column(layout.embeddings_col), f"{p}, column {layout.embeddings_col!r}", rows, EMBEDDING_WORDS
        )

    data = LabelData(**validated_fields(
        labels,
        pred_probs,
        classes=layout.classes,
        ids=ids,
        renormalize=renormalize,
        source=p,
        label_col=label_col,
        id_col=id_col,
        meta=meta,
        task=layout.task,
        embeddings=embeddings,
        combine_models=combine_models,
        model_names=model_names,
        trust_class_order=trust_class_order,
        prob_facts=prob_facts,
    ))
    if logits_by_epoch is None:
        return data
    return _attach_dynamics(data, table, dict(layout.dynamics), p)


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
