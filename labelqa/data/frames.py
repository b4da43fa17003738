"""In-memory data to one :class:`pyarrow.Table`, so the file loader's schema rules apply unchanged.

:func:`as_table` accepts a pandas or polars DataFrame, a pyarrow Table or
RecordBatchReader, a Hugging Face ``datasets.Dataset`` (its Arrow table), or
a dict of arrays/lists. The kind is told from the *module name* of the
object's type, so pandas, polars and datasets are never imported here: a
DataFrame can only exist when its library already is.

2-D numpy arrays (probabilities, embeddings) become ``fixed_size_list``
columns without copying the values. :func:`with_arrays` adds the array form
of ``labels=``, ``pred_probs=`` and ``embeddings=`` to a table (or makes one
from them alone). :func:`like_input` turns a result table back into the kind
of data given (pandas in, pandas out).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from labelqa.errors import LabelqaError

__all__ = ["ARRAY_COLUMNS", "as_table", "describe", "is_array", "is_in_memory", "like_input", "matrix_column",
           "split_arrays", "with_arrays"]

#: Array keyword -> (the load option naming its column, the column it becomes).
ARRAY_COLUMNS = {"labels": ("label_col", "label"), "pred_probs": ("pred_probs_col", "pred_probs"),
                 "embeddings": ("embeddings_col", "embedding")}

_ACCEPTED = ("a path, a pandas/polars DataFrame, a pyarrow Table or RecordBatchReader, a datasets.Dataset, "
             "a dict of arrays, or labels=/pred_probs= arrays")


def _root_module(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


def is_in_memory(obj: Any) -> bool:
    """True for anything :func:`as_table` may take (not a path, not ``None``)."""
    return obj is not None and not isinstance(obj, (str, os.PathLike))


def is_array(value: Any) -> bool:
    """True for values given as data (an array, Series, list of values), not as paths or column names."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return False
    if isinstance(value, (list, tuple)):
        return bool(value) and not all(isinstance(v, (str, os.PathLike)) for v in value)
    return True


def split_arrays(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``labels=`` and array-valued ``pred_probs=``/``embeddings=`` apart from the other keyword options."""
    options = dict(options)
    arrays = {}
    for key in ARRAY_COLUMNS:
        if key in options and (key == "labels" or is_array(options[key])):
            arrays[key] = options.pop(key)
    for key, (option, _column) in ARRAY_COLUMNS.items():
        if key not in arrays and is_array(options.get(option)):
            arrays[key] = options.pop(option)
    return arrays, options


def describe(obj: Any) -> str:
    """A short name of in-memory data for messages (``"pandas DataFrame"``, ``"dict of arrays"``...)."""
    if isinstance(obj, Mapping):
        return "dict of arrays"
    return f"{_root_module(obj)} {type(obj).__name__}"


def matrix_column(values: Any, what: str) -> pa.Array:
    """A column from an array-like: 2-D -> ``fixed_size_list<float>`` (no copy of C-contiguous data), 1-D as is."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if _root_module(values) in ("pandas", "polars") and hasattr(values, "to_numpy"):
        values = values.to_numpy()
    if _root_module(values) == "torch":
        raise LabelqaError(f"{what} is a torch tensor", "pass tensor.detach().cpu().numpy()")
    arr = np.asarray(values) if not isinstance(values, list) or not values or not isinstance(
        values[0], (list, tuple, set)) else None
    if arr is None:  # a list of label sets (multi-label)
        return pa.array([list(v) for v in values])
    if arr.dtype == object:
        try:
            return pa.array(arr.tolist())
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise LabelqaError(f"{what} cannot be read as a column: {exc}") from exc
    if arr.ndim == 1:
        return pa.array(arr)
    if arr.ndim != 2:
        raise LabelqaError(f"{what} has shape {arr.shape}", "pass one value or one row of values per data row")
    flat = np.ascontiguousarray(arr).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), arr.shape[1])


def as_table(obj: Any) -> pa.Table:
    """In-memory data as a pyarrow Table (zero-copy where the source allows).

    Raises:
        LabelqaError: An object of another kind, or one that cannot be converted.
    """
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatchReader):
        return obj.read_all()
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    root = _root_module(obj)
    try:
        if isinstance(obj, Mapping):
            if not obj:
                raise LabelqaError("the dict of arrays is empty", "pass {'label': [...], 'pred_probs': N x K array}")
            return pa.table({str(k): matrix_column(v, f"dict entry {k!r}") for k, v in obj.items()})
        if root == "pandas" and hasattr(obj, "columns"):
            return _from_pandas(obj)
        if root == "polars" and hasattr(obj, "to_arrow"):
            return obj.to_arrow()
        if root == "datasets" and hasattr(obj, "data"):
            table = obj.data  # datasets.table.Table wrapping a pyarrow Table (memory-mapped for cached sets)
            table = getattr(table, "table", table)
            if getattr(obj, "_indices", None) is not None:  # a shuffled/filtered view: materialise it
                table = obj.flatten_indices().data
                table = getattr(table, "table", table)
            return table
        if hasattr(obj, "__arrow_c_stream__"):  # any Arrow PyCapsule producer (duckdb, pyarrow>=14 ...)
            return pa.table(obj)
    except LabelqaError:
        raise
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise LabelqaError(f"cannot read the {describe(obj)} as a table: {exc}",
                           "give columns of numbers, strings or lists of them") from exc
    raise LabelqaError(f"cannot read data of type {type(obj).__module__}.{type(obj).__name__}",
                       f"pass {_ACCEPTED}")


def _from_pandas(df: Any) -> pa.Table:
    """A pandas DataFrame as a table; cells holding numpy arrays (embeddings) become list columns."""
    columns = {}
    for name in df.columns:
        series = df[name]
        if series.dtype == object and len(series) and isinstance(series.iloc[0], np.ndarray):
            columns[str(name)] = matrix_column(np.stack(series.to_numpy()), f"column {name!r}")
        else:
            columns[str(name)] = pa.Array.from_pandas(series)
    return pa.table(columns)


def with_arrays(data: Any, arrays: Mapping[str, Any], options: dict[str, Any]) -> tuple[pa.Table, dict[str, Any]]:
    """``data`` (or nothing) plus the arrays given as ``labels=``/``pred_probs=``/``embeddings=`` as one table.

    Returns the table and the load options pointing at the added columns.
    """
    table = as_table(data) if data is not None else None
    options = dict(options)
    added = {}
    for key, (option, column) in ARRAY_COLUMNS.items():
        value = arrays.get(key)
        if value is None:
            continue
        added[column] = matrix_column(value, f"{key}=")
        options[option] = column
    if table is None:
        if "label" not in added:
            raise LabelqaError("no data: pass a table/DataFrame or labels= (and pred_probs=) arrays")
        lengths = {len(c) for c in added.values()}
        if len(lengths) > 1:
            raise LabelqaError(f"arrays of different lengths: {', '.join(f'{k} {len(v)}' for k, v in added.items())}",
                               "pass one value per row in each")
        return pa.table(added), options
    for column, values in added.items():
        if len(values) != table.num_rows:
            raise LabelqaError(f"{column} array has {len(values)} rows but the data has {table.num_rows}",
                               "pass one value per data row, in the same order")
        name = column
        while name in table.column_names:  # never shadow a user column
            name = "_" + name
        table = table.append_column(name, values)
        option = next(o for o, c in ARRAY_COLUMNS.values() if c == column)
        options[option] = name
    return table, options


def _column_values(column: Any) -> Any:
    """A column as numpy (lists of lists for variable-length list columns, a 2-D array for fixed-size ones)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(arr.type) and arr.null_count == 0:
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        values = np.empty(len(arr), dtype=object)
        values[:] = arr.to_pylist()
        return values
    return arr.to_numpy(zero_copy_only=False)


def like_input(original: Any, table: pa.Table, rows: np.ndarray, replace: tuple[str, ...] = ()) -> Any:
    """``table`` as the kind of data ``original`` was: a pandas or polars DataFrame, a ``datasets.Dataset``,
    a dict of numpy arrays (for a dict or arrays given alone), else a :class:`pyarrow.Table`.

    ``table`` holds the input rows ``rows`` (positions in ``original``, in order). A pandas result is
    ``original``'s own rows (index and column dtypes kept) with the columns of ``table`` that it lacks,
    or that are named in ``replace``, set from ``table``.
    """
    root = _root_module(original)
    if root == "pandas" and hasattr(original, "iloc"):
        out = original.iloc[np.asarray(rows, dtype=np.int64)].copy()
        present = {str(c) for c in original.columns}
        for name in table.column_names:
            if name not in present or name in replace:
                values = _column_values(table.column(name))
                out[name] = list(values) if getattr(values, "ndim", 1) == 2 else values
        return out
    if root == "polars":
        import polars

        return polars.from_arrow(table)
    if root == "datasets":
        import datasets

        return datasets.Dataset(table)
    if original is None or isinstance(original, Mapping):
        return {name: _column_values(table.column(name)) for name in table.column_names}
    return table
