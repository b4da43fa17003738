"""Training dynamics, the input side (labelqa.data.dynamics): the epoch sources, load_dynamics and its checks,
and load() attaching them, validated and consumable by AUM."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.data import load
from labelqa.data.dynamics import Dynamics, load_dynamics
from labelqa.detectors.aum import AreaUnderMargin, aum, score_dynamics
from labelqa.errors import LabelqaError
from labelqa.train.dynamics_writer import save_dynamics
from tests.conftest import random_dynamics

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
    path = write(tmp_path)
    save_dynamics(tmp_path / "dyn", [Z], n_classes=3, classes=["a", "b", "c"])
    d = load(path, logits_by_epoch=tmp_path / "dyn")
    assert d.meta["logits_source"] == f"folder {tmp_path / 'dyn'}"
    np.testing.assert_allclose(score_dynamics(d.logits_by_epoch, d.labels).aum, AUM)
    save_dynamics(tmp_path / "dyn2", [Z], n_classes=3, classes=["c", "b", "a"])
    with pytest.raises(LabelqaError, match=r"recorded classes \['c', 'b', 'a'\] differ from the data's classes"):
        load(path, logits_by_epoch=tmp_path / "dyn2")


# ----------------------------------------------------------------------------- formats


def test_per_epoch_npy_and_parquet_folders(tmp_path):
    labels, z = random_dynamics(e=3, n=50, k=3)
    expected = aum(z, labels)
    npy_dir = tmp_path / "npy"
    npy_dir.mkdir()
    for e in range(3):
        np.save(npy_dir / f"epoch_{e:03d}.npy", z[e])
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    for e in range(3):
        col = pa.FixedSizeListArray.from_arrays(pa.array(z[e].reshape(-1)), 3)
        pq.write_table(pa.table({"logits": col}), pq_dir / f"epoch_{e:03d}.parquet")
    for d in (npy_dir, pq_dir):
        got = score_dynamics(load_dynamics(d, 50, 3), labels).aum
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_list_of_lists_column(tmp_path):
    labels, z = random_dynamics(e=4, n=20, k=3)
    per_row = np.transpose(z, (1, 0, 2))  # (N, E, K)
    col = pa.array([[list(map(float, ep)) for ep in row] for row in per_row], type=pa.list_(pa.list_(pa.float32())))
    table = pa.table({"label": labels, "dyn": col})
    dyn = load_dynamics("dyn", 20, 3, table=table)
    np.testing.assert_allclose(score_dynamics(dyn, labels).aum, aum(z, labels), atol=1e-6)
    ragged = pa.array([[[1.0, 2.0]], [[1.0, 2.0], [3.0, 4.0]]], type=pa.list_(pa.list_(pa.float64())))
    with pytest.raises(LabelqaError, match="row 1 has 2 epochs"):
        load_dynamics(ragged, 2, 2)


# ----------------------------------------------------------------------------- validation errors


def test_error_row_count_mismatch_names_file_and_axis(tmp_path):
    np.save(tmp_path / "l.npy", np.zeros((2, 10, 3), np.float32))
    with pytest.raises(LabelqaError, match=r"l\.npy: 10 rows on axis 1 .* data has 12 rows"):
        load_dynamics(tmp_path / "l.npy", 12, 3)


def test_error_class_count_mismatch(tmp_path):
    np.save(tmp_path / "l.npy", np.zeros((2, 10, 5), np.float32))
    with pytest.raises(LabelqaError, match="5 outputs on the last axis but the data has 3 classes"):
        load_dynamics(tmp_path / "l.npy", 10, 3)


def test_error_k_plus_one_without_marks_and_marks_without_k_plus_one(tmp_path):
    np.save(tmp_path / "l.npy", np.zeros((2, 10, 4), np.float32))
    with pytest.raises(LabelqaError, match="threshold-sample run"):
        load_dynamics(tmp_path / "l.npy", 10, 3)
    marks = np.zeros(10, bool)
    marks[0] = True
    np.save(tmp_path / "k.npy", np.zeros((2, 10, 3), np.float32))
    with pytest.raises(LabelqaError, match="needs K\\+1 = 4"):
        load_dynamics(tmp_path / "k.npy", 10, 3, threshold=marks)
    with pytest.raises(LabelqaError, match="mark no row"):
        load_dynamics(tmp_path / "l.npy", 10, 3, threshold=np.zeros(10, bool))
    with pytest.raises(LabelqaError, match=r"shape \(9,\)"):
        load_dynamics(tmp_path / "l.npy", 10, 3, threshold=marks[:9])


def test_threshold_marks_from_file_and_column(tmp_path):
    marks = np.zeros(10, bool)
    marks[[1, 4]] = True
    np.save(tmp_path / "l.npy", np.zeros((1, 10, 4), np.float32))
    np.save(tmp_path / "m.npy", marks)
    (tmp_path / "m.txt").write_text("\n".join("1" if m else "0" for m in marks))
    table = pa.table({"is_thr": pa.array(marks)})
    for thr in (tmp_path / "m.npy", str(tmp_path / "m.txt"), "is_thr"):
        dyn = load_dynamics(tmp_path / "l.npy", 10, 3, threshold=thr, table=table)
        np.testing.assert_array_equal(dyn.runs[0].threshold, marks)


def test_error_per_epoch_file_shape_mismatch(tmp_path):
    np.save(tmp_path / "epoch_000.npy", np.zeros((5, 2)))
    np.save(tmp_path / "epoch_001.npy", np.zeros((4, 2)))
    dyn = load_dynamics(tmp_path, 5, 2)
    with pytest.raises(LabelqaError, match=r"epoch_001\.npy: shape \(4, 2\) .*axis 0 = rows"):
        score_dynamics(dyn, np.zeros(5, int))


def test_error_manifest_classes_and_labels_mismatch(tmp_path):
    labels, z = random_dynamics(e=1, n=10, k=2)
    save_dynamics(tmp_path / "d", [z], n_classes=2, labels=[labels], classes=["cat", "dog"])
    with pytest.raises(LabelqaError, match="differ from the data's classes"):
        load_dynamics(tmp_path / "d", 10, 2, classes=["dog", "cat"])
    with pytest.raises(LabelqaError, match="trained with label"):
        load_dynamics(tmp_path / "d", 10, 2, labels=1 - labels)
    with pytest.raises(LabelqaError, match="carries its own threshold"):
        load_dynamics(tmp_path / "d", 10, 2, threshold=np.ones(10, bool))


def test_error_missing_and_unknown_sources(tmp_path):
    with pytest.raises(LabelqaError, match="neither a file, a folder nor a column"):
        load_dynamics(tmp_path / "nope.npy", 3, 2)
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(LabelqaError, match="must be a .npy file"):
        load_dynamics(tmp_path / "x.csv", 3, 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelqaError, match="no per-epoch"):
        load_dynamics(tmp_path / "empty", 3, 2)
    np.save(tmp_path / "two.npy", np.zeros((3, 2)))
    with pytest.raises(LabelqaError, match=r"shape \(epochs, N, K\)"):
        load_dynamics(tmp_path / "two.npy", 3, 2)


def test_public_checks_used_by_the_math_and_the_recorder():
    from labelqa.data.arrays import is_list_type
    from labelqa.data.dynamics import as_numpy, check_finite, check_labels, list_column_matrix

    np.testing.assert_array_equal(check_labels(np.array([0.0, 2.0]), 2, 3, "labels"), [0, 2])
    assert check_labels(np.array([0.0, 2.0]), 2, 3, "labels").dtype == np.int64
    with pytest.raises(LabelqaError, match=r"labels: row 1 has label 3, outside 0..2 \(the logits have 3 outputs\)"):
        check_labels(np.array([0, 3]), 2, 3, "labels")
    with pytest.raises(LabelqaError, match="integer class codes"):
        check_labels(np.array([0.5, 1.0]), 2, 3, "labels")
    with pytest.raises(LabelqaError, match=r"epoch 4: row 12, output 1 is nan"):
        check_finite(np.array([[0.0, 1.0], [0.0, np.nan]]), "epoch 4", row_offset=11)
    assert is_list_type(pa.list_(pa.float32())) and not is_list_type(pa.float32())
    col = pa.chunked_array([pa.array([[1.0, 2.0]]), pa.array([[3.0, 4.0]])])
    np.testing.assert_array_equal(list_column_matrix(col, "features"), [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(LabelqaError, match="features: row 1 has 1 logits, row 0 has 2"):
        list_column_matrix(pa.array([[1.0, 2.0], [3.0]]), "features")
    assert as_numpy([1, 2]).tolist() == [1, 2]
