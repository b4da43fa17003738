"""AUM: the margin math, the streaming over epochs, the flag rule and the detector (labelqa.detectors.aum)."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelqa.data.dynamics import load_dynamics
from labelqa.data.model import LabelData
from labelqa.detectors.aum import (
    AreaUnderMargin,
    aum,
    combine_run_flags,
    margins,
    score_dynamics,
    threshold_cutoff,
)
from labelqa.detectors.base import Detector
from labelqa.errors import LabelqaError
from labelqa.train.dynamics_writer import save_dynamics
from tests.conftest import random_dynamics

# ----------------------------------------------------------------------------- hand-computed margins


def test_margins_hand_computed_with_ties_and_negative():
    z = np.array([
        [2.0, 1.0, 0.0],   # label 0: 2 - 1 = 1
        [1.0, 1.0, 0.0],   # label 0 tied with class 1: 0
        [0.0, 3.0, 1.0],   # label 0: 0 - 3 = -3
        [5.0, 5.0, 5.0],   # all tied: 0
        [-1.0, -4.0, -2.0],  # label 2: -2 - (-1) = -1
        [0.5, 0.25, 0.5],  # label 1: 0.25 - 0.5 = -0.25 (tie among the others)
    ])
    y = np.array([0, 0, 0, 1, 2, 1])
    np.testing.assert_array_equal(margins(z, y), [1.0, 0.0, -3.0, 0.0, -1.0, -0.25])


def test_margins_two_classes():
    z = np.array([[3.0, -1.0], [3.0, -1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(margins(z, [0, 1, 1]), [4.0, -4.0, 0.0])


def test_aum_is_the_mean_margin_over_epochs():
    # row 0 label 0: margins 1, 0, -1 -> 0; row 1 label 1: margins -2, 2, 3 -> 1
    epochs = np.array([
        [[1.0, 0.0], [1.0, -1.0]],
        [[0.0, 0.0], [0.0, 2.0]],
        [[0.0, 1.0], [-1.0, 2.0]],
    ])
    np.testing.assert_allclose(aum(epochs, [0, 1]), [0.0, 1.0])
    np.testing.assert_allclose(aum(list(epochs), [0, 1]), [0.0, 1.0])


def test_margins_do_not_modify_input():
    z = np.array([[1.0, 2.0]], dtype=np.float32)
    margins(z, [0])
    np.testing.assert_array_equal(z, [[1.0, 2.0]])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=6),
                  elements=st.floats(-1e6, 1e6)), st.data())
def test_margins_match_brute_force(z, data):
    n, k = z.shape
    y = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    expected = [z[i, y[i]] - max(z[i, j] for j in range(k) if j != y[i]) for i in range(n)]
    np.testing.assert_array_equal(margins(z, y), expected)


# ----------------------------------------------------------------------------- cutoff and combination


def test_combine_run_flags_truth_table():
    # columns: (flag r0, ordinary r0, flag r1, ordinary r1) -> flagged
    table = [
        (True, True, True, True, True),     # flagged in both runs where ordinary
        (True, True, False, True, False),   # one run disagrees
        (False, True, True, True, False),
        (False, True, False, True, False),
        (True, True, False, False, True),   # threshold in r1: only r0 counts
        (False, True, True, False, False),
        (False, False, True, True, True),   # threshold in r0: only r1 counts
        (True, False, False, True, False),
        (True, False, True, False, False),  # never ordinary: not flagged
    ]
    arr = np.array(table)
    flags = np.stack([arr[:, 0], arr[:, 2]])
    ordinary = np.stack([arr[:, 1], arr[:, 3]])
    np.testing.assert_array_equal(combine_run_flags(flags, ordinary), arr[:, 4])


def test_threshold_cutoff_is_the_percentile_of_threshold_rows():
    a = np.array([5.0, -1.0, 0.0, 1.0, 2.0, 3.0, 100.0])
    thr = np.array([False, True, True, True, True, True, False])
    assert threshold_cutoff(a, thr, 50.0) == 1.0
    assert threshold_cutoff(a, thr, 100.0) == 3.0
    assert threshold_cutoff(a, thr, 99.0) == pytest.approx(2.96)
    with pytest.raises(LabelqaError, match="no threshold samples"):
        threshold_cutoff(a, np.zeros(7, bool))


def _two_run_problem():
    """4 real rows + 2 threshold rows per run, K=2 (3 outputs), hand-checkable."""
    labels = np.array([0, 1, 0, 1, 0, 1])
    thr = np.array([[False, False, False, False, True, True], [True, True, False, False, False, False]])
    # per run, one epoch of logits; margins listed per row in the comments
    r0 = np.array([[[3, 0, 0],     # row0 label0: 3
                    [0, -1, 0],    # row1 label1: -1
                    [0, 2, 0],     # row2 label0: -2
                    [0, 1, 0],     # row3 label1: 1
                    [0, 0, 1],     # row4 thr (label 2): 1
                    [0, 0, -1]]],  # row5 thr: -1
                  dtype=np.float32)
    r1 = np.array([[[0, 0, 2],     # row0 thr: 2
                    [0, 0, -2],    # row1 thr: -2
                    [0, 0, 1],     # row2 label0: -1
                    [0, 3, 0],     # row3 label1: 3
                    [5, 0, 0],     # row4 label0: 5
                    [0, -3, 0]]],  # row5 label1: -3
                  dtype=np.float32)
    return labels, thr, r0, r1


def test_score_dynamics_two_runs_threshold_rule(tmp_path):
    labels, thr, r0, r1 = _two_run_problem()
    save_dynamics(tmp_path / "d", [r0, r1], n_classes=2, thresholds=list(thr), classes=["a", "b"])
    dyn = load_dynamics(tmp_path / "d", 6, 2, classes=["a", "b"])
    res = score_dynamics(dyn, labels, threshold_percentile=100.0)
    # cutoffs = max threshold AUM per run: run0 max(1, -1) = 1; run1 max(2, -2) = 2
    assert res.cutoffs == [1.0, 2.0]
    # run0 flags (ordinary rows 0-3): [3<1 F, -1<1 T, -2<1 T, 1<1 F]
    # run1 flags (ordinary rows 2-5): [-1<2 T, 3<2 F, 5<2 F, -3<2 T]
    # combined: row0 r0 only F; row1 r0 only T; row2 T&T; row3 F; row4 r1 only F; row5 r1 only T
    np.testing.assert_array_equal(res.flags, [False, True, True, False, False, True])
    # AUM averaged over runs where the row was ordinary
    np.testing.assert_allclose(res.aum, [3.0, -1.0, -1.5, 2.0, 5.0, -3.0])
    assert res.rule == "threshold_samples"
    s = res.summary()
    assert s["n_runs"] == 2 and s["epochs"] == [1, 1] and s["n_threshold_samples"] == [2, 2]
    assert "below the 100th percentile of the threshold samples' AUM" in s["rule_description"]
    json.dumps(s)


def test_score_rules_without_threshold_samples():
    z = np.array([[[2.0, 0.0], [0.0, 1.0], [0.0, 0.5], [1.0, 1.0]]])  # margins vs labels 0: 2, -1, -0.5, 0
    dyn = load_dynamics(z, 4, 2)
    y = np.zeros(4, int)
    default = score_dynamics(dyn, y)
    assert default.rule == "default_negative"
    np.testing.assert_array_equal(default.flags, [False, True, True, False])
    cut = score_dynamics(dyn, y, aum_cutoff=0.5)
    np.testing.assert_array_equal(cut.flags, [False, True, True, True])
    pct = score_dynamics(dyn, y, aum_percentile=50.0)  # median of [2,-1,-0.5,0] = -0.25
    assert pct.cutoffs == [-0.25]
    np.testing.assert_array_equal(pct.flags, [False, True, True, False])
    with pytest.raises(LabelqaError, match="both given"):
        score_dynamics(dyn, y, aum_cutoff=0.0, aum_percentile=5.0)


def test_suggested_is_argmax_of_mean_real_logits():
    z = np.array([[[0.0, 3.0, 1.0], [2.0, 0.0, 9.0]], [[0.0, 1.0, 4.0], [2.0, 1.0, 9.0]]])
    dyn = load_dynamics(z, 2, 2, threshold=np.array([False, True]))
    res = score_dynamics(dyn, np.array([0, 0]))
    # row 0: mean real logits (0, 2) -> 1; row 1 is a threshold row in the only run: all-runs fallback (2, 0.5) -> 0
    np.testing.assert_array_equal(res.suggested, [1, 0])


# ----------------------------------------------------------------------------- streaming over epochs


def test_streaming_npy_equals_in_memory(tmp_path, monkeypatch):
    import labelqa.detectors.aum as mod

    labels, z = random_dynamics()
    np.save(tmp_path / "logits.npy", z)
    monkeypatch.setattr(mod, "BLOCK_ROWS", 64)  # several row blocks per epoch
    dyn = load_dynamics(str(tmp_path / "logits.npy"), 300, 4)
    streamed = score_dynamics(dyn, labels).aum
    direct = np.mean([margins(z[e], labels) for e in range(z.shape[0])], axis=0)
    np.testing.assert_allclose(streamed, direct, rtol=0, atol=1e-12)
    np.testing.assert_allclose(aum(np.load(tmp_path / "logits.npy", mmap_mode="r"), labels), direct, atol=1e-12)


def test_error_nan_names_epoch_and_row(tmp_path):
    z = np.zeros((3, 5, 2), np.float32)
    z[2, 4, 1] = np.nan
    np.save(tmp_path / "l.npy", z)
    dyn = load_dynamics(tmp_path / "l.npy", 5, 2)
    with pytest.raises(LabelqaError, match=r"epoch 2: row 4, output 1 is nan"):
        score_dynamics(dyn, np.zeros(5, int))
    z[2, 4, 1] = np.inf
    with pytest.raises(LabelqaError, match="is inf"):
        margins(z[2], np.zeros(5, int))


# ----------------------------------------------------------------------------- the detector


def _data(labels, k, logits=None, probs=None, task="multiclass", classes=None):
    n = len(labels)
    if probs is None:
        probs = np.full((n, k), 1.0 / k)
    return LabelData(labels=np.asarray(labels, dtype=np.int64), pred_probs=np.asarray(probs, dtype=np.float64),
                     classes=tuple(classes or range(k)), ids=np.arange(n), task=task, logits_by_epoch=logits)


def test_default_rule_flags_negative_aum_and_suggests_leading_class():
    # 3 rows, K=3, two epochs; margins vs labels [0, 1, 2]:
    # row0: (2-1, 3-0) -> AUM 2; row1: (0-2, 1-2) -> -1.5 (class 0 ahead); row2: (0-0, 1-1) -> 0 (ties)
    z = np.array([
        [[2.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        [[3.0, 0.0, 0.0], [2.0, 1.0, 1.0], [1.0, 0.0, 1.0]],
    ])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    res = AreaUnderMargin().detect(_data([0, 1, 2], 3, z, probs))
    np.testing.assert_allclose(res.extra["aum"], [2.0, -1.5, 0.0])
    np.testing.assert_array_equal(res.issues, [False, True, False])
    np.testing.assert_array_equal(res.suggested, [0, 0, 2])  # flagged row 1 -> class 0; others keep their label
    np.testing.assert_allclose(res.suggested_confidence, [0.8, 0.6, 0.6])
    np.testing.assert_allclose(res.scores, 1 / (1 + np.exp(-np.array([2.0, -1.5, 0.0]))))
    assert res.name == "aum" and res.summary["rule"] == "default_negative"
    assert "AUM < 0" in res.summary["rule_description"]
    assert res.summary["epochs"] == [2] and res.summary["n_runs"] == 1


def test_scores_are_monotone_in_aum_and_bounded():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=30, size=(3, 500, 4))
    res = AreaUnderMargin().detect(_data(rng.integers(0, 4, 500), 4, z))
    a, s = res.extra["aum"], res.scores
    order = np.argsort(a, kind="stable")
    assert np.all(np.diff(s[order]) >= 0)
    assert np.all((s >= 0) & (s <= 1))


def test_cutoff_and_percentile_override():
    z = np.array([[[2.0, 0.0], [0.0, 1.0], [0.0, 0.5], [1.0, 1.0]]])  # AUM: 2, -1, -0.5, 0
    data = _data([0, 0, 0, 0], 2, z)
    assert AreaUnderMargin(aum_cutoff=0.5).detect(data).issues.tolist() == [False, True, True, True]
    res = AreaUnderMargin(aum_percentile=25.0).detect(data)
    assert res.summary["rule"] == "percentile"
    assert res.issues.tolist() == [False, True, False, False]


def test_threshold_samples_from_a_dynamics_folder(tmp_path):
    rng = np.random.default_rng(2)
    n, k = 400, 3
    true = rng.integers(0, k, n)
    given = true.copy()
    flipped = rng.random(n) < 0.1
    given[flipped] = (true[flipped] + 1) % k
    thr = np.zeros((2, n), bool)
    perm = rng.permutation(n)
    thr[0, perm[:100]], thr[1, perm[100:200]] = True, True
    runs = []
    for r in range(2):
        z = rng.normal(scale=0.3, size=(5, n, k + 1))
        z[:, np.arange(n), true] += 3.0              # the model learns the true class
        z[:, thr[r], k] += 1.0                       # threshold rows: margin about 1 - 3 = -2
        runs.append(z)
    save_dynamics(tmp_path / "dyn", runs, n_classes=k, thresholds=list(thr), classes=["a", "b", "c"])
    data = _data(given, k, load_dynamics(tmp_path / "dyn", n, k), classes=["a", "b", "c"])
    res = AreaUnderMargin().detect(data)
    assert res.summary["rule"] == "threshold_samples" and len(res.summary["cutoffs"]) == 2
    assert res.summary["n_threshold_samples"] == [100, 100]
    # flipped rows: margin about -3 (< cutoff about -1.5); clean ones about +3: flags are exactly the flips
    np.testing.assert_array_equal(res.issues, flipped)
    np.testing.assert_array_equal(res.suggested[flipped], true[flipped])
    # a path works as well as a loaded Dynamics
    res2 = AreaUnderMargin().detect(_data(given, k, str(tmp_path / "dyn"), classes=["a", "b", "c"]))
    np.testing.assert_array_equal(res2.issues, res.issues)


def test_threshold_marks_as_detector_parameter(tmp_path):
    z = np.zeros((1, 4, 3))
    z[0, :, 0] = [1.0, -1.0, 0.0, 0.0]
    z[0, 3, 2] = 0.5  # threshold row, label 2: margin 0.5 -> cutoff 0.5
    np.save(tmp_path / "l.npy", z)
    marks = np.array([False, False, False, True])
    det = AreaUnderMargin(threshold_samples=marks, threshold_percentile=99.0)
    res = det.detect(_data([0, 0, 0, 0], 2, str(tmp_path / "l.npy")))
    # ordinary margins: row0 1 - 0 = 1, row1 -1 - 0 = -1, row2 0 - 0 = 0; cutoff 0.5
    np.testing.assert_array_equal(res.issues, [False, True, True, False])
    assert det.get_params()["threshold_samples"] == "<array>"


def test_multilabel_is_rejected():
    with pytest.raises(LabelqaError, match="AUM is not defined for multi-label data"):
        AreaUnderMargin().detect(_data([0, 1], 2, np.zeros((1, 2, 2)), task="multilabel"))


def test_missing_dynamics_is_a_clear_error():
    with pytest.raises(LabelqaError, match="needs training dynamics") as exc:
        AreaUnderMargin().detect(_data([0, 1], 2, None))
    assert "--logits-by-epoch" in str(exc.value)


def test_mismatched_dynamics_are_rejected():
    with pytest.raises(LabelqaError, match="3 rows"):
        AreaUnderMargin().detect(_data([0, 1], 2, np.zeros((1, 3, 2))))


def test_parameters_are_spelled_like_the_cli_flags():
    from labelqa.cli.scan_cmd import scan

    flags = {name for name in inspect.signature(scan).parameters if name.startswith("aum_")}
    assert {"aum_cutoff", "aum_percentile"} <= flags  # the signature was read
    assert flags <= {f.name for f in dataclasses.fields(AreaUnderMargin)}


@pytest.mark.parametrize(("params", "message"), [
    ({"aum_cutoff": 0.0, "aum_percentile": 5.0}, "aum_cutoff and aum_percentile both given"),
    ({"aum_cutoff": float("inf")}, "aum_cutoff= must be a finite number, got inf"),
    ({"aum_percentile": 101.0}, r"aum_percentile= must be a number in \[0, 100\], got 101.0"),
    ({"threshold_percentile": -1.0}, r"threshold_percentile=-1.0 is not in \[0, 100\]"),
])
def test_invalid_parameters_are_named_as_the_user_spells_them(params, message):
    z = np.zeros((1, 2, 2))
    with pytest.raises(LabelqaError, match=message):
        AreaUnderMargin(**params).detect(_data([0, 1], 2, z))


def test_params_in_the_result_use_the_option_names():
    res = AreaUnderMargin(aum_cutoff=0.5).detect(_data([0, 0], 2, np.zeros((1, 2, 2))))
    assert res.params == {"aum_cutoff": 0.5, "aum_percentile": None, "threshold_percentile": 99.0,
                          "threshold_samples": None}


def test_flag_rule_is_the_detectors():
    aum_rows = np.array([2.0, -1.0, -0.5, 0.0])
    per_run = aum_rows[None, :]
    ordinary = np.ones((1, 4), bool)
    rule, cutoffs, flags = AreaUnderMargin().flag(aum_rows, per_run, None, ordinary)
    assert (rule, cutoffs, flags.tolist()) == ("default_negative", [0.0], [False, True, True, False])
    rule, cutoffs, flags = AreaUnderMargin(aum_cutoff=-0.75).flag(aum_rows, per_run, None, ordinary)
    assert (rule, cutoffs, flags.tolist()) == ("cutoff", [-0.75], [False, True, False, False])
    thr = np.array([[False, False, False, True]])
    rule, cutoffs, flags = AreaUnderMargin(threshold_percentile=50.0).flag(aum_rows, per_run, thr, ~thr)
    assert (rule, cutoffs, flags.tolist()) == ("threshold_samples", [0.0], [False, True, True, False])


def test_says_why_it_needs_all_rows():
    assert Detector.needs_all_rows is None
    assert isinstance(AreaUnderMargin.needs_all_rows, str) and "logits" in AreaUnderMargin.needs_all_rows
