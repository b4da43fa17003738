"""Out-of-sample predicted probabilities (labelqa.train.crossval)."""

from __future__ import annotations

import numpy as np
import pytest

from labelqa.errors import LabelqaError
from labelqa.train.crossval import cross_val_probs


def _blobs(n=300, k=3, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.normal(scale=4, size=(k, d))
    return centers[y] + rng.normal(size=(n, d)), y


def test_logreg_probabilities_are_valid_and_accurate():
    x, y = _blobs()
    steps = []
    p = cross_val_probs(x, y, 3, folds=4, seed=0, progress=lambda *a: steps.append(a))
    assert p.shape == (300, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert np.mean(p.argmax(axis=1) == y) > 0.95
    assert steps == [("cross-validation", i, 4) for i in range(1, 5)]


def test_probabilities_are_out_of_sample():
    # random labels: a model that saw a row would fit it; out of sample it is chance
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 60)), rng.integers(0, 2, 400)
    p = cross_val_probs(x, y, 2, folds=5, seed=0)
    assert abs(np.mean(p.argmax(axis=1) == y) - 0.5) < 0.1


def test_deterministic_for_a_seed():
    x, y = _blobs(seed=3)
    np.testing.assert_array_equal(cross_val_probs(x, y, 3, seed=5), cross_val_probs(x, y, 3, seed=5))


def test_class_missing_from_a_training_fold_gets_zero():
    x, y = _blobs(n=60, k=2)
    y = y.copy()
    y[0] = 2  # one row of class 2: its fold's training rows lack class 2
    p = cross_val_probs(x, y, 3, folds=3, seed=0)
    assert p[0, 2] == 0.0
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


def test_torch_model_option():
    pytest.importorskip("torch")
    from labelqa.train.torch_model import TrainConfig

    x, y = _blobs()
    cfg = TrainConfig(epochs=5, hidden=16, seed=0)
    p = cross_val_probs(x, y, 3, folds=3, seed=0, model="torch", torch_config=cfg)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert np.mean(p.argmax(axis=1) == y) > 0.9
    np.testing.assert_array_equal(p, cross_val_probs(x, y, 3, folds=3, seed=0, model="torch", torch_config=cfg))


def test_errors():
    x, y = _blobs(n=20)
    with pytest.raises(LabelqaError, match="at least 2"):
        cross_val_probs(x, y, 3, folds=1)
    with pytest.raises(LabelqaError, match="more than the rows of the largest class"):
        cross_val_probs(x, y, 3, folds=50)
    with pytest.raises(LabelqaError, match="unknown cross-validation model"):
        cross_val_probs(x, y, 3, model="svm")
