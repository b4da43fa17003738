"""Writing the dynamics folder (labelqa.train.dynamics_writer): round trip through the reader, atomic replace, abort."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from labelqa.data.dynamics import MANIFEST, load_dynamics
from labelqa.errors import LabelqaError
from labelqa.train.dynamics_writer import DynamicsWriter, NpyEpochWriter, current_umask, save_dynamics
from tests.conftest import random_dynamics


def test_save_load_round_trip(tmp_path):
    labels, z = random_dynamics(e=2, n=30, k=3)
    thr = np.zeros(30, bool)
    thr[:5] = True
    z_thr = np.concatenate([z, np.zeros((2, 30, 1), np.float32)], axis=2)
    assigned = np.where(thr, 3, labels)
    save_dynamics(tmp_path / "d", [z_thr], n_classes=3, thresholds=[thr], labels=[assigned], classes=[7, 8, 9],
                  producer={"note": "test"})
    manifest = json.loads((tmp_path / "d" / MANIFEST).read_text())
    assert manifest["format"] == "labelqa-dynamics" and manifest["classes"] == [7, 8, 9]
    assert manifest["runs"][0]["n_outputs"] == 4 and manifest["producer"] == {"note": "test"}
    back = np.load(tmp_path / "d" / "run0" / "logits.npy")
    np.testing.assert_array_equal(back, z_thr)
    dyn = load_dynamics(tmp_path / "d", 30, 3, classes=[7, 8, 9], labels=labels)
    np.testing.assert_array_equal(dyn.runs[0].threshold, thr)
    # saving again replaces the folder atomically (no leftovers beside it)
    save_dynamics(tmp_path / "d", [z_thr[:1]], n_classes=3, thresholds=[thr])
    assert load_dynamics(tmp_path / "d", 30, 3).epochs == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_writer_aborts_cleanly(tmp_path):
    with pytest.raises(RuntimeError):
        with DynamicsWriter(tmp_path / "d", n_rows=3, n_classes=2) as w:
            run = w.add_run(2, 2)
            run.write_epoch(np.zeros((3, 2)))
            raise RuntimeError("training crashed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LabelqaError, match="1 epochs written, 2 promised"):
        with DynamicsWriter(tmp_path / "d", n_rows=3, n_classes=2) as w:
            w.add_run(2, 2).write_epoch(np.zeros((3, 2)))


def test_npy_epoch_writer_writes_what_numpy_reads_and_checks_the_epoch_count(tmp_path):
    _, z = random_dynamics(e=3, n=20, k=3)
    w = NpyEpochWriter(tmp_path / "l.npy", 3, 20, 3)
    for epoch in z:
        w.write_epoch(epoch)
    with pytest.raises(LabelqaError, match="more than the 3 epochs promised"):
        w.write_epoch(z[0])
    w.close()
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), z)
    w = NpyEpochWriter(tmp_path / "m.npy", 2, 20, 3)
    with pytest.raises(LabelqaError, match=r"epoch 0 has shape \(20, 2\), expected \(20, 3\)"):
        w.write_epoch(z[0][:, :2])
    with pytest.raises(LabelqaError, match="0 epochs written, 2 promised"):
        w.close()


def test_folder_gets_a_normal_mode_and_umask_is_left_unchanged(tmp_path):
    before = os.umask(0o022)
    try:
        assert current_umask() == 0o022 and current_umask() == 0o022
        save_dynamics(tmp_path / "d", [np.zeros((1, 3, 2))], n_classes=2)
        assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(before)
