"""Inputs of the out-of-core engines: a Parquet/Arrow file, folder or hive dataset.

:class:`Source` resolves columns, classes and the probability layout once,
exactly as :func:`labelqa.data.load` does (same precedence, same messages),
then decodes and validates one record batch at a time with the loader's own
helpers. Rows are named by their *global* index (``row 1234567``), so a bad
row in batch 37 is reported where it is in the dataset.

Only the needed columns are read. Rows keep the order of
``pyarrow.dataset`` (files in path order, rows in file order), which is the
order of the issues table.

Multi-label data (``task="multilabel"``, or ``"auto"`` with a list label
column or ``label_sep``, as the loader decides) decodes to an ``(n, K)`` bool
label matrix per batch, with the loader's item checks and messages.

Differences from :func:`labelqa.load` (documented in docs/scale.md): ids are
checked for nulls but not for uniqueness across the dataset (that needs all
ids in memory); only Parquet and Arrow IPC inputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from labelqa.data.columns import (
    CLASSES_METADATA_KEY,
    PROB_PREFIX,
    classes_from_metadata,
    find_prob_columns,
    given_classes,
    list_column_to_matrix,
    order_prob_columns,
    prob_columns_to_matrix,
    split_label_strings,
)
from labelqa.data.loader import DEFAULT_PRED_PROBS_COL, _missing_column, _resolve_task
from labelqa.data.readers import format_columns
from labelqa.data.validate import (
    Rows,
    _py,
    _Where,
    _items,
    check_duplicate_classes,
    check_multilabel_probabilities,
    check_probabilities,
    classes_from_label_summary,
    classes_like_labels,
    count_rows,
    encode_label_items,
    encode_labels,
    format_values,
    is_list_type,
    normalize_classes,
    normalize_labels,
    scatter_label_sets,
    to_arrow_1d,
    type_name,
)
from labelqa.errors import LabelqaError

__all__ = ["Batch", "Source", "open_source"]

_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}


class _OffsetRows(Rows):
    """:class:`Rows` for one batch: names rows by their global index."""

    def __init__(self, ids: Any, id_col: str | None, offset: int) -> None:
        super().__init__(ids, id_col)
        self.offset = int(offset)

    def one(self, i: int) -> str:
        text = f"row {self.offset + int(i)}"
        if self.ids is not None and 0 <= i < len(self.ids):
            text += f" (id {_py(self.ids[i])!r})"
        return text


@dataclass
class Batch:
    """One decoded, validated batch: rows ``offset .. offset + n - 1`` of the dataset."""

    offset: int
    labels: np.ndarray  # int64 class codes; multi-label: (n, K) bool
    probs: np.ndarray  # (n, K) float32 or float64
    ids: np.ndarray  # int64 or object (strings)
    renormalized_rows: int = 0  # rows whose sum was off (renormalize=True)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def positions(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + self.n, dtype=np.int64)


def _detect_format(path: str, input_format: str | None) -> str:
    if input_format is not None:
        fmt = str(input_format).strip().lower().lstrip(".")
        fmt = {"pq": "parquet", "feather": "arrow", "ipc": "arrow"}.get(fmt, fmt)
        if fmt not in ("parquet", "arrow"):
            raise LabelqaError(
                f"the streaming engines read Parquet or Arrow IPC, not {input_format!r}",
                hint="convert the data to Parquet, or use --engine memory",
            )
        return fmt
    if os.path.isdir(path):
        exts = set()
        for root, _dirs, files in os.walk(path):
            exts.update(os.path.splitext(f)[1].lower() for f in files if not f.startswith((".", "_")))
        fmts = {_FORMATS[e] for e in exts if e in _FORMATS}
        if len(fmts) == 1:
            return fmts.pop()
        if not fmts:
            raise LabelqaError(f"{path}: no .parquet or .arrow files in the folder", hint="check the path")
        raise LabelqaError(f"{path}: the folder mixes Parquet and Arrow files", hint="pass --input-format")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise LabelqaError(
            f"the streaming engines read Parquet or Arrow IPC files and folders, not {path}",
            hint="convert the data to Parquet, or use --engine memory",
        )
    return _FORMATS[ext]


def open_dataset(path: str, fmt: str) -> ds.Dataset:
    """``pyarrow.dataset`` over a file or a folder (hive partitions discovered)."""
    try:
        if os.path.isdir(path):
            return ds.dataset(path, format="ipc" if fmt == "arrow" else "parquet", partitioning="hive",
                              exclude_invalid_files=False)
        return ds.dataset(path, format="ipc" if fmt == "arrow" else "parquet")
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LabelqaError(f"cannot read {path} as {fmt}: {reason[:200]}", hint="check the file or folder") from exc


def scan_batches(dataset: ds.Dataset, fmt: str, columns: Sequence[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Record batches in dataset order, one Parquet row group decoded at a time.

    Synchronous on purpose: pyarrow's scanner reads ahead of a slow consumer
    (and, with pre-buffering, keeps whole files), so its memory grew with N
    (~800 MB of Arrow memory at 20M x 10 float32). Reading row group by row
    group bounds memory by the largest row group plus one batch.
    """
    cols = list(columns)
    schema = dataset.schema
    size = int(batch_size)
    opts = ds.ParquetFragmentScanOptions(pre_buffer=False) if fmt == "parquet" else None
    for frag in dataset.get_fragments():
        if fmt != "parquet":
            yield from frag.to_batches(schema=schema, columns=cols, batch_size=size, batch_readahead=0,
                                       fragment_readahead=0, use_threads=True)
            continue
        for piece in frag.split_by_row_group():
            table = piece.to_table(schema=schema, columns=cols, use_threads=True, fragment_scan_options=opts)
            yield from table.to_batches(max_chunksize=size)
            del table


@dataclass
class Source:
    """A dataset to stream, with everything :func:`labelqa.load` would resolve.

    Build with :func:`open_source`. The object is small and picklable (Dask
    ships it to workers); :meth:`decode` turns one Arrow batch into a
    validated :class:`Batch`.
    """

    path: str
    fmt: str
    label_col: str
    id_col: str | None
    kind: str  # "column" | "columns"
    pred_probs_col: str
    prob_cols: list[str]
    columns: list[str]
    renormalize: bool
    classes: tuple[Any, ...] = ()
    n_classes: int = 0
    n_rows: int = 0
    dtype: str = "float64"
    meta: dict[str, Any] = field(default_factory=dict)
    _pending_classes: list[Any] | None = None
    task: str = "multiclass"
    label_sep: str | None = None
    item_type: str = "int64"  # multi-label: the dataset's label item type ("int64" or "string")

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    # ---- reading ---------------------------------------------------------
    def dataset(self) -> ds.Dataset:
        return open_dataset(self.path, self.fmt)

    def tables(self, batch_size: int, columns: Sequence[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """``(offset, table)`` per record batch, in dataset order."""
        dataset = self.dataset()
        cols = list(columns) if columns is not None else self.columns
        offset = 0
        for rb in scan_batches(dataset, self.fmt, cols, batch_size):
            if rb.num_rows == 0:
                continue
            yield offset, pa.Table.from_batches([rb])
            offset += rb.num_rows

    # ---- decoding --------------------------------------------------------
    def _where(self) -> _Where:
        return _Where(self.path, self.label_col, self.id_col, self.meta)

    def _ids(self, table: pa.Table, offset: int) -> np.ndarray:
        n = table.num_rows
        if self.id_col is None:
            return np.arange(offset, offset + n, dtype=np.int64)
        arr = to_arrow_1d(table.column(self.id_col), "ids")
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if arr.null_count:
            bad = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))
            raise LabelqaError(
                f"{self._where().ids}: {count_rows(len(bad))} {'has' if len(bad) == 1 else 'have'} no id: "
                f"{_OffsetRows(None, None, offset).many(bad)}",
                hint="fill in the missing ids, or omit --id-col to use the row index",
            )
        if pa.types.is_integer(arr.type):
            try:
                arr = pc.cast(arr, pa.int64())
            except pa.ArrowInvalid:
                pass
        return arr.to_numpy(zero_copy_only=False)

    def _label_sets(self, table: pa.Table) -> pa.Array:
        """Multi-label: the batch's label sets as a list array (delimited strings split)."""
        col = table.column(self.label_col)
        if self.label_sep is not None:
            return split_label_strings(col, self.label_sep, self._where().labels)
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        return arr

    def _label_items(self, arr: pa.Array, rows: Rows) -> tuple[pa.Array, np.ndarray]:
        """Items (in the dataset's item type) and parent rows of a batch's label sets."""
        items, parent = _items(arr, self._where().labels, rows)
        want = pa.int64() if self.item_type == "int64" else pa.string()
        if items.type != want:
            items = pc.cast(items, want)
        return items, parent

    def _labels(self, table: pa.Table, rows: Rows) -> pa.Array:
        arr = to_arrow_1d(table.column(self.label_col), "labels")
        if is_list_type(arr.type):
            raise LabelqaError(
                f"{self.path}, column {self.label_col!r}: each row holds a list of labels ({type_name(arr.type)}), "
                "which is multi-label data; the streaming engines handle multiclass data only",
                hint="use --engine memory for multi-label data",
            )
        return normalize_labels(arr, self._where().labels, rows)

    def _probs(self, table: pa.Table, rows: Rows) -> np.ndarray:
        if self.kind == "column":
            P = list_column_to_matrix(table.column(self.pred_probs_col), f"{self.path}, column {self.pred_probs_col!r}", rows)
        else:
            P = prob_columns_to_matrix(table, self.prob_cols, self.path, rows)
        if P.dtype != np.float32 and P.dtype != np.float64:
            P = P.astype(np.float64)
        return np.ascontiguousarray(P)

    def prob_dtype(self) -> np.dtype:
        """float32 when the probabilities are stored as float32, else float64."""
        return np.dtype(self.dtype)

    def decode(self, table: pa.Table, offset: int, validate: bool = True) -> Batch:
        """Validate one batch (same rules and messages as the loader, global row numbers).

        ``validate=False`` (later passes over data already validated) skips
        the probability checks, unless they renormalize.
        """
        ids = self._ids(table, offset)
        rows = _OffsetRows(ids, self.id_col, offset)
        if self.multilabel:
            return self._decode_multilabel(table, offset, ids, rows, validate)
        labels = self._labels(table, rows)
        P = self._probs(table, rows)
        where = self._where()
        k = self.n_classes
        if P.shape[1] != k:
            raise LabelqaError(
                f"{where.probs}: probability lists differ in length: {rows.one(0)} has {P.shape[1]} "
                f"but the dataset has {k} classes",
                hint="every row needs exactly one probability per class",
            )
        codes, _ = encode_labels(labels, self.classes, where, rows)
        if not validate and not self.renormalize:
            return Batch(offset=offset, labels=codes, probs=P, ids=ids)
        P, prob_meta = check_probabilities(P, renormalize=self.renormalize, where=where, rows=rows)
        return Batch(offset=offset, labels=codes, probs=P, ids=ids,
                     renormalized_rows=int(prob_meta.get("renormalized_rows", 0)))


    def _check_k(self, P: np.ndarray, rows: Rows) -> None:
        if P.shape[1] != self.n_classes:
            raise LabelqaError(
                f"{self._where().probs}: probability lists differ in length: {rows.one(0)} has {P.shape[1]} "
                f"but the dataset has {self.n_classes} classes",
                hint="every row needs exactly one probability per class",
            )

    def _decode_multilabel(self, table: pa.Table, offset: int, ids: np.ndarray, rows: Rows, validate: bool) -> Batch:
        """The loader's multi-label order: split strings, probabilities, items, codes, sets, ranges."""
        arr = self._label_sets(table)
        P = self._probs(table, rows)
        self._check_k(P, rows)
        where = self._where()
        items, parent = self._label_items(arr, rows)
        codes, _ = encode_label_items(items, parent, self.classes, where, rows)
        Y = scatter_label_sets(codes, parent, table.num_rows, self.classes, where, rows)
        if validate:
            check_multilabel_probabilities(P, where=where, rows=rows)
        return Batch(offset=offset, labels=Y, probs=P, ids=ids)


def _label_arrow_type(t: pa.DataType) -> pa.DataType:
    """The type :func:`normalize_labels` gives labels of type ``t``."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t):
        return pa.int64()
    return pa.string()


def open_source(
    path: str | os.PathLike[str],
    *,
    label_col: str = "label",
    pred_probs_col: str = DEFAULT_PRED_PROBS_COL,
    classes: Sequence[Any] | str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    id_col: str | None = None,
    input_format: str | None = None,
    renormalize: bool = False,
    batch_size: int = 262_144,
    task: str = "auto",
    label_sep: str | None = None,
) -> Source:
    """Resolve columns and classes of a Parquet/Arrow file or folder, like :func:`labelqa.load`.

    When the classes come from neither the options, ``prob_<class>`` column
    names nor schema metadata, one cheap pass over the label column infers
    them (integer labels in [0, K) are codes, else the sorted unique labels
    when there are K).

    Raises:
        LabelqaError: Missing path or column, unsupported format, classes that
            cannot be resolved, with the loader's messages.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise LabelqaError(f"input file not found: {p}", hint="check the path")
    fmt = _detect_format(p, input_format)
    user_classes, classes_source = given_classes(classes, classes_file)
    dataset = open_dataset(p, fmt)
    schema = dataset.schema
    names = schema.names
    if label_col not in names:
        raise _missing_column(p, label_col, names, "--label-col")
    if id_col is not None and id_col not in names:
        raise _missing_column(p, id_col, names, "--id-col")
    base = [label_col] + ([id_col] if id_col is not None and id_col != label_col else [])
    label_field_type = schema.field(label_col).type
    task_out = _resolve_task(task, label_sep, label_field_type, f"{p}, column {label_col!r}")
    multilabel = task_out == "multilabel"
    meta: dict[str, Any] = {"input_format": fmt, "task": task_out}
    if multilabel:
        if renormalize:
            raise LabelqaError(
                f"--renormalize does not apply to multi-label data ({p}, column {label_col!r} holds label sets): "
                "its probabilities are independent per class and rows need not sum to 1",
                hint="drop --renormalize",
            )
        if is_list_type(label_field_type):
            label_sep = None
            meta["label_format"] = "list column"
        else:
            meta["label_format"] = f"delimited strings (separator {label_sep!r})"
    plan_classes = user_classes
    plan_source = classes_source
    if pred_probs_col in names:
        kind, prob_cols = "column", []
        meta["pred_probs_source"] = f"column {pred_probs_col}"
    elif pred_probs_col != DEFAULT_PRED_PROBS_COL:
        raise _missing_column(p, pred_probs_col, names, "--pred-probs-col")
    else:
        found = find_prob_columns(names, exclude=[label_col, id_col])
        if not found:
            raise LabelqaError(
                f"{p}: no predicted probabilities: no column {pred_probs_col!r} and no prob_<class> columns "
                f"(available columns: {format_columns(list(names))})",
                hint="pass --pred-probs-col NAME for a column holding a list of probabilities per row, "
                "or name per-class columns prob_<class>",
            )
        kind = "columns"
        if user_classes is not None:
            prob_cols = order_prob_columns(found, user_classes, p, classes_source or "--classes")
        else:
            prob_cols = found
            plan_classes = [c[len(PROB_PREFIX):] for c in found]
            plan_source = "prob_* column names"
        meta["pred_probs_source"] = "prob_* columns"
        meta["pred_probs_columns"] = list(prob_cols)
    columns = base + ([pred_probs_col] if kind == "column" else prob_cols)
    if plan_classes is None:
        md = classes_from_metadata(schema)
        if md is not None:
            plan_classes, plan_source = md, f"schema metadata {CLASSES_METADATA_KEY!r}"
    if plan_source is not None:
        meta["classes_source"] = plan_source

    src = Source(path=p, fmt=fmt, label_col=label_col, id_col=id_col, kind=kind, pred_probs_col=pred_probs_col,
                 prob_cols=list(prob_cols), columns=columns, renormalize=bool(renormalize), meta=meta,
                 task=task_out, label_sep=label_sep if multilabel else None)
    src.n_rows = int(dataset.count_rows())
    if src.n_rows == 0:
        raise LabelqaError(f"{p}: no rows", hint="the input has no data rows; check the file and filters")

    # K: the number of prob_* columns, or the list length of the first rows.
    if kind == "columns":
        k = len(prob_cols)
        types = [schema.field(c).type for c in prob_cols]
        src.dtype = "float32" if all(pa.types.is_float32(t) for t in types) else "float64"
    else:
        first = pa.Table.from_batches([next(iter(scan_batches(
            dataset, fmt, [pred_probs_col] + ([id_col] if id_col else []), 1024)))])
        ids = first.column(id_col) if id_col else None
        first_P = list_column_to_matrix(first.column(pred_probs_col), f"{p}, column {pred_probs_col!r}",
                                        Rows(ids, id_col))
        k = first_P.shape[1]
        src.dtype = "float32" if first_P.dtype == np.float32 else "float64"
    where = _Where(p, label_col, id_col, meta)
    if k < (1 if multilabel else 2):
        raise LabelqaError(
            f"{where.probs}: {k} probabilit{'y' if k == 1 else 'ies'} per row; at least "
            f"{'1 class is' if multilabel else '2 classes are'} needed",
            hint="give one probability per class; for a binary task pass both p and 1 - p",
        )
    src.n_classes = k
    scanned = None
    if multilabel:
        if label_sep is not None or plan_classes is None:
            scanned = _scan_label_items(src, batch_size)  # pass 0: item type (delimited) / inference
            src.item_type = scanned[0]
        else:
            src.item_type = "int64" if pa.types.is_integer(_label_arrow_type(_list_value_type(label_field_type))) \
                else "string"
        label_type = pa.int64() if src.item_type == "int64" else pa.string()
    else:
        label_type = _label_arrow_type(label_field_type)
    meta.setdefault("input_format", fmt)
    meta.setdefault("pred_probs_source", "array")
    if plan_classes is not None:
        meta.setdefault("classes_source", "classes argument")
        raw = normalize_classes(plan_classes)
        check_duplicate_classes(raw, meta["classes_source"])
        cls = classes_like_labels(raw, label_type)
        if len(cls) != k:
            raise LabelqaError(
                f"{where.probs}: {k} probabilities per row but {len(cls)} classes from "
                f"{meta['classes_source']} ({format_values(cls, 8)})",
                hint="give exactly one class per probability column, in column order",
            )
    elif scanned is not None:
        cls, how = _infer_from_items(scanned, k)
        meta["classes_source"] = how
    else:
        cls, how = _infer_classes(src, k, label_type, batch_size)
        meta["classes_source"] = how
    src.classes = tuple(cls)
    if pa.types.is_integer(label_type) and not any(isinstance(c, int) and not isinstance(c, bool) for c in cls):
        meta["labels_are_codes"] = True
    return src


def _infer_classes(src: Source, k: int, label_type: pa.DataType, batch_size: int) -> tuple[tuple[Any, ...], str]:
    """Pass 0 (label column only): :func:`labelqa.data.validate.infer_classes` over the stream."""
    lo = hi = None
    uniques: set[Any] = set()
    cols = [src.label_col] + ([src.id_col] if src.id_col and src.id_col != src.label_col else [])
    for offset, table in src.tables(batch_size, cols):
        ids = table.column(src.id_col) if src.id_col else None
        labels = src._labels(table, _OffsetRows(ids, src.id_col, offset))
        if pa.types.is_integer(labels.type) and len(labels):
            mm = pc.min_max(labels).as_py()
            lo = mm["min"] if lo is None else min(lo, mm["min"])
            hi = mm["max"] if hi is None else max(hi, mm["max"])
        uniques.update(pc.unique(labels).to_pylist())
    fits = bool(pa.types.is_integer(label_type) and lo is not None and lo >= 0 and hi < k)
    return classes_from_label_summary(k, int_codes_fit=fits, unique_labels=uniques)


def _list_value_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        t = t.value_type
    v = t.value_type if is_list_type(t) else t
    if pa.types.is_dictionary(v):
        v = v.value_type
    if pa.types.is_null(v):
        return pa.int64()
    return v


def _scan_label_items(src: Source, batch_size: int) -> tuple[str, Any, Any, set[Any], int]:
    """Pass 0 for multi-label data (label column only): the dataset's item type, min/max and
    distinct items, as the loader sees the whole column's items."""
    cols = [src.label_col] + ([src.id_col] if src.id_col and src.id_col != src.label_col else [])
    where = src._where().labels
    lo = hi = None
    ints: set[Any] = set()
    strs: set[Any] = set()
    n_items = 0
    any_string = False
    for offset, table in src.tables(batch_size, cols):
        ids = table.column(src.id_col) if src.id_col else None
        rows = _OffsetRows(ids, src.id_col, offset)
        items, _parent = _items(src._label_sets(table), where, rows)
        if len(items) == 0:
            continue
        n_items += len(items)
        if pa.types.is_integer(items.type):
            mm = pc.min_max(items).as_py()
            lo = mm["min"] if lo is None else min(lo, mm["min"])
            hi = mm["max"] if hi is None else max(hi, mm["max"])
            ints.update(pc.unique(items).to_pylist())
        else:
            any_string = True
            strs.update(pc.unique(items).to_pylist())
    if src.label_sep is not None:
        item_type = "string" if any_string or n_items == 0 else "int64"
    else:
        item_type = "string" if any_string else "int64"
        if n_items == 0:
            item_type = "int64" if pa.types.is_integer(
                _label_arrow_type(_list_value_type(_src_label_type(src)))) else "string"
    uniques = strs | {str(v) for v in ints} if item_type == "string" else ints
    return item_type, lo, hi, uniques, n_items


def _src_label_type(src: Source) -> pa.DataType:
    return src.dataset().schema.field(src.label_col).type


def _infer_from_items(scanned: tuple[str, Any, Any, set[Any], int], k: int) -> tuple[tuple[Any, ...], str]:
    """:func:`labelqa.data.validate.infer_classes` over the label-set items of pass 0."""
    item_type, lo, hi, uniques, n_items = scanned
    fits = bool(item_type == "int64" and n_items and lo >= 0 and hi < k)
    return classes_from_label_summary(k, int_codes_fit=fits, unique_labels=uniques)
