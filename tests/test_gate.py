"""The CI gate: rules, validation and outcome."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.errors import LabelqaError
from labelqa.gate import GateResult, check_gate, gate_rules, noise_rate_figure
from labelqa.scan import scan
from tests.conftest import TOY_LABELS, TOY_PROBS, noisy_dataset


@pytest.fixture(scope="module")
def toy():
    return scan(LabelData.from_arrays(TOY_LABELS, TOY_PROBS))  # 1 of 10 rows flagged


@pytest.mark.parametrize(("limit", "passed"), [(0.0, False), (0.09, False), (0.1, True), (0.5, True)])
def test_max_issue_rate(toy, limit, passed):
    outcome = check_gate(toy, gate_rules(max_issue_rate=limit))
    assert outcome.passed is passed
    assert ("exceeds" in outcome.reason) is (not passed)
    assert outcome.as_dict()["rules"] == {"max_issue_rate": limit}


def test_no_rule_passes(toy):
    assert check_gate(toy).passed
    assert check_gate(toy, gate_rules()).as_dict()["rules"] == {}


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_rate_out_of_range(bad):
    with pytest.raises(LabelqaError, match="between 0 and 1"):
        gate_rules(max_issue_rate=bad)


# --------------------------------------------------------------------------- more rules
@dataclass
class Flags(Detector):
    """A detector flagging fixed rows."""

    rows: tuple = ()
    tag: str = "fixed"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.tag

    def detect(self, data: LabelData) -> DetectorResult:
        flags = np.zeros(data.n_rows, dtype=bool)
        flags[list(self.rows)] = True
        return DetectorResult(self.tag, np.where(flags, 0.0, 1.0), flags, np.asarray(data.labels).copy())


@pytest.mark.parametrize(("limit", "passed"), [(0, False), (1, True), (5, True)])
def test_max_issues(toy, limit, passed):
    outcome = check_gate(toy, gate_rules(max_issues=limit))
    assert outcome.passed is passed
    assert outcome.reason == (f"1 issue exceeds the maximum {limit:,}" if not passed
                              else f"1 issue is within the maximum {limit:,}")


def test_max_class_issue_rate(toy):
    # the flagged row 2 is given class 1, which has 7 rows: 1/7 = 14.29%
    failed = check_gate(toy, gate_rules(max_class_issue_rate=0.1))
    assert not failed.passed
    assert "in 1 class: '1' 14.29%" in failed.reason
    (check,) = failed.checks
    assert check["classes"] == [{"class": "1", "issue_rate": pytest.approx(1 / 7), "issues": 1}]
    passed = check_gate(toy, gate_rules(max_class_issue_rate=0.15))
    assert passed.passed and "highest: '1' 14.29%" in passed.reason


def test_every_failing_rule_is_listed(toy):
    outcome = check_gate(toy, gate_rules(max_issue_rate=0.05, max_issues=0, max_class_issue_rate=0.5))
    assert not outcome.passed
    assert len(outcome.failures) == 2
    assert outcome.reason == "; ".join(outcome.failures)
    assert "issue rate 10.00% exceeds" in outcome.reason and "1 issue exceeds" in outcome.reason
    assert [c["rule"] for c in outcome.checks] == ["max_issue_rate", "max_issues", "max_class_issue_rate"]
    doc = outcome.as_dict()
    assert doc["failures"] == list(outcome.failures) and doc["rules"]["max_issues"] == 0


def test_gate_detectors_choose_the_counted_flags():
    data = LabelData.from_arrays(np.zeros(10, dtype=np.int64), np.tile([0.9, 0.1], (10, 1)))
    result = scan(data, detectors=[Flags(rows=(0,), tag="a"), Flags(rows=(1, 2, 3), tag="b")], issue_rule="primary")
    assert result.n_issues == 1  # the ensemble: primary a only
    assert check_gate(result, gate_rules(max_issues=1)).passed
    only_b = check_gate(result, gate_rules(max_issues=1, gate_detectors="b"))
    assert not only_b.passed and "(rows flagged by b)" in only_b.reason
    assert result.totals_for(["a", "b"]).n_flagged == 4
    assert gate_rules(gate_detectors=["a", "b", "a"])["gate_detectors"] == ["a", "b"]
    with pytest.raises(LabelqaError, match="'nrg' did not run"):
        check_gate(result, gate_rules(max_issues=1, gate_detectors="nrg"))


@pytest.fixture(scope="module")
def noisy():
    given, _, probs, _ = noisy_dataset(n=4000, k=4, noise=0.15, seed=1)
    return scan(LabelData.from_arrays(given, probs))


def test_max_noise_rate_bounds(noisy):
    point, source = noise_rate_figure(noisy, "point")
    low, _ = noise_rate_figure(noisy, "lower")
    high, _ = noise_rate_figure(noisy, "upper")
    assert source == "cl" and low < point < high
    assert point == noisy.summary()["estimated_noise_rate"]
    between = (point + high) / 2  # above the estimate, below its upper bound
    assert check_gate(noisy, gate_rules(max_noise_rate=between)).passed
    assert check_gate(noisy, gate_rules(max_noise_rate=between, noise_rate_bound="lower")).passed
    strict = check_gate(noisy, gate_rules(max_noise_rate=between, noise_rate_bound="upper"))
    assert not strict.passed and "upper bound of the estimated noise rate" in strict.reason
    lenient_limit = (low + point) / 2  # below the estimate, above its lower bound
    assert not check_gate(noisy, gate_rules(max_noise_rate=lenient_limit)).passed
    assert check_gate(noisy, gate_rules(max_noise_rate=lenient_limit, noise_rate_bound="lower")).passed


def test_gate_names_the_estimator_of_the_flags(noisy):
    """The default judges disputed_weighted_trend; PBNR cleanlab's calibrated estimate; the midpoint its bounds."""
    strict = check_gate(noisy, gate_rules(max_noise_rate=0.0, noise_rate_bound="upper"))
    assert ("(bootstrap 95% of the calibrated joint, widened to hold T/N) by disputed_weighted_trend"
            in strict.reason)
    given, _, probs, _ = noisy_dataset(n=4000, k=4, noise=0.15, seed=1)
    pbnr = scan(LabelData.from_arrays(given, probs), filter_by="prune_by_noise_rate")
    assert pbnr.summary()["estimated_noise_rate_estimator"] == "calibrated_confident_joint"
    assert "(bootstrap 95%) by calibrated_confident_joint" in check_gate(
        pbnr, gate_rules(max_noise_rate=0.0, noise_rate_bound="upper")).reason
    mid = scan(LabelData.from_arrays(given, probs), filter_by="low_margin_midpoint")
    summary = mid.primary_result.summary
    assert summary["estimated_noise_rate_estimator"] == "disputed_midpoint"
    low_count, high_count = summary["disputed_bounds"]
    assert noise_rate_figure(mid, "point") == (summary["estimated_num_issues_midpoint"] / 4000, "cl")
    assert noise_rate_figure(mid, "lower") == (low_count / 4000, "cl")
    assert noise_rate_figure(mid, "upper") == (high_count / 4000, "cl")
    assert mid.summary()["estimated_noise_rate_estimator"] == "disputed_midpoint"
    # every estimate is reported whichever drives the gate
    every = noisy.primary_result.summary["noise_rate_estimates"]
    assert every["calibrated_confident_joint"]["rate"] == pbnr.summary()["estimated_noise_rate"]
    assert every["disputed_midpoint"] == summary["noise_rate_estimates"]["disputed_midpoint"]
    failed = check_gate(mid, gate_rules(max_noise_rate=0.0, noise_rate_bound="lower"))
    assert "(bounds: confident disputes to all disputes) by disputed_midpoint" in failed.reason


def test_gate_judges_the_weighted_trend_count_of_prune_by_noise_rate_plus():
    """The default's rate is max(T/N, the calibrated rate), its interval the bootstrap one widened to T/N."""
    given, _, probs, _ = noisy_dataset(n=4000, k=4, noise=0.15, seed=1)
    plus = scan(LabelData.from_arrays(given, probs))  # the default filter_by
    summary = plus.primary_result.summary
    assert summary["filter_by"] == "prune_by_noise_rate_plus"
    assert summary["estimated_noise_rate_estimator"] == "disputed_weighted_trend"
    low_count, high_count = summary["disputed_bounds"]
    assert low_count <= summary["estimated_num_issues_weighted"] <= high_count
    cal = summary["noise_rate_estimates"]["calibrated_confident_joint"]
    t_rate = summary["estimated_num_issues_weighted"] / 4000
    assert noise_rate_figure(plus, "point") == (max(t_rate, cal["rate"]), "cl")
    assert noise_rate_figure(plus, "lower") == (min(cal["interval"][0], t_rate), "cl")
    assert noise_rate_figure(plus, "upper") == (max(cal["interval"][1], t_rate), "cl")
    assert plus.summary()["estimated_noise_rate_estimator"] == "disputed_weighted_trend"
    failed = check_gate(plus, gate_rules(max_noise_rate=0.0))
    assert not failed.passed and "by disputed_weighted_trend" in failed.reason


def test_noise_interval_from_summary_when_reported(noisy):
    summary = noisy.primary_result.summary
    summary["estimated_noise_rate_interval"] = [0.01, 0.99]
    try:
        assert noise_rate_figure(noisy, "upper") == (0.99, "cl")
    finally:
        del summary["estimated_noise_rate_interval"]


def test_max_noise_rate_needs_an_estimate():
    data = LabelData.from_arrays(np.zeros(4, dtype=np.int64), np.tile([0.9, 0.1], (4, 1)))
    result = scan(data, detectors=[Flags(rows=(0,))])
    with pytest.raises(LabelqaError, match="needs an estimated noise rate"):
        check_gate(result, gate_rules(max_noise_rate=0.1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_class_issue_rate": 2.0}, "--max-class-issue-rate must be a fraction"),
        ({"max_noise_rate": -0.5}, "--max-noise-rate must be a fraction"),
        ({"max_issues": -1}, "--max-issues must be a whole number"),
        ({"max_issues": 1.5}, "--max-issues must be a whole number"),
        ({"max_noise_rate": 0.1, "noise_rate_bound": "middle"}, "unknown --noise-rate-bound"),
        ({"noise_rate_bound": "lower"}, "without --max-noise-rate"),
        ({"gate_detectors": " , "}, "--gate-detectors is empty"),
    ],
)
def test_bad_rules(kwargs, match):
    with pytest.raises(LabelqaError, match=match):
        gate_rules(**kwargs)


def test_rules_dict_and_old_api():
    assert gate_rules(max_noise_rate=0.1) == {"max_noise_rate": 0.1, "noise_rate_bound": "point"}
    assert gate_rules(noise_rate_bound="point") == {}
    legacy = GateResult(True, "ok", {})  # the three-field constructor still works
    assert legacy.as_dict() == {"passed": True, "reason": "ok", "rules": {}, "failures": [], "checks": []}


