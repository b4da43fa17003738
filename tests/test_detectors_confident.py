"""Confident learning: known answers computed by hand, invariants, a realistic run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.detectors import confident as cl_module
from labelqa.detectors.base import DetectorResult
from labelqa.detectors.confident import (
    CL_FILTER_METHODS,
    FILTER_METHODS,
    SCORE_METHODS,
    ConfidentLearning,
    LatentEstimates,
    calibrate_confident_joint,
    compute_confident_joint,
    estimate_latent,
    find_label_issues,
    get_label_quality_scores,
    per_class_thresholds,
)
from labelqa.errors import LabelqaError
from labelqa.jsonable import jsonable
from labelqa.stats.confident import ROWWISE_ENTROPY_K, SMALL_K
from labelqa.run.driver import scan_out_of_core
from tests.test_run_driver import ArrayRunner, multiclass_data, random_bounds

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The known-answer toy. t = (0.75, 4.8/7, 0.8); row 2 (given 1, p = (.1, 0, .9))
# is the only row confidently another class, and the only label error.
TOY_PROBS = np.array(
    [[0.9, 0.1, 0.0], [0.6, 0.2, 0.2], [0.1, 0.0, 0.9]] + [[0.1, 0.8, 0.1]] * 6 + [[0.1, 0.1, 0.8]]
)
TOY_LABELS = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 2])
AGREEMENT_RULE = FILTER_METHODS[:5]  # methods after which agreeing rows are unflagged


def make_data(labels, probs) -> LabelData:
    probs = np.asarray(probs)
    return LabelData(
        labels=np.asarray(labels, dtype=np.int64),
        pred_probs=probs,
        classes=tuple(range(probs.shape[1])),
        ids=np.arange(len(labels)),
    )


def peaked_noisy_data(seed: int, n: int, k: int, *, spread: float, peak: float, noise: float,
                      dtype: type = np.float64) -> LabelData:
    """Dirichlet(``spread``) rows with ``peak`` added at the true class, renormalised; ``noise`` of the labels
    redrawn uniformly."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k) * spread, n).astype(dtype)
    probs[np.arange(n), truth] += peak
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.where(rng.random(n) < noise, rng.integers(0, k, n), truth)
    return make_data(labels, probs)


# --------------------------------------------------------------------------- the toy
def test_toy_thresholds():
    np.testing.assert_allclose(per_class_thresholds(TOY_LABELS, TOY_PROBS), [0.75, 0.6857, 0.8], atol=5e-5)


def test_toy_confident_joint_raw_and_calibrated():
    joint, guess = compute_confident_joint(TOY_LABELS, TOY_PROBS)
    assert joint.tolist() == [[1, 0, 0], [0, 6, 1], [0, 0, 1]]
    assert guess[2] == 2 and guess[1] == -1
    # row 0 sums to 1 but n_0 = 2: rescaled to (2, 0, 0); rows 1, 2 already sum to n
    cal = calibrate_confident_joint(joint, [2, 7, 1])
    assert cal.tolist() == [[2, 0, 0], [0, 6, 1], [0, 0, 1]]
    assert cal.dtype == np.int64


@pytest.mark.parametrize("filter_by", CL_FILTER_METHODS)
def test_toy_every_method_flags_exactly_row_2(filter_by):
    flags = find_label_issues(TOY_LABELS, TOY_PROBS, filter_by=filter_by)
    assert flags.dtype == bool
    assert np.flatnonzero(flags).tolist() == [2]


@pytest.mark.parametrize("filter_by", CL_FILTER_METHODS)
def test_toy_float32_gives_the_same(filter_by):
    flags = find_label_issues(TOY_LABELS, TOY_PROBS.astype(np.float32), filter_by=filter_by)
    assert np.flatnonzero(flags).tolist() == [2]


# --------------------------------------------------------------------------- scores
SCORE_LABELS = np.zeros(4, dtype=np.int64)
SCORE_PROBS = np.array([[1.0, 0.0, 0.0], [0.98, 0.01, 0.01], [0.5, 0.3, 0.2], [0.0, 1.0, 0.0]])


def test_self_confidence_known_answer():
    scores = get_label_quality_scores(SCORE_LABELS, SCORE_PROBS, method="self_confidence")
    np.testing.assert_allclose(scores, [1.0, 0.98, 0.5, 0.0])


def test_normalized_margin_known_answer():
    # (p_given - max other + 1) / 2: (1-0+1)/2, (.98-.01+1)/2, (.5-.3+1)/2, (0-1+1)/2
    scores = get_label_quality_scores(SCORE_LABELS, SCORE_PROBS, method="normalized_margin")
    np.testing.assert_allclose(scores, [1.0, 0.985, 0.6, 0.0])


def test_confidence_weighted_entropy_known_answer():
    scores = get_label_quality_scores(SCORE_LABELS, SCORE_PROBS, method="confidence_weighted_entropy")
    # Row (.5, .3, .2): H = .5 ln 2 + .3 ln(10/3) + .2 ln 5 = 0.34657 + 0.36119 + 0.32189 = 1.02965,
    # H / ln 3 = 1.02965 / 1.09861 = 0.93723, r = 0.93723 / 0.5 = 1.87446,
    # score = ln(2.87446) / 1.87446 = 1.05587 / 1.87446 = 0.56329.
    assert scores[2] == pytest.approx(0.56329, abs=1e-4)
    # Row (.98, .01, .01): H = .98 ln(1/.98) + 2 * .01 ln 100 = 0.019799 + 0.092103 = 0.111902,
    # / ln 3 = 0.101858, r = 0.101858 / .98 = 0.103937, score = ln(1.103937) / 0.103937
    # = 0.098882 / 0.103937 = 0.95137.
    assert scores[1] == pytest.approx(0.95137, abs=1e-4)
    # One-hot rows have H = 0 (0 log 0 = 0), so r = 0 and, as specified,
    # ln(1 + 0) / max(0, 1e-6) = 0 -- for the right one-hot row as for the wrong one.
    assert scores[0] == 0.0 and scores[3] == 0.0


def test_confidence_weighted_entropy_binary_uniform():
    # (.5, .5): H / ln 2 = 1, r = 1 / .5 = 2, score = ln 3 / 2
    scores = get_label_quality_scores([0], [[0.5, 0.5]], method="confidence_weighted_entropy")
    assert scores[0] == pytest.approx(math.log(3) / 2)


def test_adjust_pred_probs_known_answer():
    # t = (mean(.9, .7), mean(.8, .6)) = (.8, .7), max t = .8:
    # p' = p - t + .8 = p + (0, .1), each row then sums to 1.1.
    labels = [0, 0, 1, 1]
    probs = [[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]]
    scores = get_label_quality_scores(labels, probs, adjust_pred_probs=True)
    np.testing.assert_allclose(scores, [0.9 / 1.1, 0.7 / 1.1, 0.9 / 1.1, 0.7 / 1.1])
    # K = 2 and rows summing to 1: normalized margin (2p' - 1 + 1) / 2 = p'
    margin = get_label_quality_scores(labels, probs, method="normalized_margin", adjust_pred_probs=True)
    np.testing.assert_allclose(margin, scores)


def test_adjust_pred_probs_with_a_class_nobody_is_given():
    # t = (.7, .6, 2.0 for the empty class): p' = p + (1.3, 1.4, 0).
    # Row 0 (.6, .3, .1) -> (1.9, 1.7, .1) / 3.7.
    labels = [0, 0, 1, 1]
    probs = [[0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4]]
    scores = get_label_quality_scores(labels, probs, adjust_pred_probs=True)
    assert scores[0] == pytest.approx(1.9 / 3.7)


def test_adjusted_scores_are_the_unadjusted_scores_of_the_adjusted_probabilities():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 60)
    labels = rng.integers(0, 4, 60)
    t = per_class_thresholds(labels, probs)
    adjusted = probs - t + t.max()
    adjusted /= adjusted.sum(axis=1, keepdims=True)
    for method in SCORE_METHODS:
        np.testing.assert_allclose(
            get_label_quality_scores(labels, probs, method=method, adjust_pred_probs=True),
            get_label_quality_scores(labels, adjusted, method=method),
            atol=1e-12,
        )


# --------------------------------------------------------------------------- calibration, latent
def test_calibration_rescales_rows_and_fills_an_empty_row():
    # row 0 (3, 1) -> n_0 = 8: (6, 2); row 1 is all zero with n_1 = 2: (0, 2)
    cal = calibrate_confident_joint([[3, 1], [0, 0]], [8, 2])
    assert cal.tolist() == [[6, 2], [0, 2]]


def test_calibration_rounding_keeps_row_sums():
    # row 0: (1, 1, 1) scaled to 4 -> 4/3 each: floors (1, 1, 1) and one +1,
    # which goes to the highest of the tied columns
    cal = calibrate_confident_joint([[1, 1, 1], [0, 5, 0], [0, 0, 5]], [4, 5, 5])
    assert cal.tolist() == [[1, 1, 2], [0, 5, 0], [0, 0, 5]]
    # (2, 1, 1) scaled to 7 -> (3.5, 1.75, 1.75): floors (3, 1, 1), two +1 by
    # largest remainders: .75, .75 beat .5
    cal = calibrate_confident_joint([[2, 1, 1], [0, 5, 0], [0, 0, 5]], [7, 5, 5])
    assert cal.tolist() == [[3, 2, 2], [0, 5, 0], [0, 0, 5]]


def test_estimate_latent_known_answer():
    latent = estimate_latent([[6, 2], [1, 1]])
    assert isinstance(latent, LatentEstimates)
    # Q = [[.6, .2], [.1, .1]]; column sums (.7, .3); row sums (.8, .2)
    np.testing.assert_allclose(latent.joint, [[0.6, 0.2], [0.1, 0.1]])
    np.testing.assert_allclose(latent.noise_matrix, [[6 / 7, 2 / 3], [1 / 7, 1 / 3]])
    np.testing.assert_allclose(latent.inverse_noise_matrix, [[0.75, 0.25], [0.5, 0.5]])
    np.testing.assert_allclose(latent.latent_prior, [0.7, 0.3])


def test_estimate_latent_guards_empty_classes():
    latent = estimate_latent([[5, 0], [0, 0]])
    np.testing.assert_allclose(latent.noise_matrix, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(latent.inverse_noise_matrix, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(latent.latent_prior, [1.0, 0.0])
    assert np.isfinite(estimate_latent(np.zeros((3, 3))).noise_matrix).all()


@pytest.mark.parametrize("seed", range(6))
def test_estimate_latent_equals_its_definition_with_empty_lines(seed):
    """Q = C / N; the noise matrix Q over its column sums and the inverse over its row sums, with an identity
    column (row) where the sum is 0, bit for bit; the noise rate 1 - trace(Q) from the diagonal alone."""
    from labelqa.stats.confident import noise_rate

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 40))
    c = rng.integers(0, 5, (k, k)) * (rng.random((k, k)) < 0.4)
    c[rng.random(k) < 0.3] = 0  # empty rows
    c[:, rng.random(k) < 0.3] = 0  # empty columns
    latent = estimate_latent(c)
    q = c / c.sum() if c.sum() else np.zeros((k, k))
    col, row = q.sum(axis=0), q.sum(axis=1)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(latent.noise_matrix, np.where(col > 0, q / col, np.eye(k)))
        np.testing.assert_array_equal(latent.inverse_noise_matrix, np.where(row[:, None] > 0, q / row[:, None], np.eye(k)))
    assert noise_rate(c) == (float(1.0 - np.trace(q)) if c.sum() else 0.0)


# --------------------------------------------------------------------------- flagging by hand
# Class 1 and 2 rows have t_1 = t_2 = .5. Class 0: row 0 (0, .5, .5) is confident
# for 1 and 2 (argmax tie -> 1); row 1 (.125, .25, .625) is confident for 2; rows
# 2-5 (.9, .05, .05): t_0 = 3.725 / 6. C_cal row 0 = (4, 1, 1).
# PBNR: cell (0, 1) takes the largest p_1 - p_0 (row 0: .5); cell (0, 2) the
# largest p_2 - p_0: rows 0 and 1 tie at .5 (exact in binary), and rows tied at
# the cut share one fate: both. Row 0, picked twice, counts once.
PBNR_PROBS = np.array(
    [[0.0, 0.5, 0.5], [0.125, 0.25, 0.625]] + [[0.9, 0.05, 0.05]] * 4 + [[0.2, 0.5, 0.3]] * 4
    + [[0.2, 0.3, 0.5]] * 4
)
PBNR_LABELS = np.array([0] * 6 + [1] * 4 + [2] * 4)


def test_pbnr_by_hand():
    joint, _ = compute_confident_joint(PBNR_LABELS, PBNR_PROBS)
    assert joint[0].tolist() == [4, 1, 1]
    flags = find_label_issues(PBNR_LABELS, PBNR_PROBS, filter_by="prune_by_noise_rate")
    assert np.flatnonzero(flags).tolist() == [0, 1]
    # PBC: n_0 - C_cal[0, 0] = 2 lowest p_0: rows 0 (0) and 1 (.1)
    assert np.flatnonzero(find_label_issues(PBNR_LABELS, PBNR_PROBS, filter_by="prune_by_class")).tolist() == [0, 1]


def test_ties_at_the_cut_are_all_or_nothing():
    # Class 0 (13 rows): seven (.2, .8), four (.9, .1), two (.4, .6); class 1: five
    # (.3, .7). t_0 = 5.8 / 13 = .446, t_1 = .7: the (.2, .8) rows are confidently
    # class 1, the (.4, .6) rows reach no threshold. C row 0 = (4, 7), calibrated
    # to 13: (4.73, 8.27) -> (5, 8).
    probs = np.array([[0.2, 0.8]] * 7 + [[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 2 + [[0.3, 0.7]] * 5)
    labels = np.array([0] * 13 + [1] * 5)
    joint, _ = compute_confident_joint(labels, probs)
    assert joint.tolist() == [[4, 7], [0, 5]]
    assert calibrate_confident_joint(joint, [13, 5]).tolist() == [[5, 8], [0, 5]]
    # PBNR cell (0, 1) = 8: margins .6 (x7), .2 (x2), -.8 (x4); the 8th largest
    # (.2) is shared by two rows: both are flagged, 9 in all.
    assert np.flatnonzero(find_label_issues(labels, probs)).tolist() == [*range(7), 11, 12]
    # PBC: 13 - 5 = 8 lowest p_0: .2 (x7) then .4 (x2): again both tied rows.
    flags = find_label_issues(labels, probs, filter_by="prune_by_class")
    assert np.flatnonzero(flags).tolist() == [*range(7), 11, 12]
    # With min_examples_per_class = 5 at most 8 rows of class 0 may be flagged:
    # the tied pair is then left out, never split by row position.
    flags = find_label_issues(labels, probs, min_examples_per_class=5)
    assert np.flatnonzero(flags).tolist() == list(range(7))
    # num_to_remove_per_class = 5 < 7 rows tied at .2: all 7, unless the cap forbids.
    flags = find_label_issues(labels, probs, filter_by="prune_by_class", num_to_remove_per_class=[5, 0])
    assert np.flatnonzero(flags).tolist() == list(range(7))
    flags = find_label_issues(labels, probs, filter_by="prune_by_class", num_to_remove_per_class=[5, 0],
                              min_examples_per_class=8)
    assert not flags.any()


def test_min_examples_per_class_by_hand():
    # t = (.2, .6): every class-0 row is confidently class 1 (rows 1 and 2 are
    # confident for both classes, argmax 1): C_cal row 0 = (0, 3); without the
    # guard all three would be flagged.
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]] + [[0.4, 0.6]] * 3)
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert find_label_issues(labels, probs, min_examples_per_class=0).sum() == 3
    flags = find_label_issues(labels, probs, min_examples_per_class=1)
    assert np.flatnonzero(flags).tolist() == [0, 1]  # the row with the highest p_0 is kept
    assert not find_label_issues(labels, probs, min_examples_per_class=3).any()


def test_num_to_remove_per_class_and_frac_noise_by_hand():
    probs = np.array([[0.05, 0.95], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.9, 0.1], [0.9, 0.1]]
                     + [[0.35, 0.65]] * 6)
    labels = np.array([0] * 6 + [1] * 6)
    # t = (2.45 / 6, .65) = (.408, .65): rows 0-3 are confidently class 1, rows
    # 4-5 class 0; C_cal row 0 = (2, 4) -> 4 issues in class 0
    assert np.flatnonzero(find_label_issues(labels, probs, filter_by="prune_by_class")).tolist() == [0, 1, 2, 3]
    flags = find_label_issues(labels, probs, filter_by="prune_by_class", num_to_remove_per_class=[2, 0])
    assert np.flatnonzero(flags).tolist() == [0, 1]
    flags = find_label_issues(labels, probs, filter_by="prune_by_class", frac_noise=0.5)
    assert np.flatnonzero(flags).tolist() == [0, 1]
    # PBNR splits the override over row 0's off-diagonal cells (only (0, 1) here)
    flags = find_label_issues(labels, probs, num_to_remove_per_class=[3, 0])
    assert np.flatnonzero(flags).tolist() == [0, 1, 2]
    # frac_noise = .3 as cleanlab 2.9: PBNR flags trunc(.3 * 4) = 1 row, PBC n_0 - trunc(2 + (4 - 1.2)) = 2 rows
    assert np.flatnonzero(find_label_issues(labels, probs, frac_noise=0.3)).tolist() == [0]
    flags = find_label_issues(labels, probs, filter_by="prune_by_class", frac_noise=0.3)
    assert np.flatnonzero(flags).tolist() == [0, 1]
    # low_self_confidence: T = round(.5 * 4) = 2 lowest self-confidences overall
    flags = find_label_issues(labels, probs, filter_by="low_self_confidence", frac_noise=0.5)
    assert np.flatnonzero(flags).tolist() == [0, 1]


def test_agreeing_rows_are_unflagged_with_near_ties_toward_the_label():
    # Row 0 (label 1): p_0 beats p_1 by 5e-7 < 1e-6: agrees.
    # Row 1 (label 1): p_0 beats p_1 by 2e-5: disagrees.
    probs = np.array([[0.5 + 2.5e-7, 0.5 - 2.5e-7], [0.5 + 1e-5, 0.5 - 1e-5]] + [[0.9, 0.1]] * 3
                     + [[0.1, 0.9]] * 3)
    labels = np.array([1, 1, 0, 0, 0, 1, 1, 1])
    flags = find_label_issues(labels, probs, filter_by="predicted_neq_given")
    assert np.flatnonzero(flags).tolist() == [1]


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"filter_by": "prune"}, "prune_by_noise_rate"),
        ({"score_method": "margin"}, "normalized_margin"),
        ({"frac_noise": 1.5}, "frac_noise"),
        ({"frac_noise": -0.1}, "frac_noise"),
        ({"min_examples_per_class": -1}, "min_examples_per_class"),
        ({"min_examples_per_class": 1.5}, "min_examples_per_class"),
        ({"num_to_remove_per_class": [1, 2]}, "num_to_remove_per_class"),
        ({"num_to_remove_per_class": [1, -2, 0]}, "num_to_remove_per_class"),
        ({"adjust_pred_probs": "yes"}, "adjust_pred_probs"),
    ],
)
def test_detector_rejects_bad_parameters(kwargs, needle):
    det = ConfidentLearning(**kwargs)
    with pytest.raises(LabelqaError) as err:
        det.detect(make_data(TOY_LABELS, TOY_PROBS))
    assert needle in str(err.value)
    bad = next(iter(kwargs.values()))
    assert repr(bad) in str(err.value) or str(bad) in str(err.value)


def test_functions_reject_bad_options_and_arrays():
    with pytest.raises(LabelqaError, match="prune_by_class"):
        find_label_issues(TOY_LABELS, TOY_PROBS, filter_by="nope")
    with pytest.raises(LabelqaError, match="self_confidence"):
        get_label_quality_scores(TOY_LABELS, TOY_PROBS, method="nope")
    with pytest.raises(LabelqaError):
        find_label_issues(TOY_LABELS[:-1], TOY_PROBS)
    with pytest.raises(LabelqaError):
        find_label_issues(TOY_LABELS + 5, TOY_PROBS)
    with pytest.raises(LabelqaError):
        per_class_thresholds(TOY_LABELS, TOY_PROBS, n_classes=4)


# --------------------------------------------------------------------------- the detector
def test_detector_on_the_toy():
    result = ConfidentLearning().detect(make_data(TOY_LABELS, TOY_PROBS.astype(np.float32)))
    assert isinstance(result, DetectorResult)
    assert result.name == "cl" == ConfidentLearning.name
    assert np.flatnonzero(result.issues).tolist() == [2]
    np.testing.assert_allclose(result.scores, TOY_PROBS[np.arange(10), TOY_LABELS], atol=1e-7)
    # flagged row 2: the confident-joint guess (2); the others keep their label
    assert result.suggested.tolist() == [0, 0, 2, 1, 1, 1, 1, 1, 1, 2]
    np.testing.assert_allclose(result.suggested_confidence, [0.9, 0.6, 0.9] + [0.8] * 7, atol=1e-7)
    s = result.summary
    assert json.loads(json.dumps(s)) == s  # plain JSON types
    assert s["confident_joint"] == [[1, 0, 0], [0, 6, 1], [0, 0, 1]]
    assert s["confident_joint_calibrated"] == [[2, 0, 0], [0, 6, 1], [0, 0, 1]]
    np.testing.assert_allclose(s["thresholds"], [0.75, 0.6857, 0.8], atol=5e-5)
    assert s["estimated_num_issues"] == 1
    assert s["estimated_noise_rate"] == pytest.approx(0.1)  # 1 - (2 + 6 + 1) / 10
    # Q = C_cal / 10; column 2 of Q is (0, .1, .1): P(s=1 | y*=2) = .5
    np.testing.assert_allclose(s["noise_matrix"], [[1, 0, 0], [0, 1, 0.5], [0, 0, 0.5]])
    np.testing.assert_allclose(s["inverse_noise_matrix"], [[1, 0, 0], [0, 6 / 7, 1 / 7], [0, 0, 1]])
    np.testing.assert_allclose(s["latent_prior"], [0.2, 0.6, 0.2])
    assert [row["class_count"] for row in s["per_class"]] == [2, 7, 1]
    np.testing.assert_allclose([row["estimated_noise_rate"] for row in s["per_class"]], [0, 1 / 7, 0])
    np.testing.assert_allclose([row["threshold"] for row in s["per_class"]], [0.75, 0.6857, 0.8], atol=5e-5)
    assert s["filter_by"] == "prune_by_noise_rate_plus" and s["score_method"] == "self_confidence"  # the default
    assert s["estimated_noise_rate_estimator"] == "disputed_weighted_trend"
    assert result.params == ConfidentLearning().get_params()


def test_detector_suggests_another_class_when_the_model_agrees_with_the_label():
    # low_self_confidence flags the T = 1 lowest row even if its argmax is its
    # label; the suggestion is then the best other class.
    probs = np.array([[0.4, 0.35, 0.25], [0.1, 0.0, 0.9]] + [[0.9, 0.05, 0.05]] * 3 + [[0.05, 0.9, 0.05]] * 3
                     + [[0.05, 0.05, 0.9]] * 3)
    labels = np.array([0, 1] + [0] * 3 + [1] * 3 + [2] * 3)
    det = ConfidentLearning(filter_by="low_self_confidence", num_to_remove_per_class=[1, 0, 0])
    result = det.detect(make_data(labels, probs))
    assert np.flatnonzero(result.issues).tolist() == [0]
    assert result.suggested[0] == 1
    assert result.suggested_confidence[0] == pytest.approx(0.35)


def test_detector_computes_the_confident_joint_once(monkeypatch):
    calls = []
    original = cl_module.confident_guesses

    def counting(probs, *args, **kwargs):
        calls.append(len(probs))
        return original(probs, *args, **kwargs)

    monkeypatch.setattr(cl_module, "confident_guesses", counting)
    ConfidentLearning(filter_by="both", score_method="normalized_margin").detect(make_data(TOY_LABELS, TOY_PROBS))
    assert sum(calls) == len(TOY_LABELS)  # every row counted exactly once


@pytest.mark.parametrize("filter_by", CL_FILTER_METHODS)
@pytest.mark.parametrize("score_method", SCORE_METHODS)
def test_detector_matches_the_functions(filter_by, score_method):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.7), 300).astype(np.float32)
    labels = rng.integers(0, 4, 300)
    det = ConfidentLearning(filter_by=filter_by, score_method=score_method, adjust_pred_probs=True)
    result = det.detect(make_data(labels, probs))
    assert np.array_equal(result.issues, find_label_issues(labels, probs, filter_by=filter_by))
    assert np.array_equal(
        result.scores, get_label_quality_scores(labels, probs, method=score_method, adjust_pred_probs=True)
    )
    flagged = result.issues
    assert np.array_equal(result.suggested[~flagged], labels[~flagged])
    assert (result.suggested[flagged] != labels[flagged]).all()
    np.testing.assert_allclose(result.suggested_confidence, probs[np.arange(300), result.suggested])


# --------------------------------------------------------------------------- properties
@st.composite
def datasets(draw, max_n=40):
    """Small datasets. Probabilities are ratios of small integers, so exact ties
    (between rows and between classes) are frequent."""
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    true = rng.integers(0, k, n)
    weights = rng.integers(0, 4, size=(n, k)).astype(np.float64)
    weights[np.arange(n), true] += rng.integers(0, 6, n)
    weights[weights.sum(axis=1) == 0, 0] = 1.0
    probs = weights / weights.sum(axis=1, keepdims=True)
    if draw(st.booleans()):
        probs = probs.astype(np.float32)
    labels = np.where(rng.random(n) < 0.3, rng.integers(0, k, n), true)
    return labels, probs


def _agrees(labels, probs):
    p = probs.astype(np.float64)
    return p[np.arange(len(labels)), labels] >= p.max(axis=1) - 1e-6


@FAST
@given(datasets())
def test_calibrated_rows_sum_to_class_counts(data):
    labels, probs = data
    k = probs.shape[1]
    n = np.bincount(labels, minlength=k)
    joint, guess = compute_confident_joint(labels, probs)
    cal = calibrate_confident_joint(joint, n)
    assert (cal >= 0).all()
    assert np.array_equal(cal.sum(axis=1), n)
    assert cal.sum() == len(labels)
    latent = estimate_latent(cal)
    np.testing.assert_allclose(latent.noise_matrix.sum(axis=0), 1.0)
    np.testing.assert_allclose(latent.inverse_noise_matrix.sum(axis=1), 1.0)
    assert latent.latent_prior.sum() == pytest.approx(1.0)


@FAST
@given(datasets(), st.integers(0, 3))
def test_flag_invariants(data, min_examples):
    labels, probs = data
    k = probs.shape[1]
    n = np.bincount(labels, minlength=k)
    agrees = _agrees(labels, probs)
    flags = {
        f: find_label_issues(labels, probs, filter_by=f, min_examples_per_class=min_examples)
        for f in CL_FILTER_METHODS
    }
    assert np.array_equal(flags["both"], flags["prune_by_class"] & flags["prune_by_noise_rate"])
    for f in AGREEMENT_RULE:
        assert not (flags[f] & agrees).any(), f
    for f, mask in flags.items():
        unflagged = np.bincount(labels[~mask], minlength=k)
        assert (unflagged >= np.minimum(n, min_examples)).all(), f


@FAST
@given(datasets(), st.integers(0, 2**32 - 1), st.sampled_from([1.0, 0.5]), st.integers(0, 2))
def test_results_do_not_depend_on_row_order(data, seed, frac, min_examples):
    labels, probs = data
    perm = np.random.default_rng(seed).permutation(len(labels))
    for f in CL_FILTER_METHODS:
        a = find_label_issues(labels, probs, filter_by=f, frac_noise=frac, min_examples_per_class=min_examples)
        b = find_label_issues(labels[perm], probs[perm], filter_by=f, frac_noise=frac,
                              min_examples_per_class=min_examples)
        assert np.array_equal(a[perm], b), f
    for method in SCORE_METHODS:
        for adjust in (False, True):
            a = get_label_quality_scores(labels, probs, method=method, adjust_pred_probs=adjust)
            b = get_label_quality_scores(labels[perm], probs[perm], method=method, adjust_pred_probs=adjust)
            assert np.array_equal(a[perm], b), (method, adjust)


@FAST
@given(datasets())
def test_scores_are_in_unit_interval(data):
    labels, probs = data
    for method in SCORE_METHODS:
        for adjust in (False, True):
            s = get_label_quality_scores(labels, probs, method=method, adjust_pred_probs=adjust)
            assert s.shape == labels.shape and s.dtype == np.float64
            assert ((s >= 0) & (s <= 1)).all(), (method, adjust)


@FAST
@given(datasets())
def test_half_the_noise_flags_a_subset_of_about_half(data):
    labels, probs = data
    k = probs.shape[1]
    n = np.bincount(labels, minlength=k)
    joint, _ = compute_confident_joint(labels, probs)
    per_class = n - np.diagonal(calibrate_confident_joint(joint, n))  # PBC counts at frac 1
    for f in ("prune_by_class", "prune_by_noise_rate", "both"):
        full = find_label_issues(labels, probs, filter_by=f)
        half = find_label_issues(labels, probs, filter_by=f, frac_noise=0.5)
        assert not (half & ~full).any(), f
    # PBC: per class at most ceil(c / 2) rows (halved cells, rows rounded to
    # keep n_k), plus any rows tied at the cut
    half = find_label_issues(labels, probs, filter_by="prune_by_class", frac_noise=0.5)
    sc = probs[np.arange(len(labels)), labels]
    for c in range(k):
        rows = labels == c
        target = math.ceil(per_class[c] / 2)
        if target == 0:
            assert not half[rows].any()
            continue
        cut = np.sort(sc[rows])[target - 1]
        assert half[rows].sum() <= max(target, np.count_nonzero(sc[rows] <= cut))
        if np.count_nonzero(sc[rows] == cut) == 1:
            assert half[rows].sum() <= target


# --------------------------------------------------------------------------- reference check
def _reference_flags(labels, probs, filter_by, min_examples=1):
    """Slow, straightforward reading of the spec (Python loops, full sorts)."""
    n_rows, k = probs.shape
    n = np.bincount(labels, minlength=k)
    caps = np.maximum(n - min_examples, 0)
    joint, guess = compute_confident_joint(labels, probs)
    cal = calibrate_confident_joint(joint, n)
    agrees = _agrees(labels, probs)
    sc = [probs[i, labels[i]] for i in range(n_rows)]

    def select(rows, key, count, limit):
        """rows sorted by key; rows tied with the count-th share its fate."""
        if count <= 0:
            return set()
        ordered = sorted(rows, key=key)
        if count >= len(ordered):
            return set(ordered)
        cut = key(ordered[count - 1])
        inclusive = {i for i in rows if key(i) <= cut}
        return inclusive if len(inclusive) <= limit else {i for i in rows if key(i) < cut}

    flagged = set()
    if filter_by == "prune_by_class":
        for c in range(k):
            rows = [i for i in range(n_rows) if labels[i] == c]
            flagged |= select(rows, lambda i, c=c: sc[i], min(n[c] - cal[c, c], caps[c]), caps[c])
    elif filter_by == "prune_by_noise_rate":
        for c in range(k):
            rows = [i for i in range(n_rows) if labels[i] == c]
            off = [int(cal[c, j]) if j != c else 0 for j in range(k)]
            if sum(off) > caps[c]:
                return None  # the proportional re-split is not re-implemented here
            strict, inclusive = set(), set()
            for j in range(k):
                if off[j] == 0:
                    continue
                margin = {i: probs[i, j] - probs[i, c] for i in rows}
                ordered = sorted(rows, key=lambda i: -margin[i])
                if off[j] >= len(rows):
                    strict |= set(rows)
                    continue
                cut = margin[ordered[off[j] - 1]]
                strict |= {i for i in rows if margin[i] > cut}
                inclusive |= {i for i in rows if margin[i] >= cut}
            inclusive |= strict
            flagged |= inclusive if len(inclusive) <= caps[c] else strict
    elif filter_by in ("confident_learning", "predicted_neq_given"):
        for c in range(k):
            rows = [i for i in range(n_rows) if labels[i] == c and not agrees[i]
                    and (filter_by == "predicted_neq_given" or guess[i] not in (-1, c))]
            flagged |= select(rows, lambda i: sc[i], min(len(rows), caps[c]), caps[c])
    else:
        return None
    mask = np.zeros(n_rows, dtype=bool)
    mask[sorted(flagged)] = True
    return mask & ~agrees


@FAST
@given(datasets(), st.integers(0, 2))
def test_flags_match_a_slow_reference(data, min_examples):
    labels, probs = data
    for f in ("prune_by_class", "prune_by_noise_rate", "confident_learning", "predicted_neq_given"):
        expected = _reference_flags(labels, probs, f, min_examples)
        if expected is None:
            continue
        got = find_label_issues(labels, probs, filter_by=f, min_examples_per_class=min_examples)
        assert np.array_equal(got, expected), f


@FAST
@given(datasets(), st.sampled_from(["low_self_confidence", "low_normalized_margin"]))
def test_low_score_methods_flag_the_t_lowest(data, filter_by):
    labels, probs = data
    method = "self_confidence" if filter_by == "low_self_confidence" else "normalized_margin"
    scores = get_label_quality_scores(labels, probs, method=method)
    _, guess = compute_confident_joint(labels, probs)
    t = int(np.count_nonzero((guess >= 0) & (guess != labels) & ~_agrees(labels, probs)))
    flags = find_label_issues(labels, probs, filter_by=filter_by, min_examples_per_class=0)
    if t == 0:
        assert not flags.any()
        return
    cut = np.sort(scores)[t - 1]
    assert np.array_equal(flags, scores <= cut)  # the t lowest, ties at the cut included


# --------------------------------------------------------------------------- low_margin_midpoint
# By hand, t = (0.6, 0.6, 0.7) with CONFIDENT_EPS 1e-6:
#   row 0 (given 0, p=(.8, .1, .1)): agrees.            row 1 (given 0, p=(.4, .5, .1)): disagrees, p_1 < t_1 -> U
#   row 2 (given 0, p=(.6, .3, .1)): agrees.            row 3 (given 1, p=(.1, .9, 0)): agrees.
#   row 4 (given 1, p=(.7, .3, 0)): disagrees, p_0 >= t_0 -> counted off the diagonal -> A
#   row 5 (given 1, p=(.1, .6, .3)): agrees.            row 6 (given 2, p=(0, .3, .7)): agrees.
#   row 7 (given 2, p=(.45, .15, .4)): disagrees, no class clears its threshold -> U
#   row 8 (given 2, p=(0, 0, 1)): agrees.
MID_PROBS = np.array([[.8, .1, .1], [.4, .5, .1], [.6, .3, .1], [.1, .9, 0], [.7, .3, 0], [.1, .6, .3],
                      [0, .3, .7], [.45, .15, .4], [0, 0, 1]])
MID_LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_midpoint_toy_by_hand():
    """A = 1 (row 4), U = 2 (rows 1, 7): T = A + U/2 = 2, the two lowest normalized margins."""
    np.testing.assert_allclose(per_class_thresholds(MID_LABELS, MID_PROBS), [0.6, 0.6, 0.7])
    _, guess = compute_confident_joint(MID_LABELS, MID_PROBS)
    assert guess[4] == 0 and guess[1] == -1 and guess[7] == -1
    margins = get_label_quality_scores(MID_LABELS, MID_PROBS, method="normalized_margin")
    np.testing.assert_allclose(margins[[1, 4, 7]], [0.45, 0.3, 0.475])  # (p_s - best other + 1) / 2
    flags = find_label_issues(MID_LABELS, MID_PROBS, filter_by="low_margin_midpoint")
    assert np.flatnonzero(flags).tolist() == [1, 4]
    # the confident joint alone counts one issue: low_normalized_margin flags only row 4
    assert np.flatnonzero(find_label_issues(MID_LABELS, MID_PROBS, filter_by="low_normalized_margin")).tolist() == [4]
    summary = ConfidentLearning(filter_by="low_margin_midpoint").detect(make_data(MID_LABELS, MID_PROBS)).summary
    assert summary["estimated_num_issues"] == 1
    assert summary["disputed_bounds"] == [1, 3]
    assert summary["estimated_num_issues_midpoint"] == 2


def test_midpoint_rounds_half_up_and_honours_frac_noise():
    # one more uncertain dispute (row 9, given 1, p=(.05, .4, .55); t_1 becomes .55): A = 1, U = 3,
    # T = 1 + 1.5 -> 3: rows 4, 9, 1 (margins .3, .425, .45; row 7 has .475)
    probs = np.vstack([MID_PROBS, [[.05, .4, .55]]])
    labels = np.append(MID_LABELS, 1)
    _, guess = compute_confident_joint(labels, probs)
    assert guess[9] == -1
    flags = find_label_issues(labels, probs, filter_by="low_margin_midpoint")
    assert np.flatnonzero(flags).tolist() == [1, 4, 9]
    assert find_label_issues(labels, probs, filter_by="low_margin_midpoint", frac_noise=0.0).sum() == 0


@FAST
@given(datasets())
def test_midpoint_flags_the_t_lowest_margins(data):
    labels, probs = data
    scores = get_label_quality_scores(labels, probs, method="normalized_margin")
    _, guess = compute_confident_joint(labels, probs)
    disputed = ~_agrees(labels, probs)
    a = int(np.count_nonzero((guess >= 0) & (guess != labels) & disputed))
    u = int(np.count_nonzero((guess < 0) & disputed))
    t = (2 * a + u + 1) // 2
    flags = find_label_issues(labels, probs, filter_by="low_margin_midpoint", min_examples_per_class=0)
    low = find_label_issues(labels, probs, filter_by="low_normalized_margin", min_examples_per_class=0)
    assert not (low & ~flags).any()  # T >= A: a superset of low_normalized_margin
    if t == 0:
        assert not flags.any()
        return
    cut = np.sort(scores)[t - 1]
    assert np.array_equal(flags, scores <= cut)  # the t lowest, ties at the cut included


def test_midpoint_counts_more_than_the_confident_joint_on_ambiguous_errors():
    """Errors the model is unsure about (the shape of real human noise) are missed by the confident joint's count.

    Dirichlet outputs; 10% flipped labels, and on those rows the model puts
    only a modest share on the true class (ambiguous items). The midpoint
    count is nearer the truth than the confident joint's.
    """
    rng = np.random.default_rng(3)
    n, k = 4000, 4
    true = rng.integers(0, k, n)
    flipped = rng.random(n) < 0.1
    given_ = np.where(flipped, (true + rng.integers(1, k, n)) % k, true)
    alpha = np.full((n, k), 0.5)
    alpha[np.arange(n), true] += np.where(flipped, 1.5, 8.0)
    alpha[np.arange(n), given_] += np.where(flipped, 1.0, 0.0)
    probs = rng.gamma(alpha)
    probs /= probs.sum(axis=1, keepdims=True)
    summary = ConfidentLearning(filter_by="low_margin_midpoint").detect(make_data(given_, probs)).summary
    truth = int(flipped.sum())
    low, high = summary["disputed_bounds"]
    assert low == summary["estimated_num_issues"] and low <= summary["estimated_num_issues_midpoint"] <= high
    assert abs(summary["estimated_num_issues_midpoint"] - truth) < abs(summary["estimated_num_issues"] - truth)


# --------------------------------------------------------------------------- prune_by_noise_rate_plus
def _plus_count(labels, probs):
    """``(A, W, R, T)`` of prune_by_noise_rate_plus, by hand (numpy least squares, no fixed-point sums).

    x = normalized entropy, y = the dispute margin (m - s)/(m + s) of a disputed row, else 0; the line is
    fitted over the rows counted in C and summed over the others, clipped to [0, their number].
    """
    p = probs.astype(np.float64)
    n, k = p.shape
    r = np.arange(n)
    s = p[r, labels]
    other = p.copy()
    other[r, labels] = -np.inf
    m = other.max(axis=1)
    _, guess = compute_confident_joint(labels, probs)
    disputed = ~_agrees(labels, probs)
    counted = guess >= 0
    a = int(np.count_nonzero(counted & (guess != labels) & disputed))
    w = np.where(disputed, (m - s) / np.where(m + s > 0, m + s, 1), 0.0)
    weighted = float(w[~counted & disputed].sum())
    x = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(axis=1) / math.log(k)
    xc, yc = x[counted], w[counted]
    if xc.size == 0 or counted.all():
        trend = 0.0
    else:
        slope = np.polyfit(xc, yc, 1)[0] if np.ptp(xc) > 1e-9 else 0.0
        line = yc.mean() + slope * (x[~counted] - xc.mean())
        trend = float(np.clip(line.sum(), 0, (~counted).sum()))
    return a, weighted, trend, a + math.floor(min(weighted, trend) + 0.5)


def _plus_toy(errors_grow_with_entropy: bool):
    """K = 4 rows whose normalized entropies are 0, 1/2, 3/4, 7/8 or 1 (probabilities 0, 1/8, 1/4, 1/2, 1).

    Thresholds t = (5/6, 19/32, 1/2, 13/16). Counted in C: class 0's five one-hot rows, class 1's two,
    class 2's two (0, 0, .5, .5) rows (x = 1/2, on the diagonal), class 3's three, and row 5, given 0:
    (0, .5, .5, 0) (x = 1/2, guess 2: a confident dispute with y = 1) when ``errors_grow_with_entropy``,
    else (0, 0, 0, 1) (x = 0, guess 3, y = 1). Not counted: rows 8, 9 given 1, (.5, .25, .25, 0) (x = 3/4,
    y = 1/3) and (.5, .125, .25, .125) (x = 7/8, y = .6), and row 15, given 3, uniform (x = 1, a tie: y = 0).
    """
    first = (0, .5, .5, 0) if errors_grow_with_entropy else (0, 0, 0, 1)
    rows = ([(1, 0, 0, 0)] * 5 + [first] + [(0, 1, 0, 0)] * 2 + [(.5, .25, .25, 0), (.5, .125, .25, .125)]
            + [(0, 0, .5, .5)] * 2 + [(0, 0, 0, 1)] * 3 + [(.25,) * 4])
    return np.array([0] * 6 + [1] * 4 + [2] * 2 + [3] * 4), np.array(rows, dtype=float)


def test_plus_count_by_hand_when_errors_grow_with_uncertainty():
    """Counted rows: 10 at x = 0 (y = 0), 3 at x = 1/2 (y = 1, 0, 0): the line is y = 2x/3.

    Summed over the uncounted rows (x = 3/4, 7/8, 1): R = 2/3 * 21/8 = 1.75. W = 1/3 + .6 = 14/15.
    A = 1 (row 5) -> T = 1 + round(min(14/15, 1.75)) = 2: PBNR's row 5 plus the other dispute with the
    lowest self-confidence, row 9 (.125 < .25).
    """
    labels, probs = _plus_toy(True)
    np.testing.assert_allclose(per_class_thresholds(labels, probs), [5 / 6, 19 / 32, .5, 13 / 16])
    _, guess = compute_confident_joint(labels, probs)
    assert guess.tolist() == [0] * 5 + [2, 1, 1, -1, -1, 2, 2, 3, 3, 3, -1]
    assert np.flatnonzero(find_label_issues(labels, probs)).tolist() == [5]
    assert np.flatnonzero(find_label_issues(labels, probs, filter_by="prune_by_noise_rate_plus")).tolist() == [5, 9]
    summary = ConfidentLearning().detect(make_data(labels, probs)).summary  # the default filter_by
    assert summary["filter_by"] == "prune_by_noise_rate_plus"
    assert summary["estimated_num_issues"] == 1
    assert summary["weighted_disputes"] == pytest.approx(14 / 15, abs=1e-8)
    assert summary["trend_issues"] == pytest.approx(1.75, abs=1e-4)
    assert summary["estimated_num_issues_weighted"] == 2
    a, w, r, t = _plus_count(labels, probs)
    assert (a, t) == (1, 2) and w == pytest.approx(14 / 15) and r == pytest.approx(1.75)
    # the noise rate: max(T/N, calibrated) = 2/16 (calibrated: 1/16), the interval widened to hold 2/16
    assert summary["estimated_noise_rate_estimator"] == "disputed_weighted_trend"
    assert summary["estimated_noise_rate"] == pytest.approx(2 / 16)
    cal = summary["noise_rate_estimates"]["calibrated_confident_joint"]
    assert cal["rate"] == pytest.approx(1 / 16)
    low, high = summary["estimated_noise_rate_interval"]
    assert low == pytest.approx(min(cal["interval"][0], 2 / 16)) and high == pytest.approx(max(cal["interval"][1], 2 / 16))
    assert not find_label_issues(labels, probs, filter_by="prune_by_noise_rate_plus", frac_noise=0.0).any()
    # keeping 3 of class 1's 4 rows unflagged leaves room for one: still row 9, the lowest self-confidence
    capped = find_label_issues(labels, probs, filter_by="prune_by_noise_rate_plus", min_examples_per_class=3)
    assert np.flatnonzero(capped).tolist() == [5, 9]


def test_plus_count_by_hand_when_errors_do_not_grow_with_uncertainty():
    """The confident dispute sits at x = 0: counted rows 11 at x = 0 (mean y 1/11), 2 at x = 1/2 (y = 0).

    The line y = 1/11 - 2x/11 is negative at x = 3/4, 7/8 and 1: R = 0, T = A = 1, no extra row
    (W = 14/15 as before): when the confident errors do not grow with the model's uncertainty, the
    uncertain disputes are taken for the model's own mistakes.
    """
    labels, probs = _plus_toy(False)
    summary = ConfidentLearning().detect(make_data(labels, probs)).summary
    assert summary["trend_issues"] == 0.0
    assert summary["weighted_disputes"] == pytest.approx(14 / 15, abs=1e-8)
    assert summary["estimated_num_issues_weighted"] == 1 == _plus_count(labels, probs)[3]
    plus = find_label_issues(labels, probs, filter_by="prune_by_noise_rate_plus")
    assert np.flatnonzero(plus).tolist() == np.flatnonzero(find_label_issues(labels, probs)).tolist() == [5]
    assert summary["estimated_noise_rate"] == pytest.approx(1 / 16)


@FAST
@given(datasets(), st.integers(0, 3))
def test_plus_is_pbnr_plus_the_lowest_other_disputes(data, min_ex):
    labels, probs = data
    pbnr = find_label_issues(labels, probs, min_examples_per_class=min_ex)
    plus = find_label_issues(labels, probs, filter_by="prune_by_noise_rate_plus", min_examples_per_class=min_ex)
    assert not (pbnr & ~plus).any()  # every row cleanlab's default flags
    extra = plus & ~pbnr
    disputed = ~_agrees(labels, probs)
    assert not (extra & ~disputed).any()  # only rows the model disputes are added
    k = probs.shape[1]
    counts = np.bincount(labels, minlength=k)
    assert (np.bincount(labels[plus], minlength=k) <= np.maximum(counts - min_ex, 0)).all()
    summary = ConfidentLearning(filter_by="prune_by_noise_rate_plus",
                                min_examples_per_class=min_ex).detect(make_data(labels, probs)).summary
    a, w, r, _ = _plus_count(labels, probs)
    assert summary["estimated_num_issues"] == a
    assert summary["weighted_disputes"] == pytest.approx(w, abs=1e-6)
    assert summary["trend_issues"] == pytest.approx(r, abs=1e-3 * max(1.0, r))
    t = summary["estimated_num_issues_weighted"]
    assert abs(t - (a + min(w, r))) <= 0.5 + 1e-3 * max(1.0, r)
    if pbnr.sum() >= t:
        assert not extra.any()
        return
    if min_ex == 0:  # no class cap: the extra rows are the lowest self-confidences among the other disputed rows
        sc = probs[np.arange(labels.size), labels]
        rest = disputed & ~plus
        if extra.any() and rest.any():
            assert sc[extra].max() <= sc[rest].min()
        # at least T rows unless fewer are disputed; more only through ties at the cut
        assert plus.sum() >= min(t, int(disputed.sum()))
        if plus.sum() > t and extra.any() and rest.any():
            assert (sc[rest] > sc[extra].max()).all()


def _ambiguous_noise(seed: int, n: int = 6000, k: int = 4, rate: float = 0.12):
    """Human-like noise: the harder an item (a flatter model output), the likelier its label is wrong."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    difficulty = rng.random(n)  # 0 easy .. 1 hard
    alpha = np.full((n, k), 0.5)
    alpha[np.arange(n), true] += 1.0 + 9.0 * (1.0 - difficulty)
    probs = rng.gamma(alpha)
    probs /= probs.sum(axis=1, keepdims=True)
    p_flip = rate * 3.0 * difficulty ** 2  # mean rate over difficulty ~ U(0, 1)
    flipped = rng.random(n) < p_flip
    given_ = np.where(flipped, (true + rng.integers(1, k, n)) % k, true)
    # the model saw the noisy label on similar items: part of its mass follows the given label
    probs = 0.8 * probs + 0.2 * np.eye(k)[given_] * (1.0 - difficulty)[:, None] + 0.2 * difficulty[:, None] / k
    probs /= probs.sum(axis=1, keepdims=True)
    return given_, probs, flipped


def test_plus_counts_nearer_the_truth_when_errors_sit_on_uncertain_items():
    """Errors concentrated on hard items: T is nearer the truth than A, and F1 is higher than PBNR's."""
    given_, probs, flipped = _ambiguous_noise(3)
    summary = ConfidentLearning().detect(make_data(given_, probs)).summary
    truth = int(flipped.sum())
    low, high = summary["disputed_bounds"]
    assert low <= summary["estimated_num_issues_weighted"] <= high
    assert abs(summary["estimated_num_issues_weighted"] - truth) < abs(summary["estimated_num_issues"] - truth)

    def f1(f):
        return 2 * np.count_nonzero(f & flipped) / (f.sum() + truth)

    flags = find_label_issues(given_, probs, filter_by="prune_by_noise_rate_plus")
    assert f1(flags) > f1(find_label_issues(given_, probs))


def test_plus_default_streamed_equals_memory(tmp_path):
    """The default rule's trend sums, count and extra rows are the same streamed in small batches as in memory."""
    import labelqa
    import pyarrow.parquet as pq

    from tests.conftest import write_parquet

    given_, probs, _ = _ambiguous_noise(4, n=3000)
    path = write_parquet(tmp_path / "amb.parquet", given_, probs)
    summaries, flags = {}, {}
    for engine, options in (("memory", {}), ("stream", {"batch_size": 257})):
        with labelqa.scan(str(path), engine=engine, **options) as result:
            assert result.engine == engine
            labelqa.write_report(result, tmp_path / engine)
            summaries[engine] = result.summary()["detectors"]["cl"]["summary"]
        flags[engine] = pq.read_table(tmp_path / engine / "issues.parquet").column("is_label_issue").to_numpy()
    a, b = summaries["memory"], summaries["stream"]
    for key in ("estimated_num_issues", "weighted_disputes", "trend_issues", "estimated_num_issues_weighted",
                "estimated_noise_rate", "estimated_noise_rate_interval", "estimated_noise_rate_estimator"):
        assert a[key] == b[key], key
    assert a["filter_by"] == "prune_by_noise_rate_plus"
    np.testing.assert_array_equal(flags["memory"], flags["stream"])
    pbnr = find_label_issues(given_, probs.astype(np.float32))
    assert flags["memory"].sum() > pbnr.sum()  # the rule added rows here: the extra passes were exercised


# --------------------------------------------------------------------------- a realistic run
def _noisy_dirichlet(seed, n=3000, k=5, noise=0.1):
    """Model outputs from a Dirichlet centred on the true class; 10% of labels flipped uniformly."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    alpha = np.full((n, k), 0.6)
    alpha[np.arange(n), true] += 5.0
    probs = rng.gamma(alpha)
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    flipped = rng.random(n) < noise
    given = true.copy()
    given[flipped] = (true[flipped] + rng.integers(1, k, flipped.sum())) % k
    return given, true, probs, flipped


def test_realistic_recall_precision_and_noise_matrix():
    given_labels, true, probs, flipped = _noisy_dirichlet(seed=7)
    k = probs.shape[1]
    result = ConfidentLearning().detect(make_data(given_labels, probs))
    flags = result.issues
    hits = np.count_nonzero(flags & flipped)
    precision, recall = hits / flags.sum(), hits / flipped.sum()
    # Bounds: the model's argmax is the true class for ~97% of rows, so a
    # flipped row can be found ~97% of the time; flagging every row whose argmax
    # differs from its label reaches precision ~0.78 only (a wrong model on 3%
    # of the clean 90%). Over 40 seeds PBNR gave precision >= 0.948 and recall
    # >= 0.874: require clearly better than the naive rule.
    naive = probs.argmax(axis=1) != given_labels
    naive_precision = np.count_nonzero(naive & flipped) / naive.sum()
    assert naive_precision < 0.85
    assert precision >= 0.9 and precision > naive_precision + 0.08
    assert recall >= 0.85
    # The estimated noise matrix P(s | y*) is close to the realised flip rates
    # (0.9 on the diagonal, 0.1 / 4 off it): over 40 seeds the largest error
    # was 0.021; sampling noise alone is ~0.006 per entry.
    realised = np.zeros((k, k))
    np.add.at(realised, (given_labels, true), 1)
    realised /= realised.sum(axis=0, keepdims=True)
    estimate = np.array(result.summary["noise_matrix"])
    assert np.abs(estimate - realised).max() < 0.035
    assert result.summary["estimated_noise_rate"] == pytest.approx(flipped.mean(), abs=0.02)


@pytest.mark.parametrize("filter_by", cl_module.CL_FILTER_METHODS)
def test_threaded_detection_equals_single_threaded(monkeypatch, filter_by):
    """Chunks and classes worked on two threads give the very same result as one thread."""
    from tests.conftest import noisy_dataset

    given_labels, _, probs, _ = noisy_dataset(n=60_000, k=80, noise=0.15, seed=11)  # 4.8M elements: threaded
    assert probs.size >= cl_module.MIN_PARALLEL_ELEMENTS
    data = LabelData.from_arrays(given_labels, probs)
    det = cl_module.ConfidentLearning(filter_by=filter_by)
    monkeypatch.setenv("LABELQA_THREADS", "1")
    one = det.detect(data)
    monkeypatch.setenv("LABELQA_THREADS", "2")
    two = det.detect(data)
    assert one.issues.any()
    np.testing.assert_array_equal(one.issues, two.issues)
    np.testing.assert_array_equal(one.suggested, two.suggested)
    np.testing.assert_array_equal(one.scores, two.scores)
    assert isinstance(one.summary["noise_matrix"], np.ndarray)  # K = 80: arrays, not a million nested floats
    assert not one.summary["noise_matrix"].flags.writeable
    assert json.dumps(jsonable(one.summary)) == json.dumps(jsonable(two.summary))


def _plain_row_pass(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """The detector's per-row figures from plain numpy reductions over whole rows (the definitions)."""
    from labelqa.stats.confident import confident_cutoffs

    k = probs.shape[1]
    n = labels.size
    self_conf = probs[np.arange(n), labels]
    max_prob = probs.max(axis=1)
    agrees = self_conf.astype(np.float64) >= max_prob.astype(np.float64) - cl_module.AGREEMENT_TOLERANCE
    confident = probs >= confident_cutoffs(thresholds, probs.dtype)
    n_conf = confident.sum(axis=1)
    guess = np.where(n_conf == 1, confident.argmax(axis=1), probs.argmax(axis=1))
    guess[n_conf == 0] = -1
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[guess >= 0], guess[guess >= 0]), 1)
    dis = ~agrees
    unc = dis & (guess < 0)
    weight = np.zeros(k, dtype=np.int64)
    np.add.at(weight, labels[unc], cl_module.dispute_weights(self_conf[unc], max_prob[unc]))
    return {
        "self_conf": self_conf, "max_prob": max_prob, "agrees": agrees,
        "disagrees_strictly": max_prob > self_conf, "joint": joint, "guess": guess,
        "cand_png": np.bincount(labels[dis], minlength=k),
        "cand_cl": np.bincount(labels[dis & (guess >= 0) & (guess != labels)], minlength=k),
        "cand_unc": np.bincount(labels[unc], minlength=k),
        "unc_weight": weight,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(1, 12), n=st.integers(1, 700), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31), grid=st.sampled_from([0, 2, 4]), task_rows=st.sampled_from([1, 5, 64, 1 << 16]),
       threads=st.sampled_from(["1", "2"]))
def test_one_pass_row_state_equals_plain_numpy(k, n, dtype, seed, grid, task_rows, threads):
    """The fused, chunked, threaded row pass gives the plain reductions' values (ties, K = 1..3, ragged chunks)."""
    import os

    from labelqa import parallel
    from labelqa.detectors.base import Block

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.6), n) if k > 1 else np.ones((n, 1))
    if grid:  # coarse values: ties between classes and with the thresholds
        probs = np.round(probs * grid) / grid
    probs = probs.astype(dtype)
    labels = rng.integers(0, k, n)
    thresholds = per_class_thresholds(labels, probs)
    want = _plain_row_pass(labels, probs, thresholds)
    saved = cl_module._JOINT_TASK_ROWS, parallel.MIN_PARALLEL_ELEMENTS, os.environ.get("LABELQA_THREADS")
    cl_module._JOINT_TASK_ROWS, parallel.MIN_PARALLEL_ELEMENTS = task_rows, 0
    os.environ["LABELQA_THREADS"] = threads
    try:
        assert np.array_equal(cl_module.given_probs(labels, probs), want["self_conf"])
        assert np.array_equal(cl_module.given_probs(labels, np.asfortranarray(probs)), want["self_conf"])
        rs = cl_module._BlockRows(Block(labels, probs), thresholds)
        counts = cl_module.JointCounts(k).update(rs)
    finally:
        cl_module._JOINT_TASK_ROWS, parallel.MIN_PARALLEL_ELEMENTS = saved[:2]
        if saved[2] is None:
            os.environ.pop("LABELQA_THREADS", None)
        else:
            os.environ["LABELQA_THREADS"] = saved[2]
    for name in ("self_conf", "max_prob", "agrees", "disagrees_strictly"):
        got = getattr(rs, name)
        assert got.dtype == want[name].dtype and np.array_equal(got, want[name]), name
    # the block's guesses are int8 up to SMALL_K classes (an eighth of int64's memory), the same values
    assert rs.guess.dtype == (np.int8 if k <= SMALL_K else np.int64) and np.array_equal(rs.guess, want["guess"])
    for name in ("joint", "cand_png", "cand_cl", "cand_unc", "unc_weight"):
        assert np.array_equal(getattr(counts, name), want[name]), name
    rows, starts = rs.disagreeing_groups
    dis = np.flatnonzero(want["disagrees_strictly"])
    assert np.array_equal(rows, dis[np.argsort(labels[dis], kind="stable")])
    assert np.array_equal(np.diff(starts), np.bincount(labels[dis], minlength=k))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([3, 10, ROWWISE_ENTROPY_K - 1, ROWWISE_ENTROPY_K, 300]),
       st.integers(1, 700), st.integers(1, 300), st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]))
def test_trend_sums_add_up_over_any_split_and_match_the_float64_entropy(k, n, cut, seed, dtype):
    """Each row's rounded entropy does not depend on the chunk (transposed below ROWWISE_ENTROPY_K classes,
    row-wise from it): the sums of two parts equal the whole's; and they are the float64 definition's
    ``rint(H / ln K * 2**16)`` up to one unit a row (the rounding of a float32 or reordered sum)."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.3), size=n).astype(dtype)
    probs[rng.random((n, k)) < 0.2] = 0  # zero probabilities: 0 log 0 = 0
    self_conf, max_prob = probs[:, 0].copy(), probs.max(axis=1)
    disputed, counted = rng.random(n) < 0.3, rng.random(n) < 0.6
    whole = cl_module.trend_sums(probs, self_conf, max_prob, disputed, counted)
    cut = min(cut, n)
    parts = [cl_module.trend_sums(probs[s], self_conf[s], max_prob[s], disputed[s], counted[s])
             for s in (slice(0, cut), slice(cut, n))]
    np.testing.assert_array_equal(parts[0] + parts[1], whole)
    p64 = probs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p64 > 0, p64 * np.log(p64), 0.0).sum(axis=1)
    x = np.rint(np.clip(ent / math.log(k), 0, 1) * cl_module.TREND_SCALE).astype(np.int64)
    assert whole[0] == counted.sum() and whole[5] == (~counted).sum()
    assert abs(int(whole[1]) - int(x[counted].sum())) <= counted.sum()
    assert abs(int(whole[6]) - int(x[~counted].sum())) <= (~counted).sum()


def test_plus_default_streamed_equals_memory_at_many_classes(tmp_path):
    """From ROWWISE_ENTROPY_K classes the trend's entropy is summed along rows: streamed in 257-row batches
    the default rule still gives the memory engine's count, trend and flags."""
    import labelqa
    import pyarrow.parquet as pq

    from tests.conftest import write_parquet

    k = ROWWISE_ENTROPY_K + 16
    rng = np.random.default_rng(5)
    n = 4000
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += rng.uniform(1, 6, n)  # easy and hard rows
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    given_ = np.where(rng.random(n) < 0.15, rng.integers(0, k, n), true)
    path = write_parquet(tmp_path / "many.parquet", given_, probs)
    summaries, flags = {}, {}
    for engine, options in (("memory", {}), ("stream", {"batch_size": 257})):
        with labelqa.scan(str(path), engine=engine, trust_class_order=True, **options) as result:
            labelqa.write_report(result, tmp_path / engine)
            summaries[engine] = result.summary()["detectors"]["cl"]["summary"]
        flags[engine] = pq.read_table(tmp_path / engine / "issues.parquet").column("is_label_issue").to_numpy()
    for key in ("trend_issues", "estimated_num_issues_weighted", "estimated_noise_rate"):
        assert summaries["memory"][key] == summaries["stream"][key], key
    assert summaries["memory"]["trend_issues"] > 0
    np.testing.assert_array_equal(flags["memory"], flags["stream"])


@pytest.mark.parametrize("k", [3, 50])
def test_best_other_class_of_gathered_rows_is_the_definition(monkeypatch, k):
    """The best class other than the label, lowest index on ties, of some rows gathered chunk by chunk on threads
    (several chunks, forced onto threads) equals the plain definition over a masked copy of those rows."""
    monkeypatch.setattr(cl_module, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setattr(cl_module, "_CHUNK_ELEMENTS", 4096)
    rng = np.random.default_rng(k)
    probs = np.round(rng.dirichlet(np.ones(k), size=3000), 2).astype(np.float32)  # rounded: many ties
    rows = np.sort(rng.choice(3000, size=1200, replace=False))
    labels = rng.integers(0, k, rows.size)
    masked = probs[rows].astype(np.float64)
    masked[np.arange(rows.size), labels] = -np.inf
    expected = masked.argmax(axis=1)
    assert (expected != labels).all()
    np.testing.assert_array_equal(cl_module._best_other_class(labels, probs, rows), expected)
    np.testing.assert_array_equal(cl_module._best_other_class(labels, probs[rows]), expected)


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "prune_by_noise_rate_plus", "both"])
def test_wide_rows_reuse_the_loaded_top_class_with_the_same_result(monkeypatch, filter_by):
    """Above SMALL_K classes the joint pass takes the argmax the probability checks found (LabelData.top_class)
    instead of finding it again; the result is the same as without it."""
    import dataclasses

    from tests.conftest import noisy_dataset

    given, _, probs, _ = noisy_dataset(n=3000, k=SMALL_K + 8, noise=0.2, seed=21)
    data = LabelData.from_arrays(given, probs.astype(np.float32))
    bare = dataclasses.replace(data, pred_probs=data.pred_probs.copy())  # another matrix: no known top class
    assert data.top_class() is not None and bare.top_class() is None
    passed = []
    original = cl_module.confident_guesses

    def spy(probs, *args, **kwargs):
        passed.append(kwargs.get("argmax") is not None)
        return original(probs, *args, **kwargs)

    monkeypatch.setattr(cl_module, "confident_guesses", spy)
    det = cl_module.ConfidentLearning(filter_by=filter_by)
    with_top = det.detect(data)
    assert passed and all(passed)
    passed.clear()
    without = det.detect(bare)
    assert passed and not any(passed)
    assert with_top.issues.any()
    for name in ("issues", "scores", "suggested", "suggested_confidence"):
        np.testing.assert_array_equal(getattr(with_top, name), getattr(without, name))
    assert json.dumps(jsonable(with_top.summary)) == json.dumps(jsonable(without.summary))


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", cl_module.PLUS_METHOD])
def test_two_rules_on_one_block_keep_their_own_margins(filter_by):
    """Two confident-learning rules with different noise cells (all of the estimated noise, or a few rows per
    class) run on one block (the same row state: same thresholds) each give the flags they give alone; the
    per-block margins (a class's disagreeing rows against its cells' columns) are each rule's own."""
    from labelqa.detectors.base import Block, DatasetInfo, run_on_block

    k = 6
    data = peaked_noisy_data(5, 6_000, k, spread=0.6, peak=1.5, noise=0.2)
    params = {"all": {}, "few": {"num_to_remove_per_class": [3] * k}}
    alone = {name: ConfidentLearning(filter_by=filter_by, **p).detect(data).issues for name, p in params.items()}
    assert alone["all"].sum() > alone["few"].sum() > 0  # different cells, different flags
    info, block = DatasetInfo.of(data), Block.of(data)
    rules = {name: run_on_block(ConfidentLearning(filter_by=filter_by, **p).plan(info), block)
             for name, p in params.items()}
    for name, rule in rules.items():
        np.testing.assert_array_equal(rule.rows(block).issues, alone[name])


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", cl_module.PLUS_METHOD, "both"])
def test_margins_gathered_by_cell_equal_the_copied_rows(filter_by, monkeypatch):
    """A class's margins gathered cell by cell from the matrix (few of many columns) == those taken from
    copies of its rows (every branch forced in turn): the same flags and the same selection."""
    data = peaked_noisy_data(11, 20_000, 200, spread=0.05, peak=2.0, noise=0.15, dtype=np.float32)
    got = {}
    for name, line in (("gather", 1), ("copy", 10**9)):
        monkeypatch.setattr(cl_module, "_CACHE_LINE", line)
        got[name] = ConfidentLearning(filter_by=filter_by, frac_noise=0.5).detect(data).issues  # cuts inside cells
    assert got["gather"].sum() > 0
    np.testing.assert_array_equal(got["gather"], got["copy"])


@FAST
@given(st.integers(0, 2**32 - 1), st.sampled_from([40, 64, 100, 300]),
       st.sampled_from(["positive", "zeros", "subnormal"]), st.sampled_from([np.float32, np.float64]))
def test_trend_entropy_of_wide_rows_equals_its_formula(seed, k, kind, dtype):
    """The trend's entropy, block by block (skipping the lift of zeros where a block has none), and the same
    entropy filled by the joint pass's guesses while each block is in cache: equal, bit for bit, to its
    formula (class by class below 64 classes, else -sum(p log max(p, tiny)) along each row)."""
    from labelqa.stats import confident as stats_cl

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k) * 0.3, 700).astype(dtype)
    tiny = np.finfo(dtype).tiny
    if kind == "zeros":
        probs[rng.random(probs.shape) < 0.3] = 0
    elif kind == "subnormal":
        probs[rng.random(probs.shape) < 0.01] = tiny / 8
    probs[:300] = np.maximum(probs[:300], tiny)  # some blocks with nothing to lift, some with
    if k < stats_cl.ROWWISE_ENTROPY_K:
        want = stats_cl.row_entropy(probs)
    else:
        want = -np.add.reduce(probs * np.log(np.maximum(probs, tiny)), axis=1)
    saved = stats_cl._ENTROPY_BLOCK_ELEMENTS, stats_cl._WIDE_BLOCK_ELEMENTS
    stats_cl._ENTROPY_BLOCK_ELEMENTS = stats_cl._WIDE_BLOCK_ELEMENTS = 100 * k  # blocks of 100 rows
    try:
        got = stats_cl.trend_entropy(probs)
        fused = np.full(probs.shape[0], np.nan, dtype=dtype)
        thresholds = np.full(k, 1.5 / k)
        guesses = stats_cl.confident_guesses(probs, thresholds, entropy=fused)
    finally:
        stats_cl._ENTROPY_BLOCK_ELEMENTS, stats_cl._WIDE_BLOCK_ELEMENTS = saved
    np.testing.assert_array_equal(got, want.astype(dtype))
    np.testing.assert_array_equal(fused, got)
    np.testing.assert_array_equal(guesses, stats_cl.confident_guesses(probs, thresholds))


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", cl_module.PLUS_METHOD])
def test_per_class_work_on_threads_or_inline_gives_the_same_flags(filter_by, monkeypatch):
    """The per-class stages (margins' tops, the PBNR mask) run on threads only for classes of many rows;
    forced either way on a 4.4M-probability block (22k x 200) they give the same flags and scores."""
    data = peaked_noisy_data(12, 22_000, 200, spread=0.05, peak=2.0, noise=0.15, dtype=np.float32)
    assert data.pred_probs.size >= cl_module.MIN_PARALLEL_ELEMENTS
    got = {}
    for name, rows in (("threads", 0), ("inline", 10**9)):
        monkeypatch.setattr(cl_module, "_CLASS_TASK_ROWS", rows)
        res = ConfidentLearning(filter_by=filter_by, frac_noise=0.5).detect(data)
        got[name] = (res.issues, res.scores)
    assert got["threads"][0].sum() > 0
    np.testing.assert_array_equal(got["threads"][0], got["inline"][0])
    np.testing.assert_array_equal(got["threads"][1], got["inline"][1])


# --------------------------------------------------------------------------- every class's margins at once
def _gathered_vs_per_class(monkeypatch, run):
    """``run()`` with every class's PBNR margins gathered at once (forced, whatever the shape) and with the
    per-class work only; returns both results and how often the gathered path ran."""
    calls = []
    gather = cl_module._gather_margins
    finish = cl_module.FlagRule.finish

    def with_tops(seen):
        def spy(self, stage, acc):  # the PBNR top of each stage as it is finished: counts fed, cuts, kept rows
            if "pbnr" in acc.tops:
                top = acc.tops["pbnr"]
                kept = top.kept() if top.ids else ()
                order = np.lexsort((kept[2], kept[0])) if top.ids else ()
                seen.append((stage, top.fed.tolist(), [a.tolist() for a in top.cuts()],
                             [a[order].tolist() for a in kept]))
            return finish(self, stage, acc)
        return spy

    tops_got, tops_want = [], []
    with monkeypatch.context() as m:
        m.setattr(cl_module, "_GATHERED_SLAB_CLASSES", 1)
        m.setattr(cl_module, "_gathers_cells", lambda probs, n_cells: True)
        m.setattr(cl_module, "_gather_margins", lambda *a: calls.append(1) or gather(*a))
        m.setattr(cl_module.FlagRule, "finish", with_tops(tops_got))
        got = run()
    with monkeypatch.context() as m:
        m.setattr(cl_module, "_GATHERED_SLAB_CLASSES", 10**9)
        m.setattr(cl_module.FlagRule, "finish", with_tops(tops_want))
        want = run()
    assert tops_got == tops_want  # the same state, not only the same flags (later passes would mend a wrong cut)
    return got, want, len(calls)


def _assert_same_rows(got: DetectorResult, want: DetectorResult) -> None:
    np.testing.assert_array_equal(got.issues, want.issues)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.suggested, want.suggested)
    assert json.dumps(jsonable(got.summary), sort_keys=True) == json.dumps(jsonable(want.summary), sort_keys=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=multiclass_data(), filter_by=st.sampled_from(["prune_by_noise_rate", "both", cl_module.PLUS_METHOD]),
       frac=st.sampled_from([1.0, 0.5]), min_ex=st.integers(0, 6))
def test_gathered_margins_flag_like_the_per_class_work_on_tie_heavy_data(monkeypatch, problem, filter_by, frac,
                                                                          min_ex):
    data, rng = problem
    det = ConfidentLearning(filter_by=filter_by, frac_noise=frac, min_examples_per_class=min_ex)
    got, want, _ = _gathered_vs_per_class(monkeypatch, lambda: det.detect(data))
    _assert_same_rows(got, want)
    bounds = random_bounds(data.n_rows, rng)  # out of core: each block gathers its own margins

    def out_of_core():
        return scan_out_of_core(ArrayRunner(data, bounds), det, source=None, meta=dict(data.meta)).issues_table()

    got_table, want_table, _ = _gathered_vs_per_class(monkeypatch, out_of_core)
    assert got_table.equals(want_table)


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", cl_module.PLUS_METHOD])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gathered_margins_flag_like_the_per_class_work_at_many_classes(monkeypatch, filter_by, dtype):
    # 150 classes, ~5% noise: every class has a few PBNR cells, some settled among the disputed rows, some not
    data = peaked_noisy_data(5, 12_000, 150, spread=0.3, peak=1.5, noise=0.05, dtype=dtype)
    det = ConfidentLearning(filter_by=filter_by)
    got, want, calls = _gathered_vs_per_class(monkeypatch, lambda: det.detect(data))
    assert calls == 1  # the gathered path ran, once for the block
    assert want.issues.sum() > 300
    _assert_same_rows(got, want)


def test_gathered_margins_run_unforced_at_many_classes_with_few_cells(monkeypatch):
    data = peaked_noisy_data(6, 20_000, 400, spread=0.2, peak=2.0, noise=0.03, dtype=np.float32)
    calls = []
    gather = cl_module._gather_margins
    monkeypatch.setattr(cl_module, "_gather_margins", lambda *a: calls.append(1) or gather(*a))
    got = ConfidentLearning(filter_by="prune_by_noise_rate").detect(data)
    assert calls == [1]
    monkeypatch.setattr(cl_module, "_GATHERED_SLAB_CLASSES", 10**9)
    _assert_same_rows(got, ConfidentLearning(filter_by="prune_by_noise_rate").detect(data))


def test_estimates_pickle_while_the_bootstrap_draws():
    import pickle

    from labelqa.stats.noise_interval import bootstrap_noise_rates

    k = 4
    joint = np.array([[50, 3, 1, 0], [2, 40, 0, 5], [0, 1, 30, 2], [4, 0, 0, 60]])
    counts = joint.sum(axis=1) + 3
    est = cl_module.Estimates(counts, np.full(k, 0.5), joint, np.zeros(k, np.int64), np.zeros(k, np.int64),
                              np.zeros(k, np.int64))
    started = est.noise_rate_draws  # a future on a side thread: Dask ships the estimates to its workers
    shipped = pickle.loads(pickle.dumps(est))
    reps, smooth = bootstrap_noise_rates(joint, counts)
    for draws in (started.result(), shipped.noise_rate_draws.result()):
        np.testing.assert_array_equal(draws[0], reps)
        assert draws[1] == smooth


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), largest=st.booleans(), ids=st.booleans(), max_count=st.sampled_from([1, 3, 40]))
def test_reduce_gathered_feeds_a_top_like_one_reduction_a_class(seed, largest, ids, max_count):
    from types import SimpleNamespace

    from labelqa.stats.selection import GroupedTop

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 9))
    classes = np.sort(rng.choice(k, int(rng.integers(1, k + 1)), replace=False))
    cells = rng.random((classes.size, k)) < 0.5
    cells[np.arange(classes.size), classes] = False
    sizes = np.zeros(k, dtype=np.int64)
    sizes[classes] = rng.integers(0, 20, classes.size)  # disagreeing rows per class: none, one, a few (2^i +- 1)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows = rng.permutation(int(starts[-1]) + 5)[: starts[-1]]
    rs = SimpleNamespace(k=k, disagreeing_groups=(rows, starts), offset=int(rng.integers(0, 1000)),
                         agrees=rng.random(rows.max(initial=0) + 1) < 0.3)
    layout = cl_module._SlabLayout.of(classes, cells, starts)
    values = rng.integers(-3, 4, int(layout.offsets[-1])).astype(np.float32) / 4  # ties everywhere
    slabs = cl_module._Slabs({}, True, layout, values)
    counts = rng.integers(-1, max_count + 1, k * k)
    make = lambda: GroupedTop(counts, largest=largest, dtype=np.float32, ids=ids, ids_dtype=np.int64)  # noqa: E731

    got = make()
    for args in cl_module._reduce_gathered(got, rs, slabs):
        got.add_reduced(*args)
    want = make()
    n_cells = np.count_nonzero(cells, axis=1)
    for s, c in enumerate(classes):  # one reduction a class, as FlagRule._feed_margins does without the gather
        groups = c * k + np.flatnonzero(cells[s])
        m = int(layout.rows_per_class[s])
        matrix = values[layout.offsets[s]:layout.offsets[s + 1]].reshape(n_cells[s], m)
        if not ids:
            want.add_reduced(groups, m, *want.reduce_rows(groups, matrix))
            continue
        got_rows, vals, cols = want.reduce_rows(groups, matrix, columns=True)
        at = rows[starts[c]:starts[c + 1]][cols]
        want.add_reduced(groups, m, got_rows, vals, np.where(rs.agrees[at], -(at + rs.offset) - 1, at + rs.offset))
    assert got.fed.tolist() == want.fed.tolist()
    for a, b in zip(got.cuts(), want.cuts()):
        np.testing.assert_array_equal(a, b)
    if ids:
        kept_got, kept_want = got.kept(), want.kept()
        order_got, order_want = np.lexsort(kept_got[::-1]), np.lexsort(kept_want[::-1])
        for a, b in zip(kept_got, kept_want):
            np.testing.assert_array_equal(a[order_got], b[order_want])


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "both", cl_module.PLUS_METHOD])
def test_out_of_core_the_joint_pass_bounds_the_pbnr_cuts(monkeypatch, filter_by):
    """Out of core the joint pass counts the disagreeing rows' margins per cell; the cuts pass's PBNR top starts
    bounded by them (in memory it is not), and every flag, score and rank stays the in-memory one."""
    from labelqa.run.driver import scan_memory
    from labelqa.stats.selection import GroupedTop
    from tests.conftest import noisy_dataset

    given_, _t, probs, _ = noisy_dataset(n=6000, k=5, noise=0.2, seed=11)
    data = LabelData.from_arrays(given_, probs)
    bounded: list[int] = []
    bound = GroupedTop.bound

    def counted(self, groups, values):
        bounded.append(len(groups))
        return bound(self, groups, values)

    monkeypatch.setattr(GroupedTop, "bound", counted)
    det = ConfidentLearning(filter_by=filter_by)
    want = scan_memory(data, [det]).issues_table()
    assert bounded == []
    got = scan_out_of_core(ArrayRunner(data, list(range(0, 6000, 700)) + [6000]), det, source=None,
                           meta=dict(data.meta))
    assert len(bounded) == 1 and 0 < bounded[0] <= 5 * 4  # one top, bounded in (nearly) every off-diagonal cell
    assert got.issues_table().equals(want)
    assert cl_module.margin_histogram(5) is not None and cl_module.margin_histogram(100) is None  # 8 bins a cell
