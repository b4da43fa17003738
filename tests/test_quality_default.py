"""The default flag rule (``prune_by_noise_rate_plus``) against cleanlab's default on data with known errors.

Issue 14's bars: on real human noise (CIFAR-10N, every single model) the
default's F1 beats ``prune_by_noise_rate``'s, its count is within 20% of the
true number of errors and the report's ranking (AP) is not below
self-confidence's; on synthetic noise its F1 is within 0.01 of
``prune_by_noise_rate``'s or better. The CIFAR-10N files are read from
``../shared``; the test is skipped when they are absent.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score

from labelqa.data.model import LabelData
from labelqa.detectors.confident import ConfidentLearning, find_label_issues
from labelqa.evaluate import inject_noise
from tests.conftest import SHARED_DATA

CIFAR_DIR = SHARED_DATA / "cifar10n"
CIFAR = sorted(CIFAR_DIR.glob("cifar10n_*.parquet"))
CLASSES = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])


def f1(flags: np.ndarray, is_error: np.ndarray) -> float:
    """F1 of a flagged set against the true errors."""
    tp = int(np.count_nonzero(flags & is_error))
    return 2 * tp / (int(flags.sum()) + int(is_error.sum())) if tp else 0.0


def default_detect(labels: np.ndarray, probs: np.ndarray):
    """The ``cl`` detector with every parameter at its default (what ``labelqa scan`` runs)."""
    return ConfidentLearning().detect(LabelData.from_arrays(labels, probs))


@pytest.mark.parametrize("kind", ["uniform", "pairflip"])
@pytest.mark.parametrize("rate", [0.1, 0.2])
def test_default_within_001_f1_of_pbnr_on_injected_noise(kind, rate):
    """Synthetic flips of clean digits, 5-fold logistic-regression probabilities fitted on the noisy labels.

    Seed 0, as the benchmark's sets. Not every seed passes: digits with 10% pair-flip noise and seeds
    1-3 come out 0.015-0.036 below (docs/detection.md, "Limits").
    """
    from sklearn.datasets import load_digits

    from labelqa.train.crossval import cross_val_probs

    x, y = load_digits(return_X_y=True)
    given, _ = inject_noise(y, 10, kind, rate, seed=0)
    probs = cross_val_probs(x, given, 10, seed=0)
    is_error = given != y
    result = default_detect(given, probs)
    assert result.summary["filter_by"] == "prune_by_noise_rate_plus"
    pbnr = find_label_issues(given, probs)
    assert f1(result.issues, is_error) >= f1(pbnr, is_error) - 0.01
    assert not (pbnr & ~result.issues).any()  # it keeps every row cleanlab's default flags


def _read(path):
    table = pq.read_table(path, columns=["label", "pred_probs", "true_label"])
    col = table.column("pred_probs").combine_chunks()
    probs = col.flatten().to_numpy().reshape(len(col), -1)
    labels, truth = (np.searchsorted(CLASSES, table.column(c).to_numpy(zero_copy_only=False).astype(str))
                     for c in ("label", "true_label"))
    return labels.astype(np.int64), probs, labels != truth


@pytest.mark.skipif(not CIFAR, reason="CIFAR-10N files not available (../shared/data/cifar10n)")
@pytest.mark.parametrize("path", CIFAR, ids=[p.stem.removeprefix("cifar10n_") for p in CIFAR])
def test_default_meets_the_bars_on_cifar10n(path):
    """Real human noise: F1 above PBNR's, count within 20% of the truth, AP not below self-confidence's."""
    labels, probs, is_error = _read(path)
    result = default_detect(labels, probs)
    pbnr = find_label_issues(labels, probs)
    assert f1(result.issues, is_error) > f1(pbnr, is_error)
    ratio = result.issues.sum() / is_error.sum()
    assert 0.8 <= ratio <= 1.2, ratio
    estimated = result.summary["estimated_num_issues_weighted"]
    assert 0.8 <= estimated / is_error.sum() <= 1.2
    self_conf = probs[np.arange(labels.size), labels]
    assert average_precision_score(is_error, -result.scores) >= average_precision_score(is_error, -self_conf) - 1e-9
