"""From table columns to arrays: probability and embedding lists, ``prob_<class>`` columns (or columns chosen by
patterns such as ``p_*``).

Everything here is vectorised through pyarrow compute and numpy; no Python
loop runs over rows (only over columns, or over the few rows an error names).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.arrays import is_list_type
from labelqa.data.rows import Rows, count_rows
from labelqa.errors import LabelqaError

#: Prefix of per-class probability columns: ``prob_cat``, ``prob_dog``...
PROB_PREFIX = "prob_"

_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?:NaN|nan|Infinity|infinity|inf|Inf)"
_JSON_LIST = rf"^\[(?:(?:{_NUM})(?:,(?:{_NUM}))*)?\]$"


@dataclass(frozen=True)
class ListWords:
    """How messages about a list<number> column name what it holds."""

    empty_hint: str
    expected: str
    type_hint: str
    items_hint: str
    null_list: str
    need: str
    ragged: str
    ragged_hint: str
    null_item: str
    null_item_hint: str
    json_hint: str
    empty_list: str


PROBABILITY_WORDS = ListWords(
    empty_hint="fill in the probabilities",
    expected="a list of probabilities per row",
    type_hint="store one list<float> per row, or name per-class columns prob_<class>, or pass --pred-probs probs.npy",
    items_hint="store the probabilities as list<float>",
    null_list="without probabilities (null list)",
    need="every row needs one probability per class",
    ragged="probability lists differ in length",
    ragged_hint="every row needs exactly one probability per class",
    null_item="with a null probability",
    null_item_hint="every probability must be a number",
    json_hint='write each row\'s probabilities as a list such as "[0.1, 0.9]"',
    empty_list="with an empty probability list",
)

EMBEDDING_WORDS = ListWords(
    empty_hint="fill in the embeddings",
    expected="a list of numbers (an embedding vector) per row",
    type_hint="store one list<float> per row, or pass --embeddings emb.npy (an N x D .npy file)",
    items_hint="store the embeddings as list<float>",
    null_list="without an embedding (null list)",
    need="every row needs an embedding vector of the same length",
    ragged="embedding lists differ in length",
    ragged_hint="every row needs an embedding of the same length D",
    null_item="with a null embedding value",
    null_item_hint="every embedding value must be a number",
    json_hint='write each row\'s embedding as a list such as "[0.1, -0.4, 2.5]"',
    empty_list="with an empty embedding list",
)


# ------------------------------------------------------- prob_<class> columns


def find_prob_columns(names: Sequence[str], exclude: Sequence[str | None] = ()) -> list[str]:
    """Columns named ``prob_<class>``, in file order."""
    skip = {e for e in exclude if e is not None}
    return [n for n in names if n.startswith(PROB_PREFIX) and len(n) > len(PROB_PREFIX) and n not in skip]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex whose one group is the part the first ``*`` matched (the whole name without ``*``)."""
    parts = pattern.split("*", 1)
    if len(parts) == 1:
        return re.compile("(" + fnmatch.translate(pattern)[4:-3] + r")\Z", re.DOTALL)
    head, tail = (fnmatch.translate(p)[4:-3] for p in parts)
    return re.compile(head + "(.*)" + tail + r"\Z", re.DOTALL)


def match_prob_columns(names: Sequence[str], patterns: Sequence[str], source: str,
                       exclude: Sequence[str | None] = ()) -> tuple[list[str], list[str]]:
    """Per-class probability columns chosen by ``patterns`` (names or globs), in file order, and their classes.

    A column's class is the part of its name the first ``*`` of its pattern matched (``p_*``: ``p_cat`` ->
    ``cat``; ``proba_*``: ``proba_0`` -> ``0``); a pattern without ``*`` names the class by the whole column
    name. The first pattern a column matches decides.

    Raises:
        LabelqaError: A pattern matching no column, or two columns giving the same class.
    """
    skip = {e for e in exclude if e is not None}
    regexes = [(p, _pattern_regex(p)) for p in patterns]
    cols: list[str] = []
    classes: list[str] = []
    used = set()
    for name in names:
        if name in skip:
            continue
        for pat, rx in regexes:
            m = rx.match(name)
            if m is not None:
                cols.append(name)
                classes.append(m.group(1))
                used.add(pat)
                break
    unused = [p for p in patterns if p not in used]
    if unused:
        raise LabelqaError(f"{source}: no column matches {unused[0]!r} of --pred-probs-cols "
                           f"(available columns: {', '.join(list(names)[:20])}{' ...' if len(names) > 20 else ''})",
                           hint="give one pattern per group of probability columns, e.g. --pred-probs-cols 'p_*'")
    seen: dict[str, str] = {}
    for col, cls in zip(cols, classes):
        if cls == "":
            raise LabelqaError(f"{source}: column {col!r} gives an empty class name with --pred-probs-cols",
                               hint="the * of a pattern must match the class part of the name")
        if cls in seen:
            raise LabelqaError(f"{source}: columns {seen[cls]!r} and {col!r} both give class {cls!r}",
                               hint="make --pred-probs-cols match one column per class")
        seen[cls] = col
    return cols, classes


def order_prob_columns(prob_cols: Sequence[str], classes: Sequence[Any] | None, source: str, classes_source: str) -> list[str]:
    """The ``prob_<class>`` columns in class order (file order when ``classes`` is None)."""
    if classes is None:
        return list(prob_cols)
    wanted = [PROB_PREFIX + str(c) for c in classes]
    missing = [w for w in wanted if w not in prob_cols]
    extra = [c for c in prob_cols if c not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append("no column " + ", ".join(repr(m) for m in missing[:8]) + (" ..." if len(missing) > 8 else ""))
        if extra:
            parts.append(
                "column " + ", ".join(repr(e) for e in extra[:8]) + (" ..." if len(extra) > 8 else "") + " matches no class"
            )
        raise LabelqaError(
            f"{source}: {len(prob_cols)} prob_* columns but {len(classes)} classes from {classes_source}: " + "; ".join(parts),
            hint="give exactly one class per prob_<class> column",
        )
    return wanted


def _float_type_for(types: Sequence[pa.DataType]) -> np.dtype:
    return np.dtype(np.float32) if all(pa.types.is_float32(t) for t in types) else np.dtype(np.float64)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)


def prob_columns_to_matrix(table: pa.Table, cols: Sequence[str], source: str, rows: Rows) -> np.ndarray:
    """Stack ``prob_<class>`` columns into an N x K matrix (float32 if all are float32)."""
    n = table.num_rows
    types = []
    for c in cols:
        col = table.column(c)
        if not _is_numeric(col.type) and not pa.types.is_null(col.type):
            raise LabelqaError(
                f"{source}, column {c!r}: probabilities have type {col.type}; expected numbers",
                hint="a prob_<class> column must hold one number per row",
            )
        if col.null_count:
            bad = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
            raise LabelqaError(
                f"{source}, column {c!r}: {count_rows(len(bad))} without a probability (empty or null): {rows.many(bad)}",
                hint="every row needs a probability for every class",
            )
        types.append(col.type)
    dtype = _float_type_for(types)
    P = np.empty((n, len(cols)), dtype=dtype)
    for j, c in enumerate(cols):
        col = table.column(c)
        if col.type != pa.from_numpy_dtype(dtype):
            col = pc.cast(col, pa.from_numpy_dtype(dtype))
        a = 0
        for chunk in col.chunks:  # write chunk by chunk: no concatenated temporary
            m = len(chunk)
            if m:
                P[a : a + m, j] = _chunk_values(chunk, dtype)
            a += m
    return P


# ----------------------------------------------------- list<float> columns


def _json_lists_fast(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Parse JSON list strings with pyarrow's JSON reader; ``None`` if anything is off.

    Each string becomes a line ``{"p": <string>}`` of one contiguous buffer
    (nulls become ``null``), read with an explicit ``list<double>`` schema.
    """
    import pyarrow.json as pajson

    schema = pa.schema([("p", pa.list_(pa.float64()))])
    out = []
    for chunk in col.chunks:
        if len(chunk) == 0:
            continue
        t = chunk.type
        lines = pc.binary_join_element_wise(
            pa.scalar('{"p":', t), pc.fill_null(chunk, pa.scalar("null", t)), pa.scalar("}\n", t), pa.scalar("", t)
        )
        _validity, offsets_buf, data_buf = lines.buffers()[:3]
        width = 8 if pa.types.is_large_string(lines.type) else 4
        offsets = np.frombuffer(offsets_buf, dtype=np.int64 if width == 8 else np.int32, count=len(lines) + 1,
                                offset=lines.offset * width)
        body = data_buf[int(offsets[0]) : int(offsets[-1])]
        try:
            table = pajson.read_json(
                pa.BufferReader(body),
                read_options=pajson.ReadOptions(block_size=max(1 << 20, min(len(body) + 1, 1 << 26))),
                parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        if table.num_rows != len(chunk):  # a cell held a newline or several objects
            return None
        out.extend(table.column("p").chunks)
    return pa.chunked_array(out, type=schema.field("p").type)


def parse_json_list_strings(
    col: pa.ChunkedArray, where: str, rows: Rows, words: ListWords = PROBABILITY_WORDS
) -> pa.ChunkedArray:
    """Strings such as ``"[0.1, 0.9]"`` (CSV) to ``list<double>``, vectorised.

    The fast path uses the JSON reader; if it fails, a regex pass finds the
    offending row (or accepts ``NaN``/``Infinity``, which JSON does not).
    """
    fast = _json_lists_fast(col)
    if fast is not None:
        return fast
    compact = pc.replace_substring_regex(col, pattern=r"\s+", replacement="")
    ok = pc.match_substring_regex(compact, pattern=_JSON_LIST)
    bad_mask = pc.invert(pc.fill_null(ok, True)).to_numpy(zero_copy_only=False)
    if bad_mask.any():
        bad = np.flatnonzero(bad_mask)
        first = col[int(bad[0])].as_py()
        shown = first if len(first) <= 60 else first[:57] + "..."
        raise LabelqaError(
            f"{where}: {rows.one(int(bad[0]))} does not hold a JSON list of numbers: {shown!r} "
            f"({count_rows(len(bad))} in all)",
            hint=words.json_hint,
        )
    inner = pc.utf8_slice_codeunits(compact, 1, -1)
    empty = pc.fill_null(pc.equal(inner, ""), False).to_numpy(zero_copy_only=False)
    if empty.any():
        bad = np.flatnonzero(empty)
        raise LabelqaError(
            f"{where}: {count_rows(len(bad))} {words.empty_list}: {rows.many(bad)}",
            hint=words.need,
        )
    parts = pc.split_pattern(inner, pattern=",")
    return pc.cast(parts, pa.list_(pa.float64()))


def list_column_to_matrix(
    col: pa.ChunkedArray, where: str, rows: Rows, words: ListWords = PROBABILITY_WORDS
) -> np.ndarray:
    """A list<number> column (list, large_list, fixed_size_list; or JSON strings) to N x K.

    Float32 items stay float32; other numbers become float64. Null lists, null
    items and rows of differing lengths are errors naming the rows. ``words``
    says what the lists hold in messages (:data:`PROBABILITY_WORDS`,
    :data:`EMBEDDING_WORDS`).
    """
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if col.num_chunks == 1:
        dense = dense_list_view(col.chunk(0))
        if dense is not None:
            return dense
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        if col.null_count == len(col):
            raise LabelqaError(f"{where}: the column is empty", hint=words.empty_hint)
        col = parse_json_list_strings(col, where, rows, words)
    if not is_list_type(col.type):
        raise LabelqaError(
            f"{where}: column has type {col.type}; expected {words.expected}",
            hint=words.type_hint,
        )
    value_type = col.type.value_type
    if not (_is_numeric(value_type) or pa.types.is_null(value_type)):
        raise LabelqaError(
            f"{where}: list items have type {value_type}; expected numbers",
            hint=words.items_hint,
        )
    n = len(col)
    if col.null_count:
        bad = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
        raise LabelqaError(
            f"{where}: {count_rows(len(bad))} {words.null_list}: {rows.many(bad)}",
            hint=words.need,
        )
    if pa.types.is_fixed_size_list(col.type):
        k = col.type.list_size
    else:
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        counts = np.bincount(lengths) if n else np.zeros(1, np.int64)
        if len(counts) > 1:
            counts[0] = 0  # an empty list is never the expected length
        k = int(counts.argmax())
        bad = np.flatnonzero(lengths != k)
        if len(bad):
            first = int(bad[0])
            raise LabelqaError(
                f"{where}: {words.ragged}: {rows.one(first)} has {int(lengths[first])} "
                f"but most rows have {k} ({count_rows(len(bad))} in all: "
                f"{rows.many(bad, lambda i: f'{int(lengths[i])} items')})",
                hint=words.ragged_hint,
            )
    values = pc.list_flatten(col)
    if values.null_count:
        null_at = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        bad_rows = np.unique(null_at // max(k, 1))
        first = int(null_at[0])
        raise LabelqaError(
            f"{where}: {count_rows(len(bad_rows))} {words.null_item}: {rows.one(first // k)} item {first % k}"
            + (f" ({rows.many(bad_rows)})" if len(bad_rows) > 1 else ""),
            hint=words.null_item_hint,
        )
    dtype = _float_type_for([value_type])
    arrow_dtype = pa.from_numpy_dtype(dtype)
    if values.type != arrow_dtype:
        values = pc.cast(values, arrow_dtype)
    if values.num_chunks == 1:
        flat = _chunk_values(values.chunk(0), dtype)
    else:
        flat = np.empty(len(values), dtype=dtype)
        a = 0
        for chunk in values.chunks:
            flat[a : a + len(chunk)] = _chunk_values(chunk, dtype)
            a += len(chunk)
    return flat.reshape(n, k)


def dense_list_view(arr: pa.Array) -> np.ndarray | None:
    """The N x K float matrix a null-free list<float> array already holds, as a zero-copy view.

    The common case (every row a list of K float32/float64 numbers, no nulls)
    needs no kernels: the offsets buffer is checked to step by K and the
    values buffer is viewed. Anything else returns ``None`` and goes the
    general way, which also names the offending rows.
    """
    t = arr.type
    if arr.null_count or not is_list_type(t):
        return None
    if not (pa.types.is_float32(t.value_type) or pa.types.is_float64(t.value_type)) or len(arr) == 0:
        return None
    dtype = np.dtype(np.float32 if pa.types.is_float32(t.value_type) else np.float64)
    n = len(arr)
    if pa.types.is_fixed_size_list(t):
        k, first = t.list_size, arr.offset * t.list_size
    else:
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32 if pa.types.is_list(t) else np.int64,
                                count=n + 1, offset=arr.offset * (4 if pa.types.is_list(t) else 8))
        first, k = int(offsets[0]), int(offsets[1] - offsets[0])
        if np.any(np.diff(offsets) != k):
            return None
    values = arr.values.slice(first, n * k)  # .values ignores the parent's offset
    if k == 0 or values.null_count:
        return None
    return _chunk_values(values, dtype).reshape(n, k)


def _chunk_values(chunk: pa.Array, dtype: np.dtype) -> np.ndarray:
    """A null-free numeric Arrow chunk as a numpy view of its data buffer.

    ``to_numpy(zero_copy_only=False)`` takes a slow conversion path for the
    (nullable) child arrays Parquet readers produce; the data buffer itself is
    already the right layout.
    """
    if chunk.null_count == 0 and chunk.type == pa.from_numpy_dtype(dtype):
        buf = chunk.buffers()[1]
        return np.frombuffer(buf, dtype=dtype, count=len(chunk), offset=chunk.offset * np.dtype(dtype).itemsize)
    return chunk.to_numpy(zero_copy_only=False)


#: Rows per decoded batch of a Parquet row group (1M x 100 float32: 6.5 MB a batch) ...
PARQUET_BATCH_ROWS = 16_384
#: ... and at most about this many values: wide rows in 16k-row batches made 64 MB decode buffers at K = 1,000,
#: reallocated and page-faulted batch after batch (200k x 1,000: 2.1-2.8 -> 1.7-1.8 s of CPU).
PARQUET_BATCH_VALUES = 1 << 21


def _values_per_row(pf: Any, col: str) -> float:
    """The mean number of leaf values per row of list column ``col``, from the file's metadata (0 if unknown)."""
    meta = pf.metadata
    leaves = [i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] == col]
    if len(leaves) != 1 or meta.num_rows == 0:
        return 0.0
    values = sum(meta.row_group(g).column(leaves[0]).num_values for g in range(meta.num_row_groups))
    return values / meta.num_rows


def parquet_list_column_to_matrix(path: Any, col: str, where: str, rows: Rows,
                                  on_rows: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray | None:
    """:func:`list_column_to_matrix` of a Parquet column, filled batch by batch.

    Row groups are decoded on :func:`labelqa.parallel.worker_count` threads
    (pyarrow and the copy release the GIL), each in batches of
    :data:`PARQUET_BATCH_ROWS` rows (fewer for wide rows: :data:`PARQUET_BATCH_VALUES`
    values) copied into the result as they come: the
    decoder's buffers stay small and warm, so far less fresh memory is touched
    than when decoding whole row groups (1M x 100, 10 row groups, two threads:
    0.35-0.38 s and 960 MB peak instead of 0.5-1.2 s and 1.3-1.45 GB, the
    matrix included). A file of one row group is viewed in place instead (no
    copy). Same checks and messages, with global row numbers; when several
    parts are bad, the first one's error is raised. Returns ``None`` for a
    file without row groups.

    ``on_rows(start, rows)`` is called (on the decoding threads) with each
    batch's rows of the result as soon as they are copied in, still in cache
    (e.g. :meth:`labelqa.data.probabilities.RowFacts.add`); not for a file of
    one row group, whose matrix is not copied.
    """
    import threading

    import pyarrow.parquet as pq

    from labelqa.parallel import thread_map

    # One memory map shared by every reader (positional reads of a mapped file are thread-safe): per-thread
    # mappings would each count the file's pages in the resident set. Buffers keep their region mapped.
    source = pa.memory_map(os.fspath(path))
    pf = pq.ParquetFile(source)
    n = pf.metadata.num_rows
    if pf.num_row_groups == 0 or n == 0:
        return None
    if pf.num_row_groups == 1:  # one chunk: its dense values are viewed in place, no copy
        return list_column_to_matrix(pf.read_row_group(0, columns=[col]).column(0), where, rows)
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    batch_rows = max(1, min(PARQUET_BATCH_ROWS, int(PARQUET_BATCH_VALUES // max(_values_per_row(pf, col), 1.0))))
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    local = threading.local()
    lock = threading.Lock()
    state: dict[str, Any] = {"out": None, "first": None}  # the matrix, and the first row of the part that sized it

    def fill(i: int) -> None:
        if sizes[i] == 0:
            return
        handle = getattr(local, "pf", None)
        if handle is None:
            handle = local.pf = pq.ParquetFile(source)
        start = int(starts[i])
        for batch in handle.iter_batches(batch_size=batch_rows, row_groups=[i], columns=[col],
                                         use_threads=False):
            part = list_column_to_matrix(batch.column(0), where, rows.slice(start, batch.num_rows))
            with lock:
                if state["out"] is None:
                    state["out"], state["first"] = np.empty((n, part.shape[1]), dtype=part.dtype), start
                out, first = state["out"], state["first"]
            if part.shape[1] != out.shape[1]:
                later, k_early, k_late = ((start, out.shape[1], part.shape[1]) if start > first
                                          else (first, part.shape[1], out.shape[1]))
                raise LabelqaError(
                    f"{where}: probability lists differ in length: {rows.one(later)} has {k_late} "
                    f"but earlier rows have {k_early}",
                    hint="every row needs exactly one probability per class",
                )
            out[start : start + len(part)] = part
            if on_rows is not None:
                on_rows(start, out[start : start + len(part)])
            start += len(part)

    for _ in thread_map(fill, range(pf.num_row_groups), parallel=n >= 1 << 16):
        pass
    return state["out"]
