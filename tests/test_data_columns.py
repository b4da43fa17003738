"""labelqa.data.columns: probability lists and prob_<class> columns to matrices."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data.columns import (
    dense_list_view,
    find_prob_columns,
    list_column_to_matrix,
    order_prob_columns,
    prob_columns_to_matrix,
)
from labelqa.data.rows import Rows
from labelqa.errors import LabelqaError

P = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.25, 0.25, 0.5]])
WHERE = "d.parquet, column 'pred_probs'"


def as_list_column(probs, list_type="list", value_type=pa.float64(), chunks=1):
    probs = np.asarray(probs)
    flat = pa.array(probs.reshape(-1), type=value_type)
    k = probs.shape[1]
    if list_type == "fixed":
        arr = pa.FixedSizeListArray.from_arrays(flat, k)
    else:
        offsets = pa.array(np.arange(0, probs.size + 1, k), type=pa.int64() if list_type == "large" else pa.int32())
        cls = pa.LargeListArray if list_type == "large" else pa.ListArray
        arr = cls.from_arrays(offsets, flat)
    bounds = np.linspace(0, len(arr), chunks + 1).astype(int)
    return pa.chunked_array([arr[a:b] for a, b in zip(bounds[:-1], bounds[1:])], type=arr.type)


# --------------------------------------------------------------- list columns


@pytest.mark.parametrize("list_type", ["list", "large", "fixed"])
@pytest.mark.parametrize("chunks", [1, 3])
def test_list_types_and_chunking_give_the_same_matrix(list_type, chunks):
    got = list_column_to_matrix(as_list_column(P, list_type, chunks=chunks), WHERE, Rows())
    assert got.dtype == np.float64 and got.shape == P.shape
    np.testing.assert_array_equal(got, P)


def test_float32_items_stay_float32_and_ints_become_float64():
    got = list_column_to_matrix(as_list_column(P, value_type=pa.float32()), WHERE, Rows())
    assert got.dtype == np.float32
    ints = list_column_to_matrix(pa.chunked_array([pa.array([[1, 0], [0, 1]])]), WHERE, Rows())
    assert ints.dtype == np.float64 and ints.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_sliced_list_array_respects_offsets():
    arr = as_list_column(P).chunk(0)[1:3]
    np.testing.assert_array_equal(list_column_to_matrix(pa.chunked_array([arr]), WHERE, Rows()), P[1:3])


def test_ragged_lists_name_the_first_bad_row_and_its_length():
    col = pa.chunked_array([pa.array([[0.5, 0.5], [0.2, 0.8], [1.0], [0.1, 0.9], [0.3, 0.3, 0.4]])])
    with pytest.raises(LabelqaError, match=r"row 2 has 1 but most rows have 2 \(2 rows in all: row 2: 1 items; row 4: 3 items\)"):
        list_column_to_matrix(col, WHERE, Rows())


def test_ragged_row_message_includes_the_id():
    col = pa.chunked_array([pa.array([[0.5, 0.5], [1.0], [0.2, 0.8]])])
    with pytest.raises(LabelqaError, match=r"row 1 \(id 'b'\) has 1 but most rows have 2"):
        list_column_to_matrix(col, WHERE, Rows(np.array(["a", "b", "c"], dtype=object), "id"))


def test_null_list_and_null_item_name_the_row():
    col = pa.chunked_array([pa.array([[0.5, 0.5], None, [0.2, 0.8]])])
    with pytest.raises(LabelqaError, match=r"column 'pred_probs': 1 row without probabilities \(null list\): row 1"):
        list_column_to_matrix(col, WHERE, Rows())
    col = pa.chunked_array([pa.array([[0.5, 0.5], [0.2, 0.8], [0.3, None]])])
    with pytest.raises(LabelqaError, match=r"1 row with a null probability: row 2 item 1"):
        list_column_to_matrix(col, WHERE, Rows())


def test_wrong_column_types():
    with pytest.raises(LabelqaError, match=r"column has type double; expected a list of probabilities per row"):
        list_column_to_matrix(pa.chunked_array([pa.array([0.5, 0.1])]), WHERE, Rows())
    with pytest.raises(LabelqaError, match=r"list items have type string; expected numbers"):
        list_column_to_matrix(pa.chunked_array([pa.array([["a", "b"]])]), WHERE, Rows())


def test_json_list_strings_are_parsed_vectorised():
    col = pa.chunked_array([pa.array(["[0.1, 0.9]", " [ 1e-3,0.999 ] ", "[0.5,0.5]", "[NaN, 1]"])])
    got = list_column_to_matrix(col, "d.csv, column 'pred_probs'", Rows())
    assert got[:3].tolist() == [[0.1, 0.9], [0.001, 0.999], [0.5, 0.5]]
    assert np.isnan(got[3, 0])


def test_json_list_strings_in_large_sliced_chunks():
    first = pa.array(["[0.1, 0.9]", "[0.2, 0.8]", None], pa.large_string())[1:2]
    col = pa.chunked_array([first, pa.array(["[0.3,0.7]"], pa.large_string())])
    got = list_column_to_matrix(col, "x", Rows())
    assert got.tolist() == [[0.2, 0.8], [0.3, 0.7]]


def test_bad_json_list_strings_name_the_row():
    col = pa.chunked_array([pa.array(["[0.1, 0.9]", "[0.1; 0.9]", "oops"])])
    with pytest.raises(LabelqaError, match=r"row 1 does not hold a JSON list of numbers: '\[0\.1; 0\.9\]' \(2 rows in all\)"):
        list_column_to_matrix(col, "d.csv, column 'pred_probs'", Rows())
    col = pa.chunked_array([pa.array(["[0.1, 0.9]", "[]"])])
    with pytest.raises(LabelqaError, match=r"row 1 has 0 but most rows have 2"):
        list_column_to_matrix(col, "d.csv, column 'pred_probs'", Rows())
    # a cell smuggling a second JSON line is rejected, not split into two rows
    col = pa.chunked_array([pa.array(["[0.1, 0.9]", '[0.1, 0.9]}\n{"p": [0.5, 0.5]'])])
    with pytest.raises(LabelqaError, match=r"row 1 does not hold a JSON list of numbers"):
        list_column_to_matrix(col, "d.csv, column 'pred_probs'", Rows())
    col = pa.chunked_array([pa.array(["[0.1, 0.9]", None])])
    with pytest.raises(LabelqaError, match=r"null list\): row 1"):
        list_column_to_matrix(col, "d.csv, column 'pred_probs'", Rows())


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda n: st.integers(2, 6).flatmap(
            lambda k: st.lists(
                st.lists(st.floats(0, 1, allow_nan=False, width=32), min_size=k, max_size=k), min_size=n, max_size=n
            )
        )
    )
)
def test_json_strings_round_trip_exactly(rows):
    col = pa.chunked_array([pa.array([json.dumps(r) for r in rows])])
    got = list_column_to_matrix(col, "x", Rows())
    np.testing.assert_array_equal(got, np.array(rows, dtype=np.float64))


# ---------------------------------------------------------- prob_<class> columns


def test_find_and_order_prob_columns():
    names = ["id", "prob_dog", "label", "prob_cat", "prob_", "prob_bird"]
    found = find_prob_columns(names, exclude=["label", "id"])
    assert found == ["prob_dog", "prob_cat", "prob_bird"]
    assert order_prob_columns(found, None, "d.csv", "x") == found
    assert order_prob_columns(found, ["cat", "bird", "dog"], "d.csv", "--classes") == ["prob_cat", "prob_bird", "prob_dog"]


def test_order_prob_columns_mismatch_names_missing_and_extra():
    with pytest.raises(LabelqaError, match=r"d\.csv: 2 prob_\* columns but 2 classes from --classes: no column 'prob_cow'; column 'prob_dog' matches no class"):
        order_prob_columns(["prob_cat", "prob_dog"], ["cat", "cow"], "d.csv", "--classes")
    with pytest.raises(LabelqaError, match=r"2 prob_\* columns but 3 classes"):
        order_prob_columns(["prob_0", "prob_1"], [0, 1, 2], "d.csv", "--classes")


def test_prob_columns_to_matrix_dtype_and_order():
    table = pa.table({"prob_b": pa.array([0.1, 0.7], pa.float32()), "prob_a": pa.array([0.9, 0.3], pa.float32())})
    got = prob_columns_to_matrix(table, ["prob_a", "prob_b"], "d.parquet", Rows())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.9, 0.1], [0.3, 0.7]], rtol=1e-6)
    mixed = table.set_column(0, "prob_b", pa.array([0.1, 0.7]))
    assert prob_columns_to_matrix(mixed, ["prob_a", "prob_b"], "d.parquet", Rows()).dtype == np.float64


def test_prob_columns_nulls_and_types_name_column_and_row():
    table = pa.table({"prob_a": [0.9, None, 0.5], "prob_b": [0.1, 0.2, 0.5]})
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'prob_a': 1 row without a probability \(empty or null\): row 1 \(id 11\)"):
        prob_columns_to_matrix(table, ["prob_a", "prob_b"], "d.csv", Rows(np.array([10, 11, 12]), "id"))
    table = pa.table({"prob_a": ["0.9", "n/a"], "prob_b": [0.1, 0.2]})
    with pytest.raises(LabelqaError, match=r"column 'prob_a': probabilities have type string; expected numbers"):
        prob_columns_to_matrix(table, ["prob_a", "prob_b"], "d.csv", Rows())


# ---------------------------------------------------------------- dense_list_view


def _list_array(rows, list_type):
    return pa.array(rows, list_type)


@pytest.mark.parametrize("list_type", [pa.list_(pa.float32()), pa.large_list(pa.float64()),
                                       pa.list_(pa.float64(), 3)])
def test_dense_list_view_is_the_matrix_zero_copy(list_type):
    rows = [[0.1, 0.2, 0.7], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4]]
    arr = _list_array(rows, list_type)
    view = dense_list_view(arr)
    assert view is not None and view.shape == (4, 3)
    np.testing.assert_array_equal(view, np.array(rows, dtype=view.dtype))
    assert view.dtype == (np.float32 if list_type.value_type == pa.float32() else np.float64)
    # a slice (non-zero offset) views the right rows
    np.testing.assert_array_equal(dense_list_view(arr.slice(1, 2)), np.array(rows[1:3], dtype=view.dtype))
    assert np.shares_memory(view, np.frombuffer(arr.values.buffers()[1], dtype=view.dtype))


@pytest.mark.parametrize("rows, list_type", [
    ([[0.5, 0.5], [1.0]], pa.list_(pa.float32())),  # ragged
    ([[0.5, 0.5], None], pa.list_(pa.float32())),  # null list
    ([[0.5, None], [0.5, 0.5]], pa.list_(pa.float32())),  # null item
    ([[1, 0], [0, 1]], pa.list_(pa.int64())),  # not floats
    ([[], []], pa.list_(pa.float32())),  # empty lists
])
def test_dense_list_view_declines_what_needs_the_checked_path(rows, list_type):
    assert dense_list_view(pa.array(rows, list_type)) is None
    assert dense_list_view(pa.array([0.1, 0.2])) is None  # not a list at all


# ------------------------------------------------------- --pred-probs-cols patterns
def test_pattern_classes_are_the_part_the_star_matched():
    from labelqa.data.columns import match_prob_columns

    names = ["id", "label", "p_cat", "p_dog", "proba_0", "proba_1"]
    assert match_prob_columns(names, ["p_*"], "d", exclude=["label"]) == (["p_cat", "p_dog"], ["cat", "dog"])
    assert match_prob_columns(names, ["proba_*"], "d") == (["proba_0", "proba_1"], ["0", "1"])
    # a pattern without *: the column name is the class; the first pattern a column matches decides
    assert match_prob_columns(names, ["p_cat", "p_d?g"], "d") == (["p_cat", "p_dog"], ["p_cat", "p_dog"])
    assert match_prob_columns(["score_a_v2", "score_b_v2"], ["score_*_v2"], "d")[1] == ["a", "b"]
    with pytest.raises(LabelqaError, match=r"no column matches 'q_\*' of --pred-probs-cols"):
        match_prob_columns(names, ["p_c*", "q_*"], "d")
    with pytest.raises(LabelqaError, match="'p_' gives an empty class name"):
        match_prob_columns(["p_", "p_a"], ["p_*"], "d")
    with pytest.raises(LabelqaError, match="columns 'a_x' and 'b_x' both give class 'x'"):
        match_prob_columns(["a_x", "b_x"], ["a_*", "b_*"], "d")


@given(st.lists(st.text("abcxyz019_", min_size=1, max_size=6), min_size=2, max_size=6, unique=True),
       st.sampled_from(["p_", "proba_", "", "m1."]), st.sampled_from(["", "_v2", ".prob"]))
@settings(max_examples=60, deadline=None)
def test_pattern_round_trip(classes, prefix, suffix):
    """Columns prefix + class + suffix, chosen by prefix*suffix, give back the classes, in column order."""
    from labelqa.data.columns import match_prob_columns

    cols = [prefix + c + suffix for c in classes]
    pattern = prefix.replace("[", "[[]") + "*" + suffix
    got_cols, got_classes = match_prob_columns(["label", *cols], [pattern], "d", exclude=["label"])
    assert got_cols == cols and got_classes == classes


def _patterned_file(tmp_path, order=("dog", "cat", "bird")):
    from tests.conftest import noisy_dataset

    given_codes, _, probs, _ = noisy_dataset(n=600, k=3, seed=2)
    names = np.array(["bird", "cat", "dog"])
    cols = {"label": names[given_codes]}
    cols.update({f"p_{c}": probs[:, list(names).index(c)] for c in order})
    path = tmp_path / "patterned.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table(cols), path)
    renamed = tmp_path / "prob.parquet"
    pq.write_table(pa.table({"label": names[given_codes], **{f"prob_{c}": probs[:, i] for i, c in enumerate(names)}}),
                   renamed)
    return path, renamed


def test_scan_fix_and_evaluate_read_patterned_probability_columns(tmp_path, monkeypatch):
    """p_<class> columns by pattern give what prob_<class> columns give, for scan (both engines), fix and
    evaluate; --classes reorders the matched columns."""
    import labelqa
    from labelqa.cli.app import main

    path, renamed = _patterned_file(tmp_path)
    want = labelqa.scan(renamed)
    for kwargs in ({"pred_probs_cols": "p_*"}, {"pred_probs_cols": ["p_*"], "classes": ["bird", "cat", "dog"]},
                   {"pred_probs_cols": "p_*", "engine": "stream"}):
        got = labelqa.scan(path, **kwargs)
        assert sorted(got.classes) == ["bird", "cat", "dog"]
        assert got.n_issues == want.n_issues > 0
        top_got, top_want = got.top_issues(20), want.top_issues(20)
        assert top_got.column("id").to_pylist() == top_want.column("id").to_pylist()
        np.testing.assert_allclose(top_got.column("label_quality").to_numpy(),
                                   top_want.column("label_quality").to_numpy(), rtol=1e-6)
    monkeypatch.chdir(tmp_path)
    assert main(["scan", str(path), "--pred-probs-cols", "p_*", "-q"]) == 0
    assert main(["fix", str(path), "--pred-probs-cols", "p_*", "-o", str(tmp_path / "fixed.parquet"), "-q"]) == 0
    assert main(["evaluate", str(path), "--pred-probs-cols", "p_*", "--inject-noise", "uniform:0.1", "-q"]) == 0
    with pytest.raises(LabelqaError, match="lists 2 classes"):
        labelqa.scan(path, pred_probs_cols="p_*", classes=["cat", "dog"])
    with pytest.raises(LabelqaError, match="without --pred-probs-col"):
        labelqa.scan(path, pred_probs_cols="p_*", pred_probs_col="x")


def test_no_probabilities_says_how_to_make_them(tmp_path, monkeypatch, capsys):
    import pyarrow.parquet as pq

    from labelqa.cli.app import main

    path = tmp_path / "plain data.parquet"
    pq.write_table(pa.table({"y": ["a", "b"] * 5, "f_0": np.arange(10.0)}), path)
    assert main(["scan", str(path), "--label-col", "y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"make them with `labelqa train '{path}' --label-col y --feature-cols" in err
