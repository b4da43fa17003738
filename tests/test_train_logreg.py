"""The tuned logistic regression of `--model logreg`: C chosen by inner log loss on a sample, then refitted."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from labelqa.train.logreg import DEFAULT_CS, TunedLogisticRegression
from labelqa.train.sklearn_cv import make_model


def blobs(n=400, k=3, d=5, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(scale=scale, size=(k, d))[y] + rng.normal(size=(n, d))
    return x, y


def inner_losses(x, y, rows, seed, cs=DEFAULT_CS, folds=2):
    """The documented choice, computed independently: fresh (cold-started, tightly converged) models and log_loss
    on StratifiedKFold(folds, shuffle=True) of the tuning rows, the folds drawn after the sample."""
    rng = np.random.RandomState(seed)
    if rows is not None:
        keep = np.sort(rng.choice(len(y), rows, replace=False))
        x, y = x[keep], y[keep]
    total = np.zeros(len(cs))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=rng).split(x, y):
        for i, c in enumerate(cs):
            model = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit(x[tr], y[tr])
            total[i] += log_loss(y[te], model.predict_proba(x[te]), labels=model.classes_) * te.size
    return total / len(y)


def test_labels_unrelated_to_the_features_choose_the_strongest_regularisation():
    """Random labels: any weight only fits noise, so the held-out loss is lowest for the smallest C."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20))
    y = rng.integers(0, 3, 300)
    model = TunedLogisticRegression(random_state=0).fit(x, y)
    assert model.C_ == 1e-3
    assert np.argmin(model.cv_log_loss_) == 0 and np.all(np.diff(model.cv_log_loss_) > 0)


def test_a_clean_signal_chooses_the_weakest_regularisation():
    """One feature decides the class with a wide margin: larger weights only sharpen right answers."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    x = np.column_stack([np.where(y == 1, 1.0, -1.0) + rng.normal(scale=0.1, size=300), rng.normal(size=300)])
    model = TunedLogisticRegression(random_state=0).fit(x, y)
    assert model.C_ == 10.0
    assert np.argmin(model.cv_log_loss_) == len(DEFAULT_CS) - 1


@pytest.mark.parametrize("seed", [0, 3])
def test_the_chosen_c_has_the_lowest_inner_log_loss(seed):
    """The losses match an independent computation (cold-started models, sklearn's log_loss) and C_ is their
    argmin; the final model is the plain LogisticRegression with that C on every row."""
    x, y = blobs(n=240, k=3, d=8, seed=seed, scale=0.6)
    model = TunedLogisticRegression(random_state=seed).fit(x, y)
    want = inner_losses(x, y, None, seed)
    np.testing.assert_allclose(model.cv_log_loss_, want, rtol=1e-3, atol=1e-3)  # both fits stop at a tolerance
    assert model.C_ == DEFAULT_CS[int(np.argmin(want))]
    plain = LogisticRegression(C=model.C_, max_iter=1000).fit(x, y)
    np.testing.assert_allclose(model.predict_proba(x), plain.predict_proba(x), atol=1e-6)
    np.testing.assert_array_equal(model.predict(x), plain.predict(x))
    assert model.score(x, y) == plain.score(x, y)


def test_the_choice_uses_a_seeded_sample_when_there_are_more_rows():
    x, y = blobs(n=900, k=3, d=6, seed=4, scale=0.5)
    model = TunedLogisticRegression(max_tune_rows=200, random_state=7).fit(x, y)
    np.testing.assert_allclose(model.cv_log_loss_, inner_losses(x, y, 200, 7), rtol=1e-3, atol=1e-3)
    again = TunedLogisticRegression(max_tune_rows=200, random_state=7).fit(x, y)
    np.testing.assert_array_equal(again.cv_log_loss_, model.cv_log_loss_)
    other = TunedLogisticRegression(max_tune_rows=200, random_state=8).fit(x, y)
    assert not np.array_equal(other.cv_log_loss_, model.cv_log_loss_)  # another sample, other losses
    assert model.estimator_.coef_.shape == (3, 6)  # the final model saw every row
    np.testing.assert_allclose(model.predict_proba(x),
                               LogisticRegression(C=model.C_, max_iter=1000).fit(x, y).predict_proba(x), atol=1e-6)


def test_clone_and_get_params_round_trip():
    model = TunedLogisticRegression(Cs=(0.1, 1.0), inner_folds=3, max_tune_rows=100, random_state=5)
    params = model.get_params()
    assert params == {"Cs": (0.1, 1.0), "inner_folds": 3, "max_tune_rows": 100, "fallback_C": 1.0,
                      "max_iter": 1000, "random_state": 5}
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert TunedLogisticRegression(**params).get_params() == params
    assert clone(model.set_params(inner_folds=2)).inner_folds == 2
    x, y = blobs()
    fitted = model.fit(x, y)
    assert not hasattr(clone(fitted), "C_")  # a clone is unfitted
    pipeline = make_model("logreg", seed=3)
    assert pipeline.get_params()["tunedlogisticregression__random_state"] == 3
    assert clone(pipeline).get_params()["tunedlogisticregression__Cs"] == DEFAULT_CS


def test_inside_cross_val_predict():
    x, y = blobs(n=300, scale=3.0)
    probs = cross_val_predict(TunedLogisticRegression(), x, y, cv=3, method="predict_proba")
    assert probs.shape == (300, 3) and np.allclose(probs.sum(axis=1), 1)
    assert np.mean(probs.argmax(axis=1) == y) > 0.9


def test_sparse_features_give_the_dense_result():
    """TF-IDF-like sparse counts: the same choice and probabilities as the same numbers dense."""
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 300)
    dense = rng.poisson(np.where(y[:, None] == 1, [3.0, 0.2, 1.0, 0.5], [0.2, 3.0, 1.0, 0.5]) * 0.4).astype(float)
    dense = np.hstack([dense, np.zeros((300, 40))])
    x = sp.csr_matrix(dense)
    sparse_model = TunedLogisticRegression().fit(x, y)
    dense_model = TunedLogisticRegression().fit(dense, y)
    assert sparse_model.C_ == dense_model.C_
    np.testing.assert_allclose(sparse_model.cv_log_loss_, dense_model.cv_log_loss_, rtol=1e-5)
    np.testing.assert_allclose(sparse_model.predict_proba(x), dense_model.predict_proba(dense), atol=1e-6)
    text = make_model("logreg", sparse=True).fit(x, y)  # the pipeline of TF-IDF features (no centring)
    assert text.predict_proba(x).shape == (300, 2)


def test_a_class_with_one_row_is_left_out_of_the_choice_but_trained_on():
    x, y = blobs(n=200, k=3, seed=8, scale=2.0)
    x = np.vstack([x, [[9.0] * 5]])
    y = np.append(y, 3)  # class 3: one row
    model = TunedLogisticRegression().fit(x, y)
    assert np.all(np.isfinite(model.cv_log_loss_)) and model.C_ in DEFAULT_CS
    want = inner_losses(x[:200], y[:200], None, 0)  # the same choice as without the one-row class
    np.testing.assert_allclose(model.cv_log_loss_, want, rtol=1e-3, atol=1e-3)  # both fits stop at a tolerance
    assert model.C_ == DEFAULT_CS[int(np.argmin(want))]
    assert model.classes_.tolist() == [0, 1, 2, 3]
    assert model.predict_proba(x).shape == (201, 4)


def test_too_few_rows_to_choose_fall_back_to_the_default_c():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 2])  # only class 0 has two rows: nothing to compare
    model = TunedLogisticRegression(fallback_C=0.5).fit(x, y)
    assert model.C_ == 0.5 and np.all(np.isnan(model.cv_log_loss_))
    assert model.predict_proba(x).shape == (4, 3)
    assert TunedLogisticRegression(Cs=(0.2,)).fit(x, y).C_ == 0.2  # one C: nothing to choose


def test_bad_parameters():
    x, y = blobs(n=40)
    with pytest.raises(ValueError, match="inner_folds"):
        TunedLogisticRegression(inner_folds=1).fit(x, y)
    with pytest.raises(ValueError, match="Cs"):
        TunedLogisticRegression(Cs=()).fit(x, y)


def test_passes_scikit_learns_estimator_checks():
    """scikit-learn's own API checks (clone, fit/predict contracts, sparse input, pickling, input validation...)."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(TunedLogisticRegression(), on_fail=None)
    assert len(results) > 40
    failed = {r["check_name"]: str(r["exception"])[:300] for r in results if r["status"] == "failed"}
    assert not failed
