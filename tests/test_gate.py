"""The CI gate: rules, validation and outcome."""

from __future__ import annotations

import pytest

from labelqa.data.model import LabelData
from labelqa.errors import LabelqaError
from labelqa.gate import check_gate, gate_rules
from labelqa.scan import scan
from tests.conftest import TOY_LABELS, TOY_PROBS


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
