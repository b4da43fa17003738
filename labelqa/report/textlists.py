"""Make list columns CSV-friendly, vectorised (CSV has no list type).

Numeric lists become JSON-style text ``"[0.1,0.9]"`` (which ``labelqa.load``
reads back as a probability or embedding column); lists of labels become
``"a|b"`` (read back with ``--label-sep '|'``).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.arrays import is_list_type

LABEL_SEP = "|"


def lists_to_text(table: pa.Table) -> pa.Table:
    """Return ``table`` with every list column replaced by its text form."""
    for i, field in enumerate(table.schema):
        if not is_list_type(field.type):
            continue
        col = table.column(i)
        inner = field.type.value_type
        as_text = pc.cast(col, pa.list_(pa.string()))
        if pa.types.is_integer(inner) or pa.types.is_floating(inner):
            text = pc.binary_join_element_wise("[", pc.binary_join(as_text, ","), "]", "")
        else:
            text = pc.binary_join(as_text, LABEL_SEP)
        table = table.set_column(i, field.name, text)
    return table
