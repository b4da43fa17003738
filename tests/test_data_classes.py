"""labelqa.data.classes: given, from metadata, typed like the labels, checked, inferred."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data import LabelData
from labelqa.data.classes import (
    LabelSummary,
    classes_from_metadata,
    classes_like_labels,
    given_classes,
    given_classes_like,
    infer_classes,
    parse_classes_file,
)
from labelqa.errors import LabelqaError

P = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.25, 0.25, 0.5]])


def test_int_codes_give_classes_0_to_k_minus_1():
    d = LabelData.from_arrays([0, 1, 2, 2], P)
    assert d.classes == (0, 1, 2)
    assert d.labels.dtype == np.int64 and d.labels.tolist() == [0, 1, 2, 2]
    assert d.ids.dtype == np.int64 and d.ids.tolist() == [0, 1, 2, 3]
    assert d.meta["classes_source"] == "integer labels as class codes 0..2"
    assert d.n_rows == 4 and d.n_classes == 3


def test_int_codes_in_range_even_when_a_class_is_unused():
    assert LabelData.from_arrays([0, 0, 1, 1], P).classes == (0, 1, 2)


def test_string_labels_give_sorted_unique_classes():
    d = LabelData.from_arrays(["dog", "cat", "emu", "cat"], P)
    assert d.classes == ("cat", "dog", "emu")
    assert d.labels.tolist() == [1, 0, 2, 0]
    assert d.meta["classes_source"] == "sorted unique labels"


def test_ints_outside_range_use_sorted_unique():
    d = LabelData.from_arrays([10, 30, 20, 10], P)
    assert d.classes == (10, 20, 30) and d.labels.tolist() == [0, 2, 1, 0]


def test_int_labels_with_string_classes_match_by_str_and_keep_ints():
    d = LabelData.from_arrays([7, 3, 5, 5], P, classes=["5", "7", "3"])
    assert d.classes == (5, 7, 3) and all(type(c) is int for c in d.classes)
    assert d.labels.tolist() == [1, 2, 0, 0]


def test_string_labels_with_int_classes_become_strings():
    d = LabelData.from_arrays(["1", "0", "2", "2"], P, classes=[0, 1, 2])
    assert d.classes == ("0", "1", "2") and d.labels.tolist() == [1, 0, 2, 2]


def test_class_count_mismatch_and_duplicates():
    with pytest.raises(LabelqaError, match=r"3 probabilities per row but 2 classes from classes argument \('a', 'b'\)"):
        LabelData.from_arrays(["a", "b", "a", "a"], P, classes=["a", "b"])
    with pytest.raises(LabelqaError, match=r"duplicate classes in classes argument: 'a' \(2 times\)"):
        LabelData.from_arrays(["a", "b", "a", "a"], P, classes=["a", "b", "a"])
    with pytest.raises(LabelqaError, match=r"duplicate classes .*: 1 \(2 times\)"):
        LabelData.from_arrays([1, 2, 1, 1], P, classes=["1", 1, 2])


def test_ambiguous_classes_error_is_the_documented_one():
    msg = (
        "cannot tell which probability column belongs to which class: found 2 distinct labels "
        "but 3 probability columns -- pass --classes a,b,c or --classes-file"
    )
    with pytest.raises(LabelqaError) as info:
        LabelData.from_arrays(["a", "b", "a", "a"], P)
    assert str(info.value) == msg


def test_classes_file_lines_and_json(tmp_path):
    (tmp_path / "c.txt").write_text("cat\n\n  dog \nbird\n\n")
    assert parse_classes_file(tmp_path / "c.txt") == ["cat", "dog", "bird"]
    (tmp_path / "c.json").write_text('["b", "a"]')
    assert parse_classes_file(tmp_path / "c.json") == ["b", "a"]
    (tmp_path / "i.json").write_text("[2, 0, 1]")
    assert parse_classes_file(tmp_path / "i.json") == [2, 0, 1]


def test_classes_file_errors(tmp_path):
    with pytest.raises(LabelqaError, match="classes file not found"):
        parse_classes_file(tmp_path / "none.txt")
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(LabelqaError, match=r"lists no classes"):
        parse_classes_file(tmp_path / "e.txt")
    (tmp_path / "b.json").write_text('["a", "b"')
    with pytest.raises(LabelqaError, match=r"starts with '\[' but is not a JSON list"):
        parse_classes_file(tmp_path / "b.json")


def test_given_classes(tmp_path):
    assert given_classes(["a", "b"], None) == (["a", "b"], "--classes")
    assert given_classes("a, b,c", None) == (["a", "b", "c"], "--classes")
    (tmp_path / "c.txt").write_text("x\ny\n")
    vals, src = given_classes(None, tmp_path / "c.txt")
    assert vals == ["x", "y"] and src.startswith("classes file ")
    assert given_classes(None, None) == (None, None)
    with pytest.raises(LabelqaError, match="either --classes or --classes-file"):
        given_classes(["a"], tmp_path / "c.txt")


def test_classes_from_metadata():
    schema = pa.schema([("a", pa.int64())])
    assert classes_from_metadata(schema) is None
    assert classes_from_metadata(schema.with_metadata({"labelqa.classes": '["x", "y"]'})) == ["x", "y"]
    with pytest.raises(LabelqaError, match="not valid JSON"):
        classes_from_metadata(schema.with_metadata({"labelqa.classes": "x,y"}))
    with pytest.raises(LabelqaError, match="must be a non-empty JSON list"):
        classes_from_metadata(schema.with_metadata({"labelqa.classes": '{"a": 1}'}))


def test_classes_take_the_labels_type():
    assert classes_like_labels(["3", 1, 2.0, True, "03", "cat"], pa.int64()) == (3, 1, 2, 1, "03", "cat")
    assert classes_like_labels([0, "a", 1.5], pa.string()) == ("0", "a", "1.5")


def test_given_classes_are_checked_after_typing_and_against_k():
    assert given_classes_like(["b", "a"], pa.string(), 2, "--classes", "w") == ("b", "a")
    assert given_classes_like("2,0,1", pa.int64(), 3, "--classes", "w") == (2, 0, 1)
    with pytest.raises(LabelqaError, match=r"duplicate classes in --classes: 1 \(2 times\)"):
        given_classes_like(["1", 1], pa.int64(), 2, "--classes", "w")
    with pytest.raises(LabelqaError, match=r"^w: 3 probabilities per row but 2 classes from --classes \('a', 'b'\)"):
        given_classes_like(["a", "b"], pa.string(), 3, "--classes", "w")


def _batches(values, cuts):
    bounds = [0, *sorted(cuts), len(values)]
    return [values.slice(a, b - a) for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.lists(st.integers(-2, 6), min_size=1, max_size=30),
                 st.lists(st.sampled_from(["ant", "bee", "cat", "dog"]), min_size=1, max_size=30)),
       st.integers(1, 6), st.lists(st.integers(0, 30), max_size=4))
def test_summary_over_batches_infers_what_the_whole_column_gives(labels, k, cuts):
    values = pa.array(labels, pa.int64() if isinstance(labels[0], int) else pa.string())
    summary = LabelSummary()
    for part in _batches(values, [c for c in cuts if c <= len(labels)]):
        summary.update(part)
    try:
        expected = infer_classes(values, k)
    except LabelqaError as exc:
        with pytest.raises(LabelqaError) as info:
            summary.classes(k, integers=pa.types.is_integer(values.type))
        assert str(info.value) == str(exc)
    else:
        assert summary.classes(k, integers=pa.types.is_integer(values.type)) == expected


def test_summary_of_mixed_item_batches_is_a_summary_of_strings():
    """Delimited label sets: a batch whose names all spell integers splits to ints; the dataset is strings."""
    summary = LabelSummary().update(pa.array([10, 2])).update(pa.array(["cat", "dog"]))
    assert summary.any_strings and summary.count == 4
    assert summary.classes(4, integers=False) == (("10", "2", "cat", "dog"), "sorted unique labels")
    assert LabelSummary().update(pa.array([], pa.int64())).count == 0
