"""labelqa.data.ids: the id column's values (no nulls, unique) or the row index."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from labelqa.data.build import build_label_data
from labelqa.data.ids import batch_ids, convert_ids
from labelqa.errors import LabelqaError

P = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.25, 0.25, 0.5]])


def test_ids_are_kept():
    d = build_label_data([0, 1, 2, 2], P, ids=["w", "x", "y", "z"], id_col="id")
    assert d.ids.tolist() == ["w", "x", "y", "z"] and d.id_col == "id"
    assert build_label_data([0, 1, 2, 2], P, ids=np.array([5, 6, 7, 8], np.int32)).ids.dtype == np.int64


def test_duplicate_and_null_ids():
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'id': 1 duplicate ids \(1 values repeated\): 'x' in rows 0, 2 -- ids must be unique"):
        build_label_data([0, 1, 2, 2], P, ids=["x", "y", "x", "z"], source="d.csv", id_col="id")
    with pytest.raises(LabelqaError, match=r"1 row has no id: row 3"):
        build_label_data([0, 1, 2, 2], P, ids=[1, 2, 3, None], id_col="id")
    with pytest.raises(LabelqaError, match=r"3 ids for 4 rows"):
        build_label_data([0, 1, 2, 2], P, ids=[1, 2, 3])
