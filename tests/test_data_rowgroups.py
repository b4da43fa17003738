"""Parquet probabilities decoded row group by row group: same data, global row numbers in errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.data import load
from labelqa.errors import LabelqaError
from tests.conftest import noisy_dataset


def write(path, labels, probs, *, row_group_size, fixed=True, ids=None):
    k = probs.shape[1]
    flat = pa.array(probs.reshape(-1))
    col = pa.FixedSizeListArray.from_arrays(flat, k) if fixed else pa.ListArray.from_arrays(
        pa.array(np.arange(0, probs.size + 1, k, dtype=np.int32)), flat)
    cols = {"label": pa.array(labels), "pred_probs": col}
    if ids is not None:
        cols["key"] = pa.array(ids)
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("fixed", [True, False])
def test_many_row_groups_load_like_one(tmp_path, fixed):
    given, _, probs, _ = noisy_dataset(n=5000, k=7, seed=5)
    one = load(write(tmp_path / "one.parquet", given, probs, row_group_size=10_000, fixed=fixed))
    many = load(write(tmp_path / "many.parquet", given, probs, row_group_size=333, fixed=fixed))
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups == 16
    assert np.array_equal(one.pred_probs, many.pred_probs) and one.pred_probs.dtype == np.float32
    assert np.array_equal(one.labels, many.labels)


def test_errors_name_global_rows(tmp_path):
    given, _, probs, _ = noisy_dataset(n=1000, k=3, seed=6)
    probs = probs.copy()
    probs[777, 1] = np.nan
    ids = [f"r{i}" for i in range(1000)]
    path = write(tmp_path / "nan.parquet", given, probs, row_group_size=100, ids=ids)
    with pytest.raises(LabelqaError, match=r"row 777 \(id 'r777'\)"):
        load(path, id_col="key")


def test_ragged_across_row_groups(tmp_path):
    given, _, probs, _ = noisy_dataset(n=300, k=3, seed=7)
    lists = [list(map(float, r)) for r in probs]
    lists[250] = lists[250] + [0.0]  # one row in the third row group has 4 items
    path = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"label": pa.array(given), "pred_probs": pa.array(lists, pa.list_(pa.float32()))}),
                   path, row_group_size=100)
    with pytest.raises(LabelqaError, match="row 250"):
        load(path)


@pytest.fixture
def two_threads(monkeypatch):
    """Row groups decoded on two threads (the parallel path needs >= 65,536 rows)."""
    monkeypatch.setenv("LABELQA_THREADS", "2")


@pytest.mark.parametrize("batch_rows", [16_384, 1_000, 7])
def test_parallel_row_groups_load_like_one(tmp_path, two_threads, monkeypatch, batch_rows):
    """Row groups on two threads, each decoded in batches (several per row group, odd sizes): same matrix."""
    from labelqa.data import columns

    monkeypatch.setattr(columns, "PARQUET_BATCH_ROWS", batch_rows)
    given, _, probs, _ = noisy_dataset(n=70_000, k=4, seed=8)
    one = load(write(tmp_path / "one.parquet", given, probs, row_group_size=100_000, fixed=False))
    many = load(write(tmp_path / "many.parquet", given, probs, row_group_size=6_000, fixed=False))
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups == 12
    assert np.array_equal(one.pred_probs, many.pred_probs)
    assert np.array_equal(one.labels, many.labels)


def test_wide_rows_decode_in_batches_sized_by_values(tmp_path, two_threads, monkeypatch):
    """Batches hold at most PARQUET_BATCH_VALUES values (wide rows: fewer rows a batch): same matrix, and
    the decoder is asked for batches of that many rows."""
    from labelqa.data import columns

    monkeypatch.setattr(columns, "PARQUET_BATCH_VALUES", 700)  # 7 classes: 100 rows a batch
    given, _, probs, _ = noisy_dataset(n=70_000, k=7, seed=10)
    path = write(tmp_path / "many.parquet", given, probs, row_group_size=6_000, fixed=False)
    asked = []
    real = pq.ParquetFile.iter_batches

    def spy(self, batch_size=65536, **kwargs):
        asked.append(batch_size)
        return real(self, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    data = load(path)
    assert set(asked) == {100}
    np.testing.assert_array_equal(data.pred_probs, probs)


def test_parallel_ragged_row_group_names_the_later_rows(tmp_path, two_threads):
    given, _, probs, _ = noisy_dataset(n=70_000, k=3, seed=9)
    wide = np.hstack([probs, np.zeros((len(probs), 1), probs.dtype)])
    path = tmp_path / "ragged.parquet"
    with pq.ParquetWriter(path, pa.schema([("label", pa.int64()), ("pred_probs", pa.list_(pa.float32()))])) as w:
        for a, part in ((0, probs[:40_000]), (40_000, wide[40_000:])):  # the second row group has 4 items a row
            flat = pa.array(part.reshape(-1))
            k = part.shape[1]
            col = pa.ListArray.from_arrays(pa.array(np.arange(0, part.size + 1, k, dtype=np.int32)), flat)
            w.write_table(pa.table({"label": pa.array(given[a: a + len(part)]), "pred_probs": col}))
    with pytest.raises(LabelqaError, match=r"row 40000 has 4 but earlier rows have 3"):
        load(path)


def test_one_row_group_is_viewed_in_place(tmp_path):
    """A single-row-group list<float32> column becomes the matrix without a copy (its base is Arrow's buffer)."""
    given, _, probs, _ = noisy_dataset(n=3000, k=5, seed=12)
    data = load(write(tmp_path / "one.parquet", given, probs, row_group_size=10_000, fixed=False))
    np.testing.assert_array_equal(data.pred_probs, probs)
    base = data.pred_probs
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert isinstance(base, pa.Buffer)


def test_parallel_batches_name_global_rows(tmp_path, two_threads, monkeypatch):
    """A null list deep inside a later row group, decoded in batches on threads, is named by its global row."""
    from labelqa.data import columns

    monkeypatch.setattr(columns, "PARQUET_BATCH_ROWS", 1_000)
    given, _, probs, _ = noisy_dataset(n=70_000, k=3, seed=13)
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, probs.size + 1, 3, dtype=np.int32)),
                                     pa.array(probs.reshape(-1)))
    mask = np.zeros(len(given), dtype=bool)
    mask[50_001] = True
    lists = pa.ListArray.from_arrays(lists.offsets, lists.values, mask=pa.array(mask))
    path = tmp_path / "null.parquet"
    pq.write_table(pa.table({"label": pa.array(given), "pred_probs": lists}), path, row_group_size=7_000)
    with pytest.raises(LabelqaError, match=r"row 50001\b"):
        load(path)


def test_checks_read_the_facts_gathered_while_decoding(tmp_path, two_threads, monkeypatch):
    """Row groups decoded on threads gather the checks' row sums and top classes on the way: no second pass
    (RowFacts.of is not called), the same matrix, and the checks still stop bad rows and a wrong class order."""
    from labelqa.data import class_order, probabilities

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the checks passed over the matrix again")

    given, _, probs, _ = noisy_dataset(n=70_000, k=5, seed=9)
    one = load(write(tmp_path / "one.parquet", given, probs, row_group_size=100_000))  # viewed in place
    monkeypatch.setattr(probabilities.RowFacts, "of", no_second_pass)
    monkeypatch.setattr(class_order, "row_top", no_second_pass)
    many = load(write(tmp_path / "many.parquet", given, probs, row_group_size=6_000))
    assert np.array_equal(one.pred_probs, many.pred_probs)
    bad = probs.copy()
    bad[65_001, 0] = -0.25
    with pytest.raises(LabelqaError, match="row 65001"):
        load(write(tmp_path / "bad.parquet", given, bad, row_group_size=6_000))
    swapped = probs[:, [1, 0, 2, 3, 4]]
    with pytest.raises(LabelqaError, match="class order"):
        load(write(tmp_path / "swapped.parquet", given, swapped, row_group_size=6_000))
