"""Ensemble rules: relative-rank score, flag rules and suggestions, on hand-made results."""

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
    mean_relative_rank,
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


def test_relative_rank_of_two():
    a = res("cl", [0.1, 0.5, 0.9], [True, False, False], [1, 1, 2])
    b = res("nrg", [3.0, -1.0, 2.0], [False, True, False], [0, 0, 2])
    # rows before: a [0, 1, 2] / 1 flagged; b [2, 0, 1] / 1 flagged; mean r: [1, .5, 1.5]; score r / (1 + r)
    np.testing.assert_allclose(mean_relative_rank([a, b]), [1.0, 0.5, 1.5])
    assert combined_score([a, b]).tolist() == pytest.approx([0.5, 1 / 3, 0.6])
    assert combined_flags([a, b], "cl", "relative_rank").tolist() == [True, True, False]


def test_relative_rank_lets_a_better_detector_add_rows():
    """Row 1 is aum's first and just past cl's cut: flagged; row 3 inside aum's cut but far from cl's: not."""
    cl = res("cl", [0.1, 0.25, 0.2, 0.3, 0.9, 0.8], [True, False, True, False, False, False], np.zeros(6, int))
    aum = res("aum", [-3.0, -5.0, 1.0, -0.5, 2.0, 3.0], [True, True, False, True, False, False], np.zeros(6, int))
    # rows before: cl [0, 2, 1, 3, 5, 4] / 2; aum [1, 0, 3, 2, 4, 5] / 3 -> mean [1/6, .5, .75, 13/12, 23/12, 11/6]
    np.testing.assert_allclose(mean_relative_rank([cl, aum]), [1 / 6, 0.5, 0.75, 13 / 12, 23 / 12, 11 / 6])
    assert np.flatnonzero(combined_flags([cl, aum], "cl", "relative_rank")).tolist() == [0, 1, 2]
    assert np.flatnonzero(combined_flags([cl, aum], "cl", "primary_or_2")).tolist() == [0, 2]
    score = combined_score([cl, aum])
    assert np.array_equal(score <= 0.5, combined_flags([cl, aum], "cl", "relative_rank"))
    # a row every detector flags is in, whatever its ranks (cl and aum flag by their own rules, not by rank)
    c2 = res("cl", cl.scores, [True, False, True, False, False, True], cl.suggested)
    a2 = res("aum", aum.scores, [True, True, False, True, False, True], aum.suggested)
    assert mean_relative_rank([c2, a2])[5] > 1 and combined_flags([c2, a2], "cl", "relative_rank")[5]
    # one detector: its own flags; a detector that flags nothing counts as flagging one row
    assert combined_flags([cl], "cl", "relative_rank").tolist() == cl.issues.tolist()
    # tied rows count from their group's start: a detector that cannot tell rows apart is neutral
    before_cl = np.array([0, 2, 1, 3, 5, 4]) / 2
    none = res("dup", np.ones(6), np.zeros(6, bool), np.zeros(6, int))
    np.testing.assert_allclose(mean_relative_rank([cl, none]), before_cl / 2)
    dup = res("dup", [1, 1, 0.5, 1, 1, 1], [False, False, True, False, False, False], np.zeros(6, int))
    np.testing.assert_allclose(mean_relative_rank([cl, dup]), (before_cl + [1, 1, 0, 1, 1, 1]) / 2)
    # dup's unflagged rows sit at its cut (1): cl's rows stay in, and dup's row too (cl's second)
    assert np.flatnonzero(combined_flags([cl, dup], "cl", "relative_rank")).tolist() == [0, 1, 2]


def test_relative_rank_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    a = res("cl", rng.random(50), rng.random(50) < 0.2, np.zeros(50, int))
    b = res("aum", np.round(rng.normal(size=50), 1), rng.random(50) < 0.3, np.zeros(50, int))
    perm = rng.permutation(50)
    pa_, pb = (res(r.name, r.scores[perm], r.issues[perm], r.suggested[perm]) for r in (a, b))
    np.testing.assert_allclose(combined_score([pa_, pb]), combined_score([a, b])[perm])
    assert np.array_equal(combined_flags([pa_, pb], "cl", "relative_rank"),
                          combined_flags([a, b], "cl", "relative_rank")[perm])


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


@pytest.mark.parametrize("rule", [r for r in ISSUE_RULES if r != "relative_rank"])  # that one reads scores
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


def first_flagger_suggestion(results, primary, labels):
    """The module-doc rule written row by row: the first detector (primary, then run order) that flags
    a row suggests its label and confidence; unflagged rows keep the label and the primary's confidence."""
    ordered = sorted(results, key=lambda r: r.name != primary)
    prim = next(r for r in results if r.name == primary)
    suggested, confidence = np.array(labels, copy=True), np.full(len(labels), np.nan)
    for i in range(len(labels)):
        by = next((r for r in ordered if r.issues[i]), None)
        source = by if by is not None else prim
        if by is not None:
            suggested[i] = by.suggested[i]
        if source.suggested_confidence is not None:
            confidence[i] = source.suggested_confidence[i]
    return suggested, confidence


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 30), st.integers(1, 3), st.booleans(), st.integers(0, 2**31), st.booleans())
def test_combined_suggestion_is_the_first_flagger_rule(n, n_det, multilabel, seed, some_without_conf):
    """Whole columns at once (np.where) give the row-by-row rule, for label codes and label-set rows."""
    rng = np.random.default_rng(seed)
    shape = (n, 4) if multilabel else (n,)
    labels = rng.integers(0, 2 if multilabel else 4, size=shape)
    results = [res(f"d{i}", rng.random(n), rng.random(n) < 0.4, rng.integers(0, 2 if multilabel else 4, size=shape),
                   None if some_without_conf and i == n_det - 1 else rng.random(n).astype(np.float32))
               for i in range(n_det)]
    primary = results[int(rng.integers(0, n_det))].name
    sugg, conf = combined_suggestion(results, primary, labels)
    want_sugg, want_conf = first_flagger_suggestion(results, primary, labels)
    assert sugg.dtype == labels.dtype and sugg is not labels
    np.testing.assert_array_equal(sugg, want_sugg)
    np.testing.assert_array_equal(conf, want_conf)
