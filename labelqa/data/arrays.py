"""Arrow types and arrays: the one list-type check, type names, 1-D conversions (numpy in: :func:`from_numpy`), null rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from labelqa.data.rows import Rows, count_rows
from labelqa.errors import LabelqaError


def is_list_type(t: pa.DataType) -> bool:
    """list, large_list or fixed_size_list."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def is_string_view(t: pa.DataType) -> bool:
    """string_view (pyarrow versions without it have none)."""
    return getattr(pa.types, "is_string_view", lambda _t: False)(t)


def type_name(t: pa.DataType) -> str:
    """A short type name for messages: ``list<string>`` whatever the item field is called."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{type_name(t.value_type)}, {t.list_size}>"
    if pa.types.is_large_list(t):
        return f"large_list<{type_name(t.value_type)}>"
    if pa.types.is_list(t):
        return f"list<{type_name(t.value_type)}>"
    return str(t)


def decoded_type(t: pa.DataType) -> pa.DataType:
    """The value type of a dictionary type; other types unchanged."""
    return t.value_type if pa.types.is_dictionary(t) else t


def one_chunk(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A (chunked) array as one Array, dictionary-decoded."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values


def null_rows(arr: pa.Array) -> np.ndarray:
    """Indices of the null entries of ``arr``."""
    return np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))


def refuse_nulls(arr: pa.Array, where: str, rows: Rows, what: str, hint: str) -> None:
    """Raise ``{where}: 2 rows have {what}: row 3; row 9`` when ``arr`` holds nulls."""
    if arr.null_count:
        bad = null_rows(arr)
        raise LabelqaError(
            f"{where}: {count_rows(len(bad))} {'has' if len(bad) == 1 else 'have'} {what}: {rows.many(bad)}",
            hint=hint,
        )


#: numpy dtypes (native byte order) whose arrays :func:`from_numpy` wraps, and their Arrow types.
_WRAPPED_TYPES = {np.dtype(t): a for t, a in (
    (np.int8, pa.int8()), (np.int16, pa.int16()), (np.int32, pa.int32()), (np.int64, pa.int64()),
    (np.uint8, pa.uint8()), (np.uint16, pa.uint16()), (np.uint32, pa.uint32()), (np.uint64, pa.uint64()),
    (np.float32, pa.float32()), (np.float64, pa.float64()))}


def from_numpy(values: np.ndarray) -> pa.Array:
    """``pa.array(values)`` for a 1-D numpy array: the same array (no nulls, NaN kept as a value).

    Integers and floats are wrapped over their (contiguous) buffer, no copy; bools are bit-packed.
    ``pa.array`` of a numpy array imports ``numpy.ma`` on its first call (~7 ms of a scan's run); other
    dtypes and shapes go to it.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        return pa.array(arr)
    if arr.dtype == np.bool_:
        bits = np.packbits(arr, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), arr.size, [None, pa.py_buffer(bits)], null_count=0)
    arrow_type = _WRAPPED_TYPES.get(arr.dtype)
    if arrow_type is None:
        return pa.array(arr)
    return pa.Array.from_buffers(arrow_type, arr.size, [None, pa.py_buffer(np.ascontiguousarray(arr))], null_count=0)


def to_arrow_1d(values: Any, what: str) -> pa.Array:
    """A 1-D pyarrow Array from a list, numpy array, pandas Series or pyarrow (chunked) array."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 0:
            return pa.array([], type=values.type)
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise LabelqaError(
            f"{what} must be 1-D, got shape {values.shape}",
            hint=f"pass one {what[:-1] if what.endswith('s') else what} per row",
        )
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise LabelqaError(f"{what} must be a sequence, got {type(values).__name__}", hint="pass one value per row")
    try:
        if isinstance(values, np.ndarray) and values.dtype.kind in "US":
            return pa.array(values.astype(object), from_pandas=True)
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise LabelqaError(
            f"{what} mix value types or hold unsupported values ({exc})",
            hint="use integers or strings, one type for all rows",
        ) from exc
