"""labelqa.jsonable: plain JSON values from numpy, tuples, paths; NaN and infinity become null."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.jsonable import jsonable


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                          st.booleans(), st.none()), max_size=20))
def test_number_rows_match_the_element_wise_rules(values):
    """The vectorised path for rows of numbers gives what the per-element rules give (NaN/inf -> None)."""
    expected = [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
    assert jsonable(values) == expected
    assert jsonable(tuple(values)) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12),
       st.sampled_from([np.float32, np.float64]))
def test_numpy_arrays_become_lists_that_json_accepts(values, dtype):
    arr = np.asarray(values, dtype=dtype)
    out = jsonable({"row": arr, "matrix": np.stack([arr, arr]) if arr.size else arr})
    text = json.dumps(out, allow_nan=False)  # raises on any NaN or infinity left
    assert json.loads(text)["row"] == [float(v) if np.isfinite(v) else None for v in arr]


def test_known_values():
    value = {
        1: np.int64(3),
        "f": np.float32(0.5),
        "nan": np.float64("nan"),
        "inf": -math.inf,
        "b": np.bool_(True),
        "t": (1, 2.5, "x"),
        "p": Path("/tmp/a"),
        "nested": [{"k": np.array([[1, 2], [3, 4]], dtype=np.int32)}],
        "none": None,
        "set": {3},
    }
    assert jsonable(value) == {
        "1": 3,
        "f": 0.5,
        "nan": None,
        "inf": None,
        "b": True,
        "t": [1, 2.5, "x"],
        "p": "/tmp/a",
        "nested": [{"k": [[1, 2], [3, 4]]}],
        "none": None,
        "set": "{3}",
    }
    out = jsonable(value)
    assert type(out["1"]) is int and type(out["b"]) is bool and type(out["f"]) is float
    assert jsonable([True, 1, 2.0]) == [True, 1, 2.0] and type(jsonable([True, 1])[0]) is bool


def test_matrix_list_is_the_nested_lists_and_keeps_its_array():
    """Equal to tolist() and dumped as such; the array it holds is a read-only copy, and survives pickling."""
    import json
    import pickle

    from labelqa.jsonable import MatrixList, matrix_list

    source = np.array([[1.5, 0.0], [0.25, 2.0]])
    m = matrix_list(source)
    assert isinstance(m, MatrixList) and m == source.tolist()
    assert json.dumps(m) == json.dumps(source.tolist()) and jsonable(m) == source.tolist()
    source[0, 0] = 9.0  # the caller's array changing later does not reach it
    assert m.array[0, 0] == 1.5 and not m.array.flags.writeable
    assert np.array_equal(pickle.loads(pickle.dumps(m)).array, m.array)


def test_summary_matrix_lists_only_what_summary_json_shows():
    """Up to MATRIX_INLINE_CLASSES classes nested lists (summary.json shows them); above, a read-only array copy
    that jsonable still turns into the same lists."""
    from labelqa.jsonable import MATRIX_INLINE_CLASSES, MatrixList, summary_matrix

    rng = np.random.default_rng(0)
    small = rng.random((MATRIX_INLINE_CLASSES, MATRIX_INLINE_CLASSES))
    assert isinstance(summary_matrix(small), MatrixList) and summary_matrix(small) == small.tolist()
    big = rng.random((MATRIX_INLINE_CLASSES + 1, MATRIX_INLINE_CLASSES + 1))
    held = summary_matrix(big)
    assert isinstance(held, np.ndarray) and not held.flags.writeable and np.array_equal(held, big)
    big[0, 0] = -1.0  # a copy: the caller's array changing later does not reach it
    assert held[0, 0] != -1.0 and jsonable(held) == held.tolist()


def test_summary_matrices_take_the_detectors_arrays():
    """The summary's matrices are the arrays behind the confident-learning summary's nested lists."""
    from labelqa.data.model import LabelData
    from labelqa.result import summary_matrices
    from labelqa.scan import scan
    from tests.conftest import noisy_dataset

    given, _, probs, _ = noisy_dataset(n=400, k=3, seed=2)
    result = scan(LabelData.from_arrays(given, probs))
    found = summary_matrices(result.outcomes, result.primary, 3)
    cl = result.outcomes["cl"].summary
    assert found["detectors.cl.summary.confident_joint"] is cl["confident_joint"].array
    for key in ("confident_joint", "confident_joint_calibrated", "noise_matrix", "inverse_noise_matrix"):
        assert np.array_equal(found[f"detectors.cl.summary.{key}"], np.asarray(cl[key], dtype=np.float64))
