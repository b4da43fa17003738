"""Embeddings (optional, any task; for the NRG detector): an N x D matrix of finite numbers,
no all-zero row, stored as float32."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from labelqa.data.probabilities import BLOCK_ELEMENTS
from labelqa.data.rows import Rows, Where, count_rows, format_number
from labelqa.errors import LabelqaError


def check_embeddings(embeddings: Any, n_rows: int, where: Where, rows: Rows) -> np.ndarray:
    """Embeddings as a C-contiguous float32 N x D matrix of finite numbers with no all-zero row.

    float32 C-contiguous input is not copied; anything else is converted once.
    """
    loc = where.embeddings
    hint = "embeddings must be an N x D array of finite numbers"
    try:
        E = np.asarray(embeddings)
    except ValueError as exc:  # ragged nested sequences
        E = None
        err: Exception | None = exc
    else:
        err = None
    if E is None or (E.dtype == object and E.ndim == 1):
        seq = list(embeddings)
        lengths = np.array([np.size(r) if r is not None else -1 for r in seq], dtype=np.int64)
        if len(lengths) and (lengths != lengths[0]).any():
            first = int(np.flatnonzero(lengths != lengths[0])[0])
            raise LabelqaError(
                f"{loc}: embeddings are ragged: {rows.one(0)} has {int(lengths[0])} values but "
                f"{rows.one(first)} has {int(lengths[first])}",
                hint="every row needs an embedding of the same length D",
            ) from err
        try:
            E = np.asarray(seq, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise LabelqaError(f"{loc}: embeddings are not numeric ({exc})", hint=hint) from exc
    if E.dtype.hasobject or E.dtype.kind not in "biuf":
        raise LabelqaError(f"{loc}: embeddings have dtype {E.dtype}; expected numbers", hint=hint)
    if E.ndim != 2:
        raise LabelqaError(f"{loc}: embeddings must be 2-D (rows x dimensions), got shape {E.shape}", hint=hint)
    if E.shape[0] != n_rows:
        raise LabelqaError(
            f"{loc}: {E.shape[0]} rows of embeddings but the data has {n_rows} rows",
            hint="embeddings must have one row per labelled example, in the same order",
        )
    if E.shape[1] == 0:
        raise LabelqaError(f"{loc}: embeddings have 0 dimensions", hint=hint)
    if E.dtype != np.float32 or not E.flags.c_contiguous:
        with np.errstate(over="ignore"):
            E = np.ascontiguousarray(E, dtype=np.float32)
    n, d = E.shape
    # One blocked pass: a row's max |x| is NaN/inf iff the row holds NaN/inf, 0 iff it is all zeros.
    peak = np.empty(n, dtype=np.float32)
    step = max(1, BLOCK_ELEMENTS // d)
    buf = np.empty((min(step, n), d), dtype=np.float32)
    for a in range(0, n, step):
        block = E[a : a + step]
        tmp = buf[: len(block)]
        np.abs(block, out=tmp)
        np.maximum.reduce(tmp, axis=1, out=peak[a : a + step])
    nonfinite = np.flatnonzero(~np.isfinite(peak))
    if len(nonfinite):

        def detail(i: int) -> str:
            j = int(np.flatnonzero(~np.isfinite(E[i]))[0])
            return f"dimension {j} = {format_number(E[i, j])}"

        raise LabelqaError(
            f"{loc}: {count_rows(len(nonfinite))} with NaN or infinite embedding values: {rows.many(nonfinite, detail)}",
            hint="embeddings must be finite numbers (float32); check the model that produced them",
        )
    zero = np.flatnonzero(peak == 0)
    if len(zero):
        raise LabelqaError(
            f"{loc}: {count_rows(len(zero))} with an all-zero embedding, which cannot L2-normalise: {rows.many(zero)}",
            hint="drop those rows or give them a non-zero embedding",
        )
    return E


#: Values per decoded batch of an embedding column: Parquet's list decoder runs
#: 2-2.5x faster on ~1,000-row batches at D = 512 than on whole row groups
#: (its buffers stay in cache), so batches hold about this many values.
PARQUET_BATCH_VALUES = 1 << 19


def read_parquet_embeddings(path: Any, col: str, where: str, rows: Rows) -> np.ndarray | None:
    """The list<number> column ``col`` of a Parquet file as an N x D matrix, decoded
    row group by row group on :func:`labelqa.parallel.worker_count` threads.

    Each row group is read in batches of about :data:`PARQUET_BATCH_VALUES`
    values, each checked and converted by
    :func:`labelqa.data.columns.list_column_to_matrix` (same errors, with
    global row numbers) and copied into the result: the whole column is never
    held as Arrow arrays next to the matrix (1M x 512: 2 GB less peak memory).
    float32 items stay float32. Returns ``None`` for a file without row groups
    (the caller reads the column the usual way).
    """
    import threading

    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelqa.data.columns import EMBEDDING_WORDS, list_column_to_matrix
    from labelqa.parallel import thread_map

    source = pa.memory_map(os.fspath(path))  # one mapping shared by the readers (positional reads)
    pf = pq.ParquetFile(source)
    n = pf.metadata.num_rows
    if pf.num_row_groups == 0 or n == 0:
        return None
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    leaf = [i for i in range(pf.metadata.num_columns)
            if pf.metadata.schema.column(i).path.split(".")[0] == col]
    values = sum(pf.metadata.row_group(g).column(leaf[0]).num_values for g in range(pf.num_row_groups)) if leaf else n
    batch_rows = max(64, PARQUET_BATCH_VALUES // max(1, values // n))
    local = threading.local()
    lock = threading.Lock()
    state: dict[str, Any] = {"out": None, "first": 0}

    def fill(i: int) -> None:
        handle = getattr(local, "pf", None)
        if handle is None:
            handle = local.pf = pq.ParquetFile(source)
        start = int(starts[i])
        for batch in handle.iter_batches(batch_size=batch_rows, row_groups=[i], columns=[col], use_threads=False):
            part = list_column_to_matrix(batch.column(0), where, rows.slice(start, batch.num_rows), EMBEDDING_WORDS)
            with lock:
                if state["out"] is None:
                    state["out"], state["first"] = np.empty((n, part.shape[1]), dtype=part.dtype), start
                out, first = state["out"], state["first"]
                first = state["first"]
            if part.shape[1] != out.shape[1]:
                later, d_early, d_late = ((start, out.shape[1], part.shape[1]) if start > first
                                          else (first, part.shape[1], out.shape[1]))
                raise LabelqaError(
                    f"{where}: {EMBEDDING_WORDS.ragged}: {rows.one(later)} has {d_late} "
                    f"but earlier rows have {d_early}",
                    hint=EMBEDDING_WORDS.ragged_hint,
                )
            out[start : start + len(part)] = part
            start += len(part)

    for _ in thread_map(fill, [i for i in range(pf.num_row_groups) if sizes[i]], parallel=n >= 1 << 14):
        pass
    return state["out"]
