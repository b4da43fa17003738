"""Kernels of the confident-learning detector against plain numpy references (hypothesis).

The kernels reorder work for speed (chunking, float64 dot products of whole
numbers, the disputed rows only); their integers must be those of the
plain formulas, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.detectors.confident import TREND_SCALE, TREND_SUMS, dispute_weights, trend_sums
from labelqa.stats.confident import ROWWISE_ENTROPY_K

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def trend_sums_reference(probs, self_conf, max_prob, disputed, counted) -> np.ndarray:
    """The trend sums as written in the method's description: every row's x and y, then int64 sums."""
    n, k = probs.shape
    out = np.zeros(TREND_SUMS, dtype=np.int64)
    if n == 0:
        return out
    dtype = probs.dtype
    tiny = np.finfo(dtype).tiny
    if k >= ROWWISE_ENTROPY_K:  # long rows: numpy's sum along each row
        ent = -(np.log(np.maximum(probs, tiny)) * probs).sum(axis=1)
    else:  # class by class, in a fixed order
        cols = np.ascontiguousarray(probs.T)
        logs = np.log(np.maximum(cols, tiny)) * cols
        ent = np.zeros(n, dtype=dtype)
        for row in logs:
            ent -= row
    x = (np.rint(np.clip(ent.astype(np.float64) / math.log(k), 0.0, 1.0) * TREND_SCALE).astype(np.int64) if k > 1
         else np.zeros(n, dtype=np.int64))
    y = dispute_weights(self_conf, max_prob, TREND_SCALE) * disputed
    xc, yc = x[counted], y[counted]
    out[:5] = (xc.size, xc.sum(), yc.sum(), (xc * xc).sum(), (xc * yc).sum())
    xu = x[~counted]
    out[5:] = (xu.size, xu.sum())
    return out


@SETTINGS
@given(n=st.integers(0, 40_000), k=st.integers(1, 40) | st.integers(60, 120), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31), ties=st.booleans(), counted_share=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_trend_sums_equal_the_plain_formulas(n, k, dtype, seed, ties, counted_share):
    rng = np.random.default_rng(seed)
    if ties:
        probs = rng.integers(0, 4, (n, k)).astype(np.float64)
        probs[probs.sum(axis=1) == 0, 0] = 1.0
    else:
        probs = rng.dirichlet(np.full(k, 0.3), n) if n else np.zeros((0, k))
        probs[rng.random(n) < 0.05] = np.eye(k)[0]  # one-hot rows: 0 log 0 = 0
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(dtype)
    labels = rng.integers(0, k, n)
    self_conf = probs[np.arange(n), labels]
    max_prob = probs.max(axis=1) if n else np.zeros(0, dtype)
    disputed = self_conf < max_prob - 1e-6
    counted = rng.random(n) < counted_share
    got = trend_sums(probs, self_conf, max_prob, disputed, counted)
    assert got.dtype == np.int64
    assert got.tolist() == trend_sums_reference(probs, self_conf, max_prob, disputed, counted).tolist()


def test_trend_sums_over_several_chunks_equal_the_plain_formulas():
    """Rows across several cache-sized chunks (16,384 rows each), realistic probabilities."""
    from tests.conftest import noisy_dataset

    labels, _t, probs, _ = noisy_dataset(n=70_001, k=10, noise=0.2, seed=9)
    self_conf = probs[np.arange(labels.size), labels]
    max_prob = probs.max(axis=1)
    disputed = self_conf < max_prob - 1e-6
    counted = np.random.default_rng(1).random(labels.size) < 0.8
    want = trend_sums_reference(probs, self_conf, max_prob, disputed, counted)
    assert trend_sums(probs, self_conf, max_prob, disputed, counted).tolist() == want.tolist()
    assert want[2] > 0 and want[5] > 0


@SETTINGS
@given(n=st.integers(0, 3000), k=st.integers(1, 300), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31), zeros=st.booleans())
def test_row_entropy_equals_the_class_by_class_sum(n, k, dtype, seed, zeros):
    """Narrow rows (transposed chunks) and wide rows (a running sum along each row): the reference's floats."""
    from labelqa.stats.confident import row_entropy

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.2), n).astype(dtype) if n else np.zeros((0, k), dtype)
    if zeros and n:
        probs[rng.random((n, k)) < 0.3] = 0.0
        probs[rng.random(n) < 0.1] = np.eye(k, dtype=dtype)[rng.integers(0, k)]  # one-hot rows: entropy 0
    cols = np.ascontiguousarray(probs.T)
    logs = np.log(np.maximum(cols, np.finfo(dtype).tiny)) * cols
    want = np.zeros(n, dtype=dtype)
    for row in logs:
        want -= row
    got = row_entropy(probs)
    assert got.dtype == dtype
    # bit for bit, but the sign of a zero entropy (one-hot rows; x = 0 either way in the trend)
    assert np.array_equal((got + dtype(0)).view(np.uint8), (want + dtype(0)).view(np.uint8))


@SETTINGS
@given(st.integers(1, 300), st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_agreement_masks_equal_the_float64_formula(n, seed, dtype, with_nan):
    """The masks from one comparison in the probabilities' dtype plus the float64 test on the strictly
    disagreeing rows only are the float64 formula's, near-ties (within 1e-6) and NaN rows included."""
    from labelqa.detectors import confident as cl_module

    rng = np.random.default_rng(seed)
    self_conf = rng.choice(np.array([0.0, 0.25, 0.5, 0.5 + 5e-7, 0.5 + 2e-6, 1.0]), n).astype(dtype)
    max_prob = np.maximum(self_conf, rng.choice(np.array([0.0, 0.5, 0.5 + 1e-6, 0.75, 1.0]), n).astype(dtype))
    if with_nan:
        self_conf[rng.random(n) < 0.1] = np.nan
        max_prob[rng.random(n) < 0.1] = np.nan
    agrees, strictly = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    dis, strict = cl_module._agreement_masks(self_conf, max_prob, agrees, strictly)
    want = self_conf.astype(np.float64) >= max_prob.astype(np.float64) - cl_module.AGREEMENT_TOLERANCE
    assert np.array_equal(agrees, want)
    assert np.array_equal(strictly, max_prob > self_conf)
    assert np.array_equal(dis, np.flatnonzero(~want))
    assert np.array_equal(strict, np.flatnonzero(max_prob > self_conf))


@SETTINGS
@given(st.integers(1, 12), st.integers(0, 400), st.integers(0, 2**31), st.sampled_from([np.int32, np.int64]),
       st.sampled_from([1, 200]), st.sampled_from([0, 32]))
def test_named_rows_equal_unique_with_first_index(k, n, seed, dtype, spread, dense_share):
    """Distinct non-negative ids (repeats across a class's cells; negative ids: rows that agree) and their class,
    as np.unique(return_index=True) then the first cell of each id gives them; marked in a mask when dense,
    else sorted (``dense_share`` 0: always sorted; ``spread``: ids far apart)."""
    from labelqa.detectors import confident as cl_module

    rng = np.random.default_rng(seed)
    rows = rng.integers(0, max(1, n // 2) + 1, n) * spread
    row_class = rng.integers(0, k, rows.max(initial=0) + 1)  # each row's given class
    cells = row_class[rows] * k + rng.integers(0, k, n)
    agree = rng.random(rows.max(initial=0) + 1) < 0.2  # a row that agrees has the id -row - 1 in every cell
    ids = np.where(agree[rows], -rows - 1, rows).astype(dtype)
    old, cl_module._DENSE_SHARE = cl_module._DENSE_SHARE, dense_share
    try:
        positions, classes = cl_module._named_rows(cells, ids, k)
    finally:
        cl_module._DENSE_SHARE = old
    uniq, first = np.unique(ids, return_index=True)
    named = uniq >= 0
    assert positions.dtype == ids.dtype
    assert np.array_equal(positions, uniq[named])
    assert np.array_equal(classes, cells[first][named] // k)


@SETTINGS
@given(st.integers(1, 12), st.integers(0, 500), st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]),
       st.sampled_from([1, 7, 64, 1 << 16]), st.sampled_from([1, 5, 1 << 14]), st.sampled_from(["1", "2"]),
       st.booleans())
def test_given_probs_and_sums_in_one_pass_equal_the_plain_ones(k, n, seed, dtype, task_rows, gather_rows, threads,
                                                               fortran):
    """The fused gather + class sums (tasks on threads, flat gathers through a reused index) give p_{i,s_i}
    and the exact integer sums and counts of one plain ClassProbSums.update, for any task and gather size."""
    import os

    from labelqa import parallel
    from labelqa.detectors import confident as cl_module
    from labelqa.stats.confident import ClassProbSums

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), n).astype(dtype) if n else np.zeros((0, k), dtype)
    if fortran:
        probs = np.asfortranarray(probs)
    labels = rng.integers(0, k, n)
    saved = (cl_module._JOINT_TASK_ROWS, cl_module._GATHER_ROWS, parallel.MIN_PARALLEL_ELEMENTS,
             os.environ.get("LABELQA_THREADS"))
    cl_module._JOINT_TASK_ROWS, cl_module._GATHER_ROWS, parallel.MIN_PARALLEL_ELEMENTS = task_rows, gather_rows, 0
    os.environ["LABELQA_THREADS"] = threads
    try:
        given_probs, sums = cl_module._given_probs_and_sums(labels, probs)
    finally:
        cl_module._JOINT_TASK_ROWS, cl_module._GATHER_ROWS, parallel.MIN_PARALLEL_ELEMENTS = saved[:3]
        if saved[3] is None:
            os.environ.pop("LABELQA_THREADS", None)
        else:
            os.environ["LABELQA_THREADS"] = saved[3]
    want = ClassProbSums(k).update(labels, probs)
    assert given_probs.dtype == probs.dtype and np.array_equal(given_probs, probs[np.arange(n), labels])
    assert np.array_equal(sums.sums, want.sums) and np.array_equal(sums.counts, want.counts)


def test_row_arrays_are_disjoint_aligned_views_of_one_buffer():
    from labelqa.detectors import confident as cl_module

    for n, dtype, k in ((1, np.float32, 2), (7, np.float64, 40), (1001, np.float32, 10)):
        arrays = cl_module._RowArrays(n, np.dtype(dtype), k)
        views = [arrays.self_conf, arrays.max_prob, arrays.guess, arrays.agrees, arrays.disagrees_strictly,
                 arrays.entropy]
        assert [v.dtype for v in views] == [np.dtype(dtype)] * 2 + [np.dtype(np.int8 if k <= 32 else np.int64)] + [
            np.dtype(bool)] * 2 + [np.dtype(dtype)]
        base = views[0].base
        assert all(v.shape == (n,) and v.flags.c_contiguous and v.ctypes.data % 64 == views[0].ctypes.data % 64
                   for v in views)
        for i, a in enumerate(views):  # writing one leaves the others as they were
            for b in views[i + 1:]:
                assert not np.shares_memory(a, b)
        assert base is not None


def test_two_thresholds_on_one_block_keep_their_own_guesses():
    """The block's row arrays are shared, but the guesses depend on the thresholds: a second row state gets its own."""
    from labelqa.detectors import confident as cl_module
    from labelqa.detectors.base import Block

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), 300).astype(np.float32)
    labels = rng.integers(0, 4, 300)
    block = Block(labels, probs)
    low, high = np.full(4, 0.1), np.full(4, 0.6)
    first = cl_module._block_rows(block, low)
    second = cl_module._block_rows(block, high)
    g1, g2 = first.guess.copy(), second.guess
    assert not np.shares_memory(first.guess, second.guess)
    assert np.array_equal(first.guess, g1)
    want_low = cl_module.compute_confident_joint(labels, probs, low)[1]
    want_high = cl_module.compute_confident_joint(labels, probs, high)[1]
    assert np.array_equal(g1, want_low) and np.array_equal(g2, want_high)


@SETTINGS
@given(st.integers(0, 300), st.integers(0, 300), st.sampled_from([10, 1000, 10**7]), st.integers(0, 2**31))
def test_in_sorted_equals_isin_for_narrow_and_wide_ranges(n_values, n_sorted, span, seed):
    """The lookup-table path (narrow ranges) and the binary-search path (wide ranges) both give np.isin."""
    from labelqa.detectors import confident as cl_module

    rng = np.random.default_rng(seed)
    sorted_values = np.unique(rng.integers(0, span, n_sorted)).astype(np.int32)
    values = rng.integers(-2, span + 2, n_values).astype(np.int32)
    assert np.array_equal(cl_module._in_sorted(values, sorted_values), np.isin(values, sorted_values))


@SETTINGS
@given(st.integers(0, 200), st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]),
       st.sampled_from([TREND_SCALE, float(2**32)]), st.booleans())
def test_dispute_weight_values_equal_the_masked_formula(n, seed, dtype, scale, zeros_and_nan):
    """The in-place weights (masked division only when some m + s <= 0 or NaN) are the masked formula's."""
    from labelqa.detectors.confident import dispute_weight_values

    rng = np.random.default_rng(seed)
    s = rng.choice(np.array([0.0, 0.1, 0.25, 0.5]), n).astype(dtype)
    m = (s + rng.choice(np.array([0.0, 1e-7, 0.3, 0.5]), n)).astype(dtype)
    if zeros_and_nan and n:
        s[rng.random(n) < 0.2] = 0
        m[rng.random(n) < 0.2] = 0
        m[rng.random(n) < 0.05] = np.nan
    s64, m64 = s.astype(np.float64), m.astype(np.float64)
    total = m64 + s64
    want = np.rint(np.clip(np.divide(m64 - s64, total, out=np.zeros_like(total), where=total > 0), 0.0, 1.0) * scale)
    got = dispute_weight_values(s, m, scale)
    assert got.dtype == np.float64 and np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(dispute_weights(s, m, scale), want.astype(np.int64)) or np.isnan(want).any()


@SETTINGS
@given(st.integers(0, 500), st.integers(1, 100), st.integers(0, 2**31), st.sampled_from([np.int32, np.int64]))
def test_sorted_positions_equal_numpys_sort(n, spread, seed, dtype):
    """Distinct positions sorted: by a mask when dense, by np.sort when sparse; the same array either way."""
    from labelqa.detectors import confident as cl_module

    rng = np.random.default_rng(seed)
    positions = rng.permutation(n * spread)[:n].astype(dtype)
    got = cl_module._sorted_positions(positions)
    assert got.dtype == positions.dtype and np.array_equal(got, np.sort(positions))
    assert cl_module._dense(n, n * spread) == (0 < n * spread <= cl_module._DENSE_SHARE * n)
