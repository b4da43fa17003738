"""labelqa.data.labelsets: label sets as lists, delimited strings or a matrix; items, codes, scatter."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data import LabelData
from labelqa.data.build import validated_fields
from labelqa.data.model import LabelData


def build_label_data(*args, **kwargs):
    return LabelData(**validated_fields(*args, **kwargs))
from labelqa.data.labelsets import (
    encode_label_items,
    label_set_items,
    label_sets_from_column,
    scatter_label_sets,
    split_label_strings,
)
from labelqa.data.rows import Rows, Where
from labelqa.errors import LabelqaError


def test_split_label_strings_strips_and_drops_empty_names():
    col = pa.chunked_array([[" cat , dog", None, "", "emu,,", "  "], ["dog"]])
    got = split_label_strings(col, ",", "d.csv, column 'labels'")
    assert got.to_pylist() == [["cat", "dog"], [], [], ["emu"], [], ["dog"]]
    assert split_label_strings(pa.array(["0|3", "", "12"]), "|", "w").type == pa.list_(pa.int64())
    assert split_label_strings(pa.array(["0|03"]), "|", "w").to_pylist() == [["0", "03"]]  # not all canonical ints
    with pytest.raises(LabelqaError, match=r"delimited labels need a string column, got type double"):
        split_label_strings(pa.array([0.5]), ",", "d.csv, column 'labels'")
    with pytest.raises(LabelqaError, match="the label separator is empty"):
        split_label_strings(pa.array(["a"]), "", "w")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.sampled_from(["ant", "bee", "cat", "dog"]), max_size=4), min_size=1, max_size=30),
       st.sampled_from([",", "|", ";", " / "]))
def test_delimited_and_list_forms_agree(sets, sep):
    k = 4
    rng = np.random.default_rng(len(sets))
    probs = rng.random((len(sets), k))
    classes = ["ant", "bee", "cat", "dog"]
    lists = [sorted(s) for s in sets]
    strings = pa.array([sep.join(s) for s in lists])
    a = build_label_data(split_label_strings(strings, sep, "w"), probs, classes=classes, task="multilabel")
    b = LabelData.from_arrays(lists, probs, classes=classes, task="multilabel")
    expected = np.array([[c in s for c in classes] for s in sets], dtype=bool).reshape(len(sets), k)
    np.testing.assert_array_equal(a.labels, expected)
    np.testing.assert_array_equal(b.labels, expected)


WHERE = Where("d.parquet", "labels", None, {})


def test_items_codes_and_scatter():
    arr = pa.array([["b", "a"], [], ["c"]])
    items, parent = label_set_items(arr, WHERE.labels, Rows())
    assert items.to_pylist() == ["b", "a", "c"] and parent.tolist() == [0, 0, 2]
    codes, as_codes = encode_label_items(items, parent, ("a", "b", "c"), WHERE, Rows())
    assert codes.tolist() == [1, 0, 2] and not as_codes
    Y = scatter_label_sets(codes, parent, 3, ("a", "b", "c"), WHERE, Rows())
    np.testing.assert_array_equal(Y, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])
    with pytest.raises(LabelqaError, match=r"class 'a' is listed twice in row 8"):
        scatter_label_sets(np.array([0, 0]), np.array([0, 0]), 1, ("a",), WHERE, Rows(offset=8))
    empty, _ = label_set_items(pa.array([[], []], pa.list_(pa.null())), WHERE.labels, Rows())
    assert empty.type == pa.int64() and len(empty) == 0


def test_item_errors_name_global_rows():
    with pytest.raises(LabelqaError, match=r"1 row has a null label list: row 11 -- write an empty list"):
        label_set_items(pa.array([["a"], None]), WHERE.labels, Rows(offset=10))
    with pytest.raises(LabelqaError, match=r"1 row with a null class in the label list: row 0"):
        label_set_items(pa.array([["a", None]]), WHERE.labels, Rows())


def test_label_sets_from_a_column():
    col = pa.chunked_array([[["a"], []], [["b", "c"]]])
    assert label_sets_from_column(col, None, "w").to_pylist() == [["a"], [], ["b", "c"]]
    assert label_sets_from_column(pa.chunked_array([["a|b", None]]), "|", "w").to_pylist() == [["a", "b"], []]
