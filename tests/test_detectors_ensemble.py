"""Ensemble rules: rank-average score, flag rules and suggestions, on hand-made results."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.detectors.base import DetectorResult
from labelqa.detectors.ensemble import (
    ISSUE_RULES,
    combined_flags,
    combined_score,
    combined_suggestion,
    normalized_ranks,
)
from labelqa.errors import LabelqaError


def res(name, scores, issues, suggested, conf=None):
    return DetectorResult(name=name, scores=np.asarray(scores, float), issues=np.asarray(issues, bool),
                          suggested=np.asarray(suggested), suggested_confidence=None if conf is None else np.asarray(conf))


def test_normalized_ranks_hand_computed():
    # sorted: 0.1 (rank 0), 0.2 twice (ranks 1,2 -> 1.5), 0.9 (rank 3); divide by n-1 = 3
    assert normalized_ranks(np.array([0.2, 0.9, 0.1, 0.2])).tolist() == pytest.approx([0.5, 1.0, 0.0, 0.5])
    assert normalized_ranks(np.array([5.0])).tolist() == [0.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=30), st.randoms())
def test_ranks_are_order_invariant(values, rnd):
    x = np.array(values, float)
    perm = np.arange(len(x))
    rnd.shuffle(perm)
    r = normalized_ranks(x)
    assert np.allclose(normalized_ranks(x[perm]), r[perm])
    assert r.min() >= 0 and r.max() <= 1
    assert np.all(np.diff(r[np.argsort(x, kind="stable")]) >= 0)  # monotone in the score


def test_single_detector_keeps_its_own_score():
    a = res("cl", [0.3, 0.1], [False, True], [0, 1])
    assert combined_score([a]).tolist() == [0.3, 0.1]


def test_rank_average_of_two():
    a = res("cl", [0.1, 0.5, 0.9], [True, False, False], [1, 1, 2])
    b = res("nrg", [3.0, -1.0, 2.0], [False, True, False], [0, 0, 2])
    # ranks a: [0, .5, 1]; b: [1, 0, .5]; mean: [.5, .25, .75]
    assert combined_score([a, b]).tolist() == pytest.approx([0.5, 0.25, 0.75])


FLAGS = {
    "cl": [1, 1, 0, 0, 0, 1],
    "nrg": [1, 0, 1, 0, 1, 0],
    "aum": [0, 0, 1, 0, 1, 1],
}
EXPECTED = {
    "primary": [1, 1, 0, 0, 0, 1],
    "primary_or_2": [1, 1, 1, 0, 1, 1],
    "any": [1, 1, 1, 0, 1, 1],
    "all": [0, 0, 0, 0, 0, 0],
    "majority": [1, 0, 1, 0, 1, 1],
}


@pytest.mark.parametrize("rule", ISSUE_RULES)
def test_flag_rules_truth_table(rule):
    results = [res(n, np.zeros(6), f, np.zeros(6, int)) for n, f in FLAGS.items()]
    assert combined_flags(results, "cl", rule).astype(int).tolist() == EXPECTED[rule]


def test_unknown_rule():
    with pytest.raises(LabelqaError, match="unknown issue rule"):
        combined_flags([res("cl", [0], [0], [0])], "cl", "vibes")


def test_suggestion_prefers_primary_then_run_order():
    labels = np.array([0, 0, 0, 0])
    a = res("cl", [0] * 4, [1, 0, 0, 0], [1, 0, 0, 0], conf=[0.9, 0.8, 0.7, 0.6])
    b = res("nrg", [0] * 4, [1, 1, 0, 0], [2, 2, 0, 0], conf=[0.5, 0.4, 0.3, 0.2])
    c = res("aum", [0] * 4, [0, 1, 1, 0], [3, 3, 3, 0])
    sugg, conf = combined_suggestion([b, a, c], "cl", labels)
    assert sugg.tolist() == [1, 2, 3, 0]  # primary wins row 0; nrg (earlier) row 1; aum row 2
    assert conf[0] == 0.9 and conf[1] == 0.4 and np.isnan(conf[2]) and conf[3] == 0.6
