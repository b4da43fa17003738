"""labelqa.data.source: Parquet/Arrow files and folders as validated batches, with the loader's checks."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import labelqa
from labelqa.data.source import Source, open_source
from labelqa.errors import LabelqaError

P = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)


def write(path, labels, probs=P, **extra):
    pq.write_table(pa.table({"label": labels, "pred_probs": pa.array(list(probs)), **extra}), path)
    return path


def test_import_labelqa_does_not_import_the_source_or_pyarrow_dataset():
    code = "import sys, labelqa; print('labelqa.data.source' in sys.modules, 'pyarrow.dataset' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_source_interface_and_pickling(tmp_path):
    path = write(tmp_path / "d.parquet", ["b", "a", "a", "b", "a", "b"], key=[f"k{i}" for i in range(6)])
    src = open_source(path, id_col="key")
    assert (src.path, src.fmt, src.kind, src.columns, src.task, src.multilabel) == (
        str(path), "parquet", "column", ["label", "key", "pred_probs"], "multiclass", False)
    assert (src.classes, src.n_classes, src.n_rows, src.prob_dtype()) == (("a", "b"), 2, 6, np.float32)
    assert src.meta["classes_source"] == "sorted unique labels"
    copy = pickle.loads(pickle.dumps(src))
    (off, t), = list(src.tables(4, ["label"]))[1:]
    assert (off, t.num_rows, t.column_names) == (4, 2, ["label"])
    for s in (src, copy):
        batches = [s.decode(t, off) for off, t in s.tables(4)]
        assert [b.offset for b in batches] == [0, 4] and batches[1].positions.tolist() == [4, 5]
        assert np.concatenate([b.labels for b in batches]).tolist() == [1, 0, 0, 1, 0, 1]
        assert batches[1].ids.tolist() == ["k4", "k5"] and batches[1].probs.dtype == np.float32


def test_batches_name_global_rows_and_check_in_the_loaders_order(tmp_path):
    """A batch holding a null label and a null probability list fails as load() does: probabilities first."""
    n = 3000
    rows = [list(P[i % 6]) for i in range(n)]
    rows[2500] = None
    labels = [i % 2 for i in range(n)]
    labels[2400] = None
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"label": labels, "pred_probs": pa.array(rows, pa.list_(pa.float32())),
                             "id": np.arange(n) + 10}), path)
    with pytest.raises(LabelqaError) as mem:
        labelqa.load(path, id_col="id", classes=[0, 1])
    with pytest.raises(LabelqaError) as early:  # the class-order check decodes the first rows: same message
        open_source(path, id_col="id", classes=[0, 1])
    assert str(early.value) == str(mem.value)
    src = open_source(path, id_col="id", classes=[0, 1], trust_class_order=True)
    with pytest.raises(LabelqaError) as got:
        [src.decode(t, off) for off, t in src.tables(1000)]
    assert str(got.value) == str(mem.value)
    assert "row 2500 (id 2510)" in str(got.value) and "without probabilities" in str(got.value)


def test_renormalize_counts_rows_per_batch(tmp_path):
    path = write(tmp_path / "d.parquet", [0, 1, 0, 1, 0, 1], probs=P * np.float32(2))
    src = open_source(path, renormalize=True)
    batches = [src.decode(t, off, validate=False) for off, t in src.tables(4)]
    assert [b.renormalized_rows for b in batches] == [4, 2]
    np.testing.assert_allclose(np.concatenate([b.probs for b in batches]), P, rtol=1e-6)


def test_folders_arrow_files_and_their_errors(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    feather.write_feather(pa.table({"label": [0, 1, 1], "pred_probs": pa.array(list(P[:3]))}), folder / "a.arrow")
    feather.write_feather(pa.table({"label": [0, 0, 1], "pred_probs": pa.array(list(P[3:]))}), folder / "b.arrow")
    src = open_source(folder)
    assert (src.fmt, src.n_rows, src.classes) == ("arrow", 6, (0, 1))
    with pytest.raises(LabelqaError, match=r"^input file not found: .*nope -- check the path"):
        open_source(tmp_path / "nope")
    write(tmp_path / "empty.parquet", pa.array([], pa.int64()), probs=np.zeros((0, 2), np.float32))
    with pytest.raises(LabelqaError, match=r"empty\.parquet: no rows -- the input has no data rows"):
        open_source(tmp_path / "empty.parquet")
    with pytest.raises(LabelqaError, match=r"^unknown task 'x'"):
        open_source(tmp_path / "empty.parquet", task="x")


ABANDON_IPC_SCANS = """
import sys
import numpy as np, pyarrow as pa, pyarrow.feather as feather
from labelqa.data.source import open_dataset, scan_batches
path = sys.argv[1]
rng = np.random.default_rng(0)
feather.write_feather(pa.table({"label": rng.integers(0, 3, 1500), "pred_probs": pa.array(list(rng.random((1500, 3))))}),
                      path, chunksize=200)
for _ in range(int(sys.argv[2])):
    for batch in scan_batches(open_dataset(path, "arrow"), "arrow", ["label"], 512):
        break  # stop after the first batch, as the K probe and the class-order check do
print("done")
"""


def test_arrow_ipc_scans_stopped_early_do_not_crash(tmp_path):
    """pyarrow's IPC dataset scanner crashed (SIGSEGV) when a scan was abandoned early; run in a child process so a
    crash fails this test instead of the whole run."""
    done = subprocess.run([sys.executable, "-c", ABANDON_IPC_SCANS, str(tmp_path / "a.arrow"), "3000"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "done", (done.returncode, done.stderr[-2000:])


def test_arrow_ipc_batches_in_order_with_partitions_and_missing_columns(tmp_path):
    """IPC folders read synchronously keep row order, fill hive partition columns and null columns a file lacks."""
    folder = tmp_path / "ds"
    (folder / "split=a").mkdir(parents=True)
    (folder / "split=b").mkdir(parents=True)
    feather.write_feather(pa.table({"label": [0, 1, 1, 0, 1], "note": ["x", "y", "z", "u", "v"]}),
                          folder / "split=a" / "p.arrow", chunksize=2)
    feather.write_feather(pa.table({"label": [1, 0]}), folder / "split=b" / "q.arrow")
    from labelqa.data.source import open_dataset, scan_batches

    dataset = open_dataset(str(folder), "arrow")
    batches = list(scan_batches(dataset, "arrow", ["label", "split", "note"], 1))
    assert all(b.num_rows == 1 for b in batches)
    got = pa.Table.from_batches(batches)
    assert got.column("label").to_pylist() == [0, 1, 1, 0, 1, 1, 0]
    assert got.column("split").to_pylist() == ["a"] * 5 + ["b"] * 2
    assert got.column("note").to_pylist() == ["x", "y", "z", "u", "v", None, None]


@pytest.mark.parametrize("readers", [2, 3])
@pytest.mark.parametrize("ahead", ["all", "small", "none"])
def test_parquet_row_groups_read_at_once_come_in_dataset_order(tmp_path, monkeypatch, readers, ahead):
    """Row groups of a folder of Parquet files read on several threads (all of them, the small ones only, or none:
    a row group over READ_AHEAD_BYTES is read alone): the batches of one reader, in order; a scan stopped early
    leaves no reading thread behind."""
    import threading

    import labelqa.data.source as source
    from labelqa.data.source import open_dataset, scan_batches

    folder = tmp_path / "ds"
    folder.mkdir()
    rng = np.random.default_rng(4)
    start = 0
    for i, n in enumerate((1_000, 37, 2_500)):  # row groups of 300 rows, and a file smaller than one
        labels = np.arange(start, start + n)
        probs = rng.random((n, 3)).astype(np.float32)
        pq.write_table(pa.table({"label": labels, "pred_probs": pa.array(list(probs))}), folder / f"p{i}.parquet",
                       row_group_size=300)
        start += n
    dataset = open_dataset(str(folder), "parquet")
    full = pq.ParquetFile(folder / "p0.parquet").metadata.row_group(0).total_byte_size  # a row group of 300 rows
    limit = {"all": source.READ_AHEAD_BYTES, "small": full - 1, "none": 0}[ahead]
    monkeypatch.setattr(source, "READ_AHEAD_BYTES", limit)
    one = list(scan_batches(dataset, "parquet", ["label", "pred_probs"], 128))
    many = list(scan_batches(dataset, "parquet", ["label", "pred_probs"], 128, readers=readers))
    assert [b.num_rows for b in many] == [b.num_rows for b in one] and len(one) > 12
    assert pa.Table.from_batches(many).equals(pa.Table.from_batches(one))
    assert pa.Table.from_batches(many).column("label").to_pylist() == list(range(start))
    before = threading.active_count()
    for _ in range(5):
        for i, _batch in enumerate(scan_batches(dataset, "parquet", ["label"], 128, readers=readers)):
            if i == 3:
                break
    assert threading.active_count() == before


@pytest.mark.parametrize("value_type", [pa.float32(), pa.float64()])
def test_fixed_size_probability_lists_give_k_and_dtype_without_reading_a_row(tmp_path, monkeypatch, value_type):
    """A fixed-size list of floats says K and the dtype in its type: open_source reads no row group for them
    (with the class order trusted, none at all); a null list is then reported by the first pass that decodes it."""
    import labelqa.data.source as source

    probs = pa.FixedSizeListArray.from_arrays(pa.array(P.reshape(-1), type=value_type), 2)
    rows = probs.to_pylist()
    rows[4] = None
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"label": [0, 1, 0, 0, 1, 1], "pred_probs": pa.array(rows, type=probs.type)}), path)
    reads = []
    scan = source.scan_batches
    monkeypatch.setattr(source, "scan_batches", lambda *a, **k: (reads.append(a[2]), scan(*a, **k))[1])
    src = open_source(path, classes=["x", "y"], trust_class_order=True)
    assert reads == [] and src.n_classes == 2 and src.prob_dtype() == np.dtype(value_type.to_pandas_dtype())
    with pytest.raises(LabelqaError, match="row 4"):
        [src.decode(t, off) for off, t in src.tables(3)]
    variable = write(tmp_path / "v.parquet", [0, 1, 0, 0, 1, 1])  # list<float>: K read from the first rows
    reads.clear()
    assert open_source(variable, classes=["x", "y"], trust_class_order=True).n_classes == 2
    assert reads == [["pred_probs"]]
