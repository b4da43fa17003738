"""The provenance columns of a cleaned table: what the label was, what it is now, and why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["PROVENANCE_COLUMNS", "with_provenance"]

#: Columns appended to every cleaned table (an earlier cleaning's are replaced).
PROVENANCE_COLUMNS = ("label_original", "label_fixed", "fix_action")


def with_provenance(table: pa.Table, label_col: str, original: Any, fixed: Any, actions: np.ndarray) -> pa.Table:
    """``table`` with ``fixed`` as its label column and the provenance columns appended.

    Args:
        table: The data as read.
        label_col: Its label column.
        original: The labels as read (becomes ``label_original``).
        fixed: The labels after cleaning (the label column and ``label_fixed``).
        actions: One action name per row (``fix_action``).
    """
    out = table.drop_columns([name for name in PROVENANCE_COLUMNS if name in table.column_names and name != label_col])
    out = out.set_column(out.column_names.index(label_col), label_col, fixed)
    out = out.append_column("label_original", original)
    out = out.append_column("label_fixed", fixed)
    return out.append_column("fix_action", pa.array(actions.astype(str), type=pa.string()))
