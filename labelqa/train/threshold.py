"""Threshold samples for AUM: rows relabeled to a fake extra class.

AUM learns its cutoff without clean data by moving about N/(K+1) rows to a
fake class K (the model gets K+1 outputs). Those rows are mislabeled by
construction, so the AUM they reach tells how high a mislabeled row's AUM can
get. Two runs use disjoint threshold sets so every row is an ordinary row in
at least one run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelqa.errors import LabelqaError


def assign_threshold_samples(labels: Any, n_classes: int, n_runs: int = 2, seed: int = 0) -> np.ndarray:
    """Pick disjoint threshold-sample sets, one per run.

    Each class ``c`` with ``n_c`` rows gives ``round(n_c / (K + 1))`` rows to
    every run (at most ``n_c // n_runs``), drawn without replacement from a
    seeded permutation of its rows, so the sets are disjoint, each holds about
    ``N / (K + 1)`` rows, and the class balance of the ordinary rows is kept.

    Args:
        labels: Given labels, int codes ``0..K-1``, shape ``(N,)``.
        n_classes: K.
        n_runs: Number of runs (disjoint sets).
        seed: Seed of the draws.

    Returns:
        Bool array ``(n_runs, N)``: ``[r, i]`` = row ``i`` is a threshold
        sample in run ``r``.

    Raises:
        LabelqaError: Too few rows for a single threshold sample, bad arguments.
    """
    y = np.asarray(labels, dtype=np.int64)
    if n_classes < 2:
        raise LabelqaError(f"AUM needs at least 2 classes, got {n_classes}")
    if n_runs < 1:
        raise LabelqaError(f"--runs must be at least 1, got {n_runs}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise LabelqaError(f"labels must be in 0..{n_classes - 1}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA0A]))
    marks = np.zeros((n_runs, y.size), dtype=bool)
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        if rows.size == 0:
            continue
        m = min(int(round(rows.size / (n_classes + 1))), rows.size // n_runs)
        perm = rng.permutation(rows)
        for r in range(n_runs):
            marks[r, perm[r * m:(r + 1) * m]] = True
    if not marks.any(axis=1).all():
        raise LabelqaError(f"too few rows ({y.size}) for threshold samples in {n_runs} runs with {n_classes} classes",
                           "AUM needs about N/(K+1) threshold rows per run; use more data or fewer runs")
    return marks


def assigned_labels(labels: Any, threshold: Any, n_classes: int) -> np.ndarray:
    """Training labels of one run: the given label, or K for threshold samples."""
    y = np.asarray(labels, dtype=np.int64)
    return np.where(np.asarray(threshold, dtype=bool), n_classes, y)
