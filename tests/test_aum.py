"""Margins, AUM, the on-disk dynamics formats, the recorder and their errors (labelqa.aum)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelqa.aum import (
    MANIFEST,
    AUMRecorder,
    DynamicsWriter,
    aum,
    combine_run_flags,
    load_dynamics,
    margins,
    save_dynamics,
    score_dynamics,
    threshold_cutoff,
)
from labelqa.errors import LabelqaError

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
    cut = score_dynamics(dyn, y, cutoff=0.5)
    np.testing.assert_array_equal(cut.flags, [False, True, True, True])
    pct = score_dynamics(dyn, y, percentile=50.0)  # median of [2,-1,-0.5,0] = -0.25
    assert pct.cutoffs == [-0.25]
    np.testing.assert_array_equal(pct.flags, [False, True, True, False])
    with pytest.raises(LabelqaError, match="both given"):
        score_dynamics(dyn, y, cutoff=0.0, percentile=5.0)


def test_suggested_is_argmax_of_mean_real_logits():
    z = np.array([[[0.0, 3.0, 1.0], [2.0, 0.0, 9.0]], [[0.0, 1.0, 4.0], [2.0, 1.0, 9.0]]])
    dyn = load_dynamics(z, 2, 2, threshold=np.array([False, True]))
    res = score_dynamics(dyn, np.array([0, 0]))
    # row 0: mean real logits (0, 2) -> 1; row 1 is a threshold row in the only run: all-runs fallback (2, 0.5) -> 0
    np.testing.assert_array_equal(res.suggested, [1, 0])


# ----------------------------------------------------------------------------- formats


def _random_dynamics(e=7, n=300, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(e, n, k)).astype(np.float32)
    z[:, np.arange(n), labels] += np.linspace(0, 2, e)[:, None].astype(np.float32)
    return labels, z


def test_streaming_npy_equals_in_memory(tmp_path, monkeypatch):
    import labelqa.aum as mod

    labels, z = _random_dynamics()
    np.save(tmp_path / "logits.npy", z)
    monkeypatch.setattr(mod, "BLOCK_ROWS", 64)  # several row blocks per epoch
    dyn = load_dynamics(str(tmp_path / "logits.npy"), 300, 4)
    streamed = score_dynamics(dyn, labels).aum
    direct = np.mean([margins(z[e], labels) for e in range(z.shape[0])], axis=0)
    np.testing.assert_allclose(streamed, direct, rtol=0, atol=1e-12)
    np.testing.assert_allclose(aum(np.load(tmp_path / "logits.npy", mmap_mode="r"), labels), direct, atol=1e-12)


def test_per_epoch_npy_and_parquet_folders(tmp_path):
    labels, z = _random_dynamics(e=3, n=50, k=3)
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
    labels, z = _random_dynamics(e=4, n=20, k=3)
    per_row = np.transpose(z, (1, 0, 2))  # (N, E, K)
    col = pa.array([[list(map(float, ep)) for ep in row] for row in per_row], type=pa.list_(pa.list_(pa.float32())))
    table = pa.table({"label": labels, "dyn": col})
    dyn = load_dynamics("dyn", 20, 3, table=table)
    np.testing.assert_allclose(score_dynamics(dyn, labels).aum, aum(z, labels), atol=1e-6)
    ragged = pa.array([[[1.0, 2.0]], [[1.0, 2.0], [3.0, 4.0]]], type=pa.list_(pa.list_(pa.float64())))
    with pytest.raises(LabelqaError, match="row 1 has 2 epochs"):
        load_dynamics(ragged, 2, 2)


def test_save_load_round_trip(tmp_path):
    labels, z = _random_dynamics(e=2, n=30, k=3)
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


def test_error_per_epoch_file_shape_mismatch(tmp_path):
    np.save(tmp_path / "epoch_000.npy", np.zeros((5, 2)))
    np.save(tmp_path / "epoch_001.npy", np.zeros((4, 2)))
    dyn = load_dynamics(tmp_path, 5, 2)
    with pytest.raises(LabelqaError, match=r"epoch_001\.npy: shape \(4, 2\) .*axis 0 = rows"):
        score_dynamics(dyn, np.zeros(5, int))


def test_error_manifest_classes_and_labels_mismatch(tmp_path):
    labels, z = _random_dynamics(e=1, n=10, k=2)
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


# ----------------------------------------------------------------------------- recorder


def test_recorder_batch_of_one_shuffled_ids_equals_direct(tmp_path):
    labels, z = _random_dynamics(e=4, n=25, k=3, seed=3)
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
    labels, z = _random_dynamics(e=3, n=40, k=2, seed=5)
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
    labels, z = _random_dynamics(e=2, n=10, k=3)
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
