"""Multi-label data: label sets in every layout, class resolution, probability checks, errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from labelqa.data import LabelData, load
from labelqa.errors import LabelqaError

CLASSES = ["cat", "dog", "emu"]
IDS = ["r0", "r1", "r2", "r3", "r4"]
SETS = [["cat", "dog"], [], ["emu"], ["dog", "cat", "emu"], ["dog"]]
CODES = [[0, 1], [], [2], [1, 0, 2], [1]]
Y = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0]], dtype=bool)
# independent per-class probabilities: rows do not sum to 1
PROBS = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.05], [0.0, 0.3, 0.95], [0.7, 0.6, 0.9], [0.2, 1.0, 0.1]])


def list_probs(probs=PROBS):
    return pa.array([list(map(float, r)) for r in np.asarray(probs)], pa.list_(pa.float64()))


def table(labels, probs=PROBS, ids=IDS, label_type=None, **extra):
    cols = {"id": pa.array(ids), "labels": pa.array(labels, label_type), "pred_probs": list_probs(probs)}
    cols.update(extra)
    return pa.table(cols)


def write_jsonl(path, rows):
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


# ----------------------------------------------------------- round trips


def test_label_sets_load_identically_from_every_layout(tmp_path):
    """list<string>, list<int> (Parquet/Arrow), delimited CSV strings and JSONL arrays: one bool matrix."""
    got = {}
    pq.write_table(table(SETS), tmp_path / "s.parquet")
    got["parquet list<string>"] = load(tmp_path / "s.parquet", label_col="labels", id_col="id", classes=CLASSES)
    pq.write_table(table(CODES), tmp_path / "i.parquet")
    got["parquet list<int>"] = load(tmp_path / "i.parquet", label_col="labels", id_col="id")
    feather.write_feather(table(SETS, label_type=pa.large_list(pa.string())), tmp_path / "s.arrow")
    got["arrow large_list<string>"] = load(tmp_path / "s.arrow", label_col="labels", classes=CLASSES)
    csv = pa.table({"id": IDS, "labels": [", ".join(s) for s in SETS],
                    **{f"prob_{c}": PROBS[:, j] for j, c in enumerate(CLASSES)}})
    pacsv.write_csv(csv, tmp_path / "d.csv")
    got["csv 'a, b' strings"] = load(tmp_path / "d.csv", label_col="labels", id_col="id", label_sep=",")
    csv_codes = pa.table({"labels": ["|".join(map(str, s)) for s in CODES], "pred_probs": [json.dumps(list(r)) for r in PROBS]})
    pacsv.write_csv(csv_codes, tmp_path / "c.csv")
    got["csv '0|1' codes"] = load(tmp_path / "c.csv", label_col="labels", label_sep="|", task="multilabel")
    write_jsonl(tmp_path / "d.jsonl", [{"id": i, "labels": s, "pred_probs": list(p)} for i, s, p in zip(IDS, SETS, PROBS)])
    got["jsonl arrays"] = load(tmp_path / "d.jsonl", label_col="labels", id_col="id", classes=CLASSES)
    for name, d in got.items():
        assert d.task == "multilabel", name
        assert d.labels.dtype == bool and d.labels.shape == (5, 3), name
        np.testing.assert_array_equal(d.labels, Y, err_msg=name)
        np.testing.assert_allclose(d.pred_probs, PROBS, err_msg=name)
        assert len(d.classes) == 3, name
        assert d.meta["task"] == "multilabel", name
    assert got["parquet list<string>"].classes == ("cat", "dog", "emu")
    assert got["parquet list<int>"].classes == (0, 1, 2)
    assert got["csv 'a, b' strings"].classes == ("cat", "dog", "emu")  # from prob_<class> names
    assert got["csv '0|1' codes"].classes == (0, 1, 2)
    assert got["parquet list<string>"].meta["label_format"] == "list column"
    assert got["csv 'a, b' strings"].meta["label_format"] == "delimited strings (separator ',')"
    assert not got["jsonl arrays"].labels.flags.writeable


def test_loaded_data_matches_from_arrays_in_three_label_forms():
    by_sets = LabelData.from_arrays(SETS, PROBS, classes=CLASSES, task="multilabel")
    by_codes = LabelData.from_arrays(CODES, PROBS, classes=CLASSES, task="multilabel")
    by_matrix = LabelData.from_arrays(Y.astype(np.int8), PROBS, classes=CLASSES, task="multilabel")
    by_series = LabelData.from_arrays(pd.Series([tuple(s) for s in SETS]), PROBS, classes=CLASSES, task="multilabel")
    by_frame = LabelData.from_arrays(pd.DataFrame(Y.astype(int)), PROBS, classes=CLASSES, task="multilabel")
    for d in (by_sets, by_codes, by_matrix, by_series, by_frame):
        np.testing.assert_array_equal(d.labels, Y)
        assert d.classes == ("cat", "dog", "emu") and d.task == "multilabel"
    assert by_codes.meta["labels_are_codes"] is True
    assert by_matrix.meta["label_format"] == "label matrix"
    np.testing.assert_array_equal(by_sets.class_counts(), [2, 3, 2])
    # a bool matrix is not copied
    d = LabelData.from_arrays(Y, PROBS, task="multilabel")
    assert np.shares_memory(d.labels, Y) and d.classes == (0, 1, 2)
    assert d.meta["classes_source"] == "label matrix columns 0..2"


def test_example_dataset_loads_and_the_multilabel_detector_consumes_it(tmp_path):
    from labelqa.detectors.multilabel import MultilabelConfidentLearning

    rng = np.random.default_rng(0)
    n, k = 300, 4
    truth = rng.random((n, k)) < 0.4
    probs = np.clip(np.where(truth, 0.8, 0.15) + rng.normal(0, 0.08, (n, k)), 0, 1).astype(np.float32)
    names = np.array(["a", "b", "c", "d"])
    sets = [list(names[row]) for row in truth]
    pq.write_table(pa.table({"labels": sets, "pred_probs": pa.array(list(probs), pa.list_(pa.float32()))})
                   .replace_schema_metadata({"labelqa.classes": json.dumps(list(names))}), tmp_path / "m.parquet")
    d = load(tmp_path / "m.parquet", label_col="labels")
    assert d.meta["classes_source"] == "schema metadata 'labelqa.classes'"
    assert d.pred_probs.dtype == np.float32
    res = MultilabelConfidentLearning().detect(d)
    assert res.scores.shape == (n,) and res.issues.shape == (n,)


# ------------------------------------------------------------ auto-detection


def test_task_auto_detection(tmp_path):
    pq.write_table(table(SETS), tmp_path / "l.parquet")
    assert load(tmp_path / "l.parquet", label_col="labels", classes=CLASSES).task == "multilabel"
    single = pa.table({"labels": ["cat", "dog", "emu", "cat", "dog"],
                       "pred_probs": list_probs(PROBS / PROBS.sum(1, keepdims=True))})
    pq.write_table(single, tmp_path / "s.parquet")
    d = load(tmp_path / "s.parquet", label_col="labels")
    assert d.task == "multiclass" and d.labels.ndim == 1 and d.meta["task"] == "multiclass"
    # label_sep turns a string column into label sets, even with one label per row
    d = load(tmp_path / "s.parquet", label_col="labels", label_sep=",")
    assert d.task == "multilabel" and d.labels.sum(axis=1).tolist() == [1] * 5
    # a CSV whose cells each hold one integer is read as int64: still split with --label-sep
    pacsv.write_csv(pa.table({"labels": [0, 2, None], "prob_0": [0.9, 0.1, 0.2], "prob_1": [0.1, 0.2, 0.3],
                              "prob_2": [0.1, 0.7, 0.1]}), tmp_path / "i.csv")
    d = load(tmp_path / "i.csv", label_col="labels", label_sep=",")
    assert d.classes == (0, 1, 2) and d.labels.tolist() == [[True, False, False], [False, False, True], [False] * 3]


def test_forced_multiclass_on_list_labels_is_a_clear_error(tmp_path):
    path = tmp_path / "l.parquet"
    pq.write_table(table(SETS), path)
    with pytest.raises(LabelqaError) as info:
        load(path, label_col="labels", task="multiclass")
    assert str(info.value) == (
        f"{path}, column 'labels': each row holds a list of labels (list<string>), which is multi-label "
        "data, but the task is multiclass -- pass --task multilabel (or auto) for label sets, or give one label per row"
    )
    with pytest.raises(LabelqaError, match=r"--label-sep ',' is for multi-label data, but the task is multiclass"):
        load(path, label_col="labels", task="multiclass", label_sep=",")
    with pytest.raises(LabelqaError, match=r"unknown task 'multi'"):
        load(path, label_col="labels", task="multi")


def test_forced_multilabel_on_plain_strings_asks_for_a_separator(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("labels,prob_a,prob_b\na,0.5,0.5\nb,0.2,0.1\n")
    with pytest.raises(LabelqaError, match=r"s\.csv, column 'labels': multi-label labels need a list column, got type string -- .*--label-sep ','"):
        load(path, label_col="labels", task="multilabel")
    assert load(path, label_col="labels", task="multilabel", label_sep=";").labels.tolist() == [[True, False], [False, True]]


def test_from_arrays_task_mismatch_messages():
    with pytest.raises(LabelqaError, match=r"labels: labels of shape \(5, 3\) form a label matrix, which is multi-label data -- pass task='multilabel'"):
        LabelData.from_arrays(Y, PROBS / PROBS.sum(1, keepdims=True))
    with pytest.raises(LabelqaError, match=r"each row holds a list of labels \(list<int64>\), which is multi-label data"):
        LabelData.from_arrays(CODES, PROBS / PROBS.sum(1, keepdims=True))
    with pytest.raises(LabelqaError, match=r"labels must be 1-D, got shape \(5, 1\)"):  # a column vector is not a label matrix
        LabelData.from_arrays(np.zeros((5, 1)), PROBS / PROBS.sum(1, keepdims=True))
    with pytest.raises(LabelqaError, match=r"unknown task 'auto' -- use 'multiclass' or 'multilabel'"):
        LabelData.from_arrays(CODES, PROBS, task="auto")
    with pytest.raises(LabelqaError, match=r"multi-label labels must hold a list of classes per row, got type string"):
        LabelData.from_arrays(["cat", "dog", "emu", "cat", "dog"], PROBS, task="multilabel")


# ------------------------------------------------------------------ classes


def test_class_resolution_order(tmp_path):
    # prob_<class> column names, in file order
    t = pa.table({"labels": SETS, **{f"prob_{c}": PROBS[:, j] for j, c in enumerate(["emu", "cat", "dog"])}})
    pq.write_table(t, tmp_path / "p.parquet")
    d = load(tmp_path / "p.parquet", label_col="labels")
    assert d.classes == ("emu", "cat", "dog") and d.meta["classes_source"] == "prob_* column names"
    np.testing.assert_array_equal(d.labels, Y[:, [2, 0, 1]])
    # --classes reorders prob_* columns
    d = load(tmp_path / "p.parquet", label_col="labels", classes="cat,dog,emu")
    np.testing.assert_array_equal(d.labels, Y)
    np.testing.assert_array_equal(d.pred_probs, PROBS[:, [1, 2, 0]])
    # sorted unique label values when there are K of them
    pq.write_table(table(SETS), tmp_path / "u.parquet")
    d = load(tmp_path / "u.parquet", label_col="labels")
    assert d.classes == ("cat", "dog", "emu") and d.meta["classes_source"] == "sorted unique labels"
    # integer values outside [0, K): sorted unique values
    pq.write_table(table([[10, 20], [], [30], [20, 10, 30], [20]]), tmp_path / "v.parquet")
    d = load(tmp_path / "v.parquet", label_col="labels")
    assert d.classes == (10, 20, 30)
    np.testing.assert_array_equal(d.labels, Y)
    # --classes as CLI strings with int labels become ints
    d = load(tmp_path / "v.parquet", label_col="labels", classes=["10", "20", "30"])
    assert d.classes == (10, 20, 30) and all(type(c) is int for c in d.classes)


def test_ambiguous_classes_and_k_mismatch(tmp_path):
    pq.write_table(table([["cat"], [], ["cat"], ["dog"], []]), tmp_path / "a.parquet")
    with pytest.raises(LabelqaError) as info:
        load(tmp_path / "a.parquet", label_col="labels")
    assert str(info.value) == (
        "cannot tell which probability column belongs to which class: found 2 distinct labels but 3 "
        "probability columns -- pass --classes a,b,c or --classes-file"
    )
    with pytest.raises(LabelqaError, match=r"a\.parquet, column 'pred_probs': 3 probabilities per row but 2 classes from --classes \('cat', 'dog'\)"):
        load(tmp_path / "a.parquet", label_col="labels", classes="cat,dog")
    with pytest.raises(LabelqaError, match=r"the label matrix has 2 columns but there are 3 probability columns"):
        LabelData.from_arrays(Y[:, :2], PROBS, task="multilabel")
    with pytest.raises(LabelqaError, match=r"4 label sets but 5 rows of predicted probabilities"):
        LabelData.from_arrays(SETS[:4], PROBS, task="multilabel")


# ------------------------------------------------------------- label errors


def test_unknown_class_names_label_row_and_id(tmp_path):
    sets = [["cat"], ["dog", "cow"], [], ["emu", "yak"], ["cow"]]
    pq.write_table(table(sets), tmp_path / "u.parquet")
    with pytest.raises(LabelqaError) as info:
        load(tmp_path / "u.parquet", label_col="labels", id_col="id", classes=CLASSES)
    assert str(info.value) == (
        f"{tmp_path / 'u.parquet'}, column 'labels': label 'cow' in row 1 (id 'r1') is not one of the 3 classes "
        "('cat', 'dog', 'emu'); 3 rows in all have labels outside the classes ('cow', 'yak'): "
        "row 1 (id 'r1'): 'cow'; row 3 (id 'r3'): 'yak'; row 4 (id 'r4'): 'cow' -- fix those labels, or pass "
        "--classes / --classes-file listing every class in probability-column order"
    )
    with pytest.raises(LabelqaError, match=r"label 3 in row 2 is not a class code 0\.\.2 for the 3 classes \('cat', 'dog', 'emu'\); 1 row in all has a label"):
        LabelData.from_arrays([[0], [1], [2, 3], [], [0]], PROBS, classes=CLASSES, task="multilabel")


def test_duplicate_class_in_a_row_names_row_and_class(tmp_path):
    sets = [["cat", "dog"], [], ["emu", "emu"], ["dog", "cat", "dog"], ["dog"]]
    pq.write_table(table(sets), tmp_path / "d.parquet")
    with pytest.raises(LabelqaError) as info:
        load(tmp_path / "d.parquet", label_col="labels", id_col="id", classes=CLASSES)
    assert str(info.value) == (
        f"{tmp_path / 'd.parquet'}, column 'labels': class 'emu' is listed twice in row 2 (id 'r2'); "
        "2 rows in all repeat a class: row 2 (id 'r2'): 'emu'; row 3 (id 'r3'): 'dog' -- list each class at most "
        "once per row"
    )
    # delimited strings: the same check, after stripping whitespace
    path = tmp_path / "d.csv"
    path.write_text("labels,prob_a,prob_b\na,0.5,0.5\n\"b , b\",0.2,0.1\n")
    with pytest.raises(LabelqaError, match=r"d\.csv, column 'labels': class 'b' is listed twice in row 1; 1 row in all repeats a class"):
        load(path, label_col="labels", label_sep=",")


def test_null_label_list_is_an_error_empty_list_is_the_empty_set(tmp_path):
    sets = [["cat"], None, [], ["dog"], None]
    pq.write_table(table(sets), tmp_path / "n.parquet")
    with pytest.raises(LabelqaError, match=r"n\.parquet, column 'labels': 2 rows have a null label list: row 1 \(id 'r1'\); row 4 \(id 'r4'\) -- write an empty list \[\]"):
        load(tmp_path / "n.parquet", label_col="labels", id_col="id", classes=CLASSES)
    pq.write_table(table([["cat"], ["dog", None], [], ["dog"], []]), tmp_path / "i.parquet")
    with pytest.raises(LabelqaError, match=r"1 row with a null class in the label list: row 1"):
        load(tmp_path / "i.parquet", label_col="labels", classes=CLASSES)
    # all rows empty: fine when the classes are known
    pq.write_table(table([[], [], [], [], []], label_type=pa.list_(pa.string())), tmp_path / "e.parquet")
    d = load(tmp_path / "e.parquet", label_col="labels", classes=CLASSES)
    assert not d.labels.any() and d.labels.shape == (5, 3)


def test_label_matrix_with_values_other_than_0_1():
    bad = Y.astype(float)
    bad[3, 2] = 0.5
    with pytest.raises(LabelqaError, match=r"labels: 1 row of the label matrix with values other than 0/1: row 3: column 2 = 0\.5"):
        LabelData.from_arrays(bad, PROBS, task="multilabel")


def test_float_label_items_must_be_integral():
    with pytest.raises(LabelqaError, match=r"labels must be integers or strings, found 1\.5 in row 1"):
        LabelData.from_arrays([[0.0], [1.5], [], [2.0], []], PROBS, task="multilabel")
    d = LabelData.from_arrays([[0.0, 1.0], [], [2.0], [1.0, 0.0, 2.0], [1.0]], PROBS, task="multilabel")
    np.testing.assert_array_equal(d.labels, Y)


# ------------------------------------------------------- probability checks


def test_probabilities_need_not_sum_to_one_but_must_be_in_0_1(tmp_path):
    d = LabelData.from_arrays(SETS, PROBS, classes=CLASSES, task="multilabel")
    assert d.meta["renormalized"] is False
    for value, pattern in (
        (np.nan, r"1 row with NaN or infinite probabilities: row 2 \(id 'r2'\): item 1 = nan"),
        (-0.1, r"1 row with negative probabilities: row 2 \(id 'r2'\): item 1 = -0\.1 -- .*sigmoid"),
        (1.2, r"1 row with probabilities above 1: row 2 \(id 'r2'\): item 1 = 1\.2 -- multi-label probabilities are independent"),
    ):
        probs = PROBS.copy()
        probs[2, 1] = value
        pq.write_table(table(SETS, probs=probs), tmp_path / "p.parquet")
        with pytest.raises(LabelqaError, match=r"p\.parquet, column 'pred_probs': " + pattern):
            load(tmp_path / "p.parquet", label_col="labels", id_col="id", classes=CLASSES)
    # 1.0005 would pass a multiclass tolerance; independent probabilities above 1 are refused outright
    probs = PROBS.copy()
    probs[0, 0] = 1.0005
    with pytest.raises(LabelqaError, match=r"above 1: row 0: column 0 = 1\.0005"):
        LabelData.from_arrays(SETS, probs, classes=CLASSES, task="multilabel")


def test_renormalize_is_refused_for_multilabel(tmp_path):
    pq.write_table(table(SETS), tmp_path / "r.parquet")
    with pytest.raises(LabelqaError, match=r"--renormalize does not apply to multi-label data \(.*r\.parquet, column 'labels' holds label sets\).* -- drop --renormalize"):
        load(tmp_path / "r.parquet", label_col="labels", classes=CLASSES, renormalize=True)
    with pytest.raises(LabelqaError, match=r"--renormalize does not apply to multi-label data"):
        LabelData.from_arrays(SETS, PROBS, classes=CLASSES, task="multilabel", renormalize=True)


def test_one_class_is_enough_for_multilabel():
    d = LabelData.from_arrays([["x"], [], ["x"]], np.array([[0.9], [0.1], [0.7]]), task="multilabel")
    assert d.classes == ("x",) and d.labels[:, 0].tolist() == [True, False, True]


# ------------------------------------------------------------------- speed


def test_label_sets_are_encoded_vectorised():
    # 200k rows x 50 classes, ~3 labels per row, as a pyarrow list<string> column
    rng = np.random.default_rng(0)
    n, k = 200_000, 50
    names = np.array([f"c{i:02d}" for i in range(k)])
    lengths = rng.integers(0, 6, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    # distinct classes per row: consecutive codes from a random start
    start = np.repeat(rng.integers(0, k, n), lengths)
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    codes = (start + within) % k
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(names[codes]))
    probs = rng.random((n, k), dtype=np.float32)
    t0 = time.perf_counter()
    d = LabelData.from_arrays(labels, probs, classes=list(names), task="multilabel")
    elapsed = time.perf_counter() - t0
    assert d.labels.sum() == offsets[-1]
    np.testing.assert_array_equal(d.labels.sum(axis=1), lengths)
    assert elapsed < 2.0, elapsed


@pytest.mark.slow
def test_1m_by_100_label_matrix_validates_quickly():
    rng = np.random.default_rng(0)
    Ybig = rng.random((1_000_000, 100), dtype=np.float32) < 0.05
    probs = rng.random((1_000_000, 100), dtype=np.float32)
    t0 = time.perf_counter()
    d = LabelData.from_arrays(Ybig, probs, task="multilabel")
    assert time.perf_counter() - t0 < 1.5
    assert np.shares_memory(d.labels, Ybig) and np.shares_memory(d.pred_probs, probs)
