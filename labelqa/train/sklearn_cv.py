"""Out-of-sample probabilities from scikit-learn models, one fold loop for every model and task.

* :func:`make_model`: the named models of ``labelqa train --model``
  (``logreg``, ``hgb``, ``knn``, ``mlp``; ``logreg`` chooses its C by an
  inner cross-validation, :class:`labelqa.train.logreg.TunedLogisticRegression`);
* :func:`fold_splitter`: stratified folds, group folds when groups are given
  (near duplicates stay in one fold), plain folds for multi-label data;
* :func:`cross_val_proba`: every row's probabilities from a model that did not
  see it, multiclass (columns of classes missing from a training fold get 0)
  or multi-label (one-vs-rest: one binary model per class);
* :func:`available_cores`: the cores this process may use (a container's CPU
  quota included); hgb's OpenMP and the BLAS threads never exceed it
  (:func:`resolve_threads`), one thread by default.

No torch: the torch model of ``--model torch`` lives in
:mod:`labelqa.train.torch_model`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError

__all__ = ["SKLEARN_MODELS", "available_cores", "cross_val_proba", "fit_fold", "fold_splitter", "make_model",
           "resolve_threads", "split_folds"]

#: Model names of :func:`make_model`.
SKLEARN_MODELS = ("logreg", "hgb", "knn", "mlp")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def resolve_threads(threads: int | None) -> int:
    """Threads to use: ``threads`` capped at :func:`available_cores`; ``0`` or ``None`` = all of them.

    The default elsewhere is 1: on a shared machine OpenMP (hgb) and BLAS threads that wait on each other at
    every barrier measured 10-25x slower with 2 threads than with 1 (2 cores, load 8).
    """
    cores = available_cores()
    return cores if not threads else max(1, min(int(threads), cores))


def make_model(name: str, seed: int = 0, *, sparse: bool = False) -> Any:
    """A fresh scikit-learn classifier for ``name`` (scaled features where the model needs them).

    Args:
        name: One of :data:`SKLEARN_MODELS`.
        seed: ``random_state`` of the model.
        sparse: The features are a sparse matrix (TF-IDF): scale without centring.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def scaler() -> Any:
        return StandardScaler(with_mean=not sparse)

    if name == "logreg":
        from labelqa.train.logreg import TunedLogisticRegression

        return make_pipeline(scaler(), TunedLogisticRegression(random_state=seed))
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(random_state=seed)
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return make_pipeline(scaler(), KNeighborsClassifier(n_neighbors=15, weights="distance"))
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        return make_pipeline(scaler(), MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, early_stopping=True,
                                                     random_state=seed))
    raise LabelqaError(f"unknown model {name!r}", f"use one of {', '.join(SKLEARN_MODELS)} or a scikit-learn "
                       "classifier object")


def fold_splitter(folds: int, seed: int, *, groups: Any = None, multilabel: bool = False) -> Any:
    """The cross-validation splitter: ``StratifiedKFold``, ``StratifiedGroupKFold`` with groups, and for
    multi-label data ``KFold`` / ``GroupKFold`` (label sets cannot be stratified)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if folds < 2:
        raise LabelqaError(f"--folds must be at least 2, got {folds}")
    if multilabel:
        return KFold(folds, shuffle=True, random_state=seed) if groups is None else GroupKFold(folds)
    if groups is None:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def split_folds(y: np.ndarray, folds: int, seed: int, *, groups: Any = None,
                multilabel: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(train_rows, test_rows)`` per fold; checks that the groups allow ``folds`` folds."""
    n = y.shape[0]
    if groups is not None:
        n_groups = len(np.unique(np.asarray(groups)))
        if n_groups < folds:
            raise LabelqaError(f"{n_groups} groups, fewer than the {folds} folds", "use fewer --folds")
    splitter = fold_splitter(folds, seed, groups=groups, multilabel=multilabel)
    strat = np.zeros(n) if multilabel else y
    with warnings.catch_warnings():
        # "The least populated class has only m members": fine, a class missing from a fold gets 0 there
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        yield from splitter.split(np.zeros(n), strat, groups)


def fit_fold(model: Any, x_tr: Any, y_tr: np.ndarray, x_te: Any, n_classes: int, *,
             multilabel: bool = False) -> np.ndarray:
    """Fit a clone of ``model`` on the training rows and return the test rows' ``(n_te, K)`` probabilities.

    Multiclass ``y_tr`` holds codes ``0..K-1``; a class missing from them gets probability 0 (a single
    class present gets everything). Multi-label ``y_tr`` is an ``(n_tr, K)`` 0/1 matrix: one binary model per
    class; a class always (never) present in the training rows gets probability 1 (0).
    """
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    n_te = x_te.shape[0]
    out = np.zeros((n_te, n_classes), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if multilabel:
            for j in range(n_classes):
                col = y_tr[:, j]
                if col.min() == col.max():
                    out[:, j] = float(col[0]) if col.size else 0.0
                    continue
                clf = clone(model).fit(x_tr, col)
                out[:, j] = clf.predict_proba(x_te)[:, list(clf.classes_).index(1)]
            return out
        present = np.unique(y_tr)
        if present.size == 1:
            out[:, present[0]] = 1.0
            return out
        clf = clone(model).fit(x_tr, y_tr)
        out[:, np.asarray(clf.classes_, dtype=np.int64)] = clf.predict_proba(x_te)
    return out


def cross_val_proba(
    model: Any,
    features: Any,
    labels: np.ndarray,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    groups: Any = None,
    threads: int | None = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """Out-of-sample probabilities of every row, ``(N, K)`` float64.

    Args:
        model: A scikit-learn classifier (cloned per fold) or a name of :data:`SKLEARN_MODELS`.
        features: ``(N, D)`` features (dense array or sparse matrix).
        labels: Multiclass: ``(N,)`` codes ``0..K-1``; multi-label: ``(N, K)`` 0/1 matrix (one-vs-rest).
        n_classes: K.
        folds: Number of folds (>= 2).
        seed: Seed of the folds (and of a named model).
        groups: Optional group per row; rows of a group stay in one fold.
        threads: BLAS and OpenMP (hgb) threads, capped at :func:`available_cores`; 0 or ``None``: all cores.
        progress: ``progress("cross-validation", done, folds)`` after each fold.

    Returns:
        Multiclass rows summing to 1 (renormalized); multi-label values independent per class.
    """
    from threadpoolctl import threadpool_limits

    y = np.asarray(labels)
    multilabel = y.ndim == 2
    n = y.shape[0]
    if features.shape[0] != n:
        raise LabelqaError(f"features have {features.shape[0]} rows but labels have {n}")
    sparse = hasattr(features, "tocsr")
    estimator = make_model(model, seed, sparse=sparse) if isinstance(model, str) else model
    if not hasattr(estimator, "predict_proba"):
        raise LabelqaError(f"{type(estimator).__name__} has no predict_proba",
                           "use a probabilistic classifier (or wrap it in CalibratedClassifierCV)")
    x = features.tocsr() if sparse else features
    probs = np.zeros((n, n_classes), dtype=np.float64)
    with threadpool_limits(limits=resolve_threads(threads)):
        for f, (tr, te) in enumerate(split_folds(y, folds, seed, groups=groups, multilabel=multilabel)):
            probs[te] = fit_fold(estimator, x[tr], y[tr], x[te], n_classes, multilabel=multilabel)
            if progress:
                progress("cross-validation", f + 1, folds)
    if not multilabel:
        sums = probs.sum(axis=1, keepdims=True)
        probs /= np.where(sums > 0, sums, 1.0)
    return probs
