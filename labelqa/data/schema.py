"""A dataset's schema, resolved once for :func:`labelqa.data.load` and :func:`labelqa.data.source.open_source`.

:func:`resolve_schema` reads a file's or folder's Arrow schema and the load
options and decides, before any row is read:

- the columns to read (label, id, probabilities, embeddings, dynamics);
- where the probabilities come from, first match wins: ``.npy`` file(s), the
  ``pred_probs_col`` list column, columns named ``prob_<class>``; or several
  models (a list of columns and/or files);
- the task (``auto``: multi-label when the label column holds lists or a
  ``label_sep`` is given) and the label format;
- the classes and their source: the options (``--classes``,
  ``--classes-file``), the ``prob_<class>`` names, the schema metadata
  ``labelqa.classes``; or none, and then they are inferred from the labels
  (:mod:`labelqa.data.classes`).

The result, a :class:`ResolvedSchema`, also decodes a table's probabilities
and label sets the same way for both readers.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from labelqa.data.arrays import is_list_type, type_name
from labelqa.data.classes import CLASSES_METADATA_KEY, classes_from_metadata
from labelqa.data.columns import (
    PROB_PREFIX,
    find_prob_columns,
    list_column_to_matrix,
    match_prob_columns,
    order_prob_columns,
    prob_columns_to_matrix,
)
from labelqa.data.labelsets import label_sets_from_column
from labelqa.data.readers import format_columns
from labelqa.data.rows import Rows, Where
from labelqa.errors import LabelqaError

DEFAULT_PRED_PROBS_COL = "pred_probs"
DEFAULT_EMBEDDINGS_COL = "embedding"
#: The ``task`` values of :func:`labelqa.data.load`.
LOAD_TASKS = ("auto", "multiclass", "multilabel")


def missing_column(path: str, col: str, names: Sequence[str], option: str) -> LabelqaError:
    """The error for a column ``col`` (chosen by ``option``) that ``path`` does not have."""
    return LabelqaError(
        f"{path}: no column {col!r} (available columns: {format_columns(list(names))})",
        hint=f"pass {option} NAME to choose the column",
    )


def _glob_free(name: str) -> bool:
    return not any(ch in name for ch in "*?[],")


def feature_hint(schema: pa.Schema, skip: Sequence[str | None]) -> tuple[str, list[str]] | None:
    """What ``labelqa train`` could learn from in ``schema``: ``(option, values)``, or ``None``.

    Numeric columns but the ``skip`` ones (label, id): ``--feature-cols`` with one glob when their names share a
    prefix that matches nothing else (``px_0..px_63`` -> ``px_*``), else their names; else a list<number> column
    (``--features-col``); else text columns (``--text-cols``). Only names a command line can carry are used.
    """
    leave = {c for c in skip if c is not None}
    fields = [f for f in schema if f.name not in leave and not f.name.startswith("__index_level_")
              and _glob_free(f.name)]
    numeric = [f.name for f in fields
               if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type)]
    if numeric:
        prefix = os.path.commonprefix(numeric)
        # train's globs skip the label and id columns, so only the other columns must not match
        if len(numeric) >= 3 and prefix and [f.name for f in fields if f.name.startswith(prefix)] == numeric:
            return "--feature-cols", [prefix + "*"]
        return "--feature-cols", numeric
    vectors = [f.name for f in fields if is_list_type(f.type) and (pa.types.is_integer(f.type.value_type)
                                                                   or pa.types.is_floating(f.type.value_type))]
    if vectors:
        return "--features-col", vectors[:1]
    text = [f.name for f in fields if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return ("--text-cols", text) if text else None


def no_probabilities_hint(path: str, fmt: str, schema: pa.Schema, label_col: str, id_col: str | None,
                          label_sep: str | None) -> str:
    """How to make missing probabilities: a ``labelqa train`` command built from the real columns that runs as
    printed (for data in memory, a :func:`labelqa.find_issues` call)."""
    found = feature_hint(schema, [label_col, id_col])
    if fmt == "arrow" and not os.path.exists(path):  # a DataFrame, an Arrow table...: no file for labelqa train
        if found is None or found[0] != "--feature-cols":
            return ("make out-of-sample probabilities with labelqa.cross_val_pred_probs(model, X, labels) and pass "
                    "them as pred_probs=")
        call = f"labelqa.find_issues(data, label_col={label_col!r}, feature_cols={','.join(found[1])!r}"
        return (f"make them and scan with `{call}" + (f", id_col={id_col!r})`" if id_col is not None else ")`")
                + " (out-of-sample probabilities by cross-validation)")
    if found is None:
        return (f"{path} has no feature columns (numbers, a list of numbers, or text) for labelqa train to make them "
                "from: add features")
    option, cols = found
    argv = ["labelqa", "train", str(path), "--label-col", label_col]
    if id_col is not None:
        argv += ["--id-col", id_col]
    if label_sep is not None:
        argv += ["--label-sep", label_sep]
    argv += [option, ",".join(cols), "--out", "trained"]
    return f"make them with `{shlex.join(argv)}` (out-of-sample probabilities by cross-validation)"


def model_sources(pred_probs_col: str | Sequence[str], pred_probs_file: Any) -> tuple[list[str], list[str]]:
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


def check_task(task: str) -> None:
    """``task`` is one of :data:`LOAD_TASKS`."""
    if task not in LOAD_TASKS:
        raise LabelqaError(f"unknown task {task!r}", hint="use --task auto, multiclass or multilabel")


def resolve_task(task: str, label_sep: str | None, label_type: pa.DataType, where: str) -> str:
    """The task from ``task``, ``label_sep`` and the label column's type."""
    check_task(task)
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


def path_or_column(value: Any, names: Sequence[str], option: str, path: str) -> tuple[str, str]:
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


@dataclass(frozen=True)
class ResolvedSchema:
    """What to read from a dataset and how to decode it (small and picklable).

    Attributes:
        path, fmt: The file or folder, and its format.
        label_col, id_col: The label and id columns.
        probs: Where the probabilities are: ``"file"`` (``prob_files[0]``),
            ``"column"`` (``pred_probs_col``, a list per row), ``"columns"``
            (``prob_cols``, one ``prob_<class>`` column per class, in class
            order) or ``"models"`` (``prob_files`` then ``model_cols``).
        classes, classes_source: The classes (as given, not yet typed like
            the labels) and where they came from; ``None`` when they must be
            inferred from the labels.
        task: ``"multiclass"`` or ``"multilabel"``.
        label_sep: The separator of delimited label sets (``None`` for a
            list column or multiclass data).
        label_format: ``"list column"`` or ``"delimited strings (...)"`` for
            multi-label data, else ``None``.
        embeddings_col, embeddings_file: Where embeddings are, if anywhere.
        dynamics: ``(option, (kind, value))`` pairs for ``--logits-by-epoch``
            and ``--threshold-samples``, kind ``"path"`` or ``"column"``.
    """

    path: str
    fmt: str
    label_col: str
    id_col: str | None
    probs: str
    pred_probs_col: str = DEFAULT_PRED_PROBS_COL
    prob_cols: tuple[str, ...] = ()
    prob_files: tuple[str, ...] = ()
    model_cols: tuple[str, ...] = ()
    classes: tuple[Any, ...] | None = None
    classes_source: str | None = None
    task: str = "multiclass"
    label_sep: str | None = None
    label_format: str | None = None
    embeddings_col: str | None = None
    embeddings_file: str | None = None
    dynamics: tuple[tuple[str, tuple[str, str]], ...] = ()

    @property
    def multilabel(self) -> bool:
        """Label sets rather than one label per row."""
        return self.task == "multilabel"

    @property
    def extra_columns(self) -> list[str]:
        """Columns read beside labels, ids and probabilities: embeddings, dynamics."""
        cols = [self.embeddings_col] if self.embeddings_col is not None else []
        return cols + [value for _option, (kind, value) in self.dynamics if kind == "column"]

    @property
    def columns(self) -> list[str]:
        """Every column to read, each once, in order."""
        cols = [self.label_col] + ([self.id_col] if self.id_col is not None and self.id_col != self.label_col else [])
        if self.probs == "column":
            cols.append(self.pred_probs_col)
        cols += [c for c in (*self.prob_cols, *self.model_cols) if c not in cols]
        return cols + [c for c in self.extra_columns if c not in cols]

    @property
    def probs_where(self) -> str:
        """The probability column, for messages."""
        return f"{self.path}, column {self.pred_probs_col!r}"

    def meta(self) -> dict[str, Any]:
        """Provenance for ``LabelData.meta`` / ``Source.meta``, in report order."""
        meta: dict[str, Any] = {"input_format": self.fmt, "task": self.task}
        if self.label_format is not None:
            meta["label_format"] = self.label_format
        if self.probs == "file":
            meta["pred_probs_source"] = f"file {self.prob_files[0]}"
        elif self.probs == "column":
            meta["pred_probs_source"] = f"column {self.pred_probs_col}"
        elif self.probs == "columns":
            meta["pred_probs_source"] = "prob_* columns"
            meta["pred_probs_columns"] = list(self.prob_cols)
        if self.embeddings_file is not None:
            meta["embeddings_source"] = f"file {self.embeddings_file}"
        elif self.embeddings_col is not None:
            meta["embeddings_source"] = f"column {self.embeddings_col}"
        if self.classes_source is not None:
            meta["classes_source"] = self.classes_source
        return meta

    def where(self, meta: dict[str, Any]) -> Where:
        """Place names for messages about this dataset."""
        return Where(self.path, self.label_col, self.id_col, meta)

    def table_probs(self, table: pa.Table, rows: Rows) -> np.ndarray:
        """The N x K probabilities of a table holding the ``"column"`` or ``"columns"`` layout."""
        if self.probs == "column":
            return list_column_to_matrix(table.column(self.pred_probs_col), self.probs_where, rows)
        return prob_columns_to_matrix(table, list(self.prob_cols), self.path, rows)

    def label_sets(self, table: pa.Table) -> pa.Array:
        """Multi-label: the table's label sets as one list Array (delimited strings split)."""
        return label_sets_from_column(table.column(self.label_col), self.label_sep,
                                      f"{self.path}, column {self.label_col!r}")


def resolve_schema(
    path: str,
    fmt: str,
    schema: pa.Schema,
    *,
    label_col: str = "label",
    pred_probs_col: str = DEFAULT_PRED_PROBS_COL,
    pred_probs_file: str | None = None,
    pred_probs_cols: Sequence[str] | None = None,
    model_files: Sequence[str] = (),
    model_cols: Sequence[str] | None = None,
    classes: Sequence[Any] | None = None,
    classes_source: str | None = None,
    id_col: str | None = None,
    task: str = "auto",
    label_sep: str | None = None,
    renormalize: bool = False,
    embeddings_col: str | None = None,
    embeddings_file: str | None = None,
    logits_by_epoch: Any = None,
    threshold_samples: Any = None,
    files_hint: bool = True,
) -> ResolvedSchema:
    """Decide columns, probability layout, task, label format and classes from ``schema`` and the options.

    Args:
        path, fmt: The file or folder (for messages) and its format.
        schema: Its Arrow schema (names, label type, metadata).
        pred_probs_col, pred_probs_file: One model's probability column or
            ``.npy`` file (the file wins). An absent default column falls
            back to ``prob_<class>`` columns.
        pred_probs_cols: Per-class probability columns by name or glob (``p_*``); the class is the part the
            ``*`` matched (:func:`labelqa.data.columns.match_prob_columns`).
        model_files, model_cols: Several models (``model_cols`` not None):
            files first, then columns.
        classes, classes_source: Classes given by the user (see
            :func:`labelqa.data.classes.given_classes`).
        embeddings_col: An embeddings column, used when present; absent, an
            error unless it is the default ``embedding``. ``None``: no
            embeddings (the streaming engines).
        logits_by_epoch, threshold_samples: Paths or columns (training dynamics).
        files_hint: Mention ``--pred-probs probs.npy`` when no probabilities
            are found (the in-memory loader reads ``.npy`` files; the
            streaming engines do not).

    Raises:
        LabelqaError: A missing column, no probabilities, a task that does
            not fit the label column, ``renormalize`` for multi-label data,
            ``prob_<class>`` columns that do not match the classes, bad schema
            metadata; with the loader's messages.
    """
    names = schema.names
    if label_col not in names:
        raise missing_column(path, label_col, names, "--label-col")
    if id_col is not None and id_col not in names:
        raise missing_column(path, id_col, names, "--id-col")
    cls = list(classes) if classes is not None else None
    cls_source = classes_source
    prob_cols: list[str] = []
    if pred_probs_cols is not None and (model_cols is not None or pred_probs_file is not None
                                        or pred_probs_col != DEFAULT_PRED_PROBS_COL):
        raise LabelqaError("--pred-probs-cols chooses the probability columns; give it without --pred-probs-col "
                           "and --pred-probs", hint="drop one of them")
    if pred_probs_cols is not None:
        prob_cols, found_classes = match_prob_columns(names, list(pred_probs_cols), path, exclude=[label_col, id_col])
        kind = "columns"
        if cls is not None:
            by_class = dict(zip(found_classes, prob_cols))
            missing = [str(c) for c in cls if str(c) not in by_class]
            if missing or len(cls) != len(prob_cols):
                raise LabelqaError(
                    f"{path}: --pred-probs-cols matched {len(prob_cols)} columns (classes "
                    f"{', '.join(found_classes[:8])}) but {cls_source or '--classes'} lists {len(cls)} classes"
                    + (f"; no column for {', '.join(missing[:8])}" if missing else ""),
                    hint="give exactly one probability column per class")
            prob_cols = [by_class[str(c)] for c in cls]
        else:
            cls, cls_source = found_classes, "--pred-probs-cols column names"
    elif model_cols is not None:
        for col in model_cols:
            if col not in names:
                raise missing_column(path, col, names, "--pred-probs-col")
        kind = "models"
    elif pred_probs_file is not None:
        kind = "file"
    elif pred_probs_col in names:
        kind = "column"
    elif pred_probs_col != DEFAULT_PRED_PROBS_COL:
        raise missing_column(path, pred_probs_col, names, "--pred-probs-col")
    else:
        found = find_prob_columns(names, exclude=[label_col, id_col])
        if not found:
            raise LabelqaError(
                f"{path}: no predicted probabilities: no column {pred_probs_col!r} and no prob_<class> columns "
                f"(available columns: {format_columns(list(names))})",
                hint=no_probabilities_hint(path, fmt, schema, label_col, id_col, label_sep)
                + "; or pass --pred-probs-col NAME for a column holding a list of probabilities per row, "
                + ("--pred-probs-cols 'p_*' for per-class columns (prob_<class> ones are found without it), or pass "
                   "--pred-probs probs.npy (an N x K .npy file)" if files_hint
                   else "or --pred-probs-cols 'p_*' for per-class columns (prob_<class> ones are found without it)"),
            )
        kind = "columns"
        if cls is not None:
            prob_cols = order_prob_columns(found, cls, path, cls_source or "--classes")
        else:
            prob_cols = found
            cls, cls_source = [c[len(PROB_PREFIX):] for c in found], "prob_* column names"

    emb_col = None
    if embeddings_file is None and embeddings_col is not None:
        if embeddings_col in names:
            emb_col = embeddings_col
        elif embeddings_col != DEFAULT_EMBEDDINGS_COL:
            raise missing_column(path, embeddings_col, names, "--embeddings-col")
    dynamics = tuple(
        (option, path_or_column(value, names, option, path))
        for option, value in (("--logits-by-epoch", logits_by_epoch), ("--threshold-samples", threshold_samples))
        if value is not None
    )

    label_where = f"{path}, column {label_col!r}"
    label_type = schema.field(label_col).type
    task_out = resolve_task(task, label_sep, label_type, label_where)
    label_format = None
    if task_out == "multilabel":
        if renormalize:
            raise LabelqaError(
                f"--renormalize does not apply to multi-label data ({label_where} holds label sets): "
                "its probabilities are independent per class and rows need not sum to 1",
                hint="drop --renormalize",
            )
        if is_list_type(label_type):
            label_sep = None
            label_format = "list column"
        else:
            label_format = f"delimited strings (separator {label_sep!r})"

    if cls is None and fmt in ("parquet", "arrow"):
        md = classes_from_metadata(schema)
        if md is not None:
            cls, cls_source = md, f"schema metadata {CLASSES_METADATA_KEY!r}"

    return ResolvedSchema(
        path=path, fmt=fmt, label_col=label_col, id_col=id_col, probs=kind, pred_probs_col=pred_probs_col,
        prob_cols=tuple(prob_cols), model_cols=tuple(model_cols or ()),
        prob_files=tuple(model_files) if kind == "models" else (pred_probs_file,) if kind == "file" else (),
        classes=tuple(cls) if cls is not None else None, classes_source=cls_source, task=task_out,
        label_sep=label_sep if task_out == "multilabel" else None, label_format=label_format,
        embeddings_col=emb_col, embeddings_file=embeddings_file, dynamics=dynamics,
    )
