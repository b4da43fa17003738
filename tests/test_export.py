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


# --------------------------------------------------------------------------- Argilla
def test_argilla_records_and_settings_follow_argillas_shapes(report, capsys):
    code, out, err = run(["export", report, "--to", "argilla", "--top", "50"], capsys)
    assert code == 0, err
    records = json.loads((report / "review-argilla.json").read_text())
    settings = json.loads((report / "review-argilla.settings.json").read_text())
    assert "Wrote 50 flagged rows" in out and "review-argilla.settings.json" in out
    flagged = _flagged_in_rank_order(report).head(50)
    assert [r["metadata"]["labelqa_id"] for r in records] == [str(i) for i in flagged["id"]]
    (question,) = settings["questions"]
    assert question["name"] == "label" and question["settings"]["type"] == "label_selection"
    assert [o["value"] for o in question["settings"]["options"]] == ["ant", "bee", "cat", "dog", DROP_CHOICE]
    field_names = {f["name"] for f in settings["fields"]}
    meta_names = {m["name"] for m in settings["metadata"]}
    for record, (_, row) in zip(records, flagged.iterrows()):
        assert set(record) == {"id", "fields", "metadata", "suggestions", "responses", "vectors", "status",
                               "_server_id"}
        assert set(record["fields"]) <= field_names and set(record["metadata"]) <= meta_names
        suggestion = record["suggestions"]["label"]
        assert suggestion["value"] == row["suggested_label"] and suggestion["agent"] == "labelqa"
        assert suggestion["score"] == pytest.approx(row["suggested_confidence"], abs=1e-6)
        assert record["metadata"]["rank"] == row["rank"] and record["metadata"]["given_label"] == row["given_label"]
        assert record["fields"]["item"].startswith(f"id {row['id']}: labelled '{row['given_label']}'")
        assert record["responses"] == {} and record["status"] == "pending"


def test_argilla_sdk_loads_the_records_and_settings_when_installed(report, monkeypatch):
    """The argilla SDK's own loaders (optional test dependency) read both files; no server is contacted."""
    rg = pytest.importorskip("argilla")
    export_review(report, to="argilla", top=50)
    # building settings needs a client object; Argilla() checks the server on creation, which is skipped here
    monkeypatch.setattr(rg.Argilla, "_validate_connection", lambda self: None)
    monkeypatch.setattr(rg.Argilla, "_default_client", rg.Argilla(api_url="http://127.0.0.1:9", api_key="offline"))
    settings = rg.Settings.from_json(report / "review-argilla.settings.json")
    (question,) = settings.questions
    assert isinstance(question, rg.LabelQuestion) and question.labels == ["ant", "bee", "cat", "dog", DROP_CHOICE]
    assert [f.name for f in settings.fields] == ["item"]
    records = [rg.Record.from_dict(r) for r in json.loads((report / "review-argilla.json").read_text())]
    assert len(records) == 50
    for record in records:
        suggestion = record.suggestions["label"]
        assert suggestion.value in question.labels and 0 <= suggestion.score <= 1
        assert set(record.fields.to_dict()) <= {f.name for f in settings.fields}
        assert set(record.metadata.to_dict()) <= {m.name for m in settings.metadata}


def test_argilla_answers_come_back_through_fix(noisy_parquet, report, tmp_path, capsys):
    """Records exported back from Argilla (responses added) are a decisions file: keep, relabel, drop, undecided."""
    path, _ = noisy_parquet
    export_review(report, to="argilla", top=4)
    records = json.loads((report / "review-argilla.json").read_text())
    given = [r["metadata"]["given_label"] for r in records]
    other = [next(c for c in ("ant", "bee", "cat", "dog") if c != g) for g in given]
    answers = [[{"value": given[0], "user_id": "u1", "status": "submitted"}],
               [{"value": other[1], "user_id": "u1", "status": "submitted"},
                {"value": given[1], "user_id": "u2", "status": "discarded"}],
               [{"value": DROP_CHOICE, "user_id": "u1", "status": "submitted"}],
               []]
    for record, responses in zip(records, answers):
        record["responses"] = {"label": responses} if responses else {}
    answers_path = tmp_path / "argilla-export.json"
    answers_path.write_text(json.dumps(records))
    code, _, err = run(["fix", path, "--decisions", answers_path, "-o", tmp_path / "clean.parquet"], capsys)
    assert code == 0, err
    clean = pq.read_table(tmp_path / "clean.parquet").to_pandas()
    original = pq.read_table(path).to_pandas()
    assert len(clean) == len(original) - 1  # the dropped row is left out
    assert "reviewed_drop" not in set(clean["fix_action"])
    assert (clean["fix_action"] == "reviewed_keep").sum() == 1
    relabelled = clean[clean["fix_action"] == "reviewed_relabel"]
    assert relabelled["label"].tolist() == [other[1]] and relabelled["label_original"].tolist() == [given[1]]
    assert (clean["fix_action"] == "keep").sum() == len(original) - 3  # undecided rows keep their label
    # reviewers who disagree on a record are refused in one line
    records[3]["responses"] = {"label": [{"value": given[3], "user_id": "u1", "status": "submitted"},
                                         {"value": other[3], "user_id": "u2", "status": "submitted"}]}
    answers_path.write_text(json.dumps(records))
    code, _, err = run(["fix", path, "--decisions", answers_path, "-o", tmp_path / "clean2.parquet"], capsys)
    assert code == 2 and "different answers" in err and err.count("\n") == 1, err
    assert not (tmp_path / "clean2.parquet").exists()


# --------------------------------------------------------------------------- the review loop on digits images
@pytest.mark.slow
def test_digits_images_top_50_to_label_studio_and_every_decision_back(tmp_path, capsys):
    """The issue's done-when: digits as 8x8 images -> report -> Label Studio top 50 (the documented task format,
    and label-studio-sdk's parser when installed) -> an export with every kind of answer -> fix."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    data = tmp_path / "digits.parquet"
    proc = subprocess.run([sys.executable, str(repo / "examples" / "make_digits.py"), "--images", "--out", str(data)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rep = tmp_path / "rep"
    code, _, err = run(["scan", data, "--id-col", "id", "--show-cols", "pixels", "-o", rep, "-q"], capsys)
    assert code == 0, err
    code, out, err = run(["export", rep, "--to", "label-studio", "--top", "50"], capsys)
    assert code == 0 and "Wrote 50 flagged rows" in out, err
    tasks = json.loads((rep / "review.json").read_text())
    config = ET.fromstring((rep / "review.xml").read_text())
    image = config.find("Image")
    assert image.get("name") == "item" and image.get("value") == "$col_pixels"  # the digit is the labelled object
    classes = json.loads((rep / "summary.json").read_text())["classes"]
    assert [c.get("value") for c in config.find("Choices")] == [*classes, DROP_CHOICE]
    flagged = _flagged_in_rank_order(rep).head(50)
    assert [t["data"]["labelqa_id"] for t in tasks] == flagged["id"].tolist()
    for task in tasks:
        assert task["data"]["col_pixels"].startswith("data:image/png;base64,")
        (pred,) = task["predictions"]
        assert pred["result"][0]["value"]["choices"][0] in classes and 0 <= pred["score"] <= 1
    try:
        from label_studio_sdk.label_interface import LabelInterface
    except ImportError:
        LabelInterface = None
    if LabelInterface is not None:
        interface = LabelInterface((rep / "review.xml").read_text())
        for task in tasks:
            assert interface.validate_task({"data": task["data"]})
            assert interface.validate_prediction(task["predictions"][0], return_errors=True) == []

    # reviewers answer in Label Studio: keep, relabel, drop, a cancelled answer, no answer; then export as JSON
    def answered(task, *answers):
        anns = [{"id": i, "was_cancelled": cancelled, "result": [
            {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [choice]}}]}
            for i, (choice, cancelled) in enumerate(answers)]
        return {**task, "id": 1000 + task["data"]["rank"], "annotations": anns}

    given = [t["data"]["given_label"] for t in tasks]
    suggested = [t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks]
    exported = [answered(tasks[0], (given[0], False)),                    # keep
                answered(tasks[1], (suggested[1], False)),                # relabel to the suggestion
                answered(tasks[2], (DROP_CHOICE, False)),                 # drop
                answered(tasks[3], (suggested[3], False), (given[3], True)),  # the cancelled answer is ignored
                answered(tasks[4])] + tasks[5:]                           # not answered: undecided
    answers = tmp_path / "project.json"
    answers.write_text(json.dumps(exported))
    clean_path = tmp_path / "clean.parquet"
    code, _, err = run(["fix", data, "--id-col", "id", "--decisions", answers, "-o", clean_path], capsys)
    assert code == 0, err
    clean = pq.read_table(clean_path).to_pandas().set_index("id")
    ids = [t["data"]["labelqa_id"] for t in tasks]
    assert ids[2] not in clean.index and len(clean) == pq.read_metadata(data).num_rows - 1
    assert clean.loc[ids[0], "fix_action"] == "reviewed_keep" and clean.loc[ids[0], "label"] == given[0]
    for i in (1, 3):
        assert clean.loc[ids[i], "fix_action"] == "reviewed_relabel"
        assert clean.loc[ids[i], "label"] == suggested[i] and clean.loc[ids[i], "label_original"] == given[i]
    assert clean.loc[ids[4], "fix_action"] == "keep" and clean.loc[ids[4], "label"] == given[4]
    assert (clean["fix_action"] == "keep").sum() == len(clean) - 3
    assert "pixels" in clean.columns  # every input column as read


def test_argilla_multilabel_export_is_a_multi_label_question(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "examples" / "multilabel" / "digits_attributes_noisy.parquet"
    rep = tmp_path / "rep"
    code, _, err = run(["scan", data, "--label-col", "labels", "-o", rep, "-q"], capsys)
    assert code == 0, err
    result = export_review(rep, to="argilla", top=20)
    records = json.loads(result.path.read_text())
    settings = json.loads(result.config.read_text())
    (question,) = settings["questions"]
    assert question["settings"]["type"] == "multi_label_selection" and question["type"] == "multi_label_selection"
    flagged = _flagged_in_rank_order(rep).head(20)
    for record, (_, row) in zip(records, flagged.iterrows()):
        assert record["suggestions"]["label"]["value"] == [str(c) for c in row["suggested_label"]]
        assert record["metadata"]["given_label"] == [str(c) for c in row["given_label"]]
    try:
        import argilla as rg
    except ImportError:
        return
    monkeypatch.setattr(rg.Argilla, "_validate_connection", lambda self: None)
    monkeypatch.setattr(rg.Argilla, "_default_client", rg.Argilla(api_url="http://127.0.0.1:9", api_key="offline"))
    (q,) = rg.Settings.from_json(result.config).questions
    assert isinstance(q, rg.MultiLabelQuestion)
    for record in records:
        assert set(rg.Record.from_dict(record).suggestions["label"].value) <= set(q.labels)


def test_a_new_scan_into_a_folder_holding_review_files_says_so_and_keeps_them(noisy_parquet, report, capsys):
    """The default export lands in the report folder; a re-scan there would leave it stale, and a reviewer may
    be editing it: refused with a line naming the review files, which stay as they were."""
    path, _ = noisy_parquet
    for to in ("label-studio", "csv"):
        assert run(["export", report, "--to", to, "--top", "5"], capsys)[0] == 0
    review = {p.name: p.read_bytes() for p in report.iterdir() if p.name.startswith("review")}
    assert set(review) == {"review.json", "review.xml", "review.csv"}
    code, _, err = run(["scan", path, "-o", report, "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "review files from labelqa export" in err and "'review.csv'" in err and "move them out" in err
    assert {p.name: p.read_bytes() for p in report.iterdir() if p.name.startswith("review")} == review
    for name in review:
        (report / name).rename(report.parent / name)
    assert run(["scan", path, "-o", report, "-q"], capsys)[0] == 0
