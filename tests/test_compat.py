"""labelqa.compat: cleanlab-style array functions on hand-computed toys, their invariants, scan, and cleanlab."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labelqa
from labelqa import compat
from labelqa.errors import LabelqaError

from conftest import noisy_dataset

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_self_confidence", "low_normalized_margin")

# Two classes, thresholds t0 = t1 = 1.9/3; confident joint [[2, 1], [1, 2]] (already calibrated): PBNR takes
# the one row given 0 with the largest p1 - p0 (row 2) and the one given 1 with the largest p0 - p1 (row 5).
PBNR_LABELS = np.array([0, 0, 0, 1, 1, 1])
PBNR_PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.7, 0.3]])

# Rows 0, 1 disagree with their label (each class keeps one agreeing row, as min_examples_per_class=1 asks).
# Self-confidence: row 0 0.30, row 1 0.40 -> [0, 1].
# Normalized margin: row 0 (0.30 - 0.35 + 1)/2 = 0.475, row 1 (0.40 - 0.60 + 1)/2 = 0.40 -> [1, 0].
RANK_LABELS = np.array([0, 1, 2, 0, 1])
RANK_PROBS = np.array([[0.3, 0.35, 0.35], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])


def test_pbnr_toy_by_hand():
    mask = compat.find_label_issues(PBNR_LABELS, PBNR_PROBS)
    assert mask.dtype == bool and mask.tolist() == [False, False, True, False, False, True]
    assert compat.find_label_issues(PBNR_LABELS, PBNR_PROBS, return_indices_ranked_by="self_confidence").tolist() \
        == [2, 5]  # self-confidence 0.2 < 0.3


def test_ranking_toy_by_hand():
    mask = compat.find_label_issues(RANK_LABELS, RANK_PROBS, filter_by="predicted_neq_given")
    assert mask.tolist() == [True, True, False, False, False]
    by_sc = compat.find_label_issues(RANK_LABELS, RANK_PROBS, filter_by="predicted_neq_given",
                                     return_indices_ranked_by="self_confidence")
    by_margin = compat.find_label_issues(RANK_LABELS, RANK_PROBS, filter_by="predicted_neq_given",
                                         return_indices_ranked_by="normalized_margin")
    assert by_sc.tolist() == [0, 1] and by_margin.tolist() == [1, 0]
    np.testing.assert_allclose(compat.get_label_quality_scores(RANK_LABELS, RANK_PROBS), [0.3, 0.4, 0.8, 0.9, 0.8])
    np.testing.assert_allclose(compat.get_label_quality_scores(RANK_LABELS, RANK_PROBS, method="normalized_margin"),
                               [0.475, 0.4, 0.85, 0.925, 0.85])


def test_multilabel_toy_by_hand():
    labels = [[0], [0, 1], [1], []]
    probs = np.array([[0.9, 0.2], [0.8, 0.1], [0.7, 0.9], [0.1, 0.2]])
    mask = compat.find_label_issues(labels, probs, filter_by="predicted_neq_given", multi_label=True)
    assert mask.tolist() == [False, True, True, False]  # row 1: label 1 given at p=0.1; row 2: 0 missing at 0.7
    # row scores, EMA (0.8) of the class scores sorted largest first: row 1 0.8*0.1 + 0.2*0.8 = 0.24,
    # row 2 0.8*0.3 + 0.2*0.9 = 0.42
    ranked = compat.find_label_issues(labels, probs, filter_by="predicted_neq_given", multi_label=True,
                                      return_indices_ranked_by="self_confidence")
    assert ranked.tolist() == [1, 2]
    indicator = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(
        compat.find_label_issues(indicator, probs, filter_by="predicted_neq_given", multi_label=True), mask)


@pytest.mark.parametrize("filter_by", FILTERS)
def test_mask_and_ranked_indices_agree(filter_by):
    given_labels, _true, probs, _flipped = noisy_dataset(600, 4, 0.15, seed=3)
    mask = compat.find_label_issues(given_labels, probs, filter_by=filter_by)
    assert mask.any()
    for method in compat.RANK_METHODS:
        ranked = compat.find_label_issues(given_labels, probs, filter_by=filter_by, return_indices_ranked_by=method)
        assert ranked.dtype == np.int64 and len(set(ranked.tolist())) == len(ranked)
        assert sorted(ranked.tolist()) == np.flatnonzero(mask).tolist()
        scores = compat.get_label_quality_scores(given_labels, probs, method=method)
        assert np.all(np.diff(scores[ranked]) >= 0)  # lowest (most likely wrong) first


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(FILTERS), st.sampled_from(compat.RANK_METHODS))
def test_ranked_is_stable_sort_of_mask(seed, filter_by, method):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(10, 80)), int(rng.integers(2, 5))
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    probs = np.round(rng.dirichlet(np.ones(k), n), 1)  # coarse: many ties
    probs /= probs.sum(1, keepdims=True)
    mask = compat.find_label_issues(labels, probs, filter_by=filter_by)
    ranked = compat.find_label_issues(labels, probs, filter_by=filter_by, return_indices_ranked_by=method)
    scores = compat.get_label_quality_scores(labels, probs, method=method)
    order = sorted(np.flatnonzero(mask).tolist(), key=lambda i: (scores[i], i))  # ties keep row order
    assert ranked.tolist() == order


@pytest.mark.parametrize("filter_by", FILTERS + ("low_margin_midpoint",))
def test_same_flags_as_scan(filter_by):
    given_labels, _true, probs, _flipped = noisy_dataset(800, 5, 0.12, seed=11)
    result = labelqa.scan(labels=given_labels, pred_probs=probs, filter_by=filter_by)
    np.testing.assert_array_equal(result.is_label_issue, compat.find_label_issues(given_labels, probs,
                                                                                  filter_by=filter_by))
    np.testing.assert_allclose(result.label_quality, compat.get_label_quality_scores(given_labels, probs))
    ranked = compat.find_label_issues(given_labels, probs, filter_by=filter_by,
                                      return_indices_ranked_by="self_confidence")
    assert result.ranked_issues()["id"].tolist() == ranked.tolist()


def test_same_flags_as_scan_multilabel():
    rng = np.random.default_rng(4)
    n, k = 400, 4
    truth = rng.random((n, k)) < 0.4
    probs = np.clip(truth * 0.6 + rng.normal(0, 0.2, (n, k)) + 0.2, 0.001, 0.999)
    noisy = truth ^ (rng.random((n, k)) < 0.05)
    labels = [np.flatnonzero(r).tolist() for r in noisy]
    result = labelqa.scan(labels=labels, pred_probs=probs)
    assert result.task == "multilabel"
    mask = compat.find_label_issues(labels, probs, multi_label=True)
    assert mask.any()
    np.testing.assert_array_equal(result.is_label_issue, mask)
    ranked = compat.find_label_issues(labels, probs, multi_label=True, return_indices_ranked_by="self_confidence")
    assert sorted(ranked.tolist()) == np.flatnonzero(mask).tolist()
    assert np.all(np.diff(result.label_quality[ranked]) >= 0)


def test_finds_injected_noise():
    given_labels, _true, probs, flipped = noisy_dataset(2000, 4, 0.1, seed=0)
    mask = compat.find_label_issues(given_labels, probs)
    precision = (mask & flipped).sum() / mask.sum()
    recall = (mask & flipped).sum() / flipped.sum()
    assert precision > 0.6 and recall > 0.6


def test_series_and_lists_accepted():
    mask = compat.find_label_issues(pd.Series(PBNR_LABELS), pd.DataFrame(PBNR_PROBS))
    assert mask.tolist() == [False, False, True, False, False, True]
    assert compat.find_label_issues(PBNR_LABELS.tolist(), PBNR_PROBS.tolist()).tolist() == mask.tolist()


def test_flat_api_and_errors(capsys):
    assert labelqa.find_label_issues is compat.find_label_issues
    assert labelqa.get_label_quality_scores is compat.get_label_quality_scores
    compat.find_label_issues(PBNR_LABELS, PBNR_PROBS, verbose=True, n_jobs=4)
    assert "Number of label issues found: 2" in capsys.readouterr().out
    with pytest.raises(LabelqaError, match="confident_joint"):
        compat.find_label_issues(PBNR_LABELS, PBNR_PROBS, confident_joint=np.eye(2))
    with pytest.raises(LabelqaError):
        compat.find_label_issues(PBNR_LABELS, PBNR_PROBS, return_indices_ranked_by="loss")
    with pytest.raises(LabelqaError):
        compat.find_label_issues(PBNR_LABELS, PBNR_PROBS, filter_by="nope")
    with pytest.raises(LabelqaError, match="rank_by_kwargs"):
        compat.find_label_issues(PBNR_LABELS, PBNR_PROBS, return_indices_ranked_by="self_confidence",
                                 rank_by_kwargs={"temperature": 2})
    with pytest.raises(LabelqaError, match="integer"):
        compat.find_label_issues(np.array(["a", "b", "a", "b", "a", "b"]), PBNR_PROBS)


# --------------------------------------------------------------------------- equal to cleanlab (when installed)
def _noisy_multiclass(seed: int):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(60, 400)), int(rng.integers(2, 6))
    truth = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    probs = rng.dirichlet(np.ones(k) * 0.7, n)
    probs[np.arange(n), truth] += rng.uniform(0, 1.5)
    probs /= probs.sum(1, keepdims=True)
    labels = truth.copy()
    flip = rng.random(n) < 0.15
    labels[flip] = rng.integers(0, k, flip.sum())
    labels[:k] = np.arange(k)  # every class given at least once
    return labels, probs


@pytest.mark.parametrize("seed", range(6))
def test_equals_cleanlab_multiclass(seed):
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    cleanlab_rank = pytest.importorskip("cleanlab.rank")
    labels, probs = _noisy_multiclass(seed)
    for filter_by in FILTERS:
        np.testing.assert_array_equal(compat.find_label_issues(labels, probs, filter_by=filter_by),
                                      cleanlab_filter.find_label_issues(labels, probs, filter_by=filter_by))
        for method in compat.RANK_METHODS:  # continuous random probabilities: no ties in the scores
            np.testing.assert_array_equal(
                compat.find_label_issues(labels, probs, filter_by=filter_by, return_indices_ranked_by=method),
                cleanlab_filter.find_label_issues(labels, probs, filter_by=filter_by, return_indices_ranked_by=method))
    for method in compat.RANK_METHODS:
        for adjust in (False, True) if method != "confidence_weighted_entropy" else (False,):
            np.testing.assert_allclose(
                compat.get_label_quality_scores(labels, probs, method=method, adjust_pred_probs=adjust),
                cleanlab_rank.get_label_quality_scores(labels, probs, method=method, adjust_pred_probs=adjust))


@pytest.mark.parametrize("seed", range(4))
def test_equals_cleanlab_multilabel(seed):
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(80, 300)), int(rng.integers(2, 5))
    truth = rng.random((n, k)) < 0.4
    probs = 1 / (1 + np.exp(-(truth * 3.0 - 1.5 + rng.normal(0, 1.2, (n, k)))))  # continuous: no ties
    noisy = truth ^ (rng.random((n, k)) < 0.05)
    labels = [np.flatnonzero(r).tolist() for r in noisy]
    for filter_by in FILTERS[:5]:  # the low_* methods differ by design (docs/migrating-from-cleanlab.md)
        np.testing.assert_array_equal(
            compat.find_label_issues(labels, probs, filter_by=filter_by, multi_label=True),
            cleanlab_filter.find_label_issues(labels, probs, filter_by=filter_by, multi_label=True))
        for method in compat.RANK_METHODS:
            np.testing.assert_array_equal(
                compat.find_label_issues(labels, probs, filter_by=filter_by, multi_label=True,
                                         return_indices_ranked_by=method),
                cleanlab_filter.find_label_issues(labels, probs, filter_by=filter_by, multi_label=True,
                                                  return_indices_ranked_by=method))


def test_migration_table_equivalents_match_cleanlab():
    """The docs' table: num_label_issues, the confident joint (raw and calibrated), multi-label row scores."""
    count = pytest.importorskip("cleanlab.count")
    ml_rank = pytest.importorskip("cleanlab.multilabel_classification.rank")
    from labelqa.detectors.confident import calibrate_confident_joint, compute_confident_joint
    from labelqa.detectors.multilabel import get_multilabel_quality_scores

    labels, probs = _noisy_multiclass(7)
    k = probs.shape[1]
    assert labelqa.scan(labels=labels, pred_probs=probs).summary()["estimated_num_issues"] == \
        count.num_label_issues(labels, probs)
    joint, _guess = compute_confident_joint(labels, probs)
    np.testing.assert_array_equal(joint, count.compute_confident_joint(labels, probs, calibrate=False))
    np.testing.assert_array_equal(calibrate_confident_joint(joint, np.bincount(labels, minlength=k)),
                                  count.compute_confident_joint(labels, probs))
    rng = np.random.default_rng(0)
    sets = [np.flatnonzero(r).tolist() for r in rng.random((200, 3)) < 0.4]
    ml_probs = rng.random((200, 3))
    np.testing.assert_allclose(get_multilabel_quality_scores(sets, ml_probs),
                               ml_rank.get_label_quality_scores(sets, ml_probs))
