"""labelqa.data.ids: the id column's values (no nulls, unique) or the row index."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data.build import validated_fields
from labelqa.data.model import LabelData


def build_label_data(*args, **kwargs):
    return LabelData(**validated_fields(*args, **kwargs))
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


def test_batch_ids_are_the_global_row_index_or_checked_values():
    assert batch_ids(None, 3, 4096, "w").tolist() == [4096, 4097, 4098]
    assert batch_ids(pa.array([5, 6], pa.int32()), 2, 0, "w").dtype == np.int64
    with pytest.raises(LabelqaError, match=r"^d\.parquet, column 'id': 1 row has no id: row 1001 -- fill in"):
        batch_ids(pa.chunked_array([["a", None, "c"]]), 3, 1000, "d.parquet, column 'id'")


def test_convert_ids_keeps_uint64_beyond_int64_and_decodes_dictionaries():
    big = pa.array([2**63, 2**63 + 1], pa.uint64())
    assert convert_ids(big, 2, "w", "id").dtype == np.uint64
    assert convert_ids(pa.array(["x", "y"]).dictionary_encode(), 2, "w", "id").tolist() == ["x", "y"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-5, 40), min_size=1, max_size=40), st.booleans(), st.sampled_from(["int64", "int32", "uint8"]))
def test_integer_ids_pass_exactly_when_distinct(values, sort, dtype):
    """Increasing ids skip the hash count; any order, any integer type: accepted iff no value repeats."""
    values = sorted(values) if sort else values
    if dtype == "uint8":
        values = [abs(v) for v in values]
    arr = np.asarray(values, dtype=dtype)
    if len(set(values)) == len(values):
        assert convert_ids(arr, len(values), "f, column 'id'", "id").tolist() == values
    else:
        with pytest.raises(LabelqaError, match="duplicate ids"):
            convert_ids(arr, len(values), "f, column 'id'", "id")
