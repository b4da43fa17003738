"""labelqa.data.readers: formats by suffix, projection, and clear errors on bad files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from labelqa.data import SUPPORTED_FORMATS, read_table
from labelqa.data.readers import read_npy, read_schema, resolve_format
from labelqa.errors import LabelqaError

TABLE = pa.table(
    {
        "id": pa.array(["a", "b", "c"]),
        "label": pa.array([0, 1, 0]),
        "prob_0": pa.array([0.9, 0.2, 0.5]),
        "prob_1": pa.array([0.1, 0.8, 0.5]),
    }
)


def write(path, table=TABLE):
    """Write ``table`` to ``path`` in the format its suffix names."""
    name = path.name
    if name.endswith((".parquet", ".pq")):
        pq.write_table(table, path)
    elif name.endswith(".csv"):
        pacsv.write_csv(table, path)
    elif name.endswith(".tsv"):
        pacsv.write_csv(table, path, pacsv.WriteOptions(delimiter="\t"))
    elif name.endswith((".jsonl", ".ndjson")):
        with open(path, "w") as fh:
            for row in table.to_pylist():
                fh.write(json.dumps(row) + "\n")
    elif name.endswith((".arrow", ".feather", ".ipc")):
        feather.write_feather(table, path)
    else:
        raise AssertionError(name)
    return path


def test_supported_formats():
    assert SUPPORTED_FORMATS == ("parquet", "csv", "jsonl", "arrow")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("x.parquet", "parquet"),
        ("x.PQ", "parquet"),
        ("x.csv", "csv"),
        ("x.tsv", "csv"),
        ("x.csv.gz", "csv"),
        ("x.jsonl", "jsonl"),
        ("x.ndjson", "jsonl"),
        ("x.jsonl.bz2", "jsonl"),
        ("x.arrow", "arrow"),
        ("x.feather", "arrow"),
        ("x.ipc", "arrow"),
    ],
)
def test_format_from_suffix(name, fmt):
    assert resolve_format(name) == fmt


def test_input_format_overrides_suffix_and_accepts_aliases():
    assert resolve_format("x.csv", "parquet") == "parquet"
    assert resolve_format("x.dat", "feather") == "arrow"
    assert resolve_format("x.dat", "TSV") == "csv"
    assert resolve_format("x.dat", "ndjson") == "jsonl"


def test_unknown_suffix_and_unknown_format():
    with pytest.raises(LabelqaError, match=r"cannot tell the format of x\.dat.*--input-format"):
        resolve_format("x.dat")
    with pytest.raises(LabelqaError, match=r"unknown input format 'xlsx' -- use one of parquet, csv, jsonl, arrow"):
        resolve_format("x.csv", "xlsx")


@pytest.mark.parametrize("name", ["d.parquet", "d.pq", "d.csv", "d.tsv", "d.jsonl", "d.ndjson", "d.arrow", "d.feather"])
def test_every_format_reads_the_same_table(tmp_path, name):
    path = write(tmp_path / name)
    table = read_table(path)
    assert table.column_names == TABLE.column_names
    assert table.to_pylist() == TABLE.to_pylist()


@pytest.mark.parametrize("name", ["d.parquet", "d.csv", "d.jsonl", "d.arrow"])
def test_projection_returns_only_the_columns_asked_in_that_order(tmp_path, name):
    path = write(tmp_path / name)
    table = read_table(path, columns=["prob_1", "label", "label"])
    assert table.column_names == ["prob_1", "label"]
    assert table.column("label").to_pylist() == [0, 1, 0]


@pytest.mark.filterwarnings("ignore:Feather V1:DeprecationWarning")
def test_arrow_stream_format_and_feather_v1(tmp_path):
    with ipc.new_stream(tmp_path / "s.arrow", TABLE.schema) as writer:
        writer.write_table(TABLE)
    assert read_table(tmp_path / "s.arrow", columns=["id"]).column("id").to_pylist() == ["a", "b", "c"]
    feather.write_feather(TABLE, tmp_path / "v1.feather", version=1)
    assert read_table(tmp_path / "v1.feather").to_pylist() == TABLE.to_pylist()


def test_compressed_csv_and_input_format_override(tmp_path):
    plain = write(tmp_path / "d.csv")
    with gzip.open(tmp_path / "d.csv.gz", "wb") as fh:
        fh.write(plain.read_bytes())
    assert read_table(tmp_path / "d.csv.gz").to_pylist() == TABLE.to_pylist()
    odd = tmp_path / "d.data"
    odd.write_bytes(plain.read_bytes())
    assert read_table(odd, input_format="csv").to_pylist() == TABLE.to_pylist()


def test_csv_empty_cells_are_null_for_strings(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("label,x\na,1\n,2\n")
    assert read_table(path).column("label").to_pylist() == ["a", None]


def test_missing_file(tmp_path):
    with pytest.raises(LabelqaError, match=r"input file not found: .*nope\.parquet -- check the path"):
        read_table(tmp_path / "nope.parquet")
    with pytest.raises(LabelqaError, match="is a directory"):
        read_table(tmp_path)


@pytest.mark.parametrize("name", ["bad.parquet", "bad.arrow"])
def test_unreadable_file_names_the_format_tried(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not a table")
    fmt = "parquet" if name.endswith("parquet") else "arrow"
    with pytest.raises(LabelqaError, match=rf"cannot read .*{name} as {fmt}: .* -- .*--input-format"):
        read_table(path)


def test_csv_read_as_parquet_suggests_input_format(tmp_path):
    path = write(tmp_path / "d.csv")
    with pytest.raises(LabelqaError, match=r"as parquet.*--input-format"):
        read_table(path, input_format="parquet")


def test_missing_column_lists_the_available_ones(tmp_path):
    for name in ["d.parquet", "d.csv", "d.jsonl", "d.arrow"]:
        path = write(tmp_path / name)
        with pytest.raises(LabelqaError, match=r"no column 'nope' \(available columns: 'id', 'label', 'prob_0', 'prob_1'\)"):
            read_table(path, columns=["label", "nope"])


def test_jsonl_projection_survives_types_that_change_after_the_first_block(tmp_path):
    # The first block (1 MiB) sees integer probabilities, later rows floats:
    # the projected read falls back to a full read that infers the wider type.
    path = tmp_path / "big.jsonl"
    pad = "x" * 200
    with open(path, "w") as fh:
        for i in range(12000):
            p = [1, 0] if i < 6000 else [0.25, 0.75]
            fh.write(json.dumps({"pad": pad, "label": i % 2, "p": p, "late": None if i < 11000 else "z"}) + "\n")
    table = read_table(path, columns=["label", "p", "late"])
    assert table.column("p").type == pa.list_(pa.float64())
    assert table.column("p")[11999].as_py() == [0.25, 0.75]
    assert table.column("late")[11999].as_py() == "z"


def test_read_schema_keeps_parquet_metadata(tmp_path):
    table = TABLE.replace_schema_metadata({"labelqa.classes": json.dumps([1, 0])})
    pq.write_table(table, tmp_path / "m.parquet")
    schema = read_schema(tmp_path / "m.parquet")
    assert json.loads(schema.metadata[b"labelqa.classes"]) == [1, 0]


# ------------------------------------------------------------------ .npy


def test_read_npy_memory_maps(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "p.npy", arr)
    got = read_npy(tmp_path / "p.npy")
    assert got.dtype == np.float32 and np.array_equal(got, arr)


def test_read_npy_refuses_object_arrays(tmp_path):
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = [0.5, 0.5], [0.1, 0.9]
    np.save(tmp_path / "o.npy", arr, allow_pickle=True)
    with pytest.raises(LabelqaError, match=r"o\.npy holds Python objects \(dtype object\); refusing to unpickle"):
        read_npy(tmp_path / "o.npy")


def test_read_npy_errors(tmp_path):
    with pytest.raises(LabelqaError, match="probabilities file not found"):
        read_npy(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(LabelqaError, match=r"cannot read .*junk\.npy as \.npy"):
        read_npy(tmp_path / "junk.npy")
    np.savez(tmp_path / "z.npz", a=np.zeros((2, 2)))
    with pytest.raises(LabelqaError, match=r"\.npz archive; expected a single \.npy"):
        read_npy(tmp_path / "z.npz")


# ------------------------------------------------------------ streaming formats


def test_one_format_detection_for_the_loader_and_the_streaming_engines(tmp_path):
    assert resolve_format("d.parquet", streaming=True) == resolve_format("d.parquet") == "parquet"
    assert resolve_format("d.FEATHER", streaming=True) == "arrow"
    assert resolve_format("d.csv", "pq", streaming=True) == "parquet"
    assert resolve_format("d.csv.gz") == "csv"
    hint = " -- convert the data to Parquet, or use --engine memory"
    for path, fmt, msg in (
        ("d.csv", None, "the streaming engines read Parquet or Arrow IPC files and folders, not d.csv"),
        ("d.parquet.gz", None, "the streaming engines read Parquet or Arrow IPC files and folders, not d.parquet.gz"),
        ("d.parquet", "csv", "the streaming engines read Parquet or Arrow IPC, not 'csv'"),
        ("d.parquet", "xlsx", "the streaming engines read Parquet or Arrow IPC, not 'xlsx'"),
    ):
        with pytest.raises(LabelqaError) as info:
            resolve_format(path, fmt, streaming=True)
        assert str(info.value) == msg + hint
    with pytest.raises(LabelqaError, match=r"unknown input format 'xlsx' -- use one of parquet, csv, jsonl, arrow"):
        resolve_format("d.parquet", "xlsx")


def test_folder_format_from_its_files(tmp_path):
    (tmp_path / "part=1").mkdir()
    (tmp_path / "part=1" / "a.parquet").write_bytes(b"")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".hidden.arrow").write_bytes(b"")
    assert resolve_format(tmp_path, streaming=True) == "parquet"
    (tmp_path / "b.feather").write_bytes(b"")
    with pytest.raises(LabelqaError, match=r"the folder mixes Parquet and Arrow files -- pass --input-format"):
        resolve_format(tmp_path, streaming=True)
    assert resolve_format(tmp_path, "arrow", streaming=True) == "arrow"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LabelqaError, match=r"empty: no \.parquet or \.arrow files in the folder -- check the path"):
        resolve_format(empty, streaming=True)
