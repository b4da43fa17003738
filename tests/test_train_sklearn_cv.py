"""The scikit-learn fold loop of `labelqa train`: out-of-sample, group folds, one-vs-rest, thread limits."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from labelqa.errors import LabelqaError
from labelqa.train.sklearn_cv import (
    SKLEARN_MODELS,
    available_cores,
    cross_val_proba,
    fit_fold,
    make_model,
    resolve_threads,
    split_folds,
)


def blobs(n=300, k=3, d=4, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(scale=scale, size=(k, d))[y] + rng.normal(size=(n, d))
    return x, y


def test_available_cores_is_within_the_machine():
    cores = available_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)


@pytest.mark.parametrize("name", SKLEARN_MODELS)
def test_every_named_model_gives_probabilities_that_recover_separable_classes(name):
    x, y = blobs(scale=5)
    probs = cross_val_proba(name, x, y, 3, folds=3, seed=0)
    assert probs.shape == (300, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert np.mean(probs.argmax(axis=1) == y) > 0.9


def test_unknown_model_name():
    with pytest.raises(LabelqaError, match="unknown model 'svm'"):
        make_model("svm")


def test_probabilities_are_out_of_sample():
    """1-NN memorises its training rows: in sample it gives every given label probability 1; out of sample a row
    whose label was flipped gets its neighbours' (mostly true) label instead."""
    from sklearn.neighbors import KNeighborsClassifier

    x, y = blobs(n=200, k=2, scale=20)
    noisy = y.copy()
    flipped = np.arange(0, 200, 20)
    noisy[flipped] = 1 - noisy[flipped]
    knn = KNeighborsClassifier(n_neighbors=1)
    assert np.all(knn.fit(x, noisy).predict_proba(x)[np.arange(200), noisy] == 1.0)  # in sample
    probs = cross_val_proba(knn, x, noisy, 2, folds=5, seed=0)
    assert np.mean(probs[flipped, noisy[flipped]]) <= 0.2  # (a flipped row may be next to another one)


def test_group_folds_keep_near_duplicates_out_of_their_own_training_rows():
    """Each row copied three times (same features, same flipped label): with plain folds the copies in the
    training rows vouch for the wrong label; with the copies as one group they cannot."""
    x0, y0 = blobs(n=100, k=2, scale=6, seed=3)
    y_noisy = y0.copy()
    flipped = np.arange(0, 100, 10)
    y_noisy[flipped] = 1 - y_noisy[flipped]
    x = np.repeat(x0, 3, axis=0) + np.random.default_rng(1).normal(scale=1e-3, size=(300, x0.shape[1]))
    y = np.repeat(y_noisy, 3)
    groups = np.repeat(np.arange(100), 3)
    bad = np.isin(groups, flipped)
    plain = cross_val_proba("knn", x, y, 2, folds=5, seed=0)
    grouped = cross_val_proba("knn", x, y, 2, folds=5, seed=0, groups=groups)
    given_plain = plain[np.arange(300), y]
    given_grouped = grouped[np.arange(300), y]
    assert given_plain[bad].mean() > 0.9  # leaked: the copies win
    assert given_grouped[bad].mean() < 0.2  # out of sample: the neighbours win
    for tr, te in split_folds(y, 5, 0, groups=groups):
        assert not set(groups[tr]) & set(groups[te])


def test_too_few_groups_for_the_folds():
    x, y = blobs(n=30)
    with pytest.raises(LabelqaError, match="2 groups, fewer than the 5 folds"):
        cross_val_proba("logreg", x, y, 3, folds=5, groups=np.arange(30) % 2)


def test_a_class_missing_from_a_training_fold_gets_zero_and_one_class_gets_all():
    x = np.arange(12, dtype=float)[:, None]
    y = np.array([0] * 6 + [1] * 6)
    out = fit_fold(make_model("logreg"), x[:6], y[:6], x[6:], 3)
    np.testing.assert_array_equal(out, np.tile([1.0, 0.0, 0.0], (6, 1)))
    out = fit_fold(make_model("logreg"), x, y, x[:2], 3)
    assert out.shape == (2, 3) and np.all(out[:, 2] == 0) and np.allclose(out.sum(axis=1), 1)


def test_multilabel_one_vs_rest_matches_per_class_binary_models():
    rng = np.random.default_rng(0)
    n, k = 240, 3
    Y = (rng.random((n, k)) < 0.4).astype(np.int8)
    x = Y @ rng.normal(scale=3, size=(k, 5)) + rng.normal(size=(n, 5))
    Y[:, 2] = 1  # a class every row has: probability 1, no model
    probs = cross_val_proba("logreg", x, Y, k, folds=4, seed=0)
    assert probs.shape == (n, k) and probs.min() >= 0 and probs.max() <= 1
    assert np.all(probs[:, 2] == 1.0)
    assert np.mean((probs[:, :2] >= 0.5) == Y[:, :2]) > 0.8
    # class 0 alone, as a binary problem with the same folds, gives the same column
    for tr, te in split_folds(Y, 4, 0, multilabel=True):
        clf = make_model("logreg").fit(x[tr], Y[tr, 0])
        np.testing.assert_allclose(probs[te, 0], clf.predict_proba(x[te])[:, 1])


def test_sparse_features_train_without_centring():
    import scipy.sparse as sp

    x, y = blobs()
    probs = cross_val_proba("logreg", sp.csr_matrix(np.abs(x)), y, 3, folds=3)
    assert probs.shape == (300, 3) and np.allclose(probs.sum(axis=1), 1)


class ThreadSpy(ClassifierMixin, BaseEstimator):
    """Records the OpenMP and BLAS thread limits in force while it fits (then predicts the class priors)."""

    seen: list[dict[str, int]] = []

    def fit(self, x, y):
        from threadpoolctl import threadpool_info

        ThreadSpy.seen.append({p["user_api"]: p["num_threads"] for p in threadpool_info()})
        self.classes_, counts = np.unique(y, return_counts=True)
        self.prior_ = counts / counts.sum()
        return self

    def predict_proba(self, x):
        return np.tile(self.prior_, (len(x), 1))


@pytest.mark.parametrize("threads", [1, 0, 1000])
def test_threads_are_limited_to_the_cores(threads):
    x, y = blobs(n=60)
    ThreadSpy.seen = []
    cross_val_proba(ThreadSpy(), x, y, 3, folds=3, threads=threads)
    want = min(threads or available_cores(), available_cores())
    assert resolve_threads(threads) == want
    assert len(ThreadSpy.seen) == 3
    for limits in ThreadSpy.seen:
        assert limits and all(v <= want for v in limits.values()), limits
