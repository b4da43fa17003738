"""Array functions with the meaning of cleanlab's, for code moving over from cleanlab.

* :func:`find_label_issues` -- as ``cleanlab.filter.find_label_issues``:
  a boolean mask of likely label errors, or (``return_indices_ranked_by=``)
  the indices of the flagged rows, most likely error first; multiclass or
  (``multi_label=True``) multi-label.
* :func:`get_label_quality_scores` -- as ``cleanlab.rank.get_label_quality_scores``:
  one score per row in [0, 1], lower = more likely wrong.

Both run labelqa's own detectors (:mod:`labelqa.detectors.confident`,
:mod:`labelqa.detectors.multilabel`): there is no second implementation,
so a mask here is the ``is_label_issue`` column :func:`labelqa.scan` gives on
the same arrays. Where labelqa's definitions differ from cleanlab 2.9
(ties at a cut, the ``low_*`` methods on multi-label data, ties in the
ranking), docs/migrating-from-cleanlab.md says how.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelqa import options
from labelqa.detectors import confident
from labelqa.errors import LabelqaError

__all__ = ["RANK_METHODS", "find_label_issues", "get_label_quality_scores"]

#: Values of ``return_indices_ranked_by`` (and of ``method`` in :func:`get_label_quality_scores`).
RANK_METHODS = confident.SCORE_METHODS

#: Weight of the exponential moving average that turns per-class scores into a multi-label row score.
_MULTILABEL_EMA_ALPHA = 0.8


def _plain(values: Any) -> Any:
    """A pandas/polars Series or DataFrame as numpy (labels and probabilities may come as either)."""
    root = type(values).__module__.split(".", 1)[0]
    if root in ("pandas", "polars") and hasattr(values, "to_numpy"):
        return values.to_numpy()
    return values


def _rank_options(rank_by_kwargs: Mapping[str, Any] | None) -> bool:
    """``adjust_pred_probs`` from cleanlab's ``rank_by_kwargs`` (the only key it takes)."""
    extra = sorted(set(rank_by_kwargs or {}) - {"adjust_pred_probs"})
    if extra:
        raise LabelqaError(f"rank_by_kwargs {extra} are not supported", "only adjust_pred_probs is")
    return bool((rank_by_kwargs or {}).get("adjust_pred_probs", False))


def get_label_quality_scores(
    labels: Any,
    pred_probs: Any,
    *,
    method: str = "self_confidence",
    adjust_pred_probs: bool = False,
) -> np.ndarray:
    """Per-row label quality in [0, 1]; lower = more likely a label error (as cleanlab's ``rank`` function).

    Args:
        labels: ``(N,)`` integer class codes ``0..K-1`` (array, list or Series).
        pred_probs: ``(N, K)`` out-of-sample predicted probabilities.
        method: ``self_confidence`` (the label's probability), ``normalized_margin`` or
            ``confidence_weighted_entropy`` (see :func:`labelqa.detectors.confident.get_label_quality_scores`).
        adjust_pred_probs: Subtract the per-class thresholds from the probabilities before scoring.

    Returns:
        float64 scores, shape ``(N,)``.

    Raises:
        LabelqaError: Bad shapes, labels that are not class codes, or an unknown method.
    """
    return confident.get_label_quality_scores(_plain(labels), _plain(pred_probs), method=method,
                                              adjust_pred_probs=adjust_pred_probs)


def _multilabel_scores(labels: np.ndarray, pred_probs: np.ndarray, method: str, adjust: bool) -> np.ndarray:
    """Multi-label row scores: each class scored as a binary problem by ``method``, then aggregated (EMA, 0.8)."""
    from labelqa.detectors.multilabel import ema_aggregate, get_multilabel_quality_scores

    if method in ("self_confidence", "normalized_margin") and not adjust:  # on two classes both are q_ik
        return get_multilabel_quality_scores(labels, pred_probs, aggregation="ema", ema_alpha=_MULTILABEL_EMA_ALPHA)
    probs = np.asarray(pred_probs, dtype=np.float64)
    per_class = np.empty(probs.shape, dtype=np.float64)
    for k in range(probs.shape[1]):
        binary = np.column_stack([1.0 - probs[:, k], probs[:, k]])
        per_class[:, k] = confident.get_label_quality_scores(labels[:, k].astype(np.int64), binary, method=method,
                                                             adjust_pred_probs=adjust)
    return ema_aggregate(per_class, _MULTILABEL_EMA_ALPHA)


def find_label_issues(
    labels: Any,
    pred_probs: Any,
    *,
    return_indices_ranked_by: str | None = None,
    rank_by_kwargs: Mapping[str, Any] | None = None,
    filter_by: str = "prune_by_noise_rate",
    frac_noise: float = 1.0,
    num_to_remove_per_class: Sequence[int] | None = None,
    min_examples_per_class: int = 1,
    confident_joint: Any = None,
    n_jobs: int | None = None,
    verbose: bool = False,
    multi_label: bool = False,
) -> np.ndarray:
    """Likely label errors, as cleanlab's ``filter.find_label_issues``: a mask, or ranked indices.

    Args:
        labels: ``(N,)`` integer class codes ``0..K-1``; with ``multi_label``, N lists of class codes
            (``[[0], [0, 2], []]``) or an ``(N, K)`` 0/1 matrix.
        pred_probs: ``(N, K)`` out-of-sample predicted probabilities (per-class probabilities for
            multi-label data).
        return_indices_ranked_by: ``None`` (default): return the boolean mask. Otherwise one of
            :data:`RANK_METHODS`: return the indices of the flagged rows ordered by that label quality
            score, lowest (most likely wrong) first; equal scores keep row order.
        rank_by_kwargs: ``{"adjust_pred_probs": True}`` to rank on adjusted probabilities.
        filter_by: How rows are flagged: ``prune_by_noise_rate`` (default), ``prune_by_class``,
            ``both``, ``confident_learning``, ``predicted_neq_given``, ``low_self_confidence``,
            ``low_normalized_margin`` (and labelqa's ``low_margin_midpoint``, multiclass only).
        frac_noise: Flag only this fraction of the estimated number of issues.
        num_to_remove_per_class: Rows to flag per class, replacing the estimate (multi-label: a
            ``(K, 2)`` array, see :func:`labelqa.detectors.multilabel.find_multilabel_issues`).
        min_examples_per_class: Keep at least this many rows of every class unflagged.
        confident_joint: Not supported: labelqa counts the confident joint itself (passing one raises).
        n_jobs: Accepted for compatibility; labelqa picks its own threads.
        verbose: Print the number of issues found.
        multi_label: The data is multi-label (one-vs-rest confident learning per class).

    Returns:
        A bool mask of shape ``(N,)``, or an int64 array of the flagged rows' indices, ranked.

    Raises:
        LabelqaError: Bad shapes or labels, an unknown method or option.
    """
    del n_jobs  # labelqa's detectors choose their own threads
    if confident_joint is not None:
        raise LabelqaError("confident_joint= is not supported: labelqa counts it from labels and pred_probs",
                           "drop the argument")
    if return_indices_ranked_by is not None:
        options.check(options.OPTIONS["score_method"], return_indices_ranked_by)
    adjust = _rank_options(rank_by_kwargs)
    labels, pred_probs = _plain(labels), _plain(pred_probs)
    kwargs = {"filter_by": filter_by, "frac_noise": frac_noise, "num_to_remove_per_class": num_to_remove_per_class,
              "min_examples_per_class": min_examples_per_class}
    if multi_label:
        from labelqa.detectors.multilabel import find_multilabel_issues, labels_to_indicator

        probs = np.asarray(pred_probs)
        if probs.ndim != 2:
            raise LabelqaError(f"pred_probs must be a 2-D (N, K) array, got shape {probs.shape}")
        indicator = labels_to_indicator(labels, probs.shape[1])
        mask = find_multilabel_issues(indicator, probs, **kwargs).issues
    else:
        mask = confident.find_label_issues(labels, pred_probs, **kwargs)
    if verbose:
        print(f"Number of label issues found: {int(mask.sum())}")
    if return_indices_ranked_by is None:
        return mask
    if multi_label:
        scores = _multilabel_scores(indicator, probs, return_indices_ranked_by, adjust)
    else:
        scores = get_label_quality_scores(labels, pred_probs, method=return_indices_ranked_by,
                                          adjust_pred_probs=adjust)
    flagged = np.flatnonzero(mask)
    return flagged[np.argsort(scores[flagged], kind="stable")].astype(np.int64)
