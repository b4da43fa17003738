"""The scan pipeline: detector choice, several detectors together, and the report it yields."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import rankdata
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

import labelqa
from labelqa.scan import available_detectors
from tests.conftest import REPO

DIGITS = REPO / "examples" / "digits" / "digits_noisy.parquet"


@pytest.fixture(scope="module")
def digits():
    data = labelqa.load(DIGITS)
    table = pq.read_table(DIGITS, columns=["features", "true_label"])
    feats = np.asarray(table.column("features").to_pylist(), dtype=np.float32)
    truth = np.array(table.column("true_label").to_pylist())
    noisy = np.asarray(data.label_values(data.labels)).astype(str) != truth
    return dataclasses.replace(data, embeddings=feats), noisy


def test_available_detectors_follow_inputs(digits):
    data, _ = digits
    assert available_detectors(data) == ["cl", "nrg"]
    assert available_detectors(dataclasses.replace(data, embeddings=None)) == ["cl"]


def test_two_detectors_make_an_ensemble(digits):
    data, noisy = digits
    result = labelqa.scan(data)
    assert list(result.results) == ["cl", "nrg"]
    table = result.issues_table()
    for col in ("cl_score", "cl_issue", "nrg_score", "nrg_issue", "outlier_score", "is_outlier"):
        assert col in table.column_names
    cl_flags = result.results["cl"].issues
    nrg_flags = result.results["nrg"].issues
    flags = result.is_label_issue
    # relative_rank: mean over detectors of (rows scored strictly lower / rows it flags) <= 1
    rel = np.mean([(rankdata(r.scores, method="min") - 1) / max(int(r.issues.sum()), 1)
                   for r in result.results.values()], axis=0)
    assert np.array_equal(flags, (rel <= 1) | (cl_flags & nrg_flags))  # ... or flagged by every detector
    both = np.flatnonzero(cl_flags & nrg_flags)
    assert both.size > 0
    detectors = np.array(table.column("detectors").to_pylist())
    assert set(detectors[both]) == {"cl,nrg"}
    reason = table.column("reason")[int(both[0])].as_py()
    assert "model says" in reason and "neighbours" in reason
    # the combined relative-rank score ranks injected errors at least about as well as either detector alone
    auc = {name: roc_auc_score(noisy, -r.scores) for name, r in result.results.items()}
    combined = roc_auc_score(noisy, -result.label_quality)
    assert combined > 0.95 and combined >= min(auc.values())
    summary = result.summary()
    assert summary["detectors_run"] == ["cl", "nrg"] and summary["issue_rule"] == "relative_rank"
    assert np.array_equal(labelqa.scan(data, issue_rule="primary_or_2").is_label_issue, cl_flags)  # = primary
    assert summary["outliers_found"] == int(result.results["nrg"].extra["is_outlier"].sum())


def test_issue_rule_any_is_the_union(digits):
    data, _ = digits
    result = labelqa.scan(data, issue_rule="any")
    assert np.array_equal(result.is_label_issue, result.results["cl"].issues | result.results["nrg"].issues)


def test_detectors_by_name_with_params(digits):
    data, _ = digits
    result = labelqa.scan(data, detectors=["cl"], params={"cl": {"filter_by": "both"}})
    assert list(result.results) == ["cl"]
    assert result.results["cl"].params["filter_by"] == "both"
