"""Embeddings in load() and from_arrays: column vs .npy, float32 storage, per-row errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from labelqa.data import LabelData, load
from labelqa.data.rows import Rows
from labelqa.errors import LabelqaError

IDS = ["r0", "r1", "r2", "r3"]
LABELS = ["a", "b", "a", "b"]
PROBS = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
EMB = np.array([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [0.25, 0.25, 0.25], [-3.0, 1e-3, 7.0]])


def write(path, emb=EMB, col="embedding", emb_type=pa.float64(), list_kind="list"):
    emb = np.asarray(emb)
    flat = pa.array(emb.reshape(-1), emb_type)
    if list_kind == "fixed":
        arr = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])
    else:
        offsets = np.arange(0, emb.size + 1, emb.shape[1])
        cls = pa.LargeListArray if list_kind == "large" else pa.ListArray
        arr = cls.from_arrays(pa.array(offsets, pa.int64() if list_kind == "large" else pa.int32()), flat)
    t = pa.table({"id": IDS, "label": LABELS, "pred_probs": [list(r) for r in PROBS], col: arr})
    pq.write_table(t, path)
    return path


@pytest.mark.parametrize("list_kind", ["list", "large", "fixed"])
def test_column_and_npy_give_identical_float32_embeddings(tmp_path, list_kind):
    from_col = load(write(tmp_path / "d.parquet", list_kind=list_kind))
    np.save(tmp_path / "e.npy", EMB)
    from_file = load(write(tmp_path / "n.parquet", col="other"), embeddings=tmp_path / "e.npy")
    for d in (from_col, from_file):
        assert d.embeddings.dtype == np.float32 and d.embeddings.shape == (4, 3)
        assert d.embeddings.flags.c_contiguous and not d.embeddings.flags.writeable
    np.testing.assert_array_equal(from_col.embeddings, from_file.embeddings)
    np.testing.assert_array_equal(from_col.embeddings, EMB.astype(np.float32))
    assert from_col.meta["embeddings_source"] == "column embedding"
    assert from_file.meta["embeddings_source"] == f"file {tmp_path / 'e.npy'}"


def test_default_column_absent_means_no_embeddings(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"label": LABELS, "pred_probs": [list(r) for r in PROBS]}), path)
    d = load(path)
    assert d.embeddings is None and "embeddings_source" not in d.meta


def test_non_default_column_absent_is_an_error(tmp_path):
    path = write(tmp_path / "d.parquet")
    with pytest.raises(LabelqaError) as info:
        load(path, embeddings_col="feats")
    assert str(info.value) == (
        f"{path}: no column 'feats' (available columns: 'id', 'label', 'pred_probs', 'embedding') "
        "-- pass --embeddings-col NAME to choose the column"
    )
    d = load(write(tmp_path / "f.parquet", col="feats"), embeddings_col="feats")
    assert d.meta["embeddings_source"] == "column feats" and d.embeddings.shape == (4, 3)


def test_file_wins_over_the_column(tmp_path):
    np.save(tmp_path / "e.npy", EMB[:, :2].astype(np.float32))
    d = load(write(tmp_path / "d.parquet"), embeddings=tmp_path / "e.npy")
    assert d.embeddings.shape == (4, 2)


def test_float32_npy_is_not_copied_into_a_new_dtype(tmp_path):
    np.save(tmp_path / "e.npy", EMB.astype(np.float32))
    d = load(write(tmp_path / "d.parquet", col="x"), embeddings=tmp_path / "e.npy")
    assert d.embeddings.dtype == np.float32
    arr = EMB.astype(np.float32)
    assert np.shares_memory(LabelData.from_arrays([0, 1, 0, 1], PROBS, embeddings=arr).embeddings, arr)


def test_npy_row_count_mismatch_names_both_files(tmp_path):
    path = write(tmp_path / "d.parquet")
    np.save(tmp_path / "e.npy", EMB[:3])
    with pytest.raises(LabelqaError) as info:
        load(path, embeddings=tmp_path / "e.npy")
    assert str(info.value) == (
        f"{tmp_path / 'e.npy'} has 3 rows of embeddings but {path} has 4 rows -- the .npy must hold one embedding "
        "per table row, in the same order"
    )
    with pytest.raises(LabelqaError, match=r"embeddings file not found: .*none\.npy"):
        load(path, embeddings=tmp_path / "none.npy")
    obj = np.empty(4, dtype=object)
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    with pytest.raises(LabelqaError, match=r"o\.npy holds Python objects .*refusing to unpickle"):
        load(path, embeddings=tmp_path / "o.npy")
    np.save(tmp_path / "v.npy", EMB[:, 0].copy())
    with pytest.raises(LabelqaError, match=r"v\.npy: embeddings must be 2-D \(rows x dimensions\), got shape \(4,\)"):
        load(path, embeddings=tmp_path / "v.npy")


def test_ragged_column_names_the_first_bad_row(tmp_path):
    rows = [list(r) for r in EMB]
    rows[2] = rows[2][:2]
    t = pa.table({"id": IDS, "label": LABELS, "pred_probs": [list(r) for r in PROBS], "embedding": rows})
    pq.write_table(t, tmp_path / "r.parquet")
    with pytest.raises(LabelqaError) as info:
        load(tmp_path / "r.parquet", id_col="id")
    assert str(info.value) == (
        f"{tmp_path / 'r.parquet'}, column 'embedding': embedding lists differ in length: row 2 (id 'r2') has 2 "
        "but most rows have 3 (1 row in all: row 2 (id 'r2'): 2 items) -- every row needs an embedding of the "
        "same length D"
    )
    rows = [list(r) for r in EMB]
    rows[1] = None
    t = t.set_column(3, "embedding", pa.array(rows))
    pq.write_table(t, tmp_path / "n.parquet")
    with pytest.raises(LabelqaError, match=r"column 'embedding': 1 row without an embedding \(null list\): row 1"):
        load(tmp_path / "n.parquet")
    t = t.set_column(3, "embedding", pa.array([["x"]] * 4))
    pq.write_table(t, tmp_path / "s.parquet")
    with pytest.raises(LabelqaError, match=r"column 'embedding': list items have type string; expected numbers -- store the embeddings as list<float>"):
        load(tmp_path / "s.parquet")


def test_nan_inf_and_zero_rows_are_named(tmp_path):
    emb = EMB.copy()
    emb[1, 2] = np.nan
    emb[3, 0] = np.inf
    with pytest.raises(LabelqaError) as info:
        load(write(tmp_path / "n.parquet", emb), id_col="id")
    assert str(info.value) == (
        f"{tmp_path / 'n.parquet'}, column 'embedding': 2 rows with NaN or infinite embedding values: "
        "row 1 (id 'r1'): dimension 2 = nan; row 3 (id 'r3'): dimension 0 = inf -- embeddings must be finite "
        "numbers (float32); check the model that produced them"
    )
    emb = EMB.copy()
    emb[[0, 2]] = 0.0
    np.save(tmp_path / "z.npy", emb)
    with pytest.raises(LabelqaError) as info:
        load(write(tmp_path / "z.parquet", col="x"), embeddings=tmp_path / "z.npy", id_col="id")
    assert str(info.value) == (
        f"{tmp_path / 'z.npy'}: 2 rows with an all-zero embedding, which cannot L2-normalise: row 0 (id 'r0'); "
        "row 2 (id 'r2') -- drop those rows or give them a non-zero embedding"
    )
    # float64 beyond float32's range overflows to inf in storage: refused, not silently kept
    emb = EMB.copy()
    emb[2, 1] = 1e300
    with pytest.raises(LabelqaError, match=r"1 row with NaN or infinite embedding values: row 2: dimension 1 = inf"):
        LabelData.from_arrays([0, 1, 0, 1], PROBS, embeddings=emb)


def test_embeddings_in_csv_as_json_strings(tmp_path):
    t = pa.table({"label": LABELS, "prob_a": PROBS[:, 0], "prob_b": PROBS[:, 1],
                  "embedding": [json.dumps(list(r)) for r in EMB]})
    pacsv.write_csv(t, tmp_path / "d.csv")
    d = load(tmp_path / "d.csv")
    np.testing.assert_array_equal(d.embeddings, EMB.astype(np.float32))
    t = t.set_column(3, "embedding", pa.array(['[1, 2]', '[1, x]', '[3, 4]', '[5, 6]']))
    pacsv.write_csv(t, tmp_path / "b.csv")
    with pytest.raises(LabelqaError, match=r"b\.csv, column 'embedding': row 1 does not hold a JSON list of numbers: '\[1, x\]' .* -- write each row's embedding"):
        load(tmp_path / "b.csv")


def test_from_arrays_embeddings_checks():
    with pytest.raises(LabelqaError, match=r"embeddings: embeddings are ragged: row 0 has 3 values but row 2 has 2"):
        LabelData.from_arrays([0, 1, 0, 1], PROBS, embeddings=[[1, 2, 3], [1, 2, 3], [1, 2], [1, 2, 3]])
    with pytest.raises(LabelqaError, match=r"embeddings: 3 rows of embeddings but the data has 4 rows"):
        LabelData.from_arrays([0, 1, 0, 1], PROBS, embeddings=EMB[:3])
    with pytest.raises(LabelqaError, match=r"embeddings have dtype <U1; expected numbers"):
        LabelData.from_arrays([0, 1, 0, 1], PROBS, embeddings=np.array([["a"]] * 4))
    with pytest.raises(LabelqaError, match=r"embeddings have 0 dimensions"):
        LabelData.from_arrays([0, 1, 0, 1], PROBS, embeddings=np.zeros((4, 0)))
    d = LabelData.from_arrays([0, 1, 0, 1], PROBS, embeddings=EMB.tolist())
    assert d.embeddings.dtype == np.float32 and d.meta["embeddings_source"] == "array"


def test_nrg_detector_consumes_loaded_embeddings(tmp_path):
    from labelqa.detectors.nrg import NeuralRelationGraph

    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 2, n)
    emb = rng.normal(0, 0.3, (n, 8)) + np.where(y[:, None] == 1, 1.0, -1.0)
    probs = np.where(y[:, None] == np.arange(2), 0.8, 0.2)
    t = pa.table({"label": y, "pred_probs": [list(r) for r in probs], "embedding": [list(r) for r in emb]})
    pq.write_table(t, tmp_path / "d.parquet")
    d = load(tmp_path / "d.parquet")
    res = NeuralRelationGraph().detect(d)
    assert res.scores.shape == (n,)


def test_embedding_check_is_vectorised_fast():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((200_000, 100), dtype=np.float32)
    probs = np.full((200_000, 2), 0.5, dtype=np.float32)
    t0 = time.perf_counter()
    d = LabelData.from_arrays(np.zeros(200_000, np.int64), probs, embeddings=emb)
    assert time.perf_counter() - t0 < 1.5
    assert np.shares_memory(d.embeddings, emb)


# ----------------------------------------------------- Parquet embedding columns by row group
def write_groups(path, emb, row_group_size, emb_col=None):
    n = len(emb)
    flat = pa.array(np.asarray(emb, dtype=np.float32).reshape(-1))
    col = emb_col if emb_col is not None else pa.ListArray.from_arrays(
        pa.array(np.arange(0, flat.__len__() + 1, emb.shape[1], dtype=np.int32)), flat)
    probs = np.tile([[0.7, 0.3]], (n, 1))
    t = pa.table({"id": [f"r{i}" for i in range(n)], "label": np.arange(n) % 2,
                  "pred_probs": [list(r) for r in probs], "embedding": col})
    pq.write_table(t, path, row_group_size=row_group_size)
    return path


def test_row_groups_and_small_batches_give_the_column_exactly(tmp_path, monkeypatch):
    from labelqa.data import embeddings as emb_mod

    rng = np.random.default_rng(1)
    emb = rng.standard_normal((5000, 24)).astype(np.float32)
    path = write_groups(tmp_path / "g.parquet", emb, row_group_size=700)
    assert pq.ParquetFile(path).num_row_groups == 8
    monkeypatch.setattr(emb_mod, "PARQUET_BATCH_VALUES", 24 * 100)  # 100-row batches: many per group
    monkeypatch.setenv("LABELQA_THREADS", "2")
    d = load(path)
    assert d.embeddings.dtype == np.float32 and d.embeddings.flags.c_contiguous
    np.testing.assert_array_equal(d.embeddings, emb)
    direct = emb_mod.read_parquet_embeddings(path, "embedding", "w", Rows(None, None))
    np.testing.assert_array_equal(direct, emb)


def test_row_group_errors_use_global_row_numbers(tmp_path, monkeypatch):
    from labelqa.data import embeddings as emb_mod

    monkeypatch.setattr(emb_mod, "PARQUET_BATCH_VALUES", 3 * 10)
    emb = np.arange(3 * 60, dtype=np.float32).reshape(60, 3) + 1
    lists = [list(r) for r in emb]
    lists[47] = None  # in the 4th row group of 15 rows
    path = write_groups(tmp_path / "n.parquet", emb, 15, emb_col=pa.array(lists, pa.list_(pa.float32())))
    with pytest.raises(LabelqaError) as info:
        load(path, id_col="id")
    assert str(info.value).startswith(
        f"{path}, column 'embedding': 1 row without an embedding (null list): row 47 (id 'r47')")
    lists = [list(r) for r in emb]
    for i in range(30, 45):  # one whole row group with 2 dimensions instead of 3
        lists[i] = lists[i][:2]
    path = write_groups(tmp_path / "r.parquet", emb, 15, emb_col=pa.array(lists, pa.list_(pa.float32())))
    with pytest.raises(LabelqaError) as info:
        load(path)
    assert "embedding lists differ in length: row 30 has 2 but earlier rows have 3" in str(info.value)


def test_only_the_embedding_column_is_decoded_by_row_group_when_it_is_not_used_otherwise(tmp_path):
    # the embedding column named as the probability column too: read the usual way, same errors
    emb = np.full((40, 2), 0.5, dtype=np.float32)
    path = write_groups(tmp_path / "s.parquet", emb, 10)
    d = load(path, embeddings_col="pred_probs")
    np.testing.assert_array_equal(d.embeddings, d.pred_probs.astype(np.float32))
