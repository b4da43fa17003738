"""Streaming input: a Parquet/Arrow file, folder or hive dataset, read as validated record batches.

:func:`open_source` resolves the dataset's schema with the loader's own
:func:`labelqa.data.schema.resolve_schema` (same columns, probability layout,
task, classes and messages), then :meth:`Source.decode` validates one record
batch at a time with the same per-concern checks :func:`labelqa.data.load`
runs, in the same order. Rows are named by their *global* index
(``row 1234567``), so a bad row in batch 37 is reported where it is in the
dataset.

Only the needed columns are read. Rows keep the order of
``pyarrow.dataset`` (files in path order, rows in file order), which is the
order of the issues table.

Multi-label data decodes to an ``(n, K)`` bool label matrix per batch.

Differences from :func:`labelqa.load` (documented in docs/scale.md): ids are
checked for nulls but not for uniqueness across the dataset (that needs all
ids in memory); only Parquet and Arrow IPC inputs; no ``.npy`` probabilities,
embeddings or training dynamics.

This module imports ``pyarrow.dataset`` (which imports pandas): it is not
imported by ``import labelqa``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.ipc as ipc

from labelqa.data.arrays import decoded_type, is_list_type, to_arrow_1d
from labelqa.data.class_order import check_class_order
from labelqa.data.classes import LabelSummary, given_classes, given_classes_like
from labelqa.data.columns import list_column_to_matrix
from labelqa.data.ids import batch_ids
from labelqa.data.labels import encode_labels, label_arrow_type, labels_are_codes, normalize_labels
from labelqa.data.labelsets import encode_label_items, label_set_items, scatter_label_sets
from labelqa.data.probabilities import (
    check_batch_width,
    check_classes_fit,
    check_min_classes,
    check_multilabel_probabilities,
    check_probabilities,
)
from labelqa.data.readers import check_file, resolve_format
from labelqa.data.rows import Rows, Where
from labelqa.data.schema import DEFAULT_PRED_PROBS_COL, ResolvedSchema, check_task, resolve_schema
from labelqa.errors import LabelqaError

__all__ = ["Batch", "Source", "open_dataset", "open_source", "scan_batches"]


@dataclass
class Batch:
    """One decoded, validated batch: rows ``offset .. offset + n - 1`` of the dataset."""

    offset: int
    labels: np.ndarray  # int64 class codes; multi-label: (n, K) bool
    probs: np.ndarray  # (n, K) float32 or float64
    ids: np.ndarray  # int64 or object (strings)
    renormalized_rows: int = 0  # rows whose sum was off (renormalize=True)
    columns: pa.Table | None = None  # the batch's rows of the source's extra columns (Source.extra_cols)

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.labels.shape[0])

    @property
    def positions(self) -> np.ndarray:
        """The rows' global indices."""
        return np.arange(self.offset, self.offset + self.n, dtype=np.int64)


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


def _ipc_batches(frag: ds.Fragment, schema: pa.Schema, columns: list[str], size: int) -> Iterator[pa.RecordBatch]:
    """The record batches of one Arrow IPC file, read synchronously from a memory map.

    Not ``Fragment.to_batches``: pyarrow's IPC scanner pre-buffers the file's
    metadata on an I/O thread, and when a consumer stops early (the first batch
    read to learn K, the class-order check on the first rows) the reader is
    freed while that read is pending, which crashes the process (seen with
    pyarrow 26). Partition columns of hive folders are filled from the
    fragment's partition expression, and columns the file lacks are null, as
    the dataset scanner does.
    """
    keys = ds.get_partition_keys(frag.partition_expression)
    reader = ipc.open_file(pa.memory_map(frag.path))  # batches keep the mapping alive; no close here
    names = reader.schema.names
    out_schema = pa.schema([schema.field(n) for n in columns])
    for i in range(reader.num_record_batches):
        batch = reader.get_batch(i)
        arrays = []
        for field in out_schema:
            if field.name in names:
                arrays.append(batch.column(names.index(field.name)).cast(field.type))
            elif field.name in keys:
                arrays.append(pa.array([keys[field.name]] * batch.num_rows, field.type))
            else:
                arrays.append(pa.nulls(batch.num_rows, field.type))
        yield from pa.Table.from_arrays(arrays, schema=out_schema).to_batches(max_chunksize=size)


#: Row groups read at once (``scan_batches(readers=...)``) are those of at most this many bytes (uncompressed, all
#: columns, from the file's metadata); a larger one is read alone (K = 1,000: a row group of 100,000 rows is 400 MB).
READ_AHEAD_BYTES = 64 << 20


def _row_group_bytes(piece: ds.Fragment) -> int | None:
    """Uncompressed bytes of a Parquet fragment's row groups, from the file's metadata (``None`` if unknown)."""
    try:
        return sum(int(rg.total_byte_size) for rg in piece.row_groups)
    except (AttributeError, TypeError, ValueError, pa.ArrowException):
        return None


def scan_batches(dataset: ds.Dataset, fmt: str, columns: Sequence[str], batch_size: int,
                 readers: int = 1) -> Iterator[pa.RecordBatch]:
    """Record batches in dataset order, one Parquet row group decoded at a time (``readers``: at a time each).

    Synchronous on purpose: pyarrow's scanner reads ahead of a slow consumer
    (and, with pre-buffering, keeps whole files), so its memory grew with N
    (~800 MB of Arrow memory at 20M x 10 float32). Reading row group by row
    group bounds memory by the largest row group plus one batch.

    With ``readers > 1``, that many row groups of at most
    :data:`READ_AHEAD_BYTES` each are read at once on threads (Parquet
    decoding releases the GIL) and handed out in order: one reading thread
    decoded 4M x 10 in ~0.45 s, longer than the two lanes took to validate
    and fold the batches it gave them. Memory: ``readers`` small row groups
    in work instead of one; a larger row group is read alone. Arrow IPC
    files are read in one thread.
    """
    cols = list(columns)
    schema = dataset.schema
    size = int(batch_size)
    opts = ds.ParquetFragmentScanOptions(pre_buffer=False) if fmt == "parquet" else None

    def read(piece: ds.Fragment) -> pa.Table:
        return piece.to_table(schema=schema, columns=cols, use_threads=True, fragment_scan_options=opts)

    if fmt != "parquet":
        for frag in dataset.get_fragments():
            yield from _ipc_batches(frag, schema, cols, size)
        return
    pending: deque[Future[pa.Table]] = deque()
    pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="labelqa-read") if readers > 1 else None
    try:
        for frag in dataset.get_fragments():
            for piece in frag.split_by_row_group():
                nbytes = _row_group_bytes(piece) if pool is not None else None
                if pool is not None and nbytes is not None and nbytes <= READ_AHEAD_BYTES:
                    pending.append(pool.submit(read, piece))
                    if len(pending) == readers:
                        yield from pending.popleft().result().to_batches(max_chunksize=size)
                    continue
                while pending:  # the row groups before this one, in order
                    yield from pending.popleft().result().to_batches(max_chunksize=size)
                yield from read(piece).to_batches(max_chunksize=size)
        while pending:
            yield from pending.popleft().result().to_batches(max_chunksize=size)
    finally:
        for future in pending:
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=True)


def _from_schema(name: str, doc: str) -> Any:
    """A read-only :class:`Source` attribute taken from its resolved schema."""
    return property(lambda self: getattr(self.schema, name), doc=doc)


@dataclass
class Source:
    """A dataset to stream, with everything :func:`labelqa.load` would resolve.

    Build with :func:`open_source`. The object is small and picklable (Dask
    ships it to workers); :meth:`decode` turns one Arrow batch into a
    validated :class:`Batch`.
    """

    schema: ResolvedSchema
    renormalize: bool
    classes: tuple[Any, ...] = ()
    n_classes: int = 0
    n_rows: int = 0
    dtype: str = "float64"
    meta: dict[str, Any] = field(default_factory=dict)
    item_type: str = "int64"  # multi-label: the dataset's label item type ("int64" or "string")
    extra_cols: tuple[str, ...] = ()  # further columns every pass reads for the detectors (Batch.columns)

    # ---- the resolved schema, read-only ----------------------------------
    path = _from_schema("path", "The file or folder.")
    fmt = _from_schema("fmt", '``"parquet"`` or ``"arrow"``.')
    label_col = _from_schema("label_col", "The label column.")
    id_col = _from_schema("id_col", "The id column, or ``None`` for the row index.")
    kind = _from_schema("probs", '``"column"`` (a list column) or ``"columns"`` (``prob_<class>`` columns).')
    pred_probs_col = _from_schema("pred_probs_col", "The probability list column.")
    columns = _from_schema("columns", "The columns every pass reads.")
    task = _from_schema("task", '``"multiclass"`` or ``"multilabel"``.')
    label_sep = _from_schema("label_sep", "The separator of delimited label sets, or ``None``.")
    multilabel = _from_schema("multilabel", "Label sets rather than one label per row.")

    @property
    def prob_cols(self) -> list[str]:
        """The ``prob_<class>`` columns, in class order."""
        return list(self.schema.prob_cols)

    def prob_dtype(self) -> np.dtype:
        """float32 when the probabilities are stored as float32, else float64."""
        return np.dtype(self.dtype)

    # ---- reading ---------------------------------------------------------
    def dataset(self) -> ds.Dataset:
        return open_dataset(self.path, self.fmt)

    @property
    def read_columns(self) -> list[str]:
        """The columns every pass reads: :attr:`columns` and then :attr:`extra_cols`."""
        cols = list(self.columns)
        return cols + [c for c in self.extra_cols if c not in cols]

    def with_columns(self, names: Sequence[str], option: str = "--dup-cols") -> Source:
        """This source, also reading columns ``names`` into every batch (:attr:`Batch.columns`).

        Raises:
            LabelqaError: A column the dataset does not have (``option`` names the flag in the hint).
        """
        import dataclasses

        from labelqa.data.schema import missing_column

        available = self.dataset().schema.names
        for name in names:
            if name not in available:
                raise missing_column(self.path, name, available, option)
        extra = tuple(dict.fromkeys([*self.extra_cols, *names]))
        return dataclasses.replace(self, extra_cols=extra)

    def tables(self, batch_size: int, columns: Sequence[str] | None = None,
               readers: int = 1) -> Iterator[tuple[int, pa.Table]]:
        """``(offset, table)`` per record batch, in dataset order (``readers`` row groups read at once, see
        :func:`scan_batches`)."""
        dataset = self.dataset()
        cols = list(columns) if columns is not None else self.read_columns
        offset = 0
        for rb in scan_batches(dataset, self.fmt, cols, batch_size, readers):
            if rb.num_rows == 0:
                continue
            yield offset, pa.Table.from_batches([rb])
            offset += rb.num_rows

    # ---- decoding --------------------------------------------------------
    def where(self) -> Where:
        """Place names for messages."""
        return self.schema.where(self.meta)

    def _raw_rows(self, table: pa.Table, offset: int) -> Rows:
        """Rows of a batch named with the id column as read (before the ids are checked), as the loader does."""
        return Rows(table.column(self.id_col) if self.id_col else None, self.id_col, offset)

    def label_items(self, label_sets: pa.Array, rows: Rows) -> tuple[pa.Array, np.ndarray]:
        """Multi-label: the items (in the dataset's item type) and parent rows of a batch's label sets."""
        items, parent = label_set_items(label_sets, self.where().labels, rows)
        want = pa.int64() if self.item_type == "int64" else pa.string()
        return (items if items.type == want else pc.cast(items, want)), parent

    def labels(self, table: pa.Table, rows: Rows) -> pa.Array:
        """Multiclass: a batch's labels, normalized (int64 or string)."""
        return normalize_labels(to_arrow_1d(table.column(self.label_col), "labels"), self.where().labels, rows)

    def decode(self, table: pa.Table, offset: int, validate: bool = True) -> Batch:
        """Validate one batch: the loader's checks, in its order, with global row numbers.

        ``validate=False`` (later passes over data already validated) skips
        the probability checks, unless they renormalize.
        """
        where = self.where()
        extra = table.select(list(self.extra_cols)) if self.extra_cols else None
        label_sets = self.schema.label_sets(table) if self.multilabel else None
        P = self.schema.table_probs(table, self._raw_rows(table, offset))
        check_batch_width(P, self.n_classes, where.probs, Rows(offset=offset))
        ids = batch_ids(table.column(self.id_col) if self.id_col else None, table.num_rows, offset, where.ids)
        rows = Rows(ids, self.id_col, offset)
        if label_sets is not None:
            items, parent = self.label_items(label_sets, rows)
            codes, _ = encode_label_items(items, parent, self.classes, where, rows)
            Y = scatter_label_sets(codes, parent, table.num_rows, self.classes, where, rows)
            if validate:
                check_multilabel_probabilities(P, where=where, rows=rows)
            return Batch(offset=offset, labels=Y, probs=P, ids=ids, columns=extra)
        codes, _ = encode_labels(self.labels(table, rows), self.classes, where, rows)
        if not validate and not self.renormalize:
            return Batch(offset=offset, labels=codes, probs=P, ids=ids, columns=extra)
        P, prob_meta = check_probabilities(P, renormalize=self.renormalize, where=where, rows=rows)
        return Batch(offset=offset, labels=codes, probs=P, ids=ids,
                     renormalized_rows=int(prob_meta.get("renormalized_rows", 0)), columns=extra)


def open_source(
    path: str | os.PathLike[str],
    *,
    label_col: str = "label",
    pred_probs_col: str = DEFAULT_PRED_PROBS_COL,
    pred_probs_cols: Sequence[str] | None = None,
    classes: Sequence[Any] | str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    id_col: str | None = None,
    input_format: str | None = None,
    renormalize: bool = False,
    batch_size: int = 262_144,
    task: str = "auto",
    label_sep: str | None = None,
    trust_class_order: bool = False,
) -> Source:
    """Resolve columns and classes of a Parquet/Arrow file or folder, like :func:`labelqa.load`.

    When the classes come from neither the options, ``prob_<class>`` column
    names nor schema metadata, one cheap pass over the label column infers
    them (integer labels in [0, K) are codes, else the sorted unique labels
    when there are K); delimited label sets also take that pass, for the
    dataset's item type.

    Unless ``trust_class_order``, the class order is checked on the first
    :data:`CLASS_ORDER_SAMPLE` rows (:mod:`labelqa.data.class_order`).

    Raises:
        LabelqaError: Missing path or column, unsupported format, classes that
            cannot be resolved, with the loader's messages.
    """
    p = check_file(path, folder_ok=True)
    fmt = resolve_format(p, input_format, streaming=True)
    check_task(task)
    user_classes, classes_source = given_classes(classes, classes_file)
    dataset = open_dataset(p, fmt)
    layout = resolve_schema(p, fmt, dataset.schema, label_col=label_col, pred_probs_col=pred_probs_col,
                            pred_probs_cols=pred_probs_cols, classes=user_classes, classes_source=classes_source, id_col=id_col, task=task,
                            label_sep=label_sep, renormalize=renormalize, files_hint=False)
    src = Source(schema=layout, renormalize=bool(renormalize), meta=layout.meta())
    src.n_rows = int(dataset.count_rows())
    if src.n_rows == 0:
        raise LabelqaError(f"{p}: no rows", hint="the input has no data rows; check the file and filters")

    # K: the number of prob_* columns, or the list length of the first rows.
    if layout.probs == "columns":
        k = len(layout.prob_cols)
        types = [dataset.schema.field(c).type for c in layout.prob_cols]
        src.dtype = "float32" if all(pa.types.is_float32(t) for t in types) else "float64"
    elif (fixed := _fixed_width(dataset.schema.field(pred_probs_col).type)) is not None:
        k, src.dtype = fixed  # from the type: no row group read for it (each pass checks every row's lists)
    else:
        first = pa.Table.from_batches([next(iter(scan_batches(
            dataset, fmt, [pred_probs_col] + ([id_col] if id_col else []), 1024)))])
        first_P = list_column_to_matrix(first.column(pred_probs_col), layout.probs_where, src._raw_rows(first, 0))
        k = first_P.shape[1]
        src.dtype = "float32" if first_P.dtype == np.float32 else "float64"
    where = src.where()
    check_min_classes(k, layout.multilabel, where.probs)
    if not layout.multilabel:
        check_classes_fit(k, where.probs)
    src.n_classes = k

    label_field_type = dataset.schema.field(label_col).type
    summary = None
    if layout.classes is None or layout.label_sep is not None:  # pass 0: inference / delimited item type
        summary = _summarize_labels(src, batch_size)
    if layout.label_sep is not None:
        assert summary is not None
        src.item_type = "string" if summary.any_strings or summary.count == 0 else "int64"
    elif layout.multilabel:
        src.item_type = "int64" if pa.types.is_integer(label_arrow_type(_list_value_type(label_field_type))) \
            else "string"
    if layout.multilabel:
        label_type = pa.int64() if src.item_type == "int64" else pa.string()
    else:
        label_type = label_arrow_type(label_field_type)
    if layout.classes is not None:
        cls = given_classes_like(layout.classes, label_type, k, src.meta["classes_source"], where.probs)
    else:
        assert summary is not None
        cls, how = summary.classes(k, integers=pa.types.is_integer(label_type))
        src.meta["classes_source"] = how
    src.classes = tuple(cls)
    if labels_are_codes(label_type, src.classes):
        src.meta["labels_are_codes"] = True
    if not layout.multilabel and not trust_class_order:
        _check_class_order_on_first_rows(src, batch_size)
    return src


def _fixed_width(t: pa.DataType) -> tuple[int, str] | None:
    """``(K, dtype)`` of a fixed-size list of float32 or float64 probabilities, known from its type alone."""
    if pa.types.is_fixed_size_list(t) and (pa.types.is_float32(t.value_type) or pa.types.is_float64(t.value_type)):
        return int(t.list_size), "float32" if pa.types.is_float32(t.value_type) else "float64"
    return None


#: The streaming engines check the class order on the dataset's first rows (the in-memory engine on all rows).
CLASS_ORDER_SAMPLE = 100_000


def _check_class_order_on_first_rows(src: Source, batch_size: int) -> None:
    """:func:`labelqa.data.class_order.check_class_order` on up to :data:`CLASS_ORDER_SAMPLE` first rows
    (decoded and validated as the first pass would)."""
    codes: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    seen = 0
    for offset, table in src.tables(min(batch_size, CLASS_ORDER_SAMPLE)):
        batch = src.decode(table, offset)
        codes.append(batch.labels)
        probs.append(np.asarray(batch.probs))
        seen += batch.n
        if seen >= CLASS_ORDER_SAMPLE:
            break
    if seen:
        words = "rows" if seen >= src.n_rows else f"the first {seen:,} rows"
        check_class_order(np.concatenate(codes), np.concatenate(probs), src.classes,
                          classes_source=src.meta.get("classes_source"), probs_where=src.where().probs,
                          rows_word=words)


def _list_value_type(t: pa.DataType) -> pa.DataType:
    """The item type of a label-set column's lists (int64 for lists of nulls)."""
    t = decoded_type(t)
    v = decoded_type(t.value_type if is_list_type(t) else t)
    return pa.int64() if pa.types.is_null(v) else v


def _summarize_labels(src: Source, batch_size: int) -> LabelSummary:
    """Pass 0 (label and id columns only): the labels, or label-set items, of every batch, summarized."""
    cols = [src.label_col] + ([src.id_col] if src.id_col and src.id_col != src.label_col else [])
    summary = LabelSummary()
    for offset, table in src.tables(batch_size, cols):
        rows = src._raw_rows(table, offset)
        if src.multilabel:
            summary.update(label_set_items(src.schema.label_sets(table), src.where().labels, rows)[0])
        else:
            summary.update(src.labels(table, rows))
    return summary
