"""Row ids: the id column's values (nulls refused; unique across the data), or the row index."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.arrays import refuse_nulls, to_arrow_1d
from labelqa.data.rows import Rows
from labelqa.errors import LabelqaError


def decode_ids(ids: Any, where: str, rows: Rows) -> pa.Array:
    """Ids as a pyarrow Array without nulls: int64 for integers (uint64 beyond it stays), else as given.

    ``rows`` names the rows without ids (their ids being null, it should hold none).
    """
    arr = to_arrow_1d(ids, "ids")
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    refuse_nulls(arr, where, rows, "no id", "fill in the missing ids, or omit --id-col to use the row index")
    if pa.types.is_integer(arr.type):
        try:
            arr = pc.cast(arr, pa.int64())
        except pa.ArrowInvalid:  # uint64 beyond int64: keep uint64
            pass
    return arr


def batch_ids(ids: Any, n_rows: int, offset: int, where: str) -> np.ndarray:
    """The ids of a batch of ``n_rows`` rows starting at row ``offset`` (the row index when ``ids`` is None).

    Checked for nulls, not for uniqueness (that needs every id).
    """
    if ids is None:
        return np.arange(offset, offset + n_rows, dtype=np.int64)
    return decode_ids(ids, where, Rows(offset=offset)).to_numpy(zero_copy_only=False)


def convert_ids(ids: Any, n_rows: int, where: str, id_col: str | None) -> np.ndarray:
    """Row ids as a numpy array (int64 for integers, object for strings); reject nulls and duplicates."""
    if ids is None:
        return np.arange(n_rows, dtype=np.int64)
    arr = to_arrow_1d(ids, "ids")
    if len(arr) != n_rows:
        raise LabelqaError(f"{where}: {len(arr)} ids for {n_rows} rows", hint="give one id per row")
    arr = decode_ids(arr, where, Rows())
    if pa.types.is_integer(arr.type) and arr.null_count == 0:
        np_ids = arr.to_numpy(zero_copy_only=False)
        if np_ids.size < 2 or bool(np.all(np_ids[1:] > np_ids[:-1])):  # increasing ids (the usual): all distinct
            return np_ids
    n_distinct = pc.count_distinct(arr).as_py()
    if n_distinct != n_rows:
        counts = pc.value_counts(arr)
        values = counts.field("values")
        repeated = pc.filter(values, pc.greater(counts.field("counts"), 1))
        np_ids = arr.to_numpy(zero_copy_only=False)
        shown = []
        for v in repeated[:3].to_pylist():
            where_rows = np.flatnonzero(np_ids == v)[:4]
            shown.append(f"{v!r} in rows {', '.join(str(int(r)) for r in where_rows)}")
        raise LabelqaError(
            f"{where}: {n_rows - n_distinct} duplicate ids ({len(repeated)} values repeated): " + "; ".join(shown),
            hint="ids must be unique so the report can be joined back by id; "
            "pick another --id-col, or omit it to use the row index",
        )
    return arr.to_numpy(zero_copy_only=False)
