"""CSV written with minimal quoting reads back as the same text, and spells values as pyarrow does."""

from __future__ import annotations

import datetime

import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data.csvwrite import BATCH_ROWS, write_csv


def read_as_text(path, names):
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False))


def test_only_cells_that_need_quotes_are_quoted(tmp_path):
    table = pa.table({"zip": ["00003", "a,b", 'say "hi"', "two\nlines", "1e5"], "n": [1, 2, None, 4, 5]})
    write_csv(table, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == (
        'zip,n\n00003,1\n"a,b",2\n"say ""hi""",\n"two\nlines",4\n1e5,5\n')


def test_values_are_spelled_as_pyarrows_writer_spells_them(tmp_path):
    table = pa.table({
        "f": [1e5, 1e-7, 0.1, float("nan")], "f32": pa.array([0.1, 1, 2, 3], pa.float32()),
        "i": pa.array([1, -2, 3, 4], pa.int8()), "b": [True, False, None, True],
        "ts": pa.array([datetime.datetime(2020, 1, 1, 1, 2, 3, 456789)] * 4),
        "d": pa.array([datetime.date(2020, 1, 2)] * 4), "dec": pa.array([1, 2, 3, 4], pa.decimal128(5, 2)),
        "cat": pa.array(["u", "v", "u", None]).dictionary_encode(),
    })
    write_csv(table, tmp_path / "ours.csv")
    pacsv.write_csv(table, tmp_path / "pyarrow.csv")
    ours = (tmp_path / "ours.csv").read_text().splitlines()
    theirs = [line.replace('"', "") for line in (tmp_path / "pyarrow.csv").read_text().splitlines()]
    assert ours == theirs


def test_many_batches_and_sliced_tables(tmp_path):
    n = BATCH_ROWS * 2 + 7
    table = pa.table({"id": [f"{i:07d}" for i in range(n)], "x": list(range(n))}).slice(3, n - 5)
    write_csv(table, tmp_path / "t.csv")
    back = read_as_text(tmp_path / "t.csv", ["id", "x"])
    assert back.column("id").to_pylist() == table.column("id").to_pylist()
    assert back.column("x").to_pylist() == [str(v) for v in table.column("x").to_pylist()]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), min_size=1, max_size=20))
def test_any_text_reads_back_exactly(tmp_path_factory, rows):
    rows = [(a.replace("\r", ""), b.replace("\r", "")) for a, b in rows]  # pyarrow reads a lone CR as a line end
    rows = [(a or "x", b or "y") for a, b in rows]
    table = pa.table({"a": [a for a, _ in rows], "b,c": [b for _, b in rows]})
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    write_csv(table, path)
    back = read_as_text(path, ["a", "b,c"])
    assert back.column_names == ["a", "b,c"]
    assert back.to_pylist() == table.to_pylist()
