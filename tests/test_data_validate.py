"""labelqa.data.validate: build_label_data / LabelData.from_arrays checks and messages."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelqa.data import LabelData
from labelqa.data.validate import build_label_data, sum_tolerance
from labelqa.errors import LabelqaError

P = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.25, 0.25, 0.5]])


def bad(probs, i, j, value):
    out = np.array(probs, dtype=float)
    out[i, j] = value
    return out


# ------------------------------------------------------------------ happy path


def test_int_codes_give_classes_0_to_k_minus_1():
    d = LabelData.from_arrays([0, 1, 2, 2], P)
    assert d.classes == (0, 1, 2)
    assert d.labels.dtype == np.int64 and d.labels.tolist() == [0, 1, 2, 2]
    assert d.ids.dtype == np.int64 and d.ids.tolist() == [0, 1, 2, 3]
    assert d.meta["classes_source"] == "integer labels as class codes 0..2"
    assert d.n_rows == 4 and d.n_classes == 3


def test_int_codes_in_range_even_when_a_class_is_unused():
    assert LabelData.from_arrays([0, 0, 1, 1], P).classes == (0, 1, 2)


def test_string_labels_give_sorted_unique_classes():
    d = LabelData.from_arrays(["dog", "cat", "emu", "cat"], P)
    assert d.classes == ("cat", "dog", "emu")
    assert d.labels.tolist() == [1, 0, 2, 0]
    assert d.meta["classes_source"] == "sorted unique labels"


def test_ints_outside_range_use_sorted_unique():
    d = LabelData.from_arrays([10, 30, 20, 10], P)
    assert d.classes == (10, 20, 30) and d.labels.tolist() == [0, 2, 1, 0]


def test_given_classes_with_values_and_with_codes():
    d = LabelData.from_arrays(["b", "a", "c", "a"], P, classes=["c", "b", "a"])
    assert d.labels.tolist() == [1, 2, 0, 2]
    codes = LabelData.from_arrays([0, 1, 2, 1], P, classes=["cat", "dog", "emu"])
    assert codes.classes == ("cat", "dog", "emu") and codes.labels.tolist() == [0, 1, 2, 1]
    assert codes.meta["labels_are_codes"] is True


def test_int_labels_with_string_classes_match_by_str_and_keep_ints():
    d = LabelData.from_arrays([7, 3, 5, 5], P, classes=["5", "7", "3"])
    assert d.classes == (5, 7, 3) and all(type(c) is int for c in d.classes)
    assert d.labels.tolist() == [1, 2, 0, 0]


def test_string_labels_with_int_classes_become_strings():
    d = LabelData.from_arrays(["1", "0", "2", "2"], P, classes=[0, 1, 2])
    assert d.classes == ("0", "1", "2") and d.labels.tolist() == [1, 0, 2, 2]


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


def test_dtypes_float32_kept_others_float64_and_no_copy():
    p32 = P.astype(np.float32)
    d = LabelData.from_arrays([0, 1, 2, 2], p32)
    assert d.pred_probs.dtype == np.float32 and np.shares_memory(d.pred_probs, p32)
    assert LabelData.from_arrays([0, 1, 2, 2], P.astype(np.float16)).pred_probs.dtype == np.float64
    assert LabelData.from_arrays([0, 1], np.array([[1, 0], [0, 1]])).pred_probs.dtype == np.float64
    d = LabelData.from_arrays([0, 1, 2, 2], pd.DataFrame(P))
    assert d.pred_probs.dtype == np.float64 and d.pred_probs.flags.c_contiguous


def test_arrays_are_read_only():
    d = LabelData.from_arrays([0, 1, 2, 2], P)
    for arr in (d.labels, d.pred_probs, d.ids):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        d.pred_probs[0, 0] = 1.0


def test_ids_are_kept():
    d = build_label_data([0, 1, 2, 2], P, ids=["w", "x", "y", "z"], id_col="id")
    assert d.ids.tolist() == ["w", "x", "y", "z"] and d.id_col == "id"
    assert build_label_data([0, 1, 2, 2], P, ids=np.array([5, 6, 7, 8], np.int32)).ids.dtype == np.int64


def test_meta_and_source():
    d = build_label_data([0, 1, 2, 2], P, source="d.csv", meta={"input_format": "csv", "pred_probs_source": "prob_* columns"})
    assert d.source == "d.csv"
    assert d.meta["input_format"] == "csv" and d.meta["pred_probs_source"] == "prob_* columns"
    assert LabelData.from_arrays([0, 1, 2, 2], P).meta["input_format"] == "arrays"


# -------------------------------------------------------------------- shapes


def test_not_2d_empty_and_one_class():
    with pytest.raises(LabelqaError, match=r"must be 2-D \(rows x classes\), got shape \(4,\) -- .*column_stack"):
        LabelData.from_arrays([0, 1, 0, 1], np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(LabelqaError, match=r"input: no rows"):
        LabelData.from_arrays([], np.zeros((0, 3)))
    with pytest.raises(LabelqaError, match=r"1 probability per row; at least 2 classes are needed"):
        LabelData.from_arrays([0, 0], np.ones((2, 1)))


def test_row_count_mismatch():
    with pytest.raises(LabelqaError, match=r"3 labels but 4 rows of predicted probabilities"):
        LabelData.from_arrays([0, 1, 2], P)


def test_object_and_ragged_probabilities_are_refused():
    with pytest.raises(LabelqaError, match=r"dtype object; expected numbers"):
        LabelData.from_arrays([0, 1], np.array([[0.5, 0.5], [0.1, 0.9]], dtype=object))
    with pytest.raises(LabelqaError, match="not a numeric array|expected numbers"):
        LabelData.from_arrays([0, 1], [[0.5, 0.5], [1.0]])


def test_class_count_mismatch_and_duplicates():
    with pytest.raises(LabelqaError, match=r"3 probabilities per row but 2 classes from classes argument \('a', 'b'\)"):
        LabelData.from_arrays(["a", "b", "a", "a"], P, classes=["a", "b"])
    with pytest.raises(LabelqaError, match=r"duplicate classes in classes argument: 'a' \(2 times\)"):
        LabelData.from_arrays(["a", "b", "a", "a"], P, classes=["a", "b", "a"])
    with pytest.raises(LabelqaError, match=r"duplicate classes .*: 1 \(2 times\)"):
        LabelData.from_arrays([1, 2, 1, 1], P, classes=["1", 1, 2])


def test_ambiguous_classes_error_is_the_documented_one():
    msg = (
        "cannot tell which probability column belongs to which class: found 2 distinct labels "
        "but 3 probability columns -- pass --classes a,b,c or --classes-file"
    )
    with pytest.raises(LabelqaError) as info:
        LabelData.from_arrays(["a", "b", "a", "a"], P)
    assert str(info.value) == msg


# -------------------------------------------------------------------- labels


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


# ----------------------------------------------------------------------- ids


def test_duplicate_and_null_ids():
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'id': 1 duplicate ids \(1 values repeated\): 'x' in rows 0, 2 -- ids must be unique"):
        build_label_data([0, 1, 2, 2], P, ids=["x", "y", "x", "z"], source="d.csv", id_col="id")
    with pytest.raises(LabelqaError, match=r"1 row has no id: row 3"):
        build_label_data([0, 1, 2, 2], P, ids=[1, 2, 3, None], id_col="id")
    with pytest.raises(LabelqaError, match=r"3 ids for 4 rows"):
        build_label_data([0, 1, 2, 2], P, ids=[1, 2, 3])


# ------------------------------------------------------------- probabilities


def test_nan_and_inf_name_row_and_column():
    with pytest.raises(LabelqaError, match=r"pred_probs: 1 row with NaN or infinite probabilities: row 2: column 1 = nan"):
        LabelData.from_arrays([0, 1, 2, 2], bad(P, 2, 1, np.nan))
    probs = bad(bad(P, 0, 2, np.inf), 3, 0, -np.inf)
    with pytest.raises(LabelqaError, match=r"2 rows with NaN or infinite .*row 0: column 2 = inf; row 3: column 0 = -inf"):
        LabelData.from_arrays([0, 1, 2, 2], probs)


def test_messages_use_the_probability_source_and_ids():
    meta = {"pred_probs_source": "prob_* columns", "pred_probs_columns": ["prob_a", "prob_b", "prob_c"]}
    with pytest.raises(LabelqaError, match=r"d\.csv, prob_\* columns: 1 row with NaN .*: row 2 \(id 'r2'\): column 'prob_b' = nan"):
        build_label_data(["a", "b", "c", "c"], bad(P, 2, 1, np.nan), source="d.csv", meta=meta,
                         ids=["r0", "r1", "r2", "r3"], id_col="id")
    meta = {"pred_probs_source": "column pred_probs"}
    with pytest.raises(LabelqaError, match=r"d\.parquet, column 'pred_probs': 1 row with negative .*row 1: item 0 = -0\.2"):
        build_label_data([0, 1, 2, 2], bad(P, 1, 0, -0.2), source="d.parquet", meta=meta)
    meta = {"pred_probs_source": "file probs.npy"}
    with pytest.raises(LabelqaError, match=r"^probs\.npy: 1 row does not sum to 1"):
        build_label_data([0, 1, 2, 2], bad(P, 1, 0, 0.5), source="d.parquet", meta=meta)


def test_negative_and_above_one():
    with pytest.raises(LabelqaError, match=r"1 row with negative probabilities: row 1: column 0 = -0\.2 -- .*softmax"):
        LabelData.from_arrays([0, 1, 2, 2], bad(P, 1, 0, -0.2))
    probs = np.array([[1.5, 0.0], [0.5, 0.5]])
    with pytest.raises(LabelqaError, match=r"1 row with probabilities above 1: row 0: column 0 = 1\.5 -- .*--renormalize"):
        LabelData.from_arrays([0, 1], probs)


def test_rows_not_summing_to_one_are_counted_and_the_first_few_named():
    probs = np.tile([0.5, 0.5], (20, 1))
    off = [1, 3, 4, 7, 8, 11, 15]
    probs[off, 0] = 0.3
    with pytest.raises(LabelqaError) as info:
        LabelData.from_arrays([0, 1] * 10, probs)
    msg = str(info.value)
    assert msg.startswith("pred_probs: 7 rows do not sum to 1 (tolerance 0.001): row 1: sum 0.8; row 3: sum 0.8;")
    assert "row 8: sum 0.8; and 2 more -- pass --renormalize" in msg


def test_tolerance():
    assert sum_tolerance(np.dtype(np.float64), 10) == 1e-3
    assert sum_tolerance(np.dtype(np.float32), 100) == 1e-3
    assert sum_tolerance(np.dtype(np.float32), 10_000) > 1e-3
    ok = np.array([[0.5, 0.5 + 9e-4], [0.5, 0.5]])
    LabelData.from_arrays([0, 1], ok)
    with pytest.raises(LabelqaError, match="do(es)? not sum to 1"):
        LabelData.from_arrays([0, 1], ok + np.array([[0.0, 2e-4], [0, 0]]))


def test_renormalize_and_zero_sum_rows():
    probs = np.array([[2.0, 2.0], [1.0, 3.0], [0.2, 0.8]])
    d = LabelData.from_arrays([0, 1, 1], probs, renormalize=True)
    np.testing.assert_allclose(d.pred_probs, [[0.5, 0.5], [0.25, 0.75], [0.2, 0.8]])
    assert d.meta["renormalized"] is True and d.meta["renormalized_rows"] == 2
    assert probs[0, 0] == 2.0  # the caller's array is untouched
    with pytest.raises(LabelqaError, match=r"cannot renormalize, 1 row sum to 0: row 1 -- every row needs"):
        LabelData.from_arrays([0, 1, 1], np.array([[2.0, 2.0], [0.0, 0.0], [0.2, 0.8]]), renormalize=True)
    with pytest.raises(LabelqaError, match="negative"):
        LabelData.from_arrays([0, 1, 1], np.array([[2.0, -1.0], [1.0, 1.0], [0.2, 0.8]]), renormalize=True)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=st.tuples(st.integers(1, 40), st.integers(2, 12)),
        elements=st.floats(0, 1e6, allow_nan=False, allow_infinity=False, width=32),
    )
)
def test_renormalize_yields_rows_summing_to_one(probs):
    probs[:, 0] += 1e-3  # no zero-sum rows
    d = LabelData.from_arrays(np.zeros(len(probs), dtype=np.int64), probs, renormalize=True)
    assert d.pred_probs.dtype == probs.dtype
    tol = 1e-5 if probs.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(d.pred_probs.sum(axis=1, dtype=np.float64), 1.0, atol=tol * probs.shape[1])
    assert (d.pred_probs >= 0).all()


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_valid_rows_always_pass_and_labels_round_trip(data):
    k = data.draw(st.integers(2, 8))
    n = data.draw(st.integers(1, 30))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    probs = rng.dirichlet(np.ones(k), size=n).astype(data.draw(st.sampled_from([np.float32, np.float64])))
    names = [f"c{i}" for i in range(k)]
    codes = rng.integers(0, k, n)
    d = LabelData.from_arrays(np.array(names, dtype=object)[codes], probs, classes=names)
    assert d.labels.tolist() == codes.tolist()
    assert list(d.label_values(d.labels)) == [names[c] for c in codes]


def test_validation_is_vectorised_fast():
    # 200k x 50 here; the 1M x 100 float32 figure is in the slow test below.
    rng = np.random.default_rng(0)
    probs = rng.random((200_000, 50), dtype=np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 50, 200_000)
    t0 = time.perf_counter()
    d = LabelData.from_arrays(labels, probs)
    assert time.perf_counter() - t0 < 2.0
    assert np.shares_memory(d.pred_probs, probs)


@pytest.mark.slow
def test_validation_of_1m_by_100_float32_takes_under_a_second():
    rng = np.random.default_rng(0)
    probs = rng.random((1_000_000, 100), dtype=np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 100, 1_000_000)
    t0 = time.perf_counter()
    LabelData.from_arrays(labels, probs)
    assert time.perf_counter() - t0 < 1.0


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1),
       st.sampled_from(["ok", "nan", "inf", "neg", "high"]), st.booleans())
def test_fast_probability_stats_flag_the_same_rows(n, k, seed, defect, threaded):
    """The matrix-wide min/max shortcut finds exactly the rows per-row minima/maxima would."""
    import numpy as np

    from labelqa.data import validate
    from labelqa.data.validate import _prob_row_stats, row_stats, sum_tolerance

    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
    if defect != "ok":
        i, j = rng.integers(0, n), rng.integers(0, k)
        P[i, j] = {"nan": np.nan, "inf": np.inf, "neg": -0.25, "high": 1.5}[defect]
    tol = sum_tolerance(P.dtype, k)
    if threaded:
        import pytest

        mp = pytest.MonkeyPatch()
        mp.setattr(validate, "_BLOCK_ELEMENTS", 8)
        mp.setattr("labelqa.parallel.MIN_PARALLEL_ELEMENTS", 0)
    try:
        fast = _prob_row_stats(P, tol)
        full = row_stats(P)
    finally:
        if threaded:
            mp.undo()
    np.testing.assert_array_equal(fast[0], full[0])
    finite = np.isfinite(full[0])
    assert np.array_equal(np.flatnonzero((fast[1] < 0) & finite), np.flatnonzero((full[1] < 0) & finite))
    assert np.array_equal(np.flatnonzero(fast[2] > 1 + tol), np.flatnonzero(full[2] > 1 + tol))
