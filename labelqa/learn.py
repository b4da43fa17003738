"""Label issues with any scikit-learn classifier: out-of-sample probabilities, a one-call finder, and a wrapper.

* :func:`cross_val_pred_probs`: ``cross_val_predict(method="predict_proba")``
  with ``StratifiedKFold`` (``StratifiedGroupKFold`` when ``groups`` are
  given, so near duplicates stay in one fold); no torch.
* :func:`make_model`: the named models of ``labelqa train --model``
  (``logreg``, ``hgb``, ``knn``, ``mlp``).
* :func:`find_issues`: a DataFrame with features and labels, no
  probabilities -> a :class:`~labelqa.result.ScanResult`.
* :class:`CleanClassifier`: a scikit-learn estimator in the spirit of
  cleanlab's ``CleanLearning``: ``fit(X, y)`` finds the issues, trains on the
  clean rows; ``predict``/``predict_proba``/``score`` and ``issues_``.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError
from labelqa.train.sklearn_cv import SKLEARN_MODELS, make_model, resolve_threads

__all__ = ["SKLEARN_MODELS", "CleanClassifier", "cross_val_pred_probs", "feature_columns", "find_issues",
           "make_model", "select_columns"]

def _splitter(y: np.ndarray, folds: int, seed: int, groups: Any) -> Any:
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def cross_val_pred_probs(
    model: Any,
    features: Any,
    labels: Any,
    *,
    folds: int = 5,
    groups: Any = None,
    seed: int = 0,
    n_jobs: int | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, list[Any]]:
    """Out-of-sample ``predict_proba`` of every row by cross-validation, and the class order.

    Args:
        model: A scikit-learn classifier (cloned per fold) or a name of :data:`SKLEARN_MODELS`.
        features: ``(N, D)`` features (array, DataFrame, sparse matrix).
        labels: ``(N,)`` given labels (any hashable values).
        folds: Number of folds (>= 2, at most the rows of the smallest class).
        groups: Optional group per row; rows of a group stay in one fold (``StratifiedGroupKFold``).
        seed: Seed of the folds (and of a named model).
        n_jobs: Folds fitted in parallel (scikit-learn's ``n_jobs``).
        threads: BLAS and OpenMP (hgb) threads per fit, capped at the cores available; 0 = all of them.

    Returns:
        ``(pred_probs, classes)``: ``(N, K)`` float64 rows summing to 1, columns in ``classes`` order
        (the sorted unique labels).

    Raises:
        LabelqaError: Too few rows per class for ``folds``, mismatched lengths, or a model without
            ``predict_proba``.
    """
    from sklearn.model_selection import cross_val_predict
    from sklearn.preprocessing import LabelEncoder

    y_values = np.asarray(labels)
    if y_values.ndim != 1:
        raise LabelqaError(f"labels have shape {y_values.shape}, expected (N,)",
                           "for multi-label data use labelqa train (one-vs-rest)")
    if folds < 2:
        raise LabelqaError(f"folds must be at least 2, got {folds}")
    encoder = LabelEncoder().fit(y_values)
    y = encoder.transform(y_values)
    n = y.shape[0]
    if getattr(features, "shape", (n,))[0] != n:
        raise LabelqaError(f"features have {features.shape[0]} rows but labels have {n}")
    counts = np.bincount(y)
    if counts.size < 2:
        raise LabelqaError(f"{counts.size} class in the labels; finding label issues needs at least 2")
    if groups is None and counts.min() < folds:
        small = encoder.classes_[int(np.argmin(counts))]
        raise LabelqaError(f"class {small!r} has {counts.min()} rows, fewer than the {folds} folds",
                           "use fewer folds, or drop or merge the rare class")
    estimator = make_model(model, seed) if isinstance(model, str) else model
    if not hasattr(estimator, "predict_proba"):
        raise LabelqaError(f"{type(estimator).__name__} has no predict_proba",
                           "use a probabilistic classifier (or wrap it in CalibratedClassifierCV)")
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(limits=resolve_threads(threads)):
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        probs = cross_val_predict(estimator, features, y, cv=_splitter(y, folds, seed, groups), groups=groups,
                                  method="predict_proba", n_jobs=n_jobs)
    probs = np.asarray(probs, dtype=np.float64)
    sums = probs.sum(axis=1, keepdims=True)
    probs = probs / np.where(sums > 0, sums, 1.0)
    return probs, encoder.classes_.tolist()


def select_columns(names: Sequence[str], patterns: str | Sequence[str], skip: Sequence[str] = ()) -> list[str]:
    """The column names matching ``patterns`` (exact names or globs like ``'px_*'``), in table order.

    Globs never match the ``skip`` columns (the label, id and group columns); an exact name is taken as given.

    Raises:
        LabelqaError: A pattern that matches no column.
    """
    pats = [p.strip() for p in patterns.split(",")] if isinstance(patterns, str) else list(patterns)
    chosen: list[str] = []
    for pat in pats:
        hits = [pat] if pat in names else [c for c in names if fnmatch.fnmatchcase(c, pat) and c not in skip]
        if not hits:
            raise LabelqaError(f"no column matches {pat!r}", f"columns: {', '.join(list(names)[:20])}")
        chosen += [c for c in hits if c not in chosen]
    return [c for c in names if c in chosen]


def feature_columns(frame: Any, label_col: str, feature_cols: str | Sequence[str] | None = None,
                    skip: Sequence[str | None] = ()) -> list[str]:
    """The feature columns of a pandas DataFrame, as :func:`find_issues` chooses them.

    Without ``feature_cols``: every numeric column but the label column and the ``skip`` columns (the id and
    group columns: an id says which row it is, not what it shows, and a model would learn from any id that
    happens to follow the label order). With ``feature_cols``: :func:`select_columns` (globs skip them too).

    Raises:
        LabelqaError: No feature column.
    """
    names = [str(c) for c in frame.columns]
    leave = [label_col, *(c for c in skip if c is not None)]
    if feature_cols is None:
        cols = [c for c in names if c not in leave and np.issubdtype(np.asarray(frame[c]).dtype, np.number)]
        if not cols:
            raise LabelqaError("no numeric feature columns besides the labels", "pass feature_cols=['px_*', ...]")
        return cols
    return select_columns(names, feature_cols, skip=leave)


def find_issues(
    data: Any,
    *,
    label_col: str = "label",
    feature_cols: str | Sequence[str] | None = None,
    model: Any = "logreg",
    folds: int = 5,
    group_col: str | None = None,
    id_col: str | None = None,
    seed: int = 0,
    **scan_options: Any,
) -> Any:
    """Find label issues in a DataFrame of features and labels that has no probabilities.

    Out-of-sample probabilities come from :func:`cross_val_pred_probs` with
    ``model``; then :func:`labelqa.scan` runs on the DataFrame with them.

    Args:
        data: A pandas DataFrame (or anything :func:`labelqa.data.frames.as_table` reads).
        label_col: Column of given labels.
        feature_cols: Feature columns (names or globs such as ``'px_*'``; globs skip the label, id and
            group columns); default every numeric column but the label, id and group columns
            (:func:`feature_columns`).
        model: A name of :data:`SKLEARN_MODELS` or a scikit-learn classifier.
        folds: Cross-validation folds.
        group_col: Column of groups kept together in one fold.
        id_col: Column of row ids: never a feature; the scan's ``id_col`` (checked unique, in the issues).
        seed: Seed of the folds and the model.
        **scan_options: Options of :func:`labelqa.scan` (``filter_by=``...).

    Returns:
        The :class:`~labelqa.result.ScanResult` (``ranked_issues()``, ``cleaned(df)``...).
    """
    from labelqa.scan import scan

    frame = data
    if not hasattr(frame, "columns") or type(frame).__module__.split(".")[0] != "pandas":
        from labelqa.data.frames import as_table

        frame = as_table(data).to_pandas()
    for what, col in (("label", label_col), ("id", id_col), ("group", group_col)):
        if col is not None and col not in frame.columns:
            raise LabelqaError(f"no {what} column {col!r}", f"columns: {', '.join(map(str, frame.columns[:20]))}")
    cols = feature_columns(frame, label_col, feature_cols, skip=[id_col, group_col])
    features = frame[cols].to_numpy(dtype=np.float64)
    groups = frame[group_col].to_numpy() if group_col else None
    probs, classes = cross_val_pred_probs(model, features, frame[label_col].to_numpy(), folds=folds, groups=groups,
                                          seed=seed)
    if id_col is not None:
        scan_options["id_col"] = id_col
    return scan(data, label_col=label_col, pred_probs=probs, classes=classes, **scan_options)


class CleanClassifier:
    """A scikit-learn classifier that finds label issues and trains on the clean rows.

    ``fit(X, y)``: out-of-sample probabilities of ``estimator`` by
    cross-validation, a labelqa scan on them, then ``estimator`` refitted on
    the rows not flagged. After fitting: ``issues_`` (a DataFrame, one row
    per training row in order, with ``is_label_issue``, ``label_quality``,
    ``suggested_label``), ``scan_result_``, ``classes_``, ``estimator_``.

    Args:
        estimator: A scikit-learn classifier, or a name of :data:`SKLEARN_MODELS` (default logreg).
        folds: Cross-validation folds for the probabilities.
        seed: Seed of the folds (and of a named model).
        scan_options: Options of :func:`labelqa.scan` (e.g. ``{"filter_by": "both"}``).
    """

    def __init__(self, estimator: Any = "logreg", *, folds: int = 5, seed: int = 0,
                 scan_options: dict[str, Any] | None = None) -> None:
        self.estimator = estimator
        self.folds = folds
        self.seed = seed
        self.scan_options = scan_options

    # scikit-learn's parameter protocol (so clone(), GridSearchCV and pipelines work)
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"estimator": self.estimator, "folds": self.folds, "seed": self.seed,
                "scan_options": self.scan_options}

    def set_params(self, **params: Any) -> CleanClassifier:
        for key, value in params.items():
            if key not in self.get_params():
                raise ValueError(f"invalid parameter {key!r} for CleanClassifier")
            setattr(self, key, value)
        return self

    def _fresh(self) -> Any:
        from sklearn.base import clone

        return make_model(self.estimator, self.seed) if isinstance(self.estimator, str) else clone(self.estimator)

    def fit(self, X: Any, y: Any, groups: Any = None) -> CleanClassifier:
        """Find the label issues of ``(X, y)`` and fit the estimator on the clean rows."""
        from labelqa.scan import scan

        y_arr = np.asarray(y)
        probs, classes = cross_val_pred_probs(self._fresh(), X, y_arr, folds=self.folds, groups=groups,
                                              seed=self.seed)
        self.scan_result_ = scan(labels=y_arr, pred_probs=probs, classes=classes, **(self.scan_options or {}))
        self.issues_ = self.scan_result_.issues_df()
        keep = ~np.asarray(self.scan_result_.is_label_issue, dtype=bool)
        self.classes_ = np.asarray(classes)
        self.estimator_ = self._fresh()
        rows = np.flatnonzero(keep)
        x_clean = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
        self.estimator_.fit(x_clean, y_arr[rows])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels of the estimator trained on the clean rows."""
        return self.estimator_.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (columns in ``classes_`` order) of the estimator trained on the clean rows."""
        probs = np.zeros((len(X), len(self.classes_)), dtype=np.float64)
        cols = np.searchsorted(self.classes_, self.estimator_.classes_)
        probs[:, cols] = self.estimator_.predict_proba(X)
        return probs

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def find_label_issues(self) -> Any:
        """The issues DataFrame of the last :meth:`fit` (as ``issues_``)."""
        return self.issues_
