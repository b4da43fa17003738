"""labelqa.data.probabilities: the N x K matrix, its checks, tolerance, renormalization."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelqa.data import LabelData
from labelqa.data.probabilities import sum_tolerance
from labelqa.errors import LabelqaError
from tests.conftest import build_label_data

P = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.25, 0.25, 0.5]])


def bad(probs, i, j, value):
    out = np.array(probs, dtype=float)
    out[i, j] = value
    return out


def test_dtypes_float32_kept_others_float64_and_no_copy():
    p32 = P.astype(np.float32)
    d = LabelData.from_arrays([0, 1, 2, 2], p32)
    assert d.pred_probs.dtype == np.float32 and np.shares_memory(d.pred_probs, p32)
    assert LabelData.from_arrays([0, 1, 2, 2], P.astype(np.float16)).pred_probs.dtype == np.float64
    assert LabelData.from_arrays([0, 1], np.array([[1, 0], [0, 1]])).pred_probs.dtype == np.float64
    d = LabelData.from_arrays([0, 1, 2, 2], pd.DataFrame(P))
    assert d.pred_probs.dtype == np.float64 and d.pred_probs.flags.c_contiguous


def test_not_2d_empty_and_one_class():
    with pytest.raises(LabelqaError, match=r"must be 2-D \(rows x classes\), got shape \(4,\) -- .*column_stack"):
        LabelData.from_arrays([0, 1, 0, 1], np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(LabelqaError, match=r"input: no rows"):
        LabelData.from_arrays([], np.zeros((0, 3)))
    with pytest.raises(LabelqaError, match=r"1 probability per row; at least 2 classes are needed"):
        LabelData.from_arrays([0, 0], np.ones((2, 1)))


def test_object_and_ragged_probabilities_are_refused():
    with pytest.raises(LabelqaError, match=r"dtype object; expected numbers"):
        LabelData.from_arrays([0, 1], np.array([[0.5, 0.5], [0.1, 0.9]], dtype=object))
    with pytest.raises(LabelqaError, match="not a numeric array|expected numbers"):
        LabelData.from_arrays([0, 1], [[0.5, 0.5], [1.0]])


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

    from labelqa.data import probabilities
    from labelqa.data.probabilities import prob_row_stats, row_stats, sum_tolerance

    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
    if defect != "ok":
        i, j = rng.integers(0, n), rng.integers(0, k)
        P[i, j] = {"nan": np.nan, "inf": np.inf, "neg": -0.25, "high": 1.5}[defect]
    tol = sum_tolerance(P.dtype, k)
    if threaded:
        import pytest

        mp = pytest.MonkeyPatch()
        mp.setattr(probabilities, "BLOCK_ELEMENTS", 8)
        mp.setattr("labelqa.parallel.MIN_PARALLEL_ELEMENTS", 0)
    try:
        fast = prob_row_stats(P, tol)
        full = row_stats(P)
    finally:
        if threaded:
            mp.undo()
    np.testing.assert_array_equal(fast[0], full[0])
    finite = np.isfinite(full[0])
    assert np.array_equal(np.flatnonzero((fast[1] < 0) & finite), np.flatnonzero((full[1] < 0) & finite))
    assert np.array_equal(np.flatnonzero(fast[2] > 1 + tol), np.flatnonzero(full[2] > 1 + tol))


def test_row_facts_gathered_in_any_order_equal_one_pass():
    """Blocks added out of order (as decoding threads finish) give the one-pass facts: numpy's row sums and
    argmax, and the extremes; describes() only a matrix whose every row was added, of the same dtype."""
    from labelqa.data.probabilities import RowFacts

    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(6), 1000).astype(np.float32)
    whole = RowFacts.of(P)
    parts = RowFacts(1000)
    edges = [0, 130, 131, 500, 999, 1000]
    blocks = list(zip(edges[:-1], edges[1:]))
    for a, b in blocks[::-1]:
        assert not parts.describes(P)
        parts.add(a, P[a:b])
    assert parts.describes(P) and not parts.describes(P.astype(np.float64)) and not parts.describes(P[:999])
    for facts in (whole, parts):
        assert np.array_equal(facts.sums, np.add.reduce(P, axis=1)) and np.array_equal(facts.top, P.argmax(axis=1))
        assert (facts.low, facts.high) == (P.min(), P.max())
    P[400, 2] = np.nan
    assert np.isnan(RowFacts.of(P).low) and np.isnan(RowFacts.of(P).high)
    assert RowFacts.of(P, top=False).top is None


def test_check_probabilities_reads_given_facts_and_still_names_bad_rows():
    """With facts gathered elsewhere no pass over the matrix is made for them, and bad rows are still named."""
    from labelqa.data.probabilities import RowFacts, check_probabilities
    from labelqa.data.rows import Rows, Where

    rng = np.random.default_rng(4)
    P = rng.dirichlet(np.ones(4), 300)
    facts = RowFacts.of(P)
    out, meta = check_probabilities(P, renormalize=False, where=Where(None, "label", None, {}), rows=Rows(None),
                                    facts=facts)
    assert out is P and meta["renormalized"] is False
    P[17] *= 1.5
    with pytest.raises(LabelqaError, match="row 17"):
        check_probabilities(P, renormalize=False, where=Where(None, "label", None, {}), rows=Rows(None),
                            facts=RowFacts.of(P))
