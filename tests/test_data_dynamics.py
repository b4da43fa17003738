"""Training dynamics in load(): a path or a column, validated by labelqa.aum and consumable by AUM."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.aum import Dynamics, score_dynamics
from labelqa.data import load
from labelqa.detectors.aum import AreaUnderMargin
from labelqa.errors import LabelqaError

LABELS = ["a", "b", "c", "a"]
PROBS = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]])
# (E=2, N=4, K=3) logits; margins vs labels [0, 1, 2, 0]:
# row0: (2-1, 3-0) -> 2; row1: (0-2, 1-2) -> -1.5; row2: (0-0, 1-1) -> 0; row3: (0-4, 1-3) -> -3
Z = np.array([
    [[2.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 4.0]],
    [[3.0, 0.0, 0.0], [2.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 3.0, 0.0]],
])
AUM = [2.0, -1.5, 0.0, -3.0]


def per_row(z):
    """(E, N, K) -> list<list<float>>: row i holds E lists of K logits."""
    return pa.array([[list(map(float, z[e, i])) for e in range(z.shape[0])] for i in range(z.shape[1])])


def write(tmp_path, name="d.parquet", **extra):
    t = pa.table({"id": ["r0", "r1", "r2", "r3"], "label": LABELS, "pred_probs": [list(r) for r in PROBS], **extra})
    pq.write_table(t, tmp_path / name)
    return tmp_path / name


def test_column_and_npy_give_the_same_dynamics_and_aum(tmp_path):
    path = write(tmp_path, logits=per_row(Z))
    np.save(tmp_path / "z.npy", Z)
    by_col = load(path, logits_by_epoch="logits")
    by_file = load(path, logits_by_epoch=tmp_path / "z.npy")
    for d in (by_col, by_file):
        assert isinstance(d.logits_by_epoch, Dynamics)
        assert d.logits_by_epoch.n_rows == 4 and d.logits_by_epoch.n_classes == 3
        assert d.logits_by_epoch.epochs == [2] and d.logits_by_epoch.classes == ["a", "b", "c"]
        np.testing.assert_allclose(score_dynamics(d.logits_by_epoch, d.labels).aum, AUM)
        res = AreaUnderMargin().detect(d)
        np.testing.assert_allclose(res.extra["aum"], AUM)
        np.testing.assert_array_equal(res.issues, [False, True, False, True])
    assert by_col.meta["logits_source"] == "column logits"
    assert by_file.meta["logits_source"] == f"file {tmp_path / 'z.npy'}"
    # the logits column is read for the dynamics only; the rest of the data is unchanged
    np.testing.assert_array_equal(by_col.labels, by_file.labels)


def test_a_path_wins_over_a_column_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "logits", Z)  # writes logits.npy
    path = write(tmp_path, **{"logits.npy": per_row(Z[:, :, :2] * 0)})  # a column of the same (wrong) name
    d = load(path, logits_by_epoch="logits.npy")
    assert d.meta["logits_source"] == "file logits.npy"
    np.testing.assert_allclose(score_dynamics(d.logits_by_epoch, d.labels).aum, AUM)


def test_threshold_samples_from_a_column_and_from_a_file(tmp_path):
    # K+1 outputs: the last is the fake threshold class; row 3 is a threshold sample
    z = np.concatenate([Z, np.zeros((2, 4, 1))], axis=2)
    z[:, 3, 3] = 5.0
    marks = np.array([False, False, False, True])
    path = write(tmp_path, logits=per_row(z), thr=pa.array(marks))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "thr.npy", marks)
    by_col = load(path, logits_by_epoch="logits", threshold_samples="thr")
    by_file = load(path, logits_by_epoch=tmp_path / "z.npy", threshold_samples=tmp_path / "thr.npy")
    mixed = load(path, logits_by_epoch=tmp_path / "z.npy", threshold_samples="thr")
    for d in (by_col, by_file, mixed):
        assert d.logits_by_epoch.has_threshold_samples
        np.testing.assert_array_equal(d.logits_by_epoch.runs[0].threshold, marks)
        assert AreaUnderMargin().detect(d).summary["rule"] == "threshold_samples"
    assert by_col.meta["threshold_samples_source"] == "column thr"
    assert by_file.meta["threshold_samples_source"] == f"file {tmp_path / 'thr.npy'}"


def test_neither_file_nor_column_is_an_error(tmp_path):
    path = write(tmp_path)
    with pytest.raises(LabelqaError) as info:
        load(path, logits_by_epoch="nothere")
    assert str(info.value) == (
        f"--logits-by-epoch nothere is neither a file/folder nor a column of {path} "
        "(available columns: 'id', 'label', 'pred_probs') -- check the path, or the column name"
    )
    np.save(tmp_path / "z.npy", Z)
    with pytest.raises(LabelqaError, match=r"--threshold-samples marks\.npy is neither a file/folder nor a column of .*d\.parquet"):
        load(path, logits_by_epoch=tmp_path / "z.npy", threshold_samples="marks.npy")
    with pytest.raises(LabelqaError, match=r"threshold samples given without training dynamics -- pass --logits-by-epoch"):
        load(path, threshold_samples="thr")


def test_mismatched_dynamics_are_reported_by_load(tmp_path):
    path = write(tmp_path)
    np.save(tmp_path / "short.npy", Z[:, :3])
    with pytest.raises(LabelqaError, match=r"short\.npy: 3 rows on axis 1 \(rows\) but the data has 4 rows"):
        load(path, logits_by_epoch=tmp_path / "short.npy")
    np.save(tmp_path / "k2.npy", Z[:, :, :2])
    with pytest.raises(LabelqaError, match=r"k2\.npy: 2 outputs on the last axis but the data has 3 classes"):
        load(path, logits_by_epoch=tmp_path / "k2.npy")


def test_dynamics_with_multilabel_data_are_refused(tmp_path):
    t = pa.table({"labels": [["a"], [], ["b", "c"], ["a"]], "pred_probs": [list(r) for r in PROBS]})
    pq.write_table(t, tmp_path / "m.parquet")
    np.save(tmp_path / "z.npy", Z)
    with pytest.raises(LabelqaError, match=r"--logits-by-epoch: training dynamics \(AUM\) need one label per row, but .*m\.parquet holds multi-label data"):
        load(tmp_path / "m.parquet", label_col="labels", logits_by_epoch=tmp_path / "z.npy")


def test_dynamics_folder_is_passed_through(tmp_path):
    from labelqa.aum import save_dynamics

    path = write(tmp_path)
    save_dynamics(tmp_path / "dyn", [Z], n_classes=3, classes=["a", "b", "c"])
    d = load(path, logits_by_epoch=tmp_path / "dyn")
    assert d.meta["logits_source"] == f"folder {tmp_path / 'dyn'}"
    np.testing.assert_allclose(score_dynamics(d.logits_by_epoch, d.labels).aum, AUM)
    save_dynamics(tmp_path / "dyn2", [Z], n_classes=3, classes=["c", "b", "a"])
    with pytest.raises(LabelqaError, match=r"recorded classes \['c', 'b', 'a'\] differ from the data's classes"):
        load(path, logits_by_epoch=tmp_path / "dyn2")
