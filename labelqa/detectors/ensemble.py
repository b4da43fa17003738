"""Combining several detectors' results into one score, flag and suggestion per row.

Rules (documented in docs/detection.md, "Several detectors"):

* **Score**: with one detector, its own score. With several, from the *mean
  relative rank* ``r_i = mean_d b_d(i) / c_d``: ``b_d(i)`` is the number of
  rows detector ``d`` scores strictly more suspect than row ``i`` (tied rows
  share the count of their group's start) and ``c_d`` the number of rows
  ``d`` flags (at least 1), so ``b_d(i) / c_d < 1`` when a cut of ``d``'s
  ranking at its own count takes the row, and 1 for the first row past it.
  The score is ``r_i / (1 + r_i)`` in [0, 1): lower = more suspect, like
  every detector score, and ``<= 0.5`` exactly when ``r_i <= 1``.
* **Flag** (``issue_rule``):
  ``relative_rank`` (default) flags a row when ``r_i <= 1`` (on average over
  the detectors it lies within their own cuts) or when every detector flags
  it (detectors flag by their own rules, not always by rank, so a row all of
  them flag may rank past a cut). Every detector's ranking and
  count take part, so a detector that ranks better than the primary can add
  rows (the primary alone does not decide) and one that flags a row deep
  inside its cut can outweigh one that puts it just outside.
  ``primary_or_2`` flags a row when the primary detector flags it or when at
  least two detectors do; ``primary`` uses the primary detector only; ``any``
  and ``all`` take the union or intersection; ``majority`` needs more than
  half of the detectors.
* **Suggestion**: the primary detector's suggestion when it flagged the row,
  else the suggestion of the first detector (in run order) that flagged it,
  else the given label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labelqa.detectors.base import DetectorResult
from labelqa.errors import LabelqaError

ISSUE_RULES = ("relative_rank", "primary_or_2", "primary", "any", "all", "majority")
#: The default ``issue_rule`` (docs/detection.md: on digits with cl and aum it beats both detectors' F1).
DEFAULT_ISSUE_RULE = "relative_rank"


def normalized_ranks(scores: np.ndarray) -> np.ndarray:
    """Average ranks of ``scores`` mapped to [0, 1] (0 = lowest score).

    Ties share the mean of the ranks they span, so the result does not depend
    on row order. NaN scores rank last.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=np.float64)
    keyed = np.where(np.isnan(scores), np.inf, scores)
    order = np.argsort(keyed, kind="stable")
    sorted_vals = keyed[order]
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], n]
    mean_rank = (starts + ends - 1) / 2.0  # 0-based average rank of each tie group
    group = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks / (n - 1)


def rows_before(scores: np.ndarray) -> np.ndarray:
    """How many rows have a strictly lower score than each row (NaN counts as the highest score).

    Tied rows get the same count, where their group starts: a detector that
    cannot tell rows apart (e.g. ``dup``, whose rows outside any duplicate
    group all score 1) puts them all at its cut, not deep beyond it.
    """
    keyed = np.asarray(scores, dtype=np.float64)
    keyed = np.where(np.isnan(keyed), np.inf, keyed)
    return np.searchsorted(np.sort(keyed), keyed, side="left").astype(np.float64)


def relative_ranks(before: Sequence[np.ndarray], flagged: Sequence[int]) -> np.ndarray:
    """``mean_d b_d(i) / max(c_d, 1)`` from each detector's rows-before counts ``b_d`` and flag count ``c_d``.

    The out-of-core engines get ``b_d`` from every row's scores folded batch by batch
    (:class:`labelqa.stats.score_counts.ScoreCounts`), so a batch gets the same numbers as the whole table.
    """
    return np.mean([np.asarray(b, dtype=np.float64) / max(int(c), 1) for b, c in zip(before, flagged)], axis=0)


def mean_relative_rank(results: Sequence[DetectorResult]) -> np.ndarray:
    """``mean_d b_d(i) / max(c_d, 1)``: rows each detector finds more suspect, over the number of rows it flags."""
    return relative_ranks([rows_before(r.scores) for r in results],
                          [int(np.count_nonzero(np.asarray(r.issues, dtype=bool))) for r in results])


def combined_score(results: Sequence[DetectorResult], relative: np.ndarray | None = None) -> np.ndarray:
    """One detector: its score. Several: ``r / (1 + r)`` of the mean relative rank ``r`` (module doc).

    ``relative``: the rows' mean relative ranks over the whole dataset when ``results`` hold one batch.
    """
    if len(results) == 1:
        return np.asarray(results[0].scores, dtype=np.float64)
    rel = mean_relative_rank(results) if relative is None else relative
    return rel / (1.0 + rel)


def joint_reason(results: Sequence[DetectorResult], rows: np.ndarray,
                 relative: np.ndarray | None = None) -> "pa.StringArray":
    """Reason text for rows flagged by ``relative_rank`` although no single detector flagged them."""
    import pyarrow as pa

    rel = (mean_relative_rank(results) if relative is None else relative)[np.asarray(rows, dtype=np.int64)]
    names = " + ".join(r.name for r in results)
    return pa.array([f"near the cut of {names} (mean relative rank {v:.2f} <= 1)" for v in rel], pa.string())


def combined_flags(results: Sequence[DetectorResult], primary: str, rule: str = DEFAULT_ISSUE_RULE,
                   relative: np.ndarray | None = None) -> np.ndarray:
    """Per-row issue flag of the ensemble under ``rule`` (see the module doc); ``relative`` as in
    :func:`combined_score`."""
    if rule not in ISSUE_RULES:
        raise LabelqaError(f"unknown issue rule {rule!r}", f"choose one of {', '.join(ISSUE_RULES)}")
    flags = np.stack([np.asarray(r.issues, dtype=bool) for r in results])
    if rule == "relative_rank":
        if len(results) == 1:
            return flags[0].copy()
        rel = mean_relative_rank(results) if relative is None else relative
        return (rel <= 1.0) | flags.all(axis=0)
    votes = flags.sum(axis=0)
    prim = next(i for i, r in enumerate(results) if r.name == primary)
    if rule == "primary":
        return flags[prim].copy()
    if rule == "any":
        return votes > 0
    if rule == "all":
        return votes == len(results)
    if rule == "majority":
        return votes * 2 > len(results)
    return flags[prim] | (votes >= 2)


def combined_suggestion(
    results: Sequence[DetectorResult], primary: str, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Suggested label (codes) and its confidence, by the module-doc rule."""
    labels = np.asarray(labels)
    if len(results) == 1:  # its own suggestions on its flagged rows, its confidence everywhere (as below)
        (res,) = results
        rows = np.asarray(res.issues, dtype=bool).reshape(-1, *([1] * (labels.ndim - 1)))
        suggested = np.where(rows, np.asarray(res.suggested), labels).astype(labels.dtype, copy=False)
        if res.suggested_confidence is None:
            return suggested, np.full(labels.shape[0], np.nan)
        return suggested, np.array(res.suggested_confidence, dtype=np.float64)  # a copy: callers may write to it
    ordered = sorted(results, key=lambda r: r.name != primary)  # primary first, then run order
    suggested = labels
    confidence = np.full(labels.shape[0], np.nan)
    decided = np.zeros(labels.shape[0], dtype=bool)
    for res in ordered:  # np.where over whole columns: a boolean-mask assignment costs several times more
        take = np.asarray(res.issues, dtype=bool) & ~decided
        rows = take.reshape(-1, *([1] * (labels.ndim - 1)))  # multi-label: whole label-set rows
        suggested = np.where(rows, np.asarray(res.suggested), suggested).astype(labels.dtype, copy=False)
        if res.suggested_confidence is not None:
            confidence = np.where(take, np.asarray(res.suggested_confidence, dtype=np.float64), confidence)
        decided |= take
    prim = next(r for r in results if r.name == primary)
    if prim.suggested_confidence is not None:
        confidence = np.where(decided, confidence, np.asarray(prim.suggested_confidence, dtype=np.float64))
    if suggested is labels:  # nothing flagged by anyone: still a new array, as callers may write to it
        suggested = labels.copy()
    return suggested, confidence
