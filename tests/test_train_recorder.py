"""Recording dynamics from a training loop (labelqa.train.recorder.AUMRecorder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelqa.data.dynamics import MANIFEST, load_dynamics
from labelqa.detectors.aum import aum, score_dynamics
from labelqa.errors import LabelqaError
from labelqa.train.recorder import AUMRecorder
from tests.conftest import random_dynamics


def test_recorder_batch_of_one_shuffled_ids_equals_direct(tmp_path):
    labels, z = random_dynamics(e=4, n=25, k=3, seed=3)
    rng = np.random.default_rng(1)
    rec = AUMRecorder(25)
    for e in range(4):
        for i in rng.permutation(25):
            rec.update(z[e, i], labels[i], i)  # logits (K,), scalar label and id
        rec.end_epoch()
    direct = aum(z, labels)
    np.testing.assert_allclose(rec.aum(), direct, atol=1e-12)
    rec.save(tmp_path / "d", classes=["a", "b", "c"])
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "run0" / "logits.npy"), z)
    dyn = load_dynamics(tmp_path / "d", 25, 3, classes=["a", "b", "c"], labels=labels)
    np.testing.assert_allclose(score_dynamics(dyn, labels).aum, direct, atol=1e-6)


def test_recorder_minibatches_auto_epoch_end_and_two_runs(tmp_path):
    labels, z = random_dynamics(e=3, n=40, k=2, seed=5)
    thr = np.zeros((2, 40), bool)
    thr[0, :8], thr[1, 8:16] = True, True
    recs = []
    for r in range(2):
        rec = AUMRecorder(40, threshold_class=2)
        assigned = np.where(thr[r], 2, labels)
        zz = np.concatenate([z, np.zeros((3, 40, 1), np.float32)], axis=2)
        for e in range(3):
            order = np.random.default_rng(e).permutation(40)
            for b in range(0, 40, 16):  # no end_epoch(): a repeated id ends the epoch
                ids = order[b:b + 16]
                rec.update(zz[e, ids], assigned[ids], ids)
        rec.save(tmp_path / "d", run=r)
        recs.append(rec)
    dyn = load_dynamics(tmp_path / "d", 40, 2, labels=labels)
    assert dyn.epochs == [3, 3]
    np.testing.assert_array_equal(np.stack([r.threshold for r in dyn.runs]), thr)
    res = score_dynamics(dyn, labels)
    np.testing.assert_allclose(res.per_run_aum[0], recs[0].aum(), atol=1e-6)


def test_recorder_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    labels, z = random_dynamics(e=2, n=10, k=3)
    rec = AUMRecorder(10)
    for e in range(2):
        rec.update(torch.tensor(z[e], requires_grad=True) * 1.0, torch.tensor(labels), torch.arange(10))
        rec.end_epoch()
    np.testing.assert_allclose(rec.aum(), aum(z, labels), atol=1e-6)


def test_recorder_errors():
    rec = AUMRecorder(3)
    rec.update(np.zeros((2, 2)), [0, 1], [0, 1])
    with pytest.raises(LabelqaError, match="recorded twice in epoch 0"):
        rec.update(np.zeros((1, 2)), [0], [0])
    with pytest.raises(LabelqaError, match="epoch 0 is incomplete"):
        rec.end_epoch()
    with pytest.raises(LabelqaError, match="outside 0..2"):
        rec.update(np.zeros((1, 2)), [0], [3])
    with pytest.raises(LabelqaError, match="3 outputs, earlier batches had 2"):
        rec.update(np.zeros((1, 3)), [0], [2])
    rec.update(np.zeros((1, 2)), [1], [2])
    rec.end_epoch()
    with pytest.raises(LabelqaError, match="recorded with label 0, now 1"):
        rec.update(np.zeros((1, 2)), [1], [0])
    with pytest.raises(LabelqaError, match="must be the last output"):
        AUMRecorder(2, threshold_class=0).update(np.zeros((2, 3)), [0, 0], [0, 1])


def test_saved_manifest_names_the_recorder(tmp_path):
    rec = AUMRecorder(2)
    rec.update(np.array([[1.0, 0.0], [0.0, 1.0]]), [0, 1], [0, 1])
    rec.save(tmp_path / "d")
    manifest = json.loads((tmp_path / "d" / MANIFEST).read_text())
    assert manifest["producer"] == {"by": "labelqa.train.recorder.AUMRecorder"}
    assert manifest["n_rows"] == 2 and manifest["runs"][0]["epochs"] == 1
