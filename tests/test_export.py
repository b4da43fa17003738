"""`labelqa export`: a report's flagged rows, ranked, in Label Studio's task format, CSV or JSONL."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import pyarrow.parquet as pq
import pytest

from labelqa.cli.app import main
from labelqa.errors import LabelqaError
from labelqa.export import DROP_CHOICE, export_review, label_studio_tasks, labeling_config, review_rows


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def report(noisy_parquet, tmp_path, capsys):
    path, flipped = noisy_parquet
    code, _, err = run(["scan", path, "-o", tmp_path / "rep", "-q", "--csv"], capsys)
    assert code == 0, err
    return tmp_path / "rep"


def _flagged_in_rank_order(report_dir):
    issues = pq.read_table(report_dir / "issues.parquet").to_pandas()
    return issues[issues["is_label_issue"]].sort_values("rank")


def test_label_studio_tasks_follow_the_documented_shape(report, capsys):
    code, out, err = run(["export", report, "--top", "50"], capsys)
    assert code == 0, err
    assert "Wrote 50 flagged rows" in out
    tasks = json.loads((report / "review.json").read_text())
    flagged = _flagged_in_rank_order(report).head(50)
    assert len(tasks) == 50
    assert [t["data"]["labelqa_id"] for t in tasks] == flagged["id"].tolist()  # ranked, best first
    assert [t["data"]["rank"] for t in tasks] == list(range(1, 51))
    for task, (_, row) in zip(tasks, flagged.iterrows()):
        assert set(task) == {"data", "predictions"}
        assert task["data"]["given_label"] == row["given_label"] and task["data"]["reason"] == row["reason"]
        (pred,) = task["predictions"]
        assert pred["score"] == pytest.approx(row["suggested_confidence"], abs=1e-6)
        (result,) = pred["result"]
        assert result == {"from_name": "label", "to_name": "item", "type": "choices",
                          "value": {"choices": [row["suggested_label"]]}}
        assert task["data"]["item"].startswith(f"id {row['id']}: labelled '{row['given_label']}'")
    # the labeling config names the same from/to names and offers every class plus drop
    config = ET.fromstring((report / "review.xml").read_text())
    choices = config.find("Choices")
    assert choices.get("name") == "label" and choices.get("toName") == "item"
    assert config.find("Text").get("name") == "item" and config.find("Text").get("value") == "$item"
    assert [c.get("value") for c in choices] == ["ant", "bee", "cat", "dog", DROP_CHOICE]


def test_label_studio_sdk_accepts_the_tasks_when_installed(report):
    """label-studio-sdk's own parser (optional test dependency) reads the config and validates every task."""
    sdk = pytest.importorskip("label_studio_sdk.label_interface")
    export_review(report, top=50)
    interface = sdk.LabelInterface((report / "review.xml").read_text())
    tasks = json.loads((report / "review.json").read_text())
    for task in tasks:
        # validate_task(task) with predictions calls validate_prediction() without its argument (sdk 2.1.2),
        # so the data and the predictions are validated apart
        assert interface.validate_task({"data": task["data"]})
        for pred in task["predictions"]:
            assert interface.validate_prediction(pred, return_errors=True) == []
    wrong = json.loads(json.dumps(tasks[0]["predictions"][0]))
    wrong["result"][0]["value"]["choices"] = ["not a class"]
    assert interface.validate_prediction(wrong, return_errors=True)  # the parser does check the choices


def test_csv_and_jsonl_hold_every_flagged_row_and_an_empty_decision(report, capsys):
    flagged = _flagged_in_rank_order(report)
    assert run(["export", report, "--to", "csv"], capsys)[0] == 0
    with open(report / "review.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == flagged["id"].tolist()
    assert list(rows[0]) == ["rank", "id", "given_label", "suggested_label", "label_quality",
                             "suggested_confidence", "detectors", "reason", "decision"]
    assert all(r["decision"] == "" for r in rows)
    out = report / "mine.jsonl"
    assert run(["export", report, "--to", "jsonl", "--out", out, "--top", "5"], capsys)[0] == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == flagged["id"].head(5).tolist()
    assert all(r["decision"] is None for r in records)


def test_multilabel_tasks_predict_the_suggested_set(tmp_path):
    import pyarrow as pa

    issues = pa.table({
        "id": [0, 1], "given_label": [["a"], ["b"]], "suggested_label": [["a", "b"], []],
        "label_quality": [0.1, 0.2], "is_label_issue": [True, True], "rank": [1, 2],
        "suggested_confidence": [float("nan"), 0.5], "detectors": ["cl", "cl"], "reason": ["add 'b'", "remove 'b'"],
    })
    tasks = label_studio_tasks(review_rows(issues), multilabel=True)
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == ["a", "b"]
    assert "score" not in tasks[0]["predictions"][0]  # unknown confidence: no score rather than NaN
    assert tasks[1]["predictions"][0]["result"][0]["value"]["choices"] == []
    assert 'choice="multiple"' in labeling_config(["a", "b"], multilabel=True)


def test_class_names_are_escaped_in_the_config():
    config = labeling_config(['say "hi"', "<b>&"])
    values = [c.get("value") for c in ET.fromstring(config).iter("Choice")]
    assert values[:2] == ['say "hi"', "<b>&"]


def test_refusals_are_one_line_exit_2(report, tmp_path, capsys):
    assert run(["export", report, "--to", "csv"], capsys)[0] == 0
    code, _, err = run(["export", report, "--to", "csv"], capsys)
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    assert run(["export", report, "--to", "csv", "--force"], capsys)[0] == 0
    code, _, err = run(["export", report, "--to", "csv", "--out", tmp_path / "x.json"], capsys)
    assert code == 2 and "does not end in .csv" in err
    code, _, err = run(["export", tmp_path / "nowhere"], capsys)
    assert code == 2 and "no summary.json" in err and err.count("\n") == 1
    code, _, err = run(["export", report, "--to", "argilla2"], capsys)
    assert code == 2
    with pytest.raises(LabelqaError, match="top= must be"):
        export_review(report, top=-1)


def test_export_never_writes_over_the_report_it_reads(report, capsys):
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    for name in ("issues.csv", "summary.json"):
        to = "csv" if name.endswith(".csv") else "label-studio"
        code, _, err = run(["export", report, "--to", to, "--out", report / name, "--force"], capsys)
        assert code == 2 and "never writes over" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before


def test_review_csv_neutralises_formulas_unless_asked(tmp_path, capsys):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    n, classes = 120, ["=cmd|x", "+b", "c"]
    truth = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.05)
    probs[np.arange(n), truth] = 0.9
    labels = truth.copy()
    labels[:15] = (truth[:15] + 1) % 3
    pq.write_table(pa.table({"id": [f"@r{i}" for i in range(n)], "label": [classes[i] for i in labels],
                             **{f"prob_{c}": probs[:, j] for j, c in enumerate(classes)}}), tmp_path / "d.parquet")
    assert run(["scan", tmp_path / "d.parquet", "--id-col", "id", "-o", tmp_path / "rep", "-q"], capsys)[0] == 0
    assert run(["export", tmp_path / "rep", "--to", "csv", "--out", tmp_path / "safe.csv"], capsys)[0] == 0
    rows = list(csv.DictReader((tmp_path / "safe.csv").open()))
    assert rows and all(not v[:1] in "=+@" or v[:1] == "" for r in rows for k, v in r.items() if k != "label_quality")
    assert any(r["id"].startswith("'@r") for r in rows)
    assert run(["export", tmp_path / "rep", "--to", "csv", "--out", tmp_path / "raw.csv", "--csv-formulas"],
               capsys)[0] == 0
    raw = list(csv.DictReader((tmp_path / "raw.csv").open()))
    assert [r["id"] for r in raw] == [r["id"][1:] for r in rows]
