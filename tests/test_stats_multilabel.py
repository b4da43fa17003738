"""Multi-label partial aggregates (labelqa.stats.multilabel): merge laws and hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.errors import LabelqaError
from labelqa.stats.confident import EMPTY_CLASS_THRESHOLD, PROB_SCALE, calibrate_confident_joint
from labelqa.stats.multilabel import (
    MultilabelJoint,
    MultilabelSums,
    calibrate_multilabel_confident_joint,
    fixed_point,
    column_counts,
    set_members,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def pair_matrices(draw):
    """``(n, K)`` given values, probabilities on a coarse grid (float32 or float64) and pair masks."""
    n = draw(st.integers(0, 40))
    k = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.random((n, k)) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    grid = draw(st.sampled_from([4, 16, 10]))  # 1/10 is not dyadic: fixed-point rounding matters
    p = (rng.integers(0, grid + 1, (n, k)) / grid).astype(draw(st.sampled_from([np.float32, np.float64])))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=5))) - {n})
    return y, p, rng, cuts


def q_of(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.where(y, p, p.dtype.type(1) - p)


def batches(n: int, cuts: list[int]) -> list[slice]:
    bounds = [0, *[c for c in cuts if 0 < c < n], n]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def merged(parts: list, rng: np.random.Generator):
    order = rng.permutation(len(parts))
    acc = parts[order[0]]
    for i in order[1:]:
        acc.merge(parts[i])
    return acc


# --------------------------------------------------------------------------- MultilabelSums
def test_sums_thresholds_and_quality_hand_computed():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]], dtype=bool)
    p = np.array([[0.75, 0.5, 0.5], [0.25, 0.875, 0.5], [0.5, 0.25, 0.5], [1.0, 0.0, 0.5]])
    sums = MultilabelSums(3).update(y, q_of(y, p))
    # q: class 0 given (.75, .25), absent (1 - .5, 1 - 1); class 1 given (.875, 0), absent (.5, .75);
    # class 2 absent everywhere (.5 x 4), never given -> the unreachable threshold
    assert sums.counts.tolist() == [[2, 2], [2, 2], [4, 0]]
    np.testing.assert_array_equal(sums.thresholds(), [[0.25, 0.5], [0.625, 0.4375], [0.5, EMPTY_CLASS_THRESHOLD]])
    np.testing.assert_array_equal(sums.quality(), [1.5 / 4, 2.125 / 4, 0.5])
    assert sums.n_rows == 4
    empty = MultilabelSums(3)
    assert empty.n_rows == 0
    np.testing.assert_array_equal(empty.quality(), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(empty.thresholds(), np.full((3, 2), EMPTY_CLASS_THRESHOLD))


@SETTINGS
@given(pair_matrices())
def test_sums_any_batching_and_merge_order_equal_one_update(problem):
    y, p, rng, cuts = problem
    k = y.shape[1]
    q = q_of(y, p)
    whole = MultilabelSums(k).update(y, q)
    parts = [MultilabelSums(k).update(y[sl], q[sl]) for sl in batches(len(y), cuts)]
    got = merged(parts, rng)
    assert got.counts.tolist() == whole.counts.tolist()
    assert got.sums.tolist() == whole.sums.tolist()
    # sequential updates of one partial, too
    seq = MultilabelSums(k)
    for sl in batches(len(y), cuts):
        seq.update(y[sl], q[sl])
    assert seq.sums.tolist() == whole.sums.tolist()
    # and the definition: exact integer sums of rint(q * 2**32) per (class, given value)
    fixed = np.rint(q.astype(np.float64) * PROB_SCALE).astype(np.int64)
    for j in range(k):
        assert whole.sums[j].tolist() == [int(fixed[~y[:, j], j].sum()), int(fixed[y[:, j], j].sum())]
        assert whole.counts[j].tolist() == [int((~y[:, j]).sum()), int(y[:, j].sum())]


@SETTINGS
@given(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=30))
def test_fixed_point_float32_equals_float64_rounding(values):
    v32 = np.asarray(values, dtype=np.float32)
    want = np.rint(v32.astype(np.float64) * PROB_SCALE).astype(np.int64)
    assert fixed_point(v32).tolist() == want.tolist()
    assert fixed_point(v32.astype(np.float64)).tolist() == want.tolist()


# --------------------------------------------------------------------------- MultilabelJoint
def joint_inputs(y: np.ndarray, rng: np.random.Generator):
    counted = rng.random(y.shape) < 0.8
    off = counted & (rng.random(y.shape) < 0.4)  # counted off the diagonal: a subset of the counted pairs
    dis = rng.random(y.shape) < 0.5
    return off, counted, dis


def test_joint_hand_computed():
    y = np.array([[1], [1], [1], [0], [0], [0]], dtype=bool)
    counted = np.array([[1], [1], [0], [1], [1], [1]], dtype=bool)
    off = np.array([[1], [0], [0], [0], [1], [1]], dtype=bool)
    dis = np.array([[1], [0], [1], [0], [0], [1]], dtype=bool)
    j = MultilabelJoint(1).update(y, off, counted, dis)
    # given 1: rows 0,1 counted, row 0 off (guessed 0); given 0: rows 3,4,5 counted, 4 and 5 off (guessed 1)
    assert j.joint.tolist() == [[[1, 2], [1, 1]]]
    assert j.est.tolist() == [2]  # rows 0 and 5: off the diagonal and disagreeing
    assert j.cand_cl.tolist() == [[1, 1]]  # row 5 (given 0), row 0 (given 1)
    assert j.cand_png.tolist() == [[1, 2]]  # row 5; rows 0 and 2


@SETTINGS
@given(pair_matrices())
def test_joint_any_batching_and_merge_order_equal_one_update(problem):
    y, _p, rng, cuts = problem
    k = y.shape[1]
    off, counted, dis = joint_inputs(y, rng)
    whole = MultilabelJoint(k).update(y, off, counted, dis)
    parts = [MultilabelJoint(k).update(y[sl], off[sl], counted[sl], dis[sl]) for sl in batches(len(y), cuts)]
    got = merged(parts, rng)
    for name in ("joint", "est", "cand_cl", "cand_png"):
        assert getattr(got, name).tolist() == getattr(whole, name).tolist(), name
    # brute force, class by class
    for c in range(k):
        for b in (0, 1):
            given = y[:, c] == bool(b)
            for t in (0, 1):
                guessed = np.where(off[:, c], 1 - b, b) == t
                assert whole.joint[c, b, t] == np.count_nonzero(given & counted[:, c] & guessed)
            assert whole.cand_cl[c, b] == np.count_nonzero(given & off[:, c] & dis[:, c])
            assert whole.cand_png[c, b] == np.count_nonzero(given & dis[:, c])
        assert whole.est[c] == np.count_nonzero(off[:, c] & dis[:, c])


# --------------------------------------------------------------------------- calibration
def test_calibration_known_case():
    joint = np.array([[[3, 1], [2, 4]], [[0, 0], [1, 1]], [[0, 5], [0, 0]]])
    counts = np.array([[6, 4], [3, 2], [0, 0]])
    cal = calibrate_multilabel_confident_joint(joint, counts)
    # class 0: rows rescaled to 6 and 4: (4.5, 1.5) -> (4, 2) (ties to the higher column), (4/3, 8/3) -> (1, 3)
    # class 1: an all-zero row with 3 rows of that value -> 3 on the diagonal; class 2: no rows at all
    assert cal.tolist() == [[[4, 2], [1, 3]], [[3, 0], [1, 1]], [[0, 0], [0, 0]]]
    assert cal.dtype == np.int64


@SETTINGS
@given(st.lists(st.tuples(st.lists(st.integers(0, 9), min_size=4, max_size=4),
                          st.lists(st.integers(0, 12), min_size=2, max_size=2)), min_size=1, max_size=6))
def test_calibration_is_the_multiclass_rule_on_each_class(cases):
    joint = np.array([c[0] for c in cases]).reshape(-1, 2, 2)
    counts = np.array([c[1] for c in cases])
    cal = calibrate_multilabel_confident_joint(joint, counts)
    for j in range(len(cases)):
        assert cal[j].tolist() == calibrate_confident_joint(joint[j], counts[j]).tolist()


def test_calibration_refuses_bad_shapes():
    with pytest.raises(LabelqaError, match=r"\(K, 2, 2\)"):
        calibrate_multilabel_confident_joint(np.zeros((2, 3, 3)), np.zeros((2, 3)))
    with pytest.raises(LabelqaError, match=r"\(K, 2, 2\)"):
        calibrate_multilabel_confident_joint(np.zeros((2, 2, 2)), np.zeros((3, 2)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 300), k=st.integers(0, 9), density=st.floats(0.0, 1.0), seed=st.integers(0, 2 ** 32 - 1),
       block=st.integers(1, 50))
def test_set_members_is_nonzero_in_list_layout(n, k, density, seed, block, monkeypatch):
    """Row blocks on threads give np.nonzero's columns, row by row, and Arrow list offsets."""
    import labelqa.stats.multilabel as sm

    matrix = np.random.default_rng(seed).random((n, k)) < density
    monkeypatch.setattr(sm, "SET_BLOCK_ROWS", block)
    monkeypatch.setattr(sm, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setenv("LABELQA_THREADS", "3")
    offsets, members = set_members(matrix)
    rows, cols = np.nonzero(matrix)
    assert offsets.dtype == np.int32 and members.dtype == np.int64
    assert np.array_equal(members, cols)
    assert np.array_equal(np.diff(offsets), np.bincount(rows, minlength=n)) and offsets[0] == 0


@SETTINGS
@given(n=st.integers(0, 600), k=st.integers(0, 7), seed=st.integers(0, 2 ** 32 - 1), step=st.integers(1, 3))
def test_column_counts_is_count_nonzero(n, k, seed, step):
    mask = np.random.default_rng(seed).random((n, k)) < 0.5
    view = mask[::step]  # strided rows too
    got = column_counts(view)
    assert got.dtype == np.int64 and np.array_equal(got, np.count_nonzero(view, axis=0))
