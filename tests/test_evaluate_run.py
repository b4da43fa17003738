"""labelqa.evaluate_detectors on in-memory data: DataFrames, arrays, a truth column or array, injected noise."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import labelqa
from labelqa.errors import LabelqaError


@pytest.fixture
def noisy():
    rng = np.random.default_rng(0)
    n, k = 400, 3
    truth = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n) * 0.4
    probs[np.arange(n), truth] += 1
    probs /= probs.sum(1, keepdims=True)
    given = truth.copy()
    flip = rng.choice(n, 40, replace=False)
    given[flip] = (given[flip] + 1) % k
    return given, truth, probs


def test_dataframe_with_truth_column(noisy):
    given, truth, probs = noisy
    names = np.array(["ant", "bee", "cat"])
    df = pd.DataFrame({"label": names[given], "true": names[truth]})
    ev = labelqa.evaluate_detectors(df, truth_col="true", pred_probs=probs)
    assert ev["true_errors"] == 40 and ev["truth"] == {"kind": "column", "column": "true"}
    cl = ev["detectors"]["cl"]
    flags = labelqa.scan(df[["label"]], pred_probs=probs).is_label_issue
    errors = given != truth
    assert cl["flagged"] == flags.sum() and cl["true_positives"] == (flags & errors).sum()
    assert cl["precision"] > 0.8 and cl["recall"] > 0.6


def test_arrays_with_truth_array_match_the_column_form(noisy):
    given, truth, probs = noisy
    by_array = labelqa.evaluate_detectors(labels=given, pred_probs=probs, truth_col=truth)
    by_column = labelqa.evaluate_detectors({"label": given, "truth": truth, "pred_probs": probs}, truth_col="truth")
    assert by_array["truth"] == {"kind": "array"}
    assert by_array["detectors"] == by_column["detectors"]


def test_injected_noise_and_report(noisy, tmp_path):
    _given, truth, probs = noisy
    ev = labelqa.evaluate_detectors(labels=truth, pred_probs=probs, inject_noise="uniform:0.1", seed=3,
                                    out=tmp_path / "rep")
    assert ev["truth"]["kind"] == "injected" and ev["true_errors"] > 0
    written = json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    assert written["detectors"]["cl"]["flagged"] == ev["detectors"]["cl"]["flagged"]


def test_in_memory_errors(noisy):
    given, truth, probs = noisy
    with pytest.raises(LabelqaError, match="truth column 'nope' not found"):
        labelqa.evaluate_detectors(labels=given, pred_probs=probs, truth_col="nope")
    with pytest.raises(LabelqaError, match="one true label per row"):
        labelqa.evaluate_detectors(labels=given, pred_probs=probs, truth_col=truth[:5])
    with pytest.raises(LabelqaError, match="ground truth"):
        labelqa.evaluate_detectors(labels=given, pred_probs=probs)
