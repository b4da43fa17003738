"""labelqa.data.rows: how messages name rows (with ids and global offsets), values and places."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from labelqa.data.rows import Rows, Where, count_rows, format_number, format_values, py_scalar


def test_rows_name_the_row_and_the_id_only_with_an_id_column():
    ids = pa.chunked_array([["a", "b"], ["c", "d"]])
    assert Rows(ids, "key").one(2) == "row 2 (id 'c')"
    assert Rows(ids, None).one(2) == "row 2"  # ids without a column name are not shown
    assert Rows().many([0, 3, 9]) == "row 0; row 3; row 9"
    assert Rows().many(range(8), lambda i: f"sum {i}") == (
        "row 0: sum 0; row 1: sum 1; row 2: sum 2; row 3: sum 3; row 4: sum 4; and 3 more")


def test_offset_names_global_rows_with_the_batch_ids():
    batch_ids = np.array([100, 101, 102])
    rows = Rows(batch_ids, "id", offset=4096)
    assert rows.one(1) == "row 4097 (id 101)"
    assert rows.many([0, 2]) == "row 4096 (id 100); row 4098 (id 102)"


def test_slice_names_rows_as_the_whole_does():
    for ids in (np.arange(50, 60), pa.chunked_array([list(range(50, 55)), list(range(55, 60))]), None):
        whole = Rows(ids, "id" if ids is not None else None, offset=1000)
        part = whole.slice(4, 3)
        assert [part.one(i) for i in range(3)] == [whole.one(4 + i) for i in range(3)]
        assert part.slice(1, 2).one(1) == whole.one(6)


def test_counts_numbers_and_values():
    assert count_rows(1) == "1 row" and count_rows(0) == "0 rows"
    assert format_number(0.80000001) == "0.8" and format_number(float("nan")) == "nan"
    assert format_values(["a", np.int64(3), pa.scalar(2.5)]) == "'a', 3, 2.5"
    assert format_values(range(12), limit=3) == "0, 1, 2, ... (9 more)"
    assert py_scalar(np.float32(0.5)) == 0.5 and type(py_scalar(np.int64(1))) is int


def test_where_names_places_from_meta():
    w = Where("d.parquet", "y", "key", {"pred_probs_source": "column p", "embeddings_source": "file e.npy"})
    assert (w.labels, w.ids, w.probs, w.embeddings) == (
        "d.parquet, column 'y'", "d.parquet, column 'key'", "d.parquet, column 'p'", "e.npy")
    assert w.cell(2) == "item 2"
    cols = Where("d.csv", "y", None, {"pred_probs_source": "prob_* columns", "pred_probs_columns": ["prob_a", "prob_b"]})
    assert cols.probs == "d.csv, prob_* columns" and cols.cell(1) == "column 'prob_b'" and cols.ids == "d.csv, ids"
    arrays = Where(None, "label", None, {})
    assert (arrays.labels, arrays.probs, arrays.embeddings, arrays.cell(0)) == ("labels", "pred_probs", "embeddings",
                                                                               "column 0")
