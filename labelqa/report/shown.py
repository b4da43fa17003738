"""Data columns shown beside the flagged rows (``--show-cols``): text, numbers and image thumbnails.

:func:`shown_columns` reads the chosen columns of the data file for the
report's best-ranked flagged rows only, and turns each into a display column
tagged with its kind in the Arrow field metadata (``labelqa.show``: ``text``,
``number`` or ``image``; images become PNG thumbnails, see
:mod:`labelqa.report.thumbnails`). The report folder keeps them in
shown.parquet, so ``labelqa report`` and ``labelqa export`` show them too;
:func:`attach` adds them to a table of top rows and :func:`shown_fields`
lists them for the renderers (terminal, summary.md, report.html, exports),
which escape and truncate the text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from labelqa.errors import LabelqaError

__all__ = ["SHOW_KEY", "SHOWN_FILE", "attach", "display_text", "read_shown", "shown_columns", "shown_fields"]

#: Field metadata key holding a shown column's kind.
SHOW_KEY = b"labelqa.show"

#: The report folder's file of shown columns.
SHOWN_FILE = "shown.parquet"


def _kind_field(name: str, array: pa.Array, kind: str) -> tuple[pa.Field, pa.Array]:
    return pa.field(name, array.type, metadata={SHOW_KEY: kind.encode()}), array


def shown_columns(source: str | os.PathLike[str], columns: list[str], ids: pa.Array | pa.ChunkedArray, *,
                  id_col: str | None = None, input_format: str | None = None) -> pa.Table:
    """The ``columns`` of the data file for the rows ``ids``, as display columns (plus ``id``).

    Args:
        source: The data file the scan read.
        columns: Columns to show.
        ids: Ids of the rows to show (the ``id`` column of the top rows).
        id_col: The id column of the data, or ``None`` when ids are row positions.
        input_format: The data file's format, when not told by its suffix.

    Raises:
        LabelqaError: A column that is not in the file, or ids that are not in it.
    """
    from labelqa.data.readers import read_table
    from labelqa.report.thumbnails import looks_like_image_column, thumbnails

    wanted = list(dict.fromkeys(columns))
    table = read_table(source, input_format, ([id_col] if id_col else []) + wanted)
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if id_col:
        positions = pc.index_in(ids.cast(pa.string()), value_set=table.column(id_col).cast(pa.string()))
    else:
        positions = ids.cast(pa.int64())
    if positions.null_count:
        raise LabelqaError(f"{source}: the report's ids are not in the data's {id_col or 'row positions'}",
                           "pass the same --id-col as the scan")
    rows = table.take(positions)
    fields, arrays = [pa.field("id", ids.type)], [ids]
    base = Path(source).parent
    for name in wanted:
        col = rows.column(name).combine_chunks()
        t = col.type
        values = None
        if pa.types.is_dictionary(t):
            col = col.dictionary_decode()
            t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            values = col.to_pylist()
        if values is not None and looks_like_image_column(values):
            field, array = _kind_field(name, pa.array(thumbnails(values, base=base), pa.binary()), "image")
        elif values is None:
            field, array = _kind_field(name, col, "number")
        else:
            field, array = _kind_field(name, col.cast(pa.string()) if not pa.types.is_list(t) else
                                       pa.array([None if v is None else str(v) for v in values], pa.string()), "text")
        fields.append(field)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def shown_fields(table: pa.Table) -> list[tuple[str, str]]:
    """``(column, kind)`` of the shown columns of ``table``, in order."""
    out = []
    for field in table.schema:
        meta = field.metadata or {}
        if SHOW_KEY in meta:
            out.append((field.name, meta[SHOW_KEY].decode()))
    return out


def attach(top: pa.Table, shown: pa.Table | None) -> pa.Table:
    """``top`` with the shown columns of its rows appended (matched on ``id``; a name already in ``top`` gets a
    ``data:`` prefix)."""
    if shown is None or top.num_rows == 0 and not top.column_names:
        return top
    index = pc.index_in(top.column("id").cast(pa.string()), value_set=shown.column("id").cast(pa.string()))
    for field in shown.schema:
        if field.name == "id":
            continue
        array = shown.column(field.name).take(index)
        name = field.name if field.name not in top.column_names else f"data:{field.name}"
        top = top.append_column(pa.field(name, field.type, metadata=field.metadata), array)
    return top


def read_shown(report_dir: str | os.PathLike[str]) -> pa.Table | None:
    """shown.parquet of a report folder, or ``None`` when the scan showed no columns."""
    path = Path(report_dir) / SHOWN_FILE
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    return pq.read_table(path)


def display_text(value: Any, limit: int) -> str:
    """A cell as plain one-line text, cut to ``limit`` characters (with an ellipsis)."""
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "\u2026"
