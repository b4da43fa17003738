"""labelqa.data.labels: one label per row, normalized and encoded as class codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data import LabelData
from labelqa.data.labels import class_codes, label_arrow_type, labels_are_codes, normalize_labels
from labelqa.data.rows import Rows
from labelqa.errors import LabelqaError
from tests.conftest import build_label_data

P = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.25, 0.25, 0.5]])


def test_given_classes_with_values_and_with_codes():
    d = LabelData.from_arrays(["b", "a", "c", "a"], P, classes=["c", "b", "a"])
    assert d.labels.tolist() == [1, 2, 0, 2]
    codes = LabelData.from_arrays([0, 1, 2, 1], P, classes=["cat", "dog", "emu"])
    assert codes.classes == ("cat", "dog", "emu") and codes.labels.tolist() == [0, 1, 2, 1]
    assert codes.meta["labels_are_codes"] is True


def test_label_inputs_of_many_kinds():
    for labels in (
        np.array(["a", "b", "c", "a"]),
        pd.Series(["a", "b", "c", "a"], dtype="category"),
        pa.chunked_array([["a", "b"], ["c", "a"]]),
        pa.array(["a", "b", "c", "a"]).dictionary_encode(),
    ):
        assert LabelData.from_arrays(labels, P).labels.tolist() == [0, 1, 2, 0]
    assert LabelData.from_arrays(np.array([0.0, 1.0, 2.0, 0.0]), P).classes == (0, 1, 2)
    assert LabelData.from_arrays(np.array([True, False]), P[:2, :2] / P[:2, :2].sum(1, keepdims=True)).classes == (0, 1)


def test_null_labels_name_the_rows():
    with pytest.raises(LabelqaError, match=r"labels: 1 row has no label: row 2 -- fill in or drop"):
        LabelData.from_arrays(["a", "b", None, "c"], P)
    with pytest.raises(LabelqaError, match=r"2 rows have no label: row 0; row 3"):
        LabelData.from_arrays(pd.Series([np.nan, 1.0, 2.0, np.nan]), P)
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'y': 1 row has no label: row 1 \(id 'k2'\)"):
        build_label_data(["a", None, "b", "c"], P, source="d.csv", label_col="y", ids=["k1", "k2", "k3", "k4"], id_col="id")


def test_label_outside_classes_names_label_row_and_classes():
    with pytest.raises(
        LabelqaError,
        match=r"label 'dgo' in row 1 is not one of the 3 classes \('cat', 'dog', 'emu'\); 1 row in all .*-- fix those labels",
    ):
        LabelData.from_arrays(["cat", "dgo", "emu", "cat"], P, classes=["cat", "dog", "emu"])
    with pytest.raises(LabelqaError, match=r"label 9 in row 3 is not one of the 3 classes \(0, 1, 2\)"):
        LabelData.from_arrays([0, 1, 2, 9], P, classes=["0", "1", "2"])
    with pytest.raises(LabelqaError, match=r"label 3 in row 0 is not a class code 0\.\.2 for the 3 classes \('cat', 'dog', 'emu'\); 1 row in all"):
        LabelData.from_arrays([3, 1, 2, 0], P, classes=["cat", "dog", "emu"])


def test_unsupported_label_types():
    with pytest.raises(LabelqaError, match=r"labels must be integers or strings, found 0\.5 in row 1"):
        LabelData.from_arrays([1.0, 0.5, 2.0, 0.0], P)
    with pytest.raises(LabelqaError, match="mix value types"):
        LabelData.from_arrays(np.array(["a", 1, "b", 2], dtype=object), P)
    with pytest.raises(LabelqaError, match=r"labels have type timestamp"):
        LabelData.from_arrays(pa.array(np.array(["2020-01-01"] * 4, dtype="datetime64[s]")), P)


@pytest.mark.parametrize("arr", [
    pa.array([1, 2], pa.int8()), pa.array([1, 2], pa.uint32()), pa.array([True, False]), pa.array([1.0, 2.0]),
    pa.array(["a", "b"]), pa.array(["a", "b"], pa.large_string()), pa.array(["a", "b"]).dictionary_encode(),
    pa.array([3, 4]).dictionary_encode(),
])
def test_label_arrow_type_is_the_kind_normalize_labels_gives(arr):
    """The streaming source types classes from the schema with label_arrow_type; the loader from the labels:
    both must see integers (or both strings), which is all that typing classes and codes depend on."""
    got, want = normalize_labels(arr, "w", Rows()).type, label_arrow_type(arr.type)
    assert pa.types.is_integer(got) == pa.types.is_integer(want)
    assert got == want or (pa.types.is_large_string(got) and want == pa.string())


def test_codes_or_values():
    assert labels_are_codes(pa.int64(), ("cat", "dog")) and not labels_are_codes(pa.int64(), (0, "dog"))
    assert not labels_are_codes(pa.string(), ("cat", "dog"))
    codes, as_codes, _ = class_codes(pa.array([1, 0, 2]), ("a", "b"))
    assert as_codes and codes.to_pylist() == [1, 0, None]
    codes, as_codes, what = class_codes(pa.array([7, 5]), (5, 7))
    assert not as_codes and codes.to_pylist() == [1, 0] and what == "one of the 2 classes"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 7), st.none()), min_size=1, max_size=40),
       st.sampled_from(["range", "shuffled", "gaps", "names"]), st.sampled_from(["int64", "int32", "uint8"]),
       st.randoms(use_true_random=False))
def test_class_codes_is_the_index_of_each_label(values, kind, dtype, rnd):
    """Every path (0..K-1 classes with all labels in range, any other integer classes, class names with labels
    as codes) gives the label's position in the classes, null where it is not a class."""
    from labelqa.data.labels import class_codes

    k = 5
    classes = {"range": list(range(k)), "gaps": [0, 2, 3, 6, 7], "names": list("abcde")}.get(kind)
    if kind == "shuffled":
        classes = list(range(k))
        rnd.shuffle(classes)
    if dtype == "uint8":
        values = [None if v is None else abs(v) for v in values]
    arr = pa.array(values, type=getattr(pa, dtype)())
    codes, as_codes, _ = class_codes(arr, tuple(classes))
    if kind == "names":
        expected = [v if v is not None and 0 <= v < k else None for v in values]
    else:
        expected = [classes.index(v) if v in classes else None for v in values]
    assert codes.to_pylist() == expected and as_codes == (kind == "names")
