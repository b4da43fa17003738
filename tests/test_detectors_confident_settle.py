"""The cuts pass names the flagged rows: prune_by_noise_rate's and the plus rule's passes folded into it.

With ``filter_by`` ``prune_by_noise_rate`` or ``prune_by_noise_rate_plus``
the PBNR tops keep each value's row position, and the plus rule keeps the
``T`` lowest self-confidences of the disputed rows with theirs
(:meth:`FlagRule._settle`). Then the plus rule's counting and selection
passes are not run, and flags are a lookup of positions. The results must
be those of the passes they replace: here the same plan runs with that
shortcut switched off (``FlagRule._names_rows`` false: the earlier passes,
unchanged) over the same batches, and every flag, score, suggestion and
summary figure must match.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.detectors.confident import PLUS_METHOD, ConfidentLearning, FlagRule
from labelqa.run.driver import scan_out_of_core
from tests.conftest import noisy_dataset
from tests.test_run_driver import ArrayRunner, multiclass_data, random_bounds

SETTINGS = settings(max_examples=int(os.environ.get("SETTLE_EXAMPLES", 120)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
METHODS = ("prune_by_noise_rate", PLUS_METHOD)


def scanned(data: LabelData, bounds: list[int], tree_seed: int | None, **params) -> tuple:
    """Issues table, summary and passes of an out-of-core scan of ``data`` cut at ``bounds``."""
    runner = ArrayRunner(data, bounds, tree_seed=tree_seed)
    result = scan_out_of_core(runner, ConfidentLearning(**params), source=None, meta=dict(data.meta))
    table = result.issues_table()
    summary = result.summary()
    summary["options"].pop("engine")
    return table, summary, list(runner.passes)


def assert_same_as_unsettled(monkeypatch, data: LabelData, bounds: list[int], tree_seed: int | None = None,
                             **params) -> tuple[list[str], list[str]]:
    """The scan equals the scan without the shortcut; returns both scans' passes (with, without)."""
    table, summary, passes = scanned(data, bounds, tree_seed, **params)
    with monkeypatch.context() as m:
        m.setattr(FlagRule, "_names_rows", property(lambda self: False))
        want_table, want_summary, want_passes = scanned(data, bounds, tree_seed, **params)
    assert table.schema.equals(want_table.schema)
    for name in want_table.column_names:
        assert table.column(name).equals(want_table.column(name)), name
    assert summary == want_summary
    return passes, want_passes


@SETTINGS
@given(problem=multiclass_data(), filter_by=st.sampled_from(METHODS), frac=st.sampled_from([1.0, 0.5, 0.3]),
       ntr=st.booleans(), min_ex=st.integers(0, 12), tree=st.booleans())
def test_named_rows_equal_the_selection_passes_on_tie_heavy_data(monkeypatch, problem, filter_by, frac, ntr, min_ex,
                                                                 tree):
    data, rng = problem
    ntr_value = rng.integers(0, 5, data.n_classes).tolist() if ntr else None
    assert_same_as_unsettled(monkeypatch, data, random_bounds(data.n_rows, rng),
                             int(rng.integers(1 << 30)) if tree else None, filter_by=filter_by, frac_noise=frac,
                             num_to_remove_per_class=ntr_value, min_examples_per_class=min_ex)


@SETTINGS
@given(seed=st.integers(0, 2**31), k=st.integers(2, 12), noise=st.sampled_from([0.02, 0.1, 0.3]),
       frac=st.sampled_from([1.0, 0.7]), min_ex=st.sampled_from([1, 40, 150]), batch=st.sampled_from([257, 1000]))
def test_named_rows_equal_the_selection_passes_on_noisy_data(monkeypatch, seed, k, noise, frac, min_ex, batch):
    given_, _t, probs, _ = noisy_dataset(n=3000, k=k, noise=noise, seed=seed % 10_000)
    data = LabelData.from_arrays(given_, probs.astype(np.float32))
    bounds = list(range(0, 3000, batch)) + [3000]
    assert_same_as_unsettled(monkeypatch, data, bounds, filter_by=PLUS_METHOD, frac_noise=frac,
                             min_examples_per_class=min_ex)


def test_the_plus_passes_are_folded_into_the_cuts_pass(monkeypatch):
    """Batches of 257 rows: the plus rule needs no pass of its own, and flags what the separate passes flag."""
    given_, _t, probs, _ = noisy_dataset(n=6000, k=10, noise=0.12, seed=11)
    data = LabelData.from_arrays(given_, probs.astype(np.float32))
    bounds = list(range(0, 6000, 257)) + [6000]
    passes, unsettled = assert_same_as_unsettled(monkeypatch, data, bounds, filter_by=PLUS_METHOD)
    assert passes == ["class sums", "confident joint", "selection (cuts)", "issues"]  # ranks gathered by the cuts
    assert "selection (plus count)" in unsettled and "selection (plus)" in unsettled


def test_a_binding_cap_falls_back_to_the_caps_pass(monkeypatch):
    """A class whose cap binds: the caps and plus passes still run (the counts come from the cuts pass)."""
    given_, _t, probs, _ = noisy_dataset(n=3000, k=3, noise=0.3, seed=2)
    data = LabelData.from_arrays(given_, probs.astype(np.float32))
    counts = np.bincount(given_, minlength=3)
    bounds = list(range(0, 3000, 257)) + [3000]
    seen = False
    for min_ex in (int(counts.min()) - 60, int(counts.min()) - 120, int(counts.min()) - 200):
        passes, unsettled = assert_same_as_unsettled(monkeypatch, data, bounds, filter_by=PLUS_METHOD,
                                                     min_examples_per_class=min_ex)
        if "selection (plus caps)" in passes:
            seen = True
            assert "selection (plus count)" not in passes and "selection (plus count)" in unsettled
    assert seen


@pytest.mark.parametrize("filter_by", METHODS)
def test_flags_by_position_equal_the_mask_rule_per_block(filter_by):
    """The position lookup the later passes use gives the mask rule's flags for any block."""
    from labelqa.detectors.base import Block, DatasetInfo, run_on_block
    from labelqa.detectors.confident import _block_rows

    given_, _t, probs, _ = noisy_dataset(n=4000, k=5, noise=0.15, seed=4)
    probs = probs.astype(np.float32)
    data = LabelData.from_arrays(given_, probs)
    import dataclasses

    det = ConfidentLearning(filter_by=filter_by)
    whole = Block.of(data)
    rule = run_on_block(det.plan(dataclasses.replace(DatasetInfo.of(data), gather_rows=True)), whole)
    flag = rule.flag
    assert flag.flag_positions is not None
    expected = flag.flags(_block_rows(whole, rule.est.thresholds))
    saved = flag.flag_positions
    flag.flag_positions = None  # the mask rule (margins against the cuts, the plus cut on self-confidence)
    try:
        for a, b in [(0, 257), (257, 1300), (1300, 4000)]:
            block = Block(given_[a:b], probs[a:b], offset=a)
            mask = flag.flags(_block_rows(block, rule.est.thresholds))
            assert np.array_equal(mask, expected[a:b])
    finally:
        flag.flag_positions = saved
    assert np.array_equal(np.flatnonzero(expected), saved)


@SETTINGS
@given(problem=multiclass_data(), pick=st.integers(0, 2**31))
def test_the_light_row_pass_equals_the_joint_pass(problem, pick):
    """A selection pass's agreement masks (no joint) and a rows pass's guesses of some rows equal the joint pass's."""
    from labelqa.detectors.base import Block
    from labelqa.detectors.confident import _BlockRows, per_class_thresholds

    data, _ = problem
    labels, probs = data.labels, data.pred_probs
    thresholds = per_class_thresholds(labels, probs)
    light, full = _BlockRows(Block(labels, probs), thresholds), _BlockRows(Block(labels, probs), thresholds)
    rows = np.flatnonzero(np.random.default_rng(pick).random(labels.size) < 0.2)
    assert np.array_equal(light.guesses(rows), full.guess[rows])
    assert "_joint_pass" not in light.__dict__ or rows.size * 4 >= labels.size
    for name in ("max_prob", "agrees", "disagrees_strictly"):
        assert np.array_equal(getattr(light, name).view(np.uint8), getattr(full, name).view(np.uint8)), name
    for a, b in zip(light.disagreeing_groups, full.disagreeing_groups):
        assert np.array_equal(a, b)
    assert np.array_equal(light.joint, full.joint)  # the joint pass after the light one: the same figures
    assert np.array_equal(light.agrees, full.agrees) and np.array_equal(light.guess, full.guess)


def test_beyond_the_gathering_limit_the_ranks_get_their_own_pass(monkeypatch):
    """Above GATHER_ROWS_MAX rows the cuts pass gathers no scores: a ranks pass, and the same results."""
    import labelqa.run.driver as driver

    given_, _t, probs, _ = noisy_dataset(n=3000, k=10, noise=0.12, seed=11)
    data = LabelData.from_arrays(given_, probs.astype(np.float32))
    bounds = list(range(0, 3000, 257)) + [3000]
    gathered, _ = assert_same_as_unsettled(monkeypatch, data, bounds, filter_by=PLUS_METHOD)
    monkeypatch.setattr(driver, "GATHER_ROWS_MAX", 2999)
    own_pass, _ = assert_same_as_unsettled(monkeypatch, data, bounds, filter_by=PLUS_METHOD)
    assert "ranks" not in gathered and own_pass == ["class sums", "confident joint", "selection (cuts)", "ranks",
                                                    "issues"]
