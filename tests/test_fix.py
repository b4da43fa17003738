"""Fix strategies: relabel, drop, flag, the confidence rule, and file safety."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.errors import LabelqaError
from labelqa.fix import apply_fix, fix, plan_actions
from labelqa.report.writers import write_report
from labelqa.scan import scan


def test_plan_actions_truth_table():
    issue = np.array([True, True, False, True])
    conf = np.array([0.9, 0.4, 0.99, np.nan])
    assert plan_actions(issue, conf, strategy="relabel", min_confidence=0.5).tolist() == [
        "relabel", "flag", "keep", "flag"]
    assert plan_actions(issue, conf, strategy="drop", min_confidence=0.5).tolist() == ["drop", "flag", "keep", "flag"]
    assert plan_actions(issue, conf, strategy="flag", min_confidence=0.0).tolist() == ["flag", "flag", "keep", "flag"]
    # unknown confidence passes only the default rule
    assert plan_actions(issue, conf, strategy="relabel").tolist() == ["relabel", "relabel", "keep", "relabel"]


def test_plan_actions_rejects_bad_options():
    with pytest.raises(LabelqaError, match="unknown fix strategy"):
        plan_actions(np.array([True]), np.array([1.0]), strategy="burn")  # type: ignore[arg-type]
    with pytest.raises(LabelqaError, match="min-confidence"):
        plan_actions(np.array([True]), np.array([1.0]), min_confidence=2.0)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_relabel_end_to_end(noisy_parquet, tmp_path):
    path, flipped = noisy_parquet
    before = sha(path)
    out = tmp_path / "clean.parquet"
    res = fix(path, out=out)
    assert sha(path) == before  # the input is never modified
    table = pq.read_table(out)
    original = pq.read_table(path)
    assert table.num_rows == original.num_rows
    for col in original.column_names:  # every input column kept, in order
        assert col in table.column_names
    assert table.column_names[-3:] == ["label_original", "label_fixed", "fix_action"]
    assert table.column("label_original").equals(original.column("label"))
    assert table.column("label").equals(table.column("label_fixed"))
    action = np.array(table.column("fix_action").to_pylist())
    changed = np.array(table.column("label_fixed").to_pylist()) != np.array(table.column("label_original").to_pylist())
    assert np.array_equal(changed, action == "relabel")
    assert res.actions["relabel"] == changed.sum() > 0
    # relabelling moves labels toward the truth: fewer wrong labels after the fix
    truth = np.array(original.column("true_label").to_pylist())
    wrong_before = (np.array(table.column("label_original").to_pylist()) != truth).sum()
    wrong_after = (np.array(table.column("label_fixed").to_pylist()) != truth).sum()
    assert wrong_after < 0.6 * wrong_before


def test_drop_with_report_and_min_confidence(noisy_parquet, tmp_path):
    path, _ = noisy_parquet
    result = scan(path)
    write_report(result, tmp_path / "rep")
    out = tmp_path / "clean.csv"
    res = fix(path, out=out, report=tmp_path / "rep", strategy="drop", min_confidence=0.8)
    flagged = int(result.is_label_issue.sum())
    conf = result.primary_result.suggested_confidence[result.is_label_issue]
    assert res.actions["drop"] == int((conf >= 0.8).sum())
    assert res.actions["flag"] == flagged - res.actions["drop"]
    assert res.table.num_rows == result.data.n_rows - res.actions["drop"]
    text = out.read_text()
    assert text.count("\n") == res.table.num_rows + 1
    assert '"drop"' not in text


def test_flag_changes_no_label(noisy_parquet, tmp_path):
    path, _ = noisy_parquet
    res = fix(path, out=tmp_path / "flagged.parquet", strategy="flag")
    t = res.table
    assert t.column("label").equals(t.column("label_original"))
    assert res.actions["flag"] > 0 and res.actions["relabel"] == 0


def test_refuses_to_overwrite(noisy_parquet, tmp_path):
    path, _ = noisy_parquet
    out = tmp_path / "clean.parquet"
    out.write_bytes(b"precious")
    with pytest.raises(LabelqaError, match="already exists"):
        fix(path, out=out)
    assert out.read_bytes() == b"precious"
    fix(path, out=out, force=True)
    assert pq.read_table(out).num_rows == 2000
    with pytest.raises(LabelqaError, match="is the input DATA"):
        fix(path, out=path, force=True)


def test_mismatched_report_is_rejected(noisy_parquet, tmp_path):
    path, _ = noisy_parquet
    result = scan(path)
    write_report(result, tmp_path / "rep")
    table = pq.read_table(path)
    labels = table.column("label").to_pylist()
    labels[5] = "dog" if labels[5] != "dog" else "cat"
    other = tmp_path / "other.parquet"
    pq.write_table(table.set_column(1, "label", pa.array(labels)), other)
    with pytest.raises(LabelqaError, match="row 5 has label"):
        fix(other, out=tmp_path / "x.parquet", report=tmp_path / "rep")
    assert not (tmp_path / "x.parquet").exists()


def test_apply_fix_keeps_int_label_type():
    table = pa.table({"label": pa.array([0, 1, 1], pa.int32()), "x": [1.0, 2.0, 3.0]})
    issues = pa.table({
        "id": pa.array([0, 1, 2], pa.int64()),
        "given_label": pa.array([0, 1, 1], pa.int64()),
        "suggested_label": pa.array([0, 0, 1], pa.int64()),
        "is_label_issue": [False, True, False],
        "suggested_confidence": [0.9, 0.7, 0.8],
    })
    out = apply_fix(table, issues).table
    assert out.schema.field("label").type == pa.int32()
    assert out.column("label").to_pylist() == [0, 0, 1]
    assert out.column("fix_action").to_pylist() == ["keep", "relabel", "keep"]


def test_unknown_output_suffix(noisy_parquet, tmp_path):
    path, _ = noisy_parquet
    with pytest.raises(LabelqaError, match="output format"):
        fix(path, out=tmp_path / "clean.xlsx")
