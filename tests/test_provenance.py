"""Provenance columns: the label column holds the fixed label; an earlier cleaning's columns are replaced."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from labelqa.provenance import PROVENANCE_COLUMNS, with_provenance


def test_label_replaced_and_provenance_appended_once():
    table = pa.table({"id": [1, 2, 3], "label": ["a", "b", "c"], "note": ["x", "y", "z"]})
    fixed = pa.array(["a", "a", "c"])
    out = with_provenance(table, "label", table.column("label"), fixed, np.array(["keep", "relabel", "keep"]))
    assert out.column_names == ["id", "label", "note", *PROVENANCE_COLUMNS]
    assert out.column("label").to_pylist() == ["a", "a", "c"]
    assert out.column("label_original").to_pylist() == ["a", "b", "c"]
    assert out.column("fix_action").to_pylist() == ["keep", "relabel", "keep"]
    # cleaning the cleaned table again: one set of provenance columns, the new one
    again = with_provenance(out, "label", out.column("label"), pa.array(["b", "a", "c"]),
                            np.array(["relabel", "keep", "keep"]))
    assert again.column_names == out.column_names
    assert again.column("label_original").to_pylist() == ["a", "a", "c"]
    assert again.column("id").equals(table.column("id")) and again.column("note").equals(table.column("note"))
