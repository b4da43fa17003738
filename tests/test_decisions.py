"""Reviewers' decisions: every decision kind, both file formats, validation, and the round trip through fix."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.cli.app import main
from labelqa.decisions import DROP_CHOICE, apply_decisions, read_decisions
from labelqa.errors import LabelqaError
from labelqa.export import export_review


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def animals():
    return pa.table({"id": ["a", "b", "c", "d", "e", "f"], "label": ["cat", "dog", "cat", "bird", "dog", "cat"],
                     "text": ["t1", "t2", "t3", "t4", "t5", "t6"]})


def write_csv(path, rows, header=("id", "decision")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


# --------------------------------------------------------------------------- every decision kind
def test_every_csv_decision_kind(animals, tmp_path):
    path = write_csv(tmp_path / "d.csv", [
        ("a", "keep"),            # keep
        ("b", "drop"),            # drop
        ("c", "relabel:dog"),     # relabel:CLASS
        ("d", "relabel to cat"),  # relabel to CLASS
        ("e", "dog"),             # a class equal to the given label: keep
        ("f", "bird"),            # a class: relabel
    ])
    out, counts = apply_decisions(animals, read_decisions(path), id_col="id")
    assert out.column("id").to_pylist() == ["a", "c", "d", "e", "f"]  # b dropped
    assert out.column("label").to_pylist() == ["cat", "dog", "cat", "dog", "bird"]
    assert out.column("label_original").to_pylist() == ["cat", "cat", "bird", "dog", "cat"]
    assert out.column("label_fixed").to_pylist() == out.column("label").to_pylist()
    assert out.column("fix_action").to_pylist() == ["reviewed_keep", "reviewed_relabel", "reviewed_relabel",
                                                    "reviewed_keep", "reviewed_relabel"]
    assert counts["reviewed_keep"] == 2 and counts["reviewed_relabel"] == 3 and counts["reviewed_drop"] == 1
    assert out.column("text").to_pylist() == ["t1", "t3", "t4", "t5", "t6"]  # other columns as read


def test_relabel_with_a_label_column_and_blank_decisions_are_undecided(animals, tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "relabel", "bird"), ("b", "", ""), ("c", "KEEP", "")],
                     header=("id", "decision", "label"))
    out, counts = apply_decisions(animals, read_decisions(path), id_col="id")
    assert out.column("label").to_pylist()[:3] == ["bird", "dog", "cat"]
    assert out.column("fix_action").to_pylist() == ["reviewed_relabel", "keep", "reviewed_keep", "keep", "keep",
                                                    "keep"]
    assert counts["keep"] == 4


def test_jsonl_decisions_and_integer_labels_and_positions(tmp_path):
    table = pa.table({"label": pa.array([0, 1, 2, 1], pa.int64())})
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": 1, "decision": "2"}\n{"id": 3, "decision": "drop"}\n{"id": 0, "decision": null}\n')
    out, _ = apply_decisions(table, read_decisions(path))  # ids are row positions without an id column
    assert out.column("label").type == pa.int64()
    assert out.column("label").to_pylist() == [0, 2, 2]
    assert out.column("fix_action").to_pylist() == ["keep", "reviewed_relabel", "keep"]


def _ls_task(rid, *annotations, data=None):
    anns = [{"id": i, "was_cancelled": cancelled,
             "result": [{"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [c]}}]}
            for i, (c, cancelled) in enumerate(annotations)]
    return {"id": 100, "data": {"labelqa_id": rid, **(data or {})}, "annotations": anns, "predictions": []}


def test_label_studio_export_every_kind(animals, tmp_path):
    tasks = [
        _ls_task("a", ("cat", False)),                        # the given label: keep
        _ls_task("b", ("cat", False), ("bird", False)),       # the last annotation wins: relabel to bird
        _ls_task("c", (DROP_CHOICE, False)),                   # drop
        _ls_task("d", ("cat", False), ("dog", True)),         # the cancelled one is ignored: relabel to cat
        _ls_task("e"),                                         # no annotation: undecided
    ]
    path = tmp_path / "project.json"
    path.write_text(json.dumps(tasks))
    out, counts = apply_decisions(animals, read_decisions(path), id_col="id")
    assert out.column("id").to_pylist() == ["a", "b", "d", "e", "f"]
    assert out.column("label").to_pylist() == ["cat", "bird", "cat", "dog", "cat"]
    assert out.column("fix_action").to_pylist() == ["reviewed_keep", "reviewed_relabel", "reviewed_relabel",
                                                    "keep", "keep"]
    assert counts["reviewed_drop"] == 1


def test_label_studio_json_min_export(animals, tmp_path):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"labelqa_id": "a", "label": "dog"}, {"labelqa_id": "b", "label": {"choices": [
        DROP_CHOICE]}}, {"labelqa_id": "c"}]))
    d = read_decisions(path)
    assert (d.ids, d.words, d.labels) == (["a", "b"], ["choose", "drop"], ["dog", None])


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("rows, message", [
    ([("zz", "keep")], "id 'zz' is not in the data"),
    ([("a", "relabel:horse")], "relabelled to 'horse', which is not one of the classes"),
    ([("a", "horse")], "relabelled to 'horse'"),
    ([("a", "keep"), ("a", "drop")], "id 'a' is decided twice"),
    ([("a", "relabel")], "says relabel but gives no label"),
])
def test_bad_decisions_are_refused(animals, tmp_path, rows, message):
    path = write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(LabelqaError, match=message):
        apply_decisions(animals, read_decisions(path), id_col="id")


def test_same_decision_twice_is_fine_and_classes_can_be_widened(animals, tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "horse"), ("a", "horse")])
    out, _ = apply_decisions(animals, read_decisions(path), id_col="id", classes=["cat", "dog", "bird", "horse"])
    assert out.column("label").to_pylist()[0] == "horse"


@pytest.mark.parametrize("name, text, message", [
    ("d.txt", "x", "cannot tell the format"),
    ("d.json", "{}", "not a Label Studio export"),
    ("d.json", '[{"data": {"x": 1}}]', "no data.labelqa_id"),
    ("d.csv", "id,label\na,cat\n", "has no column decision"),
])
def test_unreadable_decision_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(LabelqaError, match=message):
        read_decisions(tmp_path / name)
    with pytest.raises(LabelqaError, match="not found"):
        read_decisions(tmp_path / "absent.csv")


def test_multilabel_data_is_refused(tmp_path):
    table = pa.table({"label": [["a"], ["b"]]})
    path = write_csv(tmp_path / "d.csv", [("0", "keep")])
    with pytest.raises(LabelqaError, match="multiclass labels only"):
        apply_decisions(table, read_decisions(path))


# --------------------------------------------------------------------------- through `labelqa fix`
def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_scan_export_review_fix(noisy_parquet, tmp_path, capsys):
    data, _ = noisy_parquet
    before = _digest(data)
    assert run(["scan", data, "--id-col", "id", "-o", tmp_path / "rep", "-q"], capsys)[0] == 0
    assert run(["export", tmp_path / "rep", "--to", "csv", "--top", "4"], capsys)[0] == 0
    with open(tmp_path / "rep" / "review.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    decided = [("keep", None), ("drop", None), (f"relabel:{rows[2]['suggested_label']}", None), ("", None)]
    for row, (decision, _) in zip(rows, decided):
        row["decision"] = decision
    with open(tmp_path / "answers.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    code, out, err = run(["fix", data, "--id-col", "id", "--decisions", tmp_path / "answers.csv",
                          "-o", tmp_path / "clean.parquet"], capsys)
    assert code == 0, err
    assert "Reviewed: 1 relabelled, 1 dropped, 1 kept." in " ".join(out.split())  # rich wraps lines
    clean = pq.read_table(tmp_path / "clean.parquet").to_pandas().set_index("id")
    ids = [int(r["id"]) for r in rows]
    assert ids[1] not in clean.index and len(clean) == 1999
    assert clean.loc[ids[0], "fix_action"] == "reviewed_keep"
    assert clean.loc[ids[2], "label"] == rows[2]["suggested_label"] and clean.loc[ids[2], "fix_action"] == \
        "reviewed_relabel"
    assert clean.loc[ids[3], "fix_action"] == "keep"  # undecided rows keep their label by default
    assert set(clean["fix_action"]) == {"keep", "reviewed_keep", "reviewed_relabel"}
    original = pq.read_table(data).to_pandas().set_index("id")
    assert (clean["true_label"] == original.loc[clean.index, "true_label"]).all()
    assert _digest(data) == before  # the input is never touched

    # undecided rows follow the strategy on the report: the other flagged rows are relabelled
    code, out, err = run(["fix", data, "--id-col", "id", "--decisions", tmp_path / "answers.csv", "--undecided",
                          "strategy", "--report", tmp_path / "rep", "-o", tmp_path / "clean2.parquet"], capsys)
    assert code == 0, err
    clean2 = pq.read_table(tmp_path / "clean2.parquet").to_pandas().set_index("id")
    issues = pq.read_table(tmp_path / "rep" / "issues.parquet").to_pandas().set_index("id")
    others = issues.index[issues["is_label_issue"]].difference(ids[:3])
    assert (clean2.loc[others, "fix_action"] == "relabel").all()
    assert (clean2.loc[others, "label"] == issues.loc[others, "suggested_label"]).all()
    assert clean2.loc[ids[0], "fix_action"] == "reviewed_keep"


def test_round_trip_through_a_label_studio_export(noisy_parquet, tmp_path, capsys):
    data, _ = noisy_parquet
    assert run(["scan", data, "-o", tmp_path / "rep", "-q"], capsys)[0] == 0
    export_review(tmp_path / "rep", top=3)
    tasks = json.loads((tmp_path / "rep" / "review.json").read_text())
    # a reviewer accepts the first prediction, drops the second and leaves the third
    tasks[0]["annotations"] = [{"was_cancelled": False, "result": tasks[0]["predictions"][0]["result"]}]
    tasks[1]["annotations"] = [{"was_cancelled": False, "result": [{
        "from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [DROP_CHOICE]}}]}]
    (tmp_path / "project.json").write_text(json.dumps(tasks))
    code, _, err = run(["fix", data, "--decisions", tmp_path / "project.json", "-o", tmp_path / "c.csv"], capsys)
    assert code == 0, err
    with open(tmp_path / "c.csv", newline="") as fh:
        clean = list(csv.DictReader(fh))
    assert len(clean) == 1999
    first = int(tasks[0]["data"]["labelqa_id"])
    assert clean[first]["label"] == tasks[0]["data"]["suggested_label"]
    assert clean[first]["fix_action"] == "reviewed_relabel"


def test_fix_refuses_unknown_ids_with_one_line(noisy_parquet, tmp_path, capsys):
    data, _ = noisy_parquet
    write_csv(tmp_path / "d.csv", [("999999", "keep")])
    code, _, err = run(["fix", data, "--decisions", tmp_path / "d.csv", "-o", tmp_path / "c.parquet"], capsys)
    assert code == 2 and "id '999999' is not in the data" in err and err.count("\n") == 1
    assert not (tmp_path / "c.parquet").exists()
    write_csv(tmp_path / "d.csv", [("3", "relabel:zebra")])
    code, _, err = run(["fix", data, "--decisions", tmp_path / "d.csv", "-o", tmp_path / "c.parquet"], capsys)
    assert code == 2 and "'zebra', which is not one of the classes" in err and err.count("\n") == 1
    assert np.all([not (tmp_path / "c.parquet").exists()])
