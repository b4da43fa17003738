"""The AUM detector (labelqa.detectors.aum.AreaUnderMargin) on data with recorded dynamics."""

from __future__ import annotations

import numpy as np
import pytest

from labelqa.aum import load_dynamics, save_dynamics
from labelqa.data.model import LabelData
from labelqa.detectors.aum import AreaUnderMargin
from labelqa.errors import LabelqaError


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
    assert AreaUnderMargin(cutoff=0.5).detect(data).issues.tolist() == [False, True, True, True]
    res = AreaUnderMargin(percentile=25.0).detect(data)
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
