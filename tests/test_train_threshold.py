"""Threshold-sample assignment for AUM (labelqa.train.threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from labelqa.errors import LabelqaError
from labelqa.train.threshold import assign_threshold_samples, assigned_labels


@pytest.mark.parametrize("k", [2, 3, 10])
def test_disjoint_sets_of_about_n_over_k_plus_one(k):
    rng = np.random.default_rng(k)
    labels = rng.integers(0, k, 3000)
    marks = assign_threshold_samples(labels, k, n_runs=2, seed=1)
    assert marks.shape == (2, 3000) and marks.dtype == bool
    assert not (marks[0] & marks[1]).any()
    for r in range(2):
        assert abs(marks[r].sum() - 3000 / (k + 1)) <= k  # rounding per class
        # per class about n_c / (K+1): ordinary rows keep the class balance
        for c in range(k):
            n_c = (labels == c).sum()
            assert abs(marks[r][labels == c].sum() - n_c / (k + 1)) <= 0.5 + 1e-9


def test_seeded():
    labels = np.repeat(np.arange(4), 50)
    a = assign_threshold_samples(labels, 4, seed=7)
    np.testing.assert_array_equal(a, assign_threshold_samples(labels, 4, seed=7))
    assert not np.array_equal(a, assign_threshold_samples(labels, 4, seed=8))


def test_many_runs_stay_disjoint_and_small_classes_are_capped():
    labels = np.array([0] * 30 + [1] * 3)
    marks = assign_threshold_samples(labels, 2, n_runs=3, seed=0)
    assert marks.sum(axis=0).max() == 1
    assert marks[:, 30:].sum() == 3  # class 1: round(3/3) = 1 per run, 3 runs


def test_assigned_labels_use_the_fake_class():
    np.testing.assert_array_equal(assigned_labels([0, 1, 2], [False, True, False], 3), [0, 3, 2])


def test_errors():
    with pytest.raises(LabelqaError, match="too few rows"):
        assign_threshold_samples(np.array([0, 1]), 2, n_runs=2)
    with pytest.raises(LabelqaError, match="at least 2 classes"):
        assign_threshold_samples(np.zeros(10, int), 1)
    with pytest.raises(LabelqaError, match="--runs"):
        assign_threshold_samples(np.zeros(10, int), 2, n_runs=0)
