"""Does the class order fit the data? A cheap check that the probability columns belong to the classes they are
said to.

When the classes come in the wrong order (sorted labels taken as the column order, integer labels read as column
positions for ``prob_<name>`` columns, a ``--classes`` list in another order) every detector silently flags most
rows. Misalignment shows in the K x K confusion of given labels against the model's top class: legitimately noisy
labels still agree with the model most often on the diagonal, whereas a wrong order leaves the agreement
somewhere else. :func:`check_class_order` counts the labels that agree with the model's top class as given
(``identity``) and under the best one-to-one assignment of columns to classes (``best``, by
:func:`scipy.optimize.linear_sum_assignment` on the K x K counts), and stops when ``best`` beats ``identity`` by
at least :data:`MIN_GAIN_FRACTION` of the rows (and :data:`MIN_GAIN_ROWS` rows) while agreeing on at least
:data:`MIN_BEST_AGREEMENT` of them (a model no better than chance finds some better assignment by luck on small
data; only a model that fits the labels under another order is evidence).

Noise that merely flips labels (uniformly, or pair-wise below 50%) keeps the diagonal the best assignment, so it
never trips; nor does a model no better than chance (its best assignment agrees on far fewer than half the rows).
Cost: one argmax over the N x K probabilities and a K x K assignment (skipped when a cheap upper bound
already rules a gain out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelqa.data.rows import format_values
from labelqa.errors import LabelqaError
from labelqa.parallel import for_row_blocks
from labelqa.stats.confident import row_top

#: A better assignment must explain at least this fraction of the rows more ...
MIN_GAIN_FRACTION = 0.10
#: ... and at least this many rows.
MIN_GAIN_ROWS = 20
#: ... while the better assignment agrees with the model on at least this fraction of the rows.
MIN_BEST_AGREEMENT = 0.5
#: Above this K the assignment is greedy (a lower bound of the best one, so a trip is still justified).
MAX_EXACT_K = 2000
#: About this many probabilities per row block of the models' argmax (blocks run on the shared threads).
ARGMAX_BLOCK_ELEMENTS = 1 << 20
#: The option that lets a run go on anyway.
OVERRIDE = "--trust-class-order (trust_class_order=True)"


def label_vs_top_counts(codes: np.ndarray, pred_probs: np.ndarray,
                        top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero cells of the K x K count matrix (given label, model's top class): ``(labels, tops, counts)``.

    ``top``: the rows' ``pred_probs.argmax(axis=1)`` when the caller has it (else found here, on threads).
    """
    n, k = pred_probs.shape
    if top is None:
        probs = np.asarray(pred_probs)
        top = np.empty(n, dtype=np.intp)

        def block(a: int, b: int) -> None:
            top[a:b] = row_top(probs[a:b])[0]  # numpy's argmax, faster over the short rows of small K

        for_row_blocks(block, n, max(1, ARGMAX_BLOCK_ELEMENTS // max(k, 1)), elements=n * k)  # both cores
    pairs = np.asarray(codes, dtype=np.int64) * k
    pairs += top
    if k * k <= 4 * n + (1 << 20):
        counts = np.bincount(pairs, minlength=k * k)
        cells = np.flatnonzero(counts)
        return cells // k, cells % k, counts[cells]
    cells, counts = np.unique(pairs, return_counts=True)
    return cells // k, cells % k, counts


def best_assignment(labels: np.ndarray, tops: np.ndarray, counts: np.ndarray, k: int) -> tuple[int, np.ndarray]:
    """Rows agreeing under the best one-to-one assignment of columns to classes, and that assignment
    (``column[label]``; exact up to :data:`MAX_EXACT_K` classes, greedy above)."""
    if k <= MAX_EXACT_K:
        from scipy.optimize import linear_sum_assignment

        dense = np.zeros((k, k), dtype=np.int64)
        dense[labels, tops] = counts
        rows, cols = linear_sum_assignment(dense, maximize=True)
        column = np.empty(k, dtype=np.int64)
        column[rows] = cols
        return int(dense[rows, cols].sum()), column
    column = np.full(k, -1, dtype=np.int64)
    used = np.zeros(k, dtype=bool)
    total = 0
    for i in np.argsort(-counts, kind="stable"):
        if column[labels[i]] < 0 and not used[tops[i]]:
            column[labels[i]], used[tops[i]] = tops[i], True
            total += int(counts[i])
    return total, column


def check_class_order(codes: np.ndarray, pred_probs: np.ndarray, classes: Sequence[Any], *,
                      classes_source: str | None, probs_where: str, rows_word: str = "rows",
                      top: np.ndarray | None = None) -> dict[str, float]:
    """Raise when another assignment of probability columns to classes fits the labels far better.

    Args:
        codes, pred_probs: The rows' class codes and N x K probabilities (all rows, or a sample).
        classes, classes_source, probs_where: For the message.
        rows_word: What the rows are, for the message (``"the first 100,000 rows"`` for a sample).
        top: The rows' ``pred_probs.argmax(axis=1)``, when already known.

    Returns:
        ``{"label_model_agreement": ..., "best_order_agreement": ...}`` (fractions of rows).

    Raises:
        LabelqaError: Naming both agreements, an example of the better order, where the order came from, and
            how to pass it (or to go on anyway).
    """
    n, k = pred_probs.shape
    labels, tops, counts = label_vs_top_counts(codes, pred_probs, top)
    identity = int(counts[labels == tops].sum())
    needed = max(MIN_GAIN_FRACTION * n, MIN_GAIN_ROWS)
    row_max = np.zeros(k, dtype=np.int64)
    np.maximum.at(row_max, labels, counts)
    if row_max.sum() - identity < needed or row_max.sum() < MIN_BEST_AGREEMENT * n:  # no assignment can trip
        return {"label_model_agreement": identity / n}
    best, column = best_assignment(labels, tops, counts, k)
    if best - identity < needed or best < MIN_BEST_AGREEMENT * n:
        return {"label_model_agreement": identity / n, "best_order_agreement": best / n}
    moved = [c for c in range(k) if column[c] >= 0 and column[c] != c]
    example = ", ".join(f"{classes[c]!r} is column {int(column[c])}" for c in moved[:3])
    source = classes_source or "the labels"
    raise LabelqaError(
        f"{probs_where}: the class order (from {source}: {format_values(list(classes), 6)}) does not fit the data: "
        f"the labels agree with the model's top class in {identity / n:.1%} of {rows_word}, but in {best / n:.1%} if the "
        f"columns belonged to other classes (e.g. {example})",
        hint="pass the classes in probability-column order with --classes a,b,c or --classes-file (or store them "
        f"in the schema metadata 'labelqa.classes'); if the order is right and the labels really are this noisy, "
        f"pass {OVERRIDE}",
    )
