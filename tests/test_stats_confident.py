"""Partial aggregates of confident learning: known answers and merge laws."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.stats.confident import (
    EMPTY_CLASS_THRESHOLD,
    ClassProbSums,
    ConfidentJointCounts,
    calibrate_confident_joint,
    confident_cutoffs,
    round_rows,
    row_entropy,
)

# The known-answer toy: thresholds (0.75, 4.8/7, 0.8); row 2 is the label error.
TOY_PROBS = np.array(
    [[0.9, 0.1, 0.0], [0.6, 0.2, 0.2], [0.1, 0.0, 0.9]] + [[0.1, 0.8, 0.1]] * 6 + [[0.1, 0.1, 0.8]]
)
TOY_LABELS = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 2])

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_toy_thresholds_and_counts():
    sums = ClassProbSums(3).update(TOY_LABELS, TOY_PROBS)
    # t_0 = (.9 + .6) / 2, t_1 = (0 + 6 * .8) / 7, t_2 = .8
    np.testing.assert_allclose(sums.thresholds(), [0.75, 4.8 / 7, 0.8], atol=1e-9)
    assert sums.counts.tolist() == [2, 7, 1]


def test_toy_confident_joint_and_guesses():
    thresholds = ClassProbSums(3).update(TOY_LABELS, TOY_PROBS).thresholds()
    counts = ConfidentJointCounts(3)
    guess = counts.update(TOY_LABELS, TOY_PROBS, thresholds)
    # row 1 (.6, .2, .2) reaches no threshold; row 2 is confidently class 2;
    # row 9 (p_2 = .8 = t_2) counts thanks to the 1e-6 epsilon.
    assert counts.joint.tolist() == [[1, 0, 0], [0, 6, 1], [0, 0, 1]]
    assert guess.tolist() == [0, -1, 2, 1, 1, 1, 1, 1, 1, 2]
    assert guess.dtype == np.int64


def test_empty_class_threshold_is_unreachable():
    sums = ClassProbSums(3).update(np.array([0, 1]), np.array([[0.5, 0.5, 0.0], [0.0, 0.9, 0.1]]))
    t = sums.thresholds()
    assert t[2] == EMPTY_CLASS_THRESHOLD and t[2] > 1.0
    counts = ConfidentJointCounts(3)
    guess = counts.update(np.array([1]), np.array([[0.0, 0.0, 1.0]]), t)
    assert guess.tolist() == [-1]  # p = 1 never reaches class 2's threshold


def test_single_confident_class_is_not_always_the_argmax():
    # p = (.5, .4), t = (.6, .3): only class 1 is confident although class 0 is the argmax
    counts = ConfidentJointCounts(2)
    guess = counts.update(np.array([0]), np.array([[0.5, 0.4]]), np.array([0.6, 0.3]))
    assert guess.tolist() == [1]
    assert counts.joint.tolist() == [[0, 1], [0, 0]]


def test_several_confident_classes_take_the_argmax_lowest_index_on_ties():
    counts = ConfidentJointCounts(3)
    probs = np.array([[0.4, 0.4, 0.2], [0.3, 0.6, 0.1]])
    guess = counts.update(np.array([2, 2]), probs, np.array([0.3, 0.3, 0.9]))
    assert guess.tolist() == [0, 1]


def test_epsilon_below_threshold():
    t = np.array([0.5, 0.5])
    counts = ConfidentJointCounts(2)
    guess = counts.update(np.array([0, 0]), np.array([[0.5 - 5e-7, 0.0], [0.5 - 2e-6, 0.0]]), t)
    assert guess.tolist() == [0, -1]


def test_precomputed_argmax_gives_the_same_result():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), 200)
    labels = rng.integers(0, 4, 200)
    t = ClassProbSums(4).update(labels, probs).thresholds()
    a, b = ConfidentJointCounts(4), ConfidentJointCounts(4)
    ga = a.update(labels, probs, t)
    gb = b.update(labels, probs, t, argmax=probs.argmax(axis=1))
    assert np.array_equal(ga, gb) and np.array_equal(a.joint, b.joint)


def test_float32_input_stays_float32_and_agrees_with_float64():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(5), 500).astype(np.float32)
    labels = rng.integers(0, 5, 500)
    t = ClassProbSums(5).update(labels, probs).thresholds()
    c32, c64 = ConfidentJointCounts(5), ConfidentJointCounts(5)
    g32 = c32.update(labels, probs, t)
    g64 = c64.update(labels, probs.astype(np.float64), t)
    assert np.array_equal(g32, g64) and np.array_equal(c32.joint, c64.joint)


@FAST
@given(
    values=st.lists(st.floats(0.0, 1.0, width=32), min_size=1, max_size=20),
    thresholds=st.lists(st.floats(-0.5, 2.0), min_size=1, max_size=20),
)
def test_float32_cutoffs_are_exact(values, thresholds):
    k = min(len(values), len(thresholds))
    p = np.array(values[:k], dtype=np.float32)
    t = np.array(thresholds[:k], dtype=np.float64)
    cut = confident_cutoffs(t, np.float32)
    assert cut.dtype == np.float32
    assert np.array_equal(p >= cut, p.astype(np.float64) >= t - 1e-6)


def test_float32_cutoff_rounds_up_not_to_nearest():
    # A float32 probability just below t - 1e-6 (by 1e-12, far below float32
    # resolution) is not confident; rounding the cutoff to the nearest float32
    # would make it so.
    p = np.float32(0.499999)
    t = float(p) + 1e-12 + 1e-6
    counts = ConfidentJointCounts(2)
    guess = counts.update(np.array([0]), np.array([[p, np.float32(0.0)]], dtype=np.float32), np.array([t, 2.0]))
    assert guess.tolist() == [-1]
    guess = counts.update(np.array([0]), np.array([[p, 0.0]], dtype=np.float64), np.array([t, 2.0]))
    assert guess.tolist() == [-1]


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        ClassProbSums(3).update(np.array([0, 1]), np.ones((2, 2)))
    with pytest.raises(ValueError):
        ConfidentJointCounts(2).update(np.array([0]), np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError):
        ClassProbSums(2).merge(ClassProbSums(3))


@st.composite
def datasets(draw):
    """Small datasets; coarse probabilities (ratios of small ints) make ties frequent."""
    n = draw(st.integers(1, 40))
    k = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = rng.integers(0, 4, size=(n, k)).astype(np.float64)
    weights[weights.sum(axis=1) == 0, 0] = 1.0
    probs = weights / weights.sum(axis=1, keepdims=True)
    if draw(st.booleans()):
        probs = probs.astype(np.float32)
    labels = rng.integers(0, k, n)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    return labels, probs, k, cuts


def _batches(cuts, n):
    edges = [0, *cuts, n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


@FAST
@given(datasets(), st.booleans())
def test_batches_then_merge_equals_one_update(data, reverse):
    labels, probs, k, cuts = data
    whole_sums = ClassProbSums(k).update(labels, probs)
    parts = [ClassProbSums(k).update(labels[s], probs[s]) for s in _batches(cuts, len(labels))]
    if reverse:
        parts = parts[::-1]
    merged = ClassProbSums(k)
    for part in parts:
        merged.merge(part)
    # exact integer sums: bit-identical thresholds whatever the batching
    assert np.array_equal(merged.thresholds(), whole_sums.thresholds())
    assert np.array_equal(merged.counts, whole_sums.counts)

    t = whole_sums.thresholds()
    whole = ConfidentJointCounts(k)
    whole_guess = whole.update(labels, probs, t)
    joint_parts, guesses = [], []
    for s in _batches(cuts, len(labels)):
        part = ConfidentJointCounts(k)
        guesses.append(part.update(labels[s], probs[s], t))
        joint_parts.append(part)
    merged_joint = ConfidentJointCounts(k)
    for part in joint_parts[::-1] if reverse else joint_parts:
        merged_joint.merge(part)
    assert np.array_equal(merged_joint.joint, whole.joint)
    assert np.array_equal(np.concatenate(guesses), whole_guess)
    # every counted row is counted once, in its given-label row
    assert whole.joint.sum() == np.count_nonzero(whole_guess >= 0)
    assert np.array_equal(whole.joint.sum(axis=1), np.bincount(labels[whole_guess >= 0], minlength=k))


@FAST
@given(datasets(), st.integers(0, 2**32 - 1))
def test_thresholds_do_not_depend_on_row_order(data, seed):
    labels, probs, k, _ = data
    perm = np.random.default_rng(seed).permutation(len(labels))
    a = ClassProbSums(k).update(labels, probs).thresholds()
    b = ClassProbSums(k).update(labels[perm], probs[perm]).thresholds()
    assert np.array_equal(a, b)
    # and they are the per-class means (to the 2**-32 quantum)
    for c in range(k):
        rows = labels == c
        expected = probs[rows, c].astype(np.float64).mean() if rows.any() else EMPTY_CLASS_THRESHOLD
        assert a[c] == pytest.approx(expected, abs=1e-9)


# --------------------------------------------------------------------------- cleanlab's rounding
def test_round_rows_rounds_half_to_even_first():
    # np.round: 1.5 -> 2, 0.5 -> 0; the row already sums to its rounded sum 3: nothing moves
    # (a largest-remainder rule would give (1, 1, 1))
    assert round_rows(np.array([[1.5, 0.5, 1.0]])).tolist() == [[2, 0, 1]]
    # (2.5, 0.5) -> (2, 0), sum 2 but 3 wanted: +1 to the largest residual; both are .5 and
    # the later entry of the ascending argsort goes first
    assert round_rows(np.array([[2.5, 0.5]])).tolist() == [[2, 1]]
    # three residuals of .4 and one of -.2 (0.8 -> 1): one +1, to the last of the tied .4s
    assert round_rows(np.array([[0.4, 0.4, 0.4, 0.8]])).tolist() == [[0, 0, 1, 1]]
    # too many: (1.6, 1.6, 0.8) -> (2, 2, 1) = 5 but round(4.0) = 4: -1 from the smallest residual (-.4 at
    # 1.6, tied: the first)
    assert round_rows(np.array([[1.6, 1.6, 0.8]])).tolist() == [[1, 2, 1]]


def test_round_rows_any_leading_shape_and_empty():
    x = np.array([[[1.5, 0.5], [0.25, 1.75]], [[0.5, 0.5], [3.0, 0.0]]])
    assert round_rows(x).tolist() == [[[2, 0], [0, 2]], [[0, 1], [3, 0]]]
    assert round_rows(np.zeros((0, 3))).shape == (0, 3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from([3, 10, 50, 1000]))
def test_round_rows_invariants_with_many_ties_at_large_k(seed, k):
    """Integer counts scaled by a common factor (what calibration does): ties everywhere."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, (3, k)).astype(np.float64)
    x = counts * (rng.integers(2, 9) / rng.integers(1, 9))
    out = round_rows(x)
    np.testing.assert_array_equal(out.sum(axis=1), np.round(x.sum(axis=1)))
    assert (np.abs(out - x) < 1.5).all()
    nearest = np.round(x)
    for r in range(x.shape[0]):
        moved = out[r] != nearest[r]
        d = int(np.round(x[r].sum()) - nearest[r].sum())
        assert moved.sum() == abs(d)  # only the needed entries move, once each
        if d:
            resid = x[r] - nearest[r]
            # the moved entries are those with the largest (d > 0) or smallest (d < 0) residuals
            if d > 0:
                assert resid[moved].min() >= resid[~moved].max(initial=-np.inf)
            else:
                assert resid[moved].max() <= resid[~moved].min(initial=np.inf)


def _round_rows_row_by_row(x: np.ndarray) -> np.ndarray:
    """The docstring's rule written plainly: each row alone, moving entries until its sum agrees."""
    ints = np.round(x)
    for r in range(x.shape[0]):
        target = np.round(x[r].sum())
        while (d := target - ints[r].sum()) != 0:
            order = np.argsort(x[r] - ints[r])
            picked = (order[::-1] if d > 0 else order)[: min(int(abs(d)), x.shape[1])]
            ints[r, picked] += 1.0 if d > 0 else -1.0
    return ints.astype(np.int64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3, 10, 257, 1000]), st.integers(1, 6),
       st.sampled_from(["ties", "uniform", "halves"]))
def test_round_rows_equals_the_row_by_row_rule(seed, k, n_rows, kind):
    """All rows' first moves at once (one argsort along the rows) == the rule row by row, entry for entry,
    ties included (numpy sorts each row of a 2-D argsort as it sorts a 1-D one)."""
    rng = np.random.default_rng(seed)
    if kind == "ties":
        x = rng.integers(0, 4, (n_rows, k)) * (rng.integers(2, 9) / rng.integers(1, 9))
    elif kind == "halves":
        x = rng.integers(0, 6, (n_rows, k)) + 0.5
    else:
        x = rng.random((n_rows, k)) * 5
    np.testing.assert_array_equal(round_rows(x), _round_rows_row_by_row(x))


def test_round_rows_sorted_on_threads_equals_the_row_by_row_rule():
    """300 mostly-zero rows of 1,000 (a sparse calibrated joint: ties everywhere, as many moves as rows) are
    sorted in parts on threads; the moves are still the rule's, entry for entry."""
    from labelqa.stats.confident import PARALLEL_SORT_ELEMENTS

    rng = np.random.default_rng(3)
    counts = rng.integers(1, 4, (300, 1000)) * (rng.random((300, 1000)) < 0.02)
    x = counts * (rng.integers(50, 150, (300, 1)) / np.maximum(counts.sum(axis=1, keepdims=True), 1))
    assert x.size >= PARALLEL_SORT_ELEMENTS
    np.testing.assert_array_equal(round_rows(x), _round_rows_row_by_row(x))


def test_calibration_at_large_k_keeps_class_counts():
    rng = np.random.default_rng(0)
    k = 1000
    joint = rng.integers(0, 3, (k, k)) * (rng.random((k, k)) < 0.01)
    np.fill_diagonal(joint, rng.integers(50, 150, k))
    n = joint.sum(axis=1) + rng.integers(0, 60, k)
    cal = calibrate_confident_joint(joint, n)
    np.testing.assert_array_equal(cal.sum(axis=1), n)
    exact = joint / joint.sum(axis=1, keepdims=True) * n[:, None]
    assert (np.abs(cal - exact) < 1).all()


# --------------------------------------------------------------------------- row kernels over transposed chunks
def _plain_guess(labels, probs, thresholds):
    """The per-row definition of the guess, written the plain way (one (n, K) bool matrix, row reductions)."""
    cut = confident_cutoffs(thresholds, probs.dtype)
    confident = probs >= cut
    n_conf = confident.sum(axis=1)
    guess = probs.argmax(axis=1)
    single = n_conf == 1
    guess[single] = confident[single].argmax(axis=1)
    guess[n_conf == 0] = -1
    k = probs.shape[1]
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[guess >= 0], guess[guess >= 0]), 1)
    return guess, joint


@st.composite
def small_k_batches(draw):
    """Probabilities on a coarse grid (many ties, values equal to thresholds), K <= SMALL_K, any dtype."""
    k = draw(st.integers(1, 12))
    n = draw(st.integers(1, 300))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    probs = (rng.integers(0, 5, size=(n, k)) / 4).astype(dtype)
    labels = rng.integers(0, k, n)
    thresholds = rng.choice(np.array([0.0, 0.25, 0.5, 0.75, 1.0, EMPTY_CLASS_THRESHOLD]), size=k)
    return labels, probs, thresholds


@contextmanager
def chunk_rows(name: str, rows: int) -> Iterator[None]:
    """Set labelqa.stats.confident's chunk size ``name`` for a block (hypothesis tests cannot use monkeypatch)."""
    import labelqa.stats.confident as sc


    old = getattr(sc, name)
    setattr(sc, name, rows)
    try:
        yield
    finally:
        setattr(sc, name, old)


@FAST
@given(small_k_batches(), st.sampled_from([1, 7, 64, 16384]), st.booleans(), st.booleans())
def test_joint_over_transposed_chunks_equals_the_plain_rows(batch, chunk, pass_argmax, ask_row_max):
    """Guesses, joint and (when asked) row maxima are those of the plain per-row definition, for any chunking,
    ties and exact cutoffs; asking for the row maxima changes nothing else."""
    labels, probs, thresholds = batch
    want_guess, want_joint = _plain_guess(labels, probs, thresholds)
    row_max = np.full(labels.size, -1.0, dtype=probs.dtype) if ask_row_max else None
    with chunk_rows("_CHUNK_ROWS", chunk):
        counts = ConfidentJointCounts(probs.shape[1])
        guess = counts.update(labels, probs, thresholds, argmax=probs.argmax(axis=1) if pass_argmax else None,
                              row_max=row_max)
    assert guess.dtype == np.int64
    assert np.array_equal(guess, want_guess)
    assert np.array_equal(counts.joint, want_joint)
    if ask_row_max:
        assert np.array_equal(row_max, probs.max(axis=1))


def test_guess_picks_none_one_or_the_argmax_by_hand():
    """The arithmetic choice of the guess: no confident class -> -1, one -> it (even when it is not the argmax),
    several -> the argmax (first column on ties), into an int8 output."""
    probs = np.array([[0.44, 0.4, 0.16],  # confident: 1 only -> 1 (argmax 0)
                      [0.2, 0.2, 0.6],    # none (t_2 = 0.7) -> -1
                      [0.45, 0.45, 0.1],  # 0 and 1, tied maximum -> 0
                      [0.1, 0.3, 0.6],    # 1 only (0.6 < 0.7) -> 1
                      [0.0, 0.3, 0.7]],   # 1 and 2 -> argmax 2
                     dtype=np.float32)
    thresholds = np.array([0.45, 0.3, 0.7])
    out = np.full(5, 99, dtype=np.int8)
    counts = ConfidentJointCounts(3)
    got = counts.update(np.array([0, 1, 2, 0, 1]), probs, thresholds, guess_out=out)
    assert got is out
    assert out.tolist() == [1, -1, 0, 1, 2]
    assert counts.joint.tolist() == [[0, 2, 0], [0, 0, 1], [1, 0, 0]]


@FAST
@given(st.integers(1, 32), st.integers(1, 300), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31),
       st.sampled_from([1, 7, 64, 16384]), st.sampled_from([np.int8, np.int16, np.int64]), st.booleans())
def test_guess_out_any_signed_dtype_up_to_small_k(k, n, dtype, seed, chunk, out_dtype, with_nan):
    """Up to SMALL_K classes (uint8 arithmetic) and any output dtype, the guesses and row maxima are the plain
    definition's, whatever the chunking; rows holding NaN take numpy's argmax and max, as before."""
    rng = np.random.default_rng(seed)
    probs = (rng.integers(0, 5, size=(n, k)) / 4).astype(dtype)
    if with_nan:
        probs[rng.random(n) < 0.1, rng.integers(0, k)] = np.nan
    labels = rng.integers(0, k, n)
    thresholds = rng.choice(np.array([0.0, 0.25, 0.5, 0.75, 1.0, EMPTY_CLASS_THRESHOLD]), size=k)
    want_guess, want_joint = _plain_guess(labels, probs, thresholds)
    out = np.full(n, 99, dtype=out_dtype)
    row_max = np.empty(n, dtype=dtype)
    with chunk_rows("_CHUNK_ROWS", chunk):
        counts = ConfidentJointCounts(k)
        got = counts.update(labels, probs, thresholds, row_max=row_max, guess_out=out)
    assert got is out and np.array_equal(out, want_guess)
    assert np.array_equal(counts.joint, want_joint)
    assert np.array_equal(row_max, probs.max(axis=1), equal_nan=True)


def test_guess_out_must_fit_the_classes():
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="guess_out"):
        ConfidentJointCounts(3).update(np.array([0, 1]), probs, np.full(3, 0.3), guess_out=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="guess_out"):
        ConfidentJointCounts(3).update(np.array([0, 1]), probs, np.full(3, 0.3), guess_out=np.zeros(3, np.int8))


@FAST
@given(st.integers(1, 40), st.integers(0, 500), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31),
       st.sampled_from([3, 100, 16384]))
def test_row_top_equals_numpy_argmax_and_max(k, n, dtype, seed, chunk):
    from labelqa.stats.confident import row_top

    rng = np.random.default_rng(seed)
    probs = (rng.integers(0, 4, size=(n, k)) / 3).astype(dtype)  # ties everywhere
    if n > 2:
        probs[rng.integers(0, n), rng.integers(0, k)] = np.nan  # numpy's argmax: the first NaN
        probs[rng.integers(0, n)] = -0.0
    with chunk_rows("_CHUNK_ROWS", chunk):
        top, best = row_top(probs)
    assert top.dtype == np.int64 and best.dtype == probs.dtype
    assert np.array_equal(top, probs.argmax(axis=1))
    assert np.array_equal(best, probs.max(axis=1) if n else best, equal_nan=True)


@FAST
@given(st.integers(1, 40), st.integers(0, 500), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31),
       st.sampled_from([3, 100, 16384]), st.booleans())
def test_row_max_equals_numpy_max(k, n, dtype, seed, chunk, given_out):
    from labelqa.stats.confident import row_max, row_top

    rng = np.random.default_rng(seed)
    probs = (rng.integers(0, 4, size=(n, k)) / 3).astype(dtype)  # ties everywhere
    if n > 2:
        probs[rng.integers(0, n), rng.integers(0, k)] = np.nan  # a NaN row's maximum is NaN
        probs[rng.integers(0, n)] = -0.0
        probs[rng.integers(0, n), rng.integers(0, k)] = -np.inf
    out = np.full(n, 7, dtype=dtype) if given_out else None
    with chunk_rows("_CHUNK_ROWS", chunk):
        best = row_max(probs, out=out)
        _, top_best = row_top(probs)
    assert best.dtype == probs.dtype and (out is None or best is out)
    assert np.array_equal(best, probs.max(axis=1), equal_nan=True)
    assert np.array_equal(best.view(np.uint8), top_best.view(np.uint8))  # bit for bit the row pass's maxima


@FAST
@given(st.integers(1, 30), st.integers(1, 400), st.integers(0, 2**31), st.sampled_from([1, 5, 1 << 20]))
def test_class_sums_exact_in_any_chunking(k, n, seed, rows):
    """The float64 bincount of whole numbers equals the int64 sums (np.add.at), whatever the chunk size."""
    import labelqa.stats.confident as sc

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    p = rng.random(n)
    p[rng.random(n) < 0.3] = 1.0  # the largest fixed-point value, 2**32
    want = np.zeros(k, dtype=np.int64)
    np.add.at(want, labels, np.rint(p * sc.PROB_SCALE).astype(np.int64))
    with chunk_rows("_EXACT_FLOAT_ROWS", rows):
        got = ClassProbSums(k).update_given(labels, p)
    assert np.array_equal(got.sums, want)
    assert np.array_equal(got.counts, np.bincount(labels, minlength=k))


def test_class_sums_exact_at_two_million_rows_of_one_class():
    """2**21 rows of probability 1 in one class: 2**53, where float64 sums of one chunk would stop being exact."""
    n = 1 << 21
    sums = ClassProbSums(2).update_given(np.zeros(n, dtype=np.int64), np.ones(n))
    assert sums.sums[0] == n * (1 << 32) and sums.thresholds()[0] == 1.0


@FAST
@given(st.integers(33, 40), st.integers(1, 200), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_joint_row_max_wide_rows(k, n, dtype, seed):
    """Above SMALL_K (numpy's own reductions) the row maxima and guesses equal the plain definition too."""
    rng = np.random.default_rng(seed)
    probs = (rng.integers(0, 5, size=(n, k)) / 4).astype(dtype)
    labels = rng.integers(0, k, n)
    thresholds = rng.choice(np.array([0.0, 0.25, 0.5, 1.0, EMPTY_CLASS_THRESHOLD]), size=k)
    want_guess, want_joint = _plain_guess(labels, probs, thresholds)
    counts = ConfidentJointCounts(k)
    row_max = np.empty(n, dtype=dtype)
    guess = counts.update(labels, probs, thresholds, row_max=row_max)
    assert np.array_equal(row_max, probs.max(axis=1))
    assert np.array_equal(guess, want_guess) and np.array_equal(counts.joint, want_joint)


def test_joint_row_max_must_match_the_batch():
    counts = ConfidentJointCounts(2)
    with pytest.raises(ValueError, match="row_max"):
        counts.update(np.array([0, 1]), np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([0.5, 0.5]),
                      row_max=np.empty(2, dtype=np.float32))


@FAST
@given(st.integers(1, 5), st.integers(1, 400), st.integers(0, 2**31), st.sampled_from([1, 3, 64]))
def test_class_sums_in_small_chunks_equal_one_pass(k, n, seed, rows):
    """Class sums over cache-sized chunks equal the exact int64 sums (np.add.at), whatever the chunk size."""
    import labelqa.stats.confident as sc

    rng = np.random.default_rng(seed)
    given_p = (rng.integers(0, 9, n) / 8) if seed % 2 else rng.random(n)
    labels = rng.integers(0, k, n)
    want = np.zeros(k, dtype=np.int64)
    np.add.at(want, labels, np.rint(given_p * sc.PROB_SCALE).astype(np.int64))
    with chunk_rows("_SUM_CHUNK_ROWS", rows):
        sums = ClassProbSums(k).update_given(labels, given_p)
    assert np.array_equal(sums.sums, want)
    assert np.array_equal(sums.counts, np.bincount(labels, minlength=k))


@FAST
@given(st.integers(1, 32), st.integers(1, 600), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31),
       st.sampled_from([0.05, 0.5, 3.0]), st.sampled_from([1, 7, 16384]))
def test_row_entropy_bit_for_bit_the_class_by_class_subtraction(k, n, dtype, seed, alpha, chunk):
    """One reduction over the classes then ``0 - sum`` gives the bits of subtracting the terms from 0 class by
    class (signed zeros of one-hot rows included), in any chunking."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, alpha), n).astype(dtype)
    probs[rng.random((n, k)) < 0.1] = 0
    probs[: n // 4] = np.round(probs[: n // 4] * 4) / 4  # one-hot and tied rows
    terms = np.log(np.maximum(probs, np.finfo(dtype).tiny)) * probs
    want = np.zeros(n, dtype=dtype)
    for j in range(k):
        want -= terms[:, j]
    with chunk_rows("_CHUNK_ROWS", chunk):
        got = row_entropy(probs)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@FAST
@given(st.integers(33, 70), st.integers(1, 200), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31),
       st.sampled_from([1, 37, 500, 1 << 20]), st.booleans(), st.booleans())
def test_wide_joint_in_blocks_equals_the_plain_rows(k, n, dtype, seed, block, pass_argmax, with_nan):
    """Above SMALL_K the confident sets are found in blocks of rows (one reused bool buffer): guesses, joint and
    row maxima are the plain definition's for any block size, ties, exact cutoffs and NaN rows."""
    rng = np.random.default_rng(seed)
    probs = (rng.integers(0, 5, size=(n, k)) / 4).astype(dtype)
    if with_nan:
        probs[rng.random(n) < 0.1, rng.integers(0, k)] = np.nan
    labels = rng.integers(0, k, n)
    thresholds = rng.choice(np.array([0.0, 0.25, 0.5, 0.75, 1.0, EMPTY_CLASS_THRESHOLD]), size=k)
    want_guess, want_joint = _plain_guess(labels, probs, thresholds)
    row_max = np.empty(n, dtype=dtype)
    with chunk_rows("_WIDE_BLOCK_ELEMENTS", block):
        counts = ConfidentJointCounts(k)
        guess = counts.update(labels, probs, thresholds, argmax=probs.argmax(axis=1) if pass_argmax else None,
                              row_max=row_max)
    assert guess.dtype == np.int64 and np.array_equal(guess, want_guess)
    assert np.array_equal(counts.joint, want_joint)
    assert np.array_equal(row_max, probs[np.arange(n), probs.argmax(axis=1)], equal_nan=True)


@st.composite
def any_width_rows(draw):
    """Rows of 1..40 classes (both sides of SMALL_K) on a coarse grid (ties), some holding NaN or inf."""
    k = draw(st.integers(1, 40))
    n = draw(st.integers(0, 400))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    probs = rng.dirichlet(np.ones(k), n).astype(dtype) if draw(st.booleans()) else \
        (rng.integers(-1, 9, size=(n, k)) / 8).astype(dtype)
    if n and draw(st.booleans()):
        probs[rng.integers(0, n), rng.integers(0, k)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return probs


@FAST
@given(any_width_rows(), st.sampled_from([1, 5, 16384]), st.booleans())
def test_row_sum_argmax_is_numpy_bit_for_bit(probs, chunk, want_top):
    """Row sums as np.add.reduce (the same bits: numpy's summation order), argmax as numpy (first NaN), and
    min/max of the whole matrix (NaN when a value is NaN or a row sums to NaN), for any chunking."""
    from labelqa.stats.confident import row_sum_argmax

    n = probs.shape[0]
    sums = np.full(n, 7.0, dtype=probs.dtype)
    top = np.full(n, -1, dtype=np.int32) if want_top else None
    with chunk_rows("_CHUNK_ROWS", chunk), chunk_rows("_WIDE_BLOCK_ELEMENTS", max(1, chunk * probs.shape[1])), \
            np.errstate(all="ignore"):
        low, high = row_sum_argmax(probs, sums, top)
        want = np.add.reduce(probs, axis=1)
    assert np.array_equal(sums.view(np.uint8), want.view(np.uint8))  # bit for bit, NaN included
    if want_top:
        assert np.array_equal(top, probs.argmax(axis=1))
    if n == 0:
        assert (low, high) == (np.inf, -np.inf)
    elif np.isnan(want).any():
        assert np.isnan(low) and np.isnan(high)
    else:
        assert (low, high) == (probs.min(), probs.max())
