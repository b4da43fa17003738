"""labelqa.data.arrays: the one list-type check, type names, 1-D conversions."""

from __future__ import annotations

import importlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelqa.data.arrays import decoded_type, from_numpy, is_list_type, null_rows, one_chunk, to_arrow_1d, type_name
from labelqa.errors import LabelqaError


def test_list_types():
    for t in (pa.list_(pa.string()), pa.large_list(pa.int64()), pa.list_(pa.float32(), 3)):
        assert is_list_type(t)
    for t in (pa.string(), pa.int64(), pa.struct([("a", pa.int64())]), pa.dictionary(pa.int32(), pa.string())):
        assert not is_list_type(t)
    assert importlib.import_module("labelqa.fix").is_list_type is is_list_type  # one definition, used by fix too


def test_type_names_ignore_the_item_field_name():
    assert type_name(pa.list_(pa.field("element", pa.string()))) == "list<string>"
    assert type_name(pa.large_list(pa.list_(pa.int64()))) == "large_list<list<int64>>"
    assert type_name(pa.list_(pa.float32(), 4)) == "fixed_size_list<float, 4>"
    assert decoded_type(pa.dictionary(pa.int8(), pa.string())) == pa.string()


def test_conversions_and_nulls():
    assert to_arrow_1d(pa.chunked_array([[1], [2, 3]]), "labels").to_pylist() == [1, 2, 3]
    assert to_arrow_1d(np.array(["a", "b"]), "labels").type == pa.string()
    assert len(to_arrow_1d(pa.chunked_array([], pa.int64()), "labels")) == 0
    with pytest.raises(LabelqaError, match=r"labels must be 1-D, got shape \(2, 2\)"):
        to_arrow_1d(np.zeros((2, 2)), "labels")
    with pytest.raises(LabelqaError, match="ids must be a sequence, got str"):
        to_arrow_1d("abc", "ids")
    assert one_chunk(pa.chunked_array([pa.array(["x", "y"]).dictionary_encode()])).to_pylist() == ["x", "y"]
    assert null_rows(pa.array([1, None, 2, None])).tolist() == [1, 3]


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(st.sampled_from(["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                                   "float32", "float64", "<U3"]),
                  st.integers(0, 70)),
       st.integers(1, 3), st.integers(0, 5))
def test_from_numpy_is_pa_array(values, step, start):
    """The same array as ``pa.array`` (type, values, NaN as a value, no nulls) for any 1-D numpy array, strided
    slices and odd bool lengths included; the numbers share the array's buffer when it is contiguous."""
    part = values[start::step]
    got = from_numpy(part)
    want = pa.array(part)
    assert got.type == want.type and got.null_count == 0
    np.testing.assert_array_equal(got.to_numpy(zero_copy_only=False), want.to_numpy(zero_copy_only=False))  # NaN = NaN
    got.validate(full=True)
    if part.dtype.kind in "iuf" and part.dtype.isnative and part.flags.c_contiguous and part.size:
        assert got.buffers()[1].address == part.ctypes.data


def test_from_numpy_does_not_import_numpy_ma():
    """Why it exists: ``pa.array`` of a numpy array imports numpy.ma (~7 ms of a scan's start)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from labelqa.data.arrays import from_numpy; "
            "from_numpy(np.arange(5)); from_numpy(np.ones(9, bool)); from_numpy(np.zeros(3, np.float32)); "
            "print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
