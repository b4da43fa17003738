"""Combining several detectors' results into one score, flag and suggestion per row.

Rules (documented in docs/ensemble.md):

* **Score**: with one detector, its own score. With several, the *rank
  average*: each detector's scores are turned into normalised ranks in [0, 1]
  (0 = most suspect; ties share their average rank) and averaged over
  detectors. Lower = more suspect, like every detector score.
* **Flag** (``issue_rule``):
  ``primary_or_2`` (default) flags a row when the primary detector flags it
  or when at least two detectors do; ``primary`` uses the primary detector
  only; ``any`` and ``all`` take the union or intersection; ``majority``
  needs more than half of the detectors.
* **Suggestion**: the primary detector's suggestion when it flagged the row,
  else the suggestion of the first detector (in run order) that flagged it,
  else the given label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labelqa.detectors.base import DetectorResult
from labelqa.errors import LabelqaError

ISSUE_RULES = ("primary_or_2", "primary", "any", "all", "majority")


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


def combined_score(results: Sequence[DetectorResult]) -> np.ndarray:
    """One detector: its score. Several: the mean of their normalised ranks."""
    if len(results) == 1:
        return np.asarray(results[0].scores, dtype=np.float64)
    return np.mean([normalized_ranks(r.scores) for r in results], axis=0)


def combined_flags(results: Sequence[DetectorResult], primary: str, rule: str = "primary_or_2") -> np.ndarray:
    """Per-row issue flag of the ensemble under ``rule`` (see the module doc)."""
    if rule not in ISSUE_RULES:
        raise LabelqaError(f"unknown issue rule {rule!r}", f"choose one of {', '.join(ISSUE_RULES)}")
    flags = np.stack([np.asarray(r.issues, dtype=bool) for r in results])
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
    ordered = sorted(results, key=lambda r: r.name != primary)  # primary first, then run order
    suggested = np.asarray(labels).copy()
    confidence = np.full(suggested.shape[0], np.nan)
    decided = np.zeros(suggested.shape[0], dtype=bool)
    for res in ordered:
        take = np.asarray(res.issues, dtype=bool) & ~decided
        suggested[take] = np.asarray(res.suggested)[take]
        if res.suggested_confidence is not None:
            confidence[take] = np.asarray(res.suggested_confidence)[take]
        decided |= take
    prim = next(r for r in results if r.name == primary)
    if prim.suggested_confidence is not None:
        rest = ~decided
        confidence[rest] = np.asarray(prim.suggested_confidence)[rest]
    return suggested, confidence
