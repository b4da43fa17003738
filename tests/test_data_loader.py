"""labelqa.data.load: real files in every format, class resolution, provenance, errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.data import LabelData, load
from labelqa.errors import LabelqaError

CLASSES = ["ant", "bee", "cat"]
IDS = ["r0", "r1", "r2", "r3", "r4"]
LABELS = ["bee", "ant", "cat", "cat", "bee"]
PROBS = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.0, 0.25, 0.75], [0.2, 0.2, 0.6], [0.05, 0.9, 0.05]])


def list_array(probs, value_type=pa.float64()):
    probs = np.asarray(probs)
    offsets = pa.array(np.arange(0, probs.size + 1, probs.shape[1]), pa.int32())
    return pa.ListArray.from_arrays(offsets, pa.array(probs.reshape(-1), value_type))


def list_table(labels=LABELS, probs=PROBS, ids=IDS, **extra):
    cols = {"id": pa.array(ids), "label": pa.array(labels), "pred_probs": list_array(probs)}
    cols.update(extra)
    return pa.table(cols)


def prob_table(labels=LABELS, probs=PROBS, ids=IDS, classes=CLASSES, **extra):
    cols = {"id": pa.array(ids), "label": pa.array(labels)}
    cols.update({f"prob_{c}": pa.array(np.asarray(probs)[:, j]) for j, c in enumerate(classes)})
    cols.update(extra)
    return pa.table(cols)


def write_jsonl(path, table):
    with open(path, "w") as fh:
        for row in table.to_pylist():
            fh.write(json.dumps(row) + "\n")
    return path


def write_any(path, table):
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(table, path)
    elif name.endswith(".csv"):
        pacsv.write_csv(table, path)
    elif name.endswith(".tsv"):
        pacsv.write_csv(table, path, pacsv.WriteOptions(delimiter="\t"))
    elif name.endswith(".jsonl"):
        write_jsonl(path, table)
    elif name.endswith(".stream.arrow"):
        with ipc.new_stream(path, table.schema) as writer:
            writer.write_table(table)
    elif name.endswith((".arrow", ".feather")):
        feather.write_feather(table, path)
    return path


def csv_with_json_lists(path, labels=LABELS, probs=PROBS, ids=IDS):
    table = pa.table(
        {"id": ids, "label": labels, "pred_probs": [json.dumps(list(map(float, r))) for r in np.asarray(probs)]}
    )
    pacsv.write_csv(table, path)
    return path


# ---------------------------------------------------------------- round trips

VARIANTS = [
    ("d.parquet", "list", "parquet"),
    ("d.parquet", "prob", "parquet"),
    ("d.csv", "prob", "csv"),
    ("d.csv", "json", "csv"),
    ("d.tsv", "prob", "csv"),
    ("d.jsonl", "list", "jsonl"),
    ("d.jsonl", "prob", "jsonl"),
    ("d.arrow", "list", "arrow"),
    ("d.stream.arrow", "list", "arrow"),
    ("d.feather", "prob", "arrow"),
    ("d.csv", "npy", "csv"),
    ("d.parquet", "npy", "parquet"),
]


def make(tmp_path, name, layout):
    path = tmp_path / name
    if layout == "list":
        write_any(path, list_table())
    elif layout == "prob":
        write_any(path, prob_table())
    elif layout == "json":
        csv_with_json_lists(path)
    elif layout == "npy":
        write_any(path, list_table().drop(["pred_probs"]))
        np.save(tmp_path / "p.npy", PROBS)
        return path, {"pred_probs": tmp_path / "p.npy"}
    return path, {}


@pytest.mark.parametrize(("name", "layout", "fmt"), VARIANTS)
def test_same_dataset_loads_identically_in_every_format(tmp_path, name, layout, fmt):
    path, kw = make(tmp_path, name, layout)
    d = load(path, id_col="id", **kw)
    ref = LabelData.from_arrays(LABELS, PROBS, classes=CLASSES, ids=IDS)
    assert d.classes == ref.classes == ("ant", "bee", "cat")
    assert d.labels.dtype == np.int64 and np.array_equal(d.labels, ref.labels)
    assert d.pred_probs.dtype == np.float64 and np.array_equal(d.pred_probs, ref.pred_probs)
    assert d.ids.tolist() == IDS
    assert d.source == str(path) and d.label_col == "label" and d.id_col == "id"
    assert d.meta["input_format"] == fmt
    expected_source = {"list": "column pred_probs", "json": "column pred_probs", "prob": "prob_* columns",
                       "npy": f"file {tmp_path / 'p.npy'}"}[layout]
    assert d.meta["pred_probs_source"] == expected_source


def test_default_ids_are_the_row_index(tmp_path):
    d = load(write_any(tmp_path / "d.parquet", list_table()))
    assert d.ids.dtype == np.int64 and d.ids.tolist() == [0, 1, 2, 3, 4] and d.id_col is None


def test_float32_is_kept(tmp_path):
    table = list_table().set_column(2, "pred_probs", list_array(PROBS, pa.float32()))
    assert load(write_any(tmp_path / "d.parquet", table)).pred_probs.dtype == np.float32
    table = pa.table({"label": LABELS, **{f"prob_{c}": pa.array(PROBS[:, j], pa.float32()) for j, c in enumerate(CLASSES)}})
    assert load(write_any(tmp_path / "d.feather", table)).pred_probs.dtype == np.float32
    fsl = list_table().set_column(2, "pred_probs", pa.FixedSizeListArray.from_arrays(pa.array(PROBS.ravel(), pa.float32()), 3))
    assert load(write_any(tmp_path / "f.parquet", fsl)).pred_probs.dtype == np.float32


def test_input_format_override(tmp_path):
    path = tmp_path / "d.data"
    pacsv.write_csv(prob_table(), path)
    assert load(path, input_format="csv").meta["input_format"] == "csv"
    with pytest.raises(LabelqaError, match=r"cannot tell the format of .*d\.data.*--input-format"):
        load(path)
    with pytest.raises(LabelqaError, match=r"cannot read .*d\.data as parquet.*--input-format"):
        load(path, input_format="parquet")


# ------------------------------------------------------------------- classes


def test_classes_argument_and_file_reorder_prob_columns(tmp_path):
    path = write_any(tmp_path / "d.csv", prob_table())
    d = load(path, classes=["cat", "ant", "bee"])
    assert d.classes == ("cat", "ant", "bee") and d.meta["classes_source"] == "--classes"
    np.testing.assert_array_equal(d.pred_probs, PROBS[:, [2, 0, 1]])
    assert [d.classes[c] for c in d.labels] == LABELS
    (tmp_path / "c.txt").write_text("bee\n\ncat\nant\n")
    d = load(path, classes_file=tmp_path / "c.txt")
    assert d.classes == ("bee", "cat", "ant") and d.meta["classes_source"].startswith("classes file ")
    np.testing.assert_array_equal(d.pred_probs, PROBS[:, [1, 2, 0]])


def test_prob_column_names_give_classes_in_file_order(tmp_path):
    table = prob_table(classes=["cat", "ant", "bee"], probs=PROBS[:, [2, 0, 1]])
    d = load(write_any(tmp_path / "d.parquet", table))
    assert d.classes == ("cat", "ant", "bee") and d.meta["classes_source"] == "prob_* column names"
    assert d.meta["pred_probs_columns"] == ["prob_cat", "prob_ant", "prob_bee"]
    assert [d.classes[c] for c in d.labels] == LABELS


def test_schema_metadata_classes(tmp_path):
    order = ["cat", "bee", "ant"]
    table = list_table(probs=PROBS[:, [2, 1, 0]]).replace_schema_metadata({"labelqa.classes": json.dumps(order)})
    for name in ("d.parquet", "d.arrow"):
        d = load(write_any(tmp_path / name, table))
        assert d.classes == tuple(order) and d.meta["classes_source"] == "schema metadata 'labelqa.classes'"
        assert [d.classes[c] for c in d.labels] == LABELS
    # --classes wins over the metadata
    assert load(tmp_path / "d.parquet", classes="ant,bee,cat").classes == ("ant", "bee", "cat")


def test_int_labels_in_range_are_codes_else_sorted_unique(tmp_path):
    d = load(write_any(tmp_path / "a.parquet", list_table(labels=[1, 0, 2, 2, 1])))
    assert d.classes == (0, 1, 2) and d.meta["classes_source"] == "integer labels as class codes 0..2"
    d = load(write_any(tmp_path / "b.parquet", list_table(labels=[20, 10, 30, 30, 20])))
    assert d.classes == (10, 20, 30) and d.labels.tolist() == [1, 0, 2, 2, 1]
    assert d.meta["classes_source"] == "sorted unique labels"


def test_int_labels_with_cli_string_classes_stay_ints(tmp_path):
    path = write_any(tmp_path / "d.csv", list_table(labels=[7, 3, 5, 5, 7]).drop(["pred_probs"]))
    np.save(tmp_path / "p.npy", PROBS)
    d = load(path, pred_probs=tmp_path / "p.npy", classes=["5", "7", "3"])
    assert d.classes == (5, 7, 3) and all(type(c) is int for c in d.classes)
    assert d.labels.tolist() == [1, 2, 0, 0, 1]
    # prob_<int> columns give int classes too
    table = prob_table(labels=[1, 0, 2, 2, 1], classes=[2, 0, 1], probs=PROBS[:, [2, 0, 1]])
    d = load(write_any(tmp_path / "e.csv", table))
    assert d.classes == (2, 0, 1) and d.labels.tolist() == [2, 1, 0, 0, 2]


def test_ambiguous_classes_error(tmp_path):
    labels = ["a", "b", "c", "d", "e", "f", "g", "a", "b", "c"]
    probs = np.full((10, 10), 0.1)
    path = write_any(tmp_path / "d.parquet", list_table(labels=labels, probs=probs, ids=list(range(10))))
    with pytest.raises(LabelqaError) as info:
        load(path)
    assert str(info.value) == (
        "cannot tell which probability column belongs to which class: found 7 distinct labels but 10 "
        "probability columns -- pass --classes a,b,c or --classes-file"
    )


def test_class_count_mismatch_and_duplicates(tmp_path):
    path = write_any(tmp_path / "d.parquet", list_table())
    with pytest.raises(LabelqaError, match=r"d\.parquet, column 'pred_probs': 3 probabilities per row but 2 classes from --classes"):
        load(path, classes=["ant", "bee"])
    with pytest.raises(LabelqaError, match=r"duplicate classes in --classes: 'ant' \(2 times\)"):
        load(path, classes=["ant", "bee", "ant"])
    path = write_any(tmp_path / "p.csv", prob_table())
    with pytest.raises(LabelqaError, match=r"3 prob_\* columns but 4 classes from --classes: no column 'prob_dog'"):
        load(path, classes=["ant", "bee", "cat", "dog"])
    with pytest.raises(LabelqaError, match="either --classes or --classes-file"):
        load(path, classes=["a"], classes_file=tmp_path / "x.txt")


def test_label_outside_classes_from_file(tmp_path):
    path = write_any(tmp_path / "d.csv", prob_table(labels=["bee", "ant", "cow", "cat", "bee"]))
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'label': label 'cow' in row 2 \(id 'r2'\) is not one of the 3 classes \('ant', 'bee', 'cat'\)"):
        load(path, id_col="id")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(perm=st.permutations(range(5)), give_classes=st.booleans())
def test_shuffled_prob_columns_map_to_the_right_class(tmp_path, perm, give_classes):
    rng = np.random.default_rng(sum(p * 10**i for i, p in enumerate(perm)))
    classes = ["a", "b", "c", "d", "e"]
    probs = rng.dirichlet(np.ones(5), size=12)
    labels = list(np.array(classes)[rng.integers(0, 5, 12)])
    file_order = [classes[p] for p in perm]
    table = prob_table(labels=labels, probs=probs[:, list(perm)], ids=list(range(12)), classes=file_order)
    path = write_any(tmp_path / "shuffled.parquet", table)
    d = load(path, classes=classes if give_classes else None)
    assert d.classes == tuple(classes if give_classes else file_order)
    for j, cls in enumerate(d.classes):
        np.testing.assert_array_equal(d.pred_probs[:, j], probs[:, classes.index(cls)])
    assert [d.classes[c] for c in d.labels] == labels


# ---------------------------------------------------------- probability source


def test_npy_file_wins_over_columns_and_checks_rows(tmp_path):
    path = write_any(tmp_path / "d.parquet", list_table())
    np.save(tmp_path / "p.npy", PROBS[:, ::-1].copy())
    d = load(path, pred_probs=tmp_path / "p.npy", classes=CLASSES[::-1])
    np.testing.assert_array_equal(d.pred_probs, PROBS[:, ::-1])
    np.save(tmp_path / "short.npy", PROBS[:4])
    with pytest.raises(LabelqaError, match=r"short\.npy has 4 rows but .*d\.parquet has 5 rows"):
        load(path, pred_probs=tmp_path / "short.npy")
    with pytest.raises(LabelqaError, match=r"probabilities file not found: .*none\.npy"):
        load(path, pred_probs=tmp_path / "none.npy")


def test_npy_object_array_is_refused(tmp_path):
    path = write_any(tmp_path / "d.parquet", list_table())
    arr = np.empty(5, dtype=object)
    for i in range(5):
        arr[i] = list(PROBS[i])
    np.save(tmp_path / "o.npy", arr, allow_pickle=True)
    with pytest.raises(LabelqaError, match=r"o\.npy holds Python objects .*refusing to unpickle"):
        load(path, pred_probs=tmp_path / "o.npy")


def test_npy_wrong_shape(tmp_path):
    path = write_any(tmp_path / "d.parquet", list_table())
    np.save(tmp_path / "v.npy", PROBS[:, 0].copy())
    with pytest.raises(LabelqaError, match=r"v\.npy: predicted probabilities must be 2-D"):
        load(path, pred_probs=tmp_path / "v.npy")


def test_no_probabilities_lists_columns_and_the_three_ways(tmp_path):
    path = write_any(tmp_path / "d.csv", list_table().drop(["pred_probs"]))
    with pytest.raises(LabelqaError) as info:
        load(path)
    msg = str(info.value)
    assert "no column 'pred_probs' and no prob_<class> columns (available columns: 'id', 'label')" in msg
    assert "--pred-probs-col" in msg and "prob_<class>" in msg and "--pred-probs probs.npy" in msg


def test_missing_columns_name_the_option(tmp_path):
    path = write_any(tmp_path / "d.parquet", list_table())
    with pytest.raises(LabelqaError, match=r"no column 'y' \(available columns: 'id', 'label', 'pred_probs'\) -- pass --label-col"):
        load(path, label_col="y")
    with pytest.raises(LabelqaError, match=r"no column 'key' .* -- pass --id-col"):
        load(path, id_col="key")
    with pytest.raises(LabelqaError, match=r"no column 'scores' .* -- pass --pred-probs-col"):
        load(path, pred_probs_col="scores")
    with pytest.raises(LabelqaError, match=r"input file not found: .*absent\.csv"):
        load(tmp_path / "absent.csv")


def test_custom_label_and_probability_columns(tmp_path):
    table = pa.table({"y": LABELS, "scores": list_array(PROBS)})
    d = load(write_any(tmp_path / "d.arrow", table), label_col="y", pred_probs_col="scores")
    assert d.label_col == "y" and d.meta["pred_probs_source"] == "column scores"


# ------------------------------------------------------ errors naming the row


def test_nan_probability_names_row_and_id(tmp_path):
    probs = PROBS.copy()
    probs[2, 1] = np.nan
    path = write_any(tmp_path / "d.parquet", list_table(probs=probs))
    with pytest.raises(LabelqaError, match=r"d\.parquet, column 'pred_probs': 1 row with NaN or infinite probabilities: row 2 \(id 'r2'\): item 1 = nan"):
        load(path, id_col="id")
    path = write_any(tmp_path / "d.csv", prob_table(probs=probs))
    with pytest.raises(LabelqaError, match=r"1 row without a probability \(empty or null\): row 2|column 'prob_bee' = nan"):
        load(path)


def test_ragged_and_null_lists_in_a_file(tmp_path):
    rows = [list(r) for r in PROBS]
    rows[3] = rows[3][:2]
    table = pa.table({"id": IDS, "label": LABELS, "pred_probs": rows})
    with pytest.raises(LabelqaError, match=r"row 3 \(id 'r3'\) has 2 but most rows have 3"):
        load(write_any(tmp_path / "r.jsonl", table), id_col="id")
    rows = [list(r) for r in PROBS]
    rows[1] = None
    table = pa.table({"label": LABELS, "pred_probs": rows})
    with pytest.raises(LabelqaError, match=r"null list\): row 1"):
        load(write_any(tmp_path / "n.parquet", table))


def test_null_label_in_csv_names_the_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("label,prob_a,prob_b\na,0.5,0.5\n,0.1,0.9\nb,0.2,0.8\n")
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'label': 1 row has no label: row 1"):
        load(path)


def test_duplicate_and_null_ids_in_a_file(tmp_path):
    path = write_any(tmp_path / "d.csv", list_table(ids=["a", "b", "a", "c", "d"]).drop(["pred_probs"]))
    np.save(tmp_path / "p.npy", PROBS)
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'id': 1 duplicate ids .*'a' in rows 0, 2 -- ids must be unique"):
        load(path, id_col="id", pred_probs=tmp_path / "p.npy")
    path = write_any(tmp_path / "e.parquet", list_table(ids=[1, 2, None, 4, 5]))
    with pytest.raises(LabelqaError, match=r"column 'id': 1 row has no id: row 2"):
        load(path, id_col="id")


def test_rows_not_summing_and_renormalize(tmp_path):
    probs = PROBS * np.array([[1.0], [1.5], [1.0], [0.5], [1.0]])
    path = write_any(tmp_path / "d.parquet", list_table(probs=probs))
    with pytest.raises(LabelqaError, match=r"2 rows do not sum to 1 \(tolerance 0\.001\): row 1 \(id 'r1'\): sum 1\.5; row 3 \(id 'r3'\): sum 0\.5 -- pass --renormalize"):
        load(path, id_col="id")
    d = load(path, renormalize=True)
    np.testing.assert_allclose(d.pred_probs, PROBS)
    assert d.meta["renormalized_rows"] == 2


def test_empty_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("label,prob_a,prob_b\n")
    with pytest.raises(LabelqaError, match=r"d\.csv: no rows"):
        load(path)


def test_jsonl_key_first_seen_after_the_first_block(tmp_path):
    # "label" is missing from the first 1 MiB block: the loader re-reads the
    # whole file instead of claiming the column does not exist.
    path = tmp_path / "late.jsonl"
    with open(path, "w") as fh:
        for i in range(6000):
            row = {"pad": "x" * 300, "pred_probs": [0.5, 0.5]}
            if i >= 5000:
                row["label"] = "a"
            fh.write(json.dumps(row) + "\n")
    with pytest.raises(LabelqaError, match=r"column 'label': 5000 rows have no label: row 0; row 1"):
        load(path)
