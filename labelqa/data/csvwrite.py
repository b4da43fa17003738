"""Write a table as CSV quoting only the cells that need it, vectorised.

pyarrow's CSV writer quotes every text cell, so ``007`` read from a CSV
comes back as ``"007"``. A cleaned copy of a user's CSV should look like the
file that was read: here a cell is quoted only when its text holds a comma,
a double quote or a line break (RFC 4180), and a missing value is an empty
cell. Every column is turned into text by Arrow's own cast, the one
pyarrow's writer uses, so numbers are spelled the same either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Rows turned into text at a time (bounds the memory of the text copy).
BATCH_ROWS = 65536

_NEEDS_QUOTES = r'[",\r\n]'


def _as_text(values: pa.Array) -> pa.Array:
    """One column as CSV cells: text, quoted where needed, missing as empty."""
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    text = pc.if_else(pc.match_substring_regex(text, _NEEDS_QUOTES), quoted, text)
    return pc.fill_null(text, "")


def _lines(columns: list[pa.Array]) -> pa.Buffer:
    """The CSV lines of equally long text columns, each ending in a newline."""
    rows = pc.binary_join_element_wise(*columns, ",") if len(columns) > 1 else columns[0]
    rows = pc.binary_join_element_wise(rows, "", "\n")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset:rows.offset + len(rows) + 1]
    return rows.buffers()[2][int(offsets[0]):int(offsets[-1])]


def write_csv(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` to ``path`` as CSV with a header, quoting only cells that need it.

    List columns must be turned into text first (for instance with
    :func:`labelqa.report.textlists.lists_to_text`); a table without columns
    is an empty file.
    """
    if table.num_columns == 0:
        Path(path).write_bytes(b"")
        return
    with open(path, "wb") as fh:
        fh.write((",".join(_as_text(pa.array(table.column_names, pa.string())).to_pylist()) + "\n").encode())
        for batch in table.to_batches(BATCH_ROWS):
            if batch.num_rows:
                fh.write(_lines([_as_text(col) for col in batch.columns]))
