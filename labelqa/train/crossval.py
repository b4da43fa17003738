"""Out-of-sample predicted probabilities by stratified K-fold cross-validation.

Every row's probabilities come from a model that did not see it, which is what
confident learning and the other probability-based detectors need. Default
model: ``StandardScaler + LogisticRegression`` (scikit-learn); option: the
small torch model of :mod:`labelqa.train.torch_model`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError
from labelqa.train.torch_model import StepProgress, TrainConfig

CV_MODELS = ("logreg", "torch")


def cross_val_probs(
    features: Any,
    labels: Any,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    model: str = "logreg",
    threads: int = 1,
    torch_config: TrainConfig | None = None,
    progress: StepProgress | None = None,
) -> np.ndarray:
    """Out-of-sample ``predict_proba`` of every row, shape ``(N, K)``, float64.

    Folds are ``StratifiedKFold(folds, shuffle=True, random_state=seed)``. A
    class missing from a fold's training rows gets probability 0 in that fold.

    Args:
        features: ``(N, D)`` numeric features.
        labels: Given labels, int codes ``0..K-1``.
        n_classes: K.
        folds: Number of folds (>= 2).
        seed: Seed of the folds (and of the torch model).
        model: ``"logreg"`` or ``"torch"``.
        threads: BLAS / torch threads (results are reproducible for a given
            value).
        torch_config: Hyperparameters of the torch model.
        progress: ``progress("fold", done, folds)`` after each fold.
    """
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = y.shape[0]
    if model not in CV_MODELS:
        raise LabelqaError(f"unknown cross-validation model {model!r}", f"use one of {', '.join(CV_MODELS)}")
    if folds < 2:
        raise LabelqaError(f"--folds must be at least 2, got {folds}")
    counts = np.bincount(y, minlength=n_classes)
    if folds > counts.max(initial=0):
        raise LabelqaError(f"--folds {folds} is more than the rows of the largest class ({counts.max(initial=0)})",
                           "use fewer folds")
    if model == "torch":
        from labelqa.train.torch_model import require_torch, standardize

        require_torch()
        cfg = torch_config or TrainConfig(seed=seed, threads=threads)
        x = standardize(x)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = np.zeros((n, n_classes), dtype=np.float64)
    with threadpool_limits(limits=int(threads)), warnings.catch_warnings():
        # "The least populated class has only m members": fine, we handle missing classes
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        for f, (tr, te) in enumerate(splitter.split(np.zeros(n), y)):
            if model == "logreg":
                probs[te] = _logreg_fold(x[tr], y[tr], x[te], n_classes, seed)
            else:
                from labelqa.train.torch_model import fit_predict_proba

                present = np.unique(y[tr])
                remap = np.full(n_classes, -1, dtype=np.int64)
                remap[present] = np.arange(present.size)
                p = fit_predict_proba(x[tr], remap[y[tr]], x[te], present.size, cfg, fold=f)
                probs[np.ix_(te, present)] = p
            if progress:
                progress("cross-validation", f + 1, folds)
    return probs


def _logreg_fold(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros((x_te.shape[0], n_classes), dtype=np.float64)
    present = np.unique(y_tr)
    if present.size == 1:  # a single class: it gets everything
        out[:, present[0]] = 1.0
        return out
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    out[:, clf.classes_] = clf.predict_proba(x_te)
    return out
