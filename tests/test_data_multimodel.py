"""Several models: load() with several probability columns/files, LabelData.from_arrays with a list."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.data import LabelData, load
from labelqa.errors import LabelqaError
from labelqa.models import COMBINE_METHODS, DEFAULT_COMBINE, combine_pred_probs, log_linear_pool

CLASSES = ["ant", "bee", "cat"]
LABELS = ["bee", "ant", "cat", "cat", "bee"]
CODES = np.array([1, 0, 2, 2, 1])
P1 = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.0, 0.25, 0.75], [0.2, 0.2, 0.6], [0.05, 0.9, 0.05]])
P2 = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
P3 = np.array([[0.3, 0.4, 0.3], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4], [0.0, 1.0, 0.0]])


def lists(probs, value_type=pa.float64()):
    return pa.array(np.asarray(probs).tolist(), pa.list_(value_type))


@pytest.fixture
def two_cols(tmp_path):
    table = pa.table({
        "id": pa.array([f"r{i}" for i in range(5)]),
        "label": pa.array(LABELS),
        "resnet": lists(P1),
        "swin": lists(P2),
        "vit": lists(P3, pa.float32()),
        "wide": lists(np.full((5, 4), 0.25)),
        "pred_probs": lists(P1),
    })
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("method", COMBINE_METHODS)
def test_two_columns_equal_each_alone_combined(two_cols, method):
    both = load(two_cols, pred_probs_col=["resnet", "swin"], combine_models=method)
    a = load(two_cols, pred_probs_col="resnet")
    b = load(two_cols, pred_probs_col="swin")
    expected = combine_pred_probs([a.pred_probs, b.pred_probs], method, labels=a.labels)
    np.testing.assert_allclose(both.pred_probs, expected)
    assert both.model_pred_probs is not None and len(both.model_pred_probs) == 2 and both.n_models == 2
    np.testing.assert_array_equal(both.model_pred_probs[0], a.pred_probs)
    np.testing.assert_array_equal(both.model_pred_probs[1], b.pred_probs)
    np.testing.assert_array_equal(both.labels, a.labels)
    assert both.classes == a.classes == tuple(CLASSES)
    assert both.meta["models"] == ["column resnet", "column swin"]
    assert both.meta["combine_models"] == method
    assert both.meta["pred_probs_source"] == f"{method} of 2 models"
    np.testing.assert_allclose(both.pred_probs.sum(axis=1), 1.0, atol=1e-9)
    assert not both.pred_probs.flags.writeable and not both.model_pred_probs[0].flags.writeable
    if method == "loss_weighted":
        assert len(both.meta["model_weights"]) == 2
    assert a.model_pred_probs is None and a.n_models == 1 and "models" not in a.meta


def test_default_is_log_linear_and_single_model_is_unchanged(two_cols):
    d = load(two_cols, pred_probs_col=["resnet", "swin"])
    assert d.meta["combine_models"] == DEFAULT_COMBINE == "log_linear"
    np.testing.assert_allclose(d.pred_probs, log_linear_pool([P1, P2], d.meta["model_weights"]))
    g = np.sqrt(np.maximum(P1, 1e-12) * P2)
    np.testing.assert_allclose(load(two_cols, pred_probs_col=["resnet", "swin"], combine_models="geometric").pred_probs,
                               g / g.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(load(two_cols, pred_probs_col=["resnet", "swin"], combine_models="mean").pred_probs,
                               (P1 + P2) / 2)
    # a one-element list is a single model, like the string
    one = load(two_cols, pred_probs_col=["resnet"])
    assert one.model_pred_probs is None and one.meta["pred_probs_source"] == "column resnet"
    assert load(two_cols, pred_probs_col=[]).meta["pred_probs_source"] == "column pred_probs"


def test_files_and_columns_mix(two_cols, tmp_path):
    np.save(tmp_path / "swin.npy", P2)
    np.save(tmp_path / "vit.npy", P3.astype(np.float32))
    d = load(two_cols, pred_probs=[tmp_path / "swin.npy", tmp_path / "vit.npy"], pred_probs_col=["resnet"],
             combine_models="mean")
    assert d.meta["models"] == [f"file {tmp_path / 'swin.npy'}", f"file {tmp_path / 'vit.npy'}", "column resnet"]
    np.testing.assert_allclose(d.pred_probs, (P2 + P3 + P1) / 3, atol=1e-6)
    # files alone; a string column keeps its single-model meaning and is not used
    d2 = load(two_cols, pred_probs=[tmp_path / "swin.npy", tmp_path / "vit.npy"], pred_probs_col="resnet")
    assert len(d2.model_pred_probs) == 2
    # one file in a list is a single model
    d3 = load(two_cols, pred_probs=[tmp_path / "swin.npy"])
    assert d3.model_pred_probs is None and d3.meta["pred_probs_source"].startswith("file ")


def test_float32_models_stay_float32(two_cols, tmp_path):
    np.save(tmp_path / "vit.npy", P3.astype(np.float32))
    d = load(two_cols, pred_probs_col=["vit"], pred_probs=[tmp_path / "vit.npy"])
    assert d.pred_probs.dtype == np.float32
    d = load(two_cols, pred_probs_col=["vit", "resnet"])
    assert d.pred_probs.dtype == np.float64 and d.model_pred_probs[0].dtype == np.float32


def test_k_mismatch_names_both_sources(two_cols, tmp_path):
    with pytest.raises(LabelqaError) as exc:
        load(two_cols, pred_probs_col=["resnet", "wide"])
    msg = str(exc.value)
    assert "column 'wide' has 4 probabilities per row" in msg and "column 'resnet' has 3" in msg
    assert "same class order" in msg
    np.save(tmp_path / "two.npy", np.full((5, 2), 0.5))
    # files come first: the column is named against the file
    with pytest.raises(LabelqaError, match=r"column 'resnet' has 3 probabilities per row but .*two\.npy has 2"):
        load(two_cols, pred_probs_col=["resnet"], pred_probs=[tmp_path / "two.npy"])
    np.save(tmp_path / "short.npy", P1[:4])
    with pytest.raises(LabelqaError, match=r"short\.npy has 4 rows but .* has 5 rows"):
        load(two_cols, pred_probs_col=["resnet"], pred_probs=[tmp_path / "short.npy"])


def test_each_model_is_validated_and_named(tmp_path):
    bad = P2.copy()
    bad[3] = [0.5, 0.2, 0.1]
    table = pa.table({"id": pa.array(range(5)), "label": pa.array(LABELS), "a": lists(P1), "b": lists(bad)})
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(LabelqaError, match=r"bad\.parquet, column 'b': 1 row does not sum to 1 .*row 3"):
        load(path, pred_probs_col=["a", "b"], id_col="id")
    d = load(path, pred_probs_col=["a", "b"], renormalize=True)
    np.testing.assert_allclose(d.model_pred_probs[1][3], np.array([0.5, 0.2, 0.1]) / 0.8)
    np.testing.assert_allclose(d.pred_probs.sum(axis=1), 1)
    assert d.meta["renormalized"] and d.meta["model_renormalized_rows"] == [0, 1]
    nan = P2.copy()
    nan[1, 2] = np.nan
    with pytest.raises(LabelqaError, match=r"pred_probs\[1\]: 1 row with NaN"):
        LabelData.from_arrays(CODES, [P1, nan])


def test_option_errors(two_cols):
    with pytest.raises(LabelqaError, match=r"no column 'nope'.*--pred-probs-col"):
        load(two_cols, pred_probs_col=["resnet", "nope"])
    with pytest.raises(LabelqaError, match="'resnet' given more than once"):
        load(two_cols, pred_probs_col=["resnet", "resnet"])
    with pytest.raises(LabelqaError, match="unknown model combination 'vote'.*--combine-models"):
        load(two_cols, pred_probs_col=["resnet", "swin"], combine_models="vote")
    with pytest.raises(LabelqaError, match="probabilities file not found"):
        load(two_cols, pred_probs_col=["resnet"], pred_probs=["missing.npy"])


def test_csv_and_jsonl_columns(tmp_path):
    import json

    rows = [{"label": lab, "a": json.dumps(p1.tolist()), "b": json.dumps(p2.tolist())}
            for lab, p1, p2 in zip(LABELS, P1, P2)]
    csv = tmp_path / "d.csv"
    csv.write_text("label,a,b\n" + "".join(f'{r["label"]},"{r["a"]}","{r["b"]}"\n' for r in rows))
    d = load(csv, pred_probs_col=["a", "b"], combine_models="mean")
    np.testing.assert_allclose(d.pred_probs, (P1 + P2) / 2)
    jl = tmp_path / "d.jsonl"
    jl.write_text("".join(json.dumps({"label": lab, "a": p1.tolist(), "b": p2.tolist()}) + "\n"
                          for lab, p1, p2 in zip(LABELS, P1, P2)))
    np.testing.assert_allclose(load(jl, pred_probs_col=["a", "b"], combine_models="mean").pred_probs, (P1 + P2) / 2)


def test_multilabel_models_combine_per_class(tmp_path):
    q1 = np.array([[0.9, 0.2], [0.1, 0.7], [0.6, 0.6]])
    q2 = np.array([[0.7, 0.4], [0.3, 0.9], [0.2, 0.8]])
    table = pa.table({"labels": pa.array([["x"], ["y"], ["x", "y"]]), "m1": lists(q1), "m2": lists(q2)})
    path = tmp_path / "ml.parquet"
    pq.write_table(table, path)
    d = load(path, label_col="labels", pred_probs_col=["m1", "m2"], combine_models="mean")
    assert d.task == "multilabel"
    np.testing.assert_allclose(d.pred_probs, (q1 + q2) / 2)
    g = load(path, label_col="labels", pred_probs_col=["m1", "m2"], combine_models="geometric")
    p, q = np.sqrt(q1 * q2), np.sqrt((1 - q1) * (1 - q2))
    np.testing.assert_allclose(g.pred_probs, p / (p + q))
    lw = load(path, label_col="labels", pred_probs_col=["m1", "m2"], combine_models="loss_weighted")
    assert lw.pred_probs.min() >= 0 and lw.pred_probs.max() <= 1
    over = q2.copy()
    over[2, 1] = 1.5
    with pytest.raises(LabelqaError, match=r"pred_probs\[1\]: 1 row with probabilities above 1"):
        LabelData.from_arrays([[0], [1], [0, 1]], [q1, over], task="multilabel")


def test_from_arrays_list():
    d = LabelData.from_arrays(LABELS, [P1, P2], classes=CLASSES, combine_models="mean")
    np.testing.assert_allclose(d.pred_probs, (P1 + P2) / 2)
    assert d.meta["models"] == ["pred_probs[0]", "pred_probs[1]"]
    d = LabelData.from_arrays(LABELS, (P1.tolist(), P2.tolist()), classes=CLASSES, model_names=["a", "b"])
    assert d.meta["models"] == ["a", "b"] and d.meta["combine_models"] == DEFAULT_COMBINE
    # a single matrix given as nested lists is still one model
    one = LabelData.from_arrays(LABELS, P1.tolist(), classes=CLASSES)
    assert one.model_pred_probs is None
    with pytest.raises(LabelqaError, match=r"pred_probs\[1\] has 4 probabilities per row but pred_probs\[0\] has 3"):
        LabelData.from_arrays(LABELS, [P1, np.full((5, 4), 0.25)], classes=CLASSES)
    with pytest.raises(LabelqaError, match="more than once"):
        LabelData.from_arrays(LABELS, [P1, P2], classes=CLASSES, model_names=["a", "a"])


def test_scan_runs_on_the_combination(two_cols):
    from labelqa.scan import scan

    d = load(two_cols, pred_probs_col=["resnet", "swin"], id_col="id")
    res = scan(d)
    assert res.issues_table().num_rows == 5
