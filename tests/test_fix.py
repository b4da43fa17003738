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


# --------------------------------------------------------------------------- in-memory data (pandas in, pandas out)
@pytest.fixture
def noisy_frame():
    """300 rows, 3 named classes, 30 labels flipped; probabilities that know the truth."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n, k = 300, 3
    truth = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n) * 0.3
    probs[np.arange(n), truth] += 1
    probs /= probs.sum(1, keepdims=True)
    given = truth.copy()
    flip = rng.choice(n, 30, replace=False)
    given[flip] = (given[flip] + 1) % k
    names = np.array(["ant", "bee", "cat"])
    df = pd.DataFrame({"text": [f"t{i}" for i in range(n)], "score": np.arange(n, dtype=np.int32),
                       "label": names[given]}, index=[f"r{i}" for i in range(n)])
    return df, probs, names[truth]


def test_fix_dataframe_returns_cleaned_dataframe(noisy_frame, tmp_path, monkeypatch):
    import pandas as pd

    df, probs, truth = noisy_frame
    before = df.copy()
    monkeypatch.chdir(tmp_path)
    out = fix(df, pred_probs=probs)
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == list(df.index) and out["score"].dtype == np.int32
    assert list(out.columns) == ["text", "score", "label", "label_original", "label_fixed", "fix_action"]
    pd.testing.assert_frame_equal(df, before)  # the input is untouched
    flags = scan(df, pred_probs=probs).is_label_issue
    np.testing.assert_array_equal(out["fix_action"].to_numpy() == "relabel", flags)
    assert out["label_original"].tolist() == df["label"].tolist()
    assert (out["label"] == out["label_fixed"]).all()
    assert (out["label"].to_numpy() == truth).mean() > (df["label"].to_numpy() == truth).mean() + 0.05

    dropped = fix(df, pred_probs=probs, strategy="drop")
    assert list(dropped.index) == list(df.index[~flags])
    assert (dropped["label"].to_numpy() == dropped["label_original"].to_numpy()).all()


def test_fix_in_memory_kinds(noisy_frame):
    df, probs, _truth = noisy_frame
    table = pa.Table.from_pandas(df, preserve_index=False)
    expected = fix(df, pred_probs=probs)["label"].tolist()
    from_table = fix(table, pred_probs=probs)
    assert isinstance(from_table, pa.Table) and from_table.column("label").to_pylist() == expected
    from_reader = fix(table.to_reader(max_chunksize=64), pred_probs=probs)
    assert from_reader.column("label").to_pylist() == expected
    as_dict = fix({"label": df["label"].to_numpy(), "pred_probs": probs})
    assert isinstance(as_dict, dict) and as_dict["pred_probs"].shape == probs.shape
    assert as_dict["label"].tolist() == expected
    codes = np.searchsorted(["ant", "bee", "cat"], df["label"].to_numpy())
    arrays = fix(labels=codes, pred_probs=probs)
    assert set(arrays) == {"label", "label_original", "label_fixed", "fix_action"}  # no copy of pred_probs back
    assert np.array(["ant", "bee", "cat"])[arrays["label"]].tolist() == expected


def test_fix_in_memory_with_out_writes(noisy_frame, tmp_path):
    df, probs, _truth = noisy_frame
    dest = tmp_path / "clean.csv"
    result = fix(df, pred_probs=probs, out=dest)
    assert result.out == dest and dest.exists()
    import pyarrow.csv as pacsv

    written = pacsv.read_csv(dest)
    assert written.column("label").to_pylist() == fix(df, pred_probs=probs)["label"].tolist()
    assert "__labelqa_row__" not in written.column_names
    with pytest.raises(LabelqaError, match="already exists"):
        fix(df, pred_probs=probs, out=dest)


def test_fix_multilabel_dataframe():
    import pandas as pd

    rng = np.random.default_rng(4)
    n, k = 300, 3
    truth = rng.random((n, k)) < 0.4
    probs = np.clip(truth * 0.6 + rng.normal(0, 0.15, (n, k)) + 0.2, 0.001, 0.999)
    noisy = truth ^ (rng.random((n, k)) < 0.05)
    names = np.array(["x", "y", "z"])
    df = pd.DataFrame({"tags": [names[r].tolist() for r in noisy]})
    out = fix(df, label_col="tags", pred_probs=probs)
    assert isinstance(out["tags"].iloc[0], list)
    fixed = np.array([[c in row for c in names] for row in out["tags"]])
    assert (fixed != truth).sum() < (noisy != truth).sum()


def test_fix_errors_for_memory_and_files(noisy_frame, noisy_parquet):
    from labelqa.data import load

    df, probs, _truth = noisy_frame
    with pytest.raises(LabelqaError, match="needs an output file"):
        fix(noisy_parquet[0])
    with pytest.raises(LabelqaError, match="LabelData"):
        fix(load(noisy_parquet[0]))
    with pytest.raises(LabelqaError, match="rows"):
        fix(df, pred_probs=probs[:10])


def test_fix_dataframe_from_a_report(noisy_frame, tmp_path):
    df, probs, _truth = noisy_frame
    write_report(scan(df, pred_probs=probs, filter_by="both"), tmp_path / "rep")
    from_report = fix(df, report=tmp_path / "rep")  # the report's flags; no probabilities needed now
    now = fix(df, pred_probs=probs, filter_by="both")
    assert from_report["fix_action"].tolist() == now["fix_action"].tolist()
    assert from_report["label"].tolist() == now["label"].tolist()
    with pytest.raises(LabelqaError, match="does not match"):
        fix(df.iloc[::-1], report=tmp_path / "rep")


def test_fix_dataframe_with_decisions(noisy_frame, tmp_path):
    df, probs, _truth = noisy_frame
    (tmp_path / "d.csv").write_text("id,decision\n0,drop\n1,relabel:cat\n2,keep\n")
    out = fix(df, decisions=tmp_path / "d.csv")  # undecided rows keep their label: no scan, no probabilities
    assert list(out.index) == list(df.index[1:])  # row 0 dropped, the index kept
    assert out.loc["r1", "label"] == "cat" and out.loc["r1", "fix_action"] == "reviewed_relabel"
    assert (out["fix_action"].iloc[2:] == "keep").all()
