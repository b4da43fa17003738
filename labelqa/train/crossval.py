"""Out-of-sample predicted probabilities by K-fold cross-validation, for every ``labelqa train --model``.

Every row's probabilities come from a model that did not see it, which is what
confident learning and the other probability-based detectors need. Models:
the scikit-learn ones of :mod:`labelqa.train.sklearn_cv` (``logreg``,
``hgb``, ``knn``, ``mlp``; no torch) and the small torch model of
:mod:`labelqa.train.torch_model` (``torch``). All share the folds of
:func:`labelqa.train.sklearn_cv.split_folds` (stratified, or group folds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelqa.errors import LabelqaError
from labelqa.train.sklearn_cv import SKLEARN_MODELS, cross_val_proba, split_folds
from labelqa.train.torch_model import StepProgress, TrainConfig

#: The models of ``labelqa train --model``.
CV_MODELS = (*SKLEARN_MODELS, "torch")


def cross_val_probs(
    features: Any,
    labels: Any,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    model: str = "logreg",
    threads: int | None = 1,
    groups: Any = None,
    torch_config: TrainConfig | None = None,
    progress: StepProgress | None = None,
) -> np.ndarray:
    """Out-of-sample ``predict_proba`` of every row, shape ``(N, K)``, float64.

    Folds are ``StratifiedKFold(folds, shuffle=True, random_state=seed)``
    (``StratifiedGroupKFold`` with ``groups``; plain folds for multi-label
    labels). A class missing from a fold's training rows gets probability 0
    in that fold.

    Args:
        features: ``(N, D)`` numeric features (a sparse matrix for the scikit-learn models too).
        labels: Given labels, int codes ``0..K-1``; or an ``(N, K)`` 0/1 matrix of multi-label
            label sets (one-vs-rest; scikit-learn models only).
        n_classes: K.
        folds: Number of folds (>= 2).
        seed: Seed of the folds (and of the models).
        model: One of :data:`CV_MODELS`.
        threads: BLAS / OpenMP threads of the scikit-learn models, capped at the cores available (0: all).
        groups: Optional group per row; rows of a group stay in one fold.
        torch_config: Hyperparameters of the torch model.
        progress: ``progress("cross-validation", done, folds)`` after each fold.
    """
    y = np.asarray(labels)
    if model not in CV_MODELS:
        raise LabelqaError(f"unknown cross-validation model {model!r}", f"use one of {', '.join(CV_MODELS)}")
    if folds < 2:
        raise LabelqaError(f"--folds must be at least 2, got {folds}")
    multilabel = y.ndim == 2
    if not multilabel:
        y = y.astype(np.int64)
        counts = np.bincount(y, minlength=n_classes)
        if folds > counts.max(initial=0):
            raise LabelqaError(f"--folds {folds} is more than the rows of the largest class "
                               f"({counts.max(initial=0)})", "use fewer folds")
    elif folds > y.shape[0]:
        raise LabelqaError(f"--folds {folds} is more than the {y.shape[0]} rows", "use fewer folds")
    if model != "torch":
        return cross_val_proba(model, features, y, n_classes, folds=folds, seed=seed, groups=groups,
                               threads=threads, progress=progress)
    if multilabel:
        raise LabelqaError("--model torch trains multiclass models only",
                           "use --model logreg, hgb, knn or mlp for multi-label data (one-vs-rest)")
    from labelqa.train.torch_model import fit_predict_proba, require_torch, standardize

    require_torch()
    cfg = torch_config or TrainConfig(seed=seed)
    x = standardize(dense_features(features, "--model torch"))
    probs = np.zeros((y.shape[0], n_classes), dtype=np.float64)
    for f, (tr, te) in enumerate(split_folds(y, folds, seed, groups=groups)):
        present = np.unique(y[tr])
        remap = np.full(n_classes, -1, dtype=np.int64)
        remap[present] = np.arange(present.size)
        probs[np.ix_(te, present)] = fit_predict_proba(x[tr], remap[y[tr]], x[te], present.size, cfg, fold=f)
        if progress:
            progress("cross-validation", f + 1, folds)
    return probs


#: Largest dense copy (bytes) made of sparse (TF-IDF) features for a model that needs dense ones.
MAX_DENSE_BYTES = 2 << 30


def dense_features(x: Any, who: str) -> np.ndarray:
    """``x`` as a dense float64 array (a sparse matrix densified when it fits in :data:`MAX_DENSE_BYTES`)."""
    if not hasattr(x, "toarray"):
        return np.asarray(x, dtype=np.float64)
    need = x.shape[0] * x.shape[1] * 8
    if need > MAX_DENSE_BYTES:
        raise LabelqaError(f"{who} needs dense features, and the {x.shape[1]:,} TF-IDF features of {x.shape[0]:,} "
                           f"rows take {need / 2**30:.1f} GiB dense",
                           "use --model logreg, knn or mlp (they take sparse features)")
    return np.asarray(x.toarray(), dtype=np.float64)
