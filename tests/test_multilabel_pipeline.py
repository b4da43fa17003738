"""Multi-label data end to end: scan report columns, summary, terminal and fix."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from labelqa.cli.app import main
from tests.conftest import REPO

ML = REPO / "examples" / "multilabel" / "digits_attributes_noisy.parquet"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def truth():
    t = pq.read_table(ML, columns=["labels", "true_labels"])
    given = [set(x) for x in t.column("labels").to_pylist()]
    true = [set(x) for x in t.column("true_labels").to_pylist()]
    return given, true


def test_scan_multilabel_report(tmp_path, capsys, truth):
    code, out, err = run(["scan", ML, "--label-col", "labels", "-o", tmp_path / "r", "--csv"], capsys)
    assert code == 0, err
    assert "change" in out and "remove" in out
    issues = pq.read_table(tmp_path / "r" / "issues.parquet")
    for col in ("labels_to_remove", "labels_to_add"):
        assert col in issues.column_names
    # one detector: no columns repeating suggested_label, label_quality or is_label_issue
    assert not {"suggested_labels", "mlcl_score", "mlcl_issue"} & set(issues.column_names)
    rows = issues.to_pylist()
    given, true = truth
    for r, g in zip(rows, given):
        assert set(r["given_label"]) == g
        removed, added = set(r["labels_to_remove"]), set(r["labels_to_add"])
        assert removed <= g and not (added & g)  # remove only present labels, add only absent ones
        assert set(r["suggested_label"]) == (g - removed) | added
        assert bool(removed or added) == r["is_label_issue"]
    flagged = np.array([r["is_label_issue"] for r in rows])
    noisy = np.array([g != t for g, t in zip(given, true)])
    assert (flagged & noisy).sum() / flagged.sum() > 0.7
    assert (flagged & noisy).sum() / noisy.sum() > 0.7
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["task"] == "multilabel"
    assert sum(c["should_remove"] for c in summary["per_class"]) == sum(len(r["labels_to_remove"]) for r in rows)
    assert sum(c["should_add"] for c in summary["per_class"]) == sum(len(r["labels_to_add"]) for r in rows)
    csv = pacsv.read_csv(tmp_path / "r" / "issues.csv")
    assert csv.num_rows == len(rows)
    assert "should remove" in (tmp_path / "r" / "summary.md").read_text()


def test_fix_multilabel_relabel_improves_labels(tmp_path, capsys, truth):
    out = tmp_path / "clean.parquet"
    code, _, err = run(["fix", ML, "--label-col", "labels", "-o", out, "-q"], capsys)
    assert code == 0, err
    t = pq.read_table(out)
    assert t.schema.field("labels").type == pq.read_schema(ML).field("labels").type
    _, true = truth
    before = sum(set(a) != b for a, b in zip(t.column("label_original").to_pylist(), true))
    after = sum(set(a) != b for a, b in zip(t.column("labels").to_pylist(), true))
    assert after < 0.5 * before


def test_fix_multilabel_min_confidence_from_report(tmp_path, capsys):
    assert run(["scan", ML, "--label-col", "labels", "-o", tmp_path / "r", "-q"], capsys)[0] == 0
    counts = {}
    for p in ("0", "0.95"):
        out = tmp_path / f"c{p}.parquet"
        code, _, err = run(["fix", ML, "--label-col", "labels", "--report", tmp_path / "r", "-o", out,
                            "--min-confidence", p, "-q"], capsys)
        assert code == 0, err
        actions = pq.read_table(out).column("fix_action").to_pylist()
        counts[p] = (actions.count("relabel"), actions.count("flag"))
    assert counts["0.95"][0] < counts["0"][0]
    assert sum(counts["0.95"]) == sum(counts["0"])


def test_fix_multilabel_delimited_csv_round_trip(tmp_path, capsys):
    t = pq.read_table(ML, columns=["id", "labels", "pred_probs"])
    classes = json.loads(pq.read_schema(ML).metadata[b"labelqa.classes"])
    text = pa.compute.binary_join(t.column("labels"), "|")
    probs = pa.compute.binary_join_element_wise(
        "[", pa.compute.binary_join(pa.compute.cast(t.column("pred_probs"), pa.list_(pa.string())), ","), "]", "")
    src = tmp_path / "ml.csv"
    pacsv.write_csv(pa.table({"id": t.column("id"), "labels": text, "pred_probs": probs}), src)
    out = tmp_path / "clean.csv"
    code, _, err = run(["fix", src, "--label-col", "labels", "--label-sep", "|", "--classes", ",".join(classes),
                        "-o", out, "-q"], capsys)
    assert code == 0, err
    fixed = pacsv.read_csv(out)
    assert pa.types.is_string(fixed.schema.field("labels").type)
    assert "relabel" in fixed.column("fix_action").to_pylist()


def test_aum_and_nrg_refuse_multilabel(tmp_path, capsys):
    code, _, err = run(["scan", ML, "--label-col", "labels", "--detectors", "cl,nrg", "-o", tmp_path / "r"], capsys)
    assert code == 2 and "multi-label" in err
