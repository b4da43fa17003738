"""`labelqa scan` from the command line: outputs, formats, gate and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.cli.app import main
from tests.conftest import TOY_LABELS, TOY_PROBS, write_parquet


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_writes_report_and_shows_summary(noisy_parquet, tmp_path, capsys):
    path, flipped = noisy_parquet
    code, out, err = run(["scan", path, "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    assert "Label issues" in out and "Top 10" in out
    assert err == ""  # no progress noise when stderr is not a terminal
    issues = pq.read_table(tmp_path / "rep" / "issues.parquet")
    flags = np.array(issues.column("is_label_issue").to_pylist())
    precision = flipped[flags].mean()
    recall = flags[flipped].mean()
    assert precision > 0.8 and recall > 0.6, (precision, recall)


def test_format_json_prints_summary_only(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    code, out, err = run(["scan", path, "-o", tmp_path / "rep", "--format", "json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary == json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["gate"]["passed"] is True
    assert err == ""


def test_format_markdown(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    code, out, _ = run(["scan", path, "-o", tmp_path / "rep", "--format", "markdown", "-q"], capsys)
    assert code == 0
    assert out == (tmp_path / "rep" / "summary.md").read_text()


def test_gate_exit_codes(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    code, _, err = run(["scan", path, "-o", tmp_path / "a", "--max-issue-rate", "0.01", "-q"], capsys)
    assert code == 1
    assert "quality gate failed" in err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["gate"]["passed"] is False  # the report is still written
    code, _, _ = run(["scan", path, "-o", tmp_path / "b", "--max-issue-rate", "0.01", "--exit-zero", "-q"], capsys)
    assert code == 0
    code, _, _ = run(["scan", path, "-o", tmp_path / "c", "--max-issue-rate", "0.5", "-q"], capsys)
    assert code == 0


def test_quiet_prints_nothing(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    code, out, err = run(["scan", path, "-o", tmp_path / "rep", "-q"], capsys)
    assert code == 0 and out == "" and err == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--label-col", "nope"], "nope"),
        (["--filter-by", "magic"], "magic"),
        (["--max-issue-rate", "7"], "between 0 and 1"),
        (["--num-to-remove-per-class", "1,x"], "comma-separated"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_no_files(noisy_parquet, tmp_path, capsys, extra, message):
    path, _ = noisy_parquet
    code, out, err = run(["scan", path, "-o", tmp_path / "rep", *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelqa: error:") and message in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "rep").exists()


def test_missing_file_exit_2(tmp_path, capsys):
    code, _, err = run(["scan", tmp_path / "absent.parquet", "-o", tmp_path / "rep"], capsys)
    assert code == 2 and "absent.parquet" in err
    assert not (tmp_path / "rep").exists()


def test_bad_probabilities_exit_2(tmp_path, capsys):
    probs = TOY_PROBS.copy()
    probs[4, 0] = np.nan
    path = write_parquet(tmp_path / "bad.parquet", TOY_LABELS, probs)
    code, _, err = run(["scan", path, "-o", tmp_path / "rep"], capsys)
    assert code == 2 and "row 4" in err
    assert not (tmp_path / "rep").exists()


def test_usage_error_is_exit_2(capsys):
    code, _, err = run(["scan", "--no-such-option"], capsys)
    assert code == 2


def test_toy_every_method_flags_row_2(tmp_path, capsys):
    path = write_parquet(tmp_path / "toy.parquet", TOY_LABELS, TOY_PROBS)
    for method in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                   "low_self_confidence", "low_normalized_margin"):
        out = tmp_path / method
        code, _, err = run(["scan", path, "-o", out, "--filter-by", method, "-q"], capsys)
        assert code == 0, err
        flags = pq.read_table(out / "issues.parquet").column("is_label_issue").to_pylist()
        assert flags == [i == 2 for i in range(10)], method


def test_prob_columns_and_classes_option(tmp_path, capsys):
    import pyarrow.csv as pacsv

    names = ["x", "y", "z"]
    cols = {"label": pa.array(np.array(names)[TOY_LABELS])}
    for k, name in enumerate(names):
        cols[f"prob_{name}"] = pa.array(TOY_PROBS[:, k])
    path = tmp_path / "toy.csv"
    pacsv.write_csv(pa.table(cols), path)
    code, _, err = run(["scan", path, "-o", tmp_path / "rep", "-q"], capsys)
    assert code == 0, err
    issues = pq.read_table(tmp_path / "rep" / "issues.parquet")
    assert issues.column("suggested_label")[2].as_py() == "z"


def test_console_script_runs(noisy_parquet, tmp_path):
    exe = shutil.which("labelqa")
    cmd = [exe] if exe else [sys.executable, "-m", "labelqa"]
    path, _ = noisy_parquet
    proc = subprocess.run([*cmd, "scan", str(path), "-o", str(tmp_path / "rep"), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == 2000
    proc = subprocess.run([*cmd, "scan", str(tmp_path / "missing.csv")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1


def test_config_file_sets_defaults_and_flags_win(noisy_parquet, tmp_path, capsys, monkeypatch):
    path, _ = noisy_parquet
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labelqa.toml").write_text('[scan]\nfilter_by = "both"\n\n[gate]\nmax_issue_rate = 0.01\n')
    code, _, err = run(["scan", path, "-o", tmp_path / "a", "-q"], capsys)
    assert code == 1 and "quality gate failed" in err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["detectors"]["cl"]["params"]["filter_by"] == "both"
    code, _, _ = run(["scan", path, "-o", tmp_path / "b", "-q", "--max-issue-rate", "0.5"], capsys)
    assert code == 0  # the flag overrides the file
    (tmp_path / "labelqa.toml").write_text("[gate]\nmax_isue_rate = 0.01\n")
    code, _, err = run(["scan", path, "-o", tmp_path / "c", "-q"], capsys)
    assert code == 2 and "max_isue_rate" in err and not (tmp_path / "c").exists()


def test_format_github_annotations_and_step_summary(noisy_parquet, tmp_path, capsys, monkeypatch):
    path, _ = noisy_parquet
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    code, out, _ = run(["scan", path, "-o", tmp_path / "rep", "--format", "github", "--top", "4"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert sum(line.startswith("::warning ") for line in lines) == 4
    assert sum(line.startswith("::notice ") for line in lines) == 1
    assert step.read_text() == (tmp_path / "rep" / "summary.md").read_text()


def test_several_models(tmp_path, capsys):
    """Two probability columns are combined, and the report shows where the models disagree."""
    from tests.conftest import noisy_dataset

    given, _, p1, _ = noisy_dataset(n=3000, k=4, seed=1)
    _, _, p2, _ = noisy_dataset(n=3000, k=4, seed=2)  # a different (worse-matched) second model
    k = p1.shape[1]
    table = pa.table({
        "label": pa.array(given),
        "a": pa.FixedSizeListArray.from_arrays(pa.array(p1.reshape(-1)), k),
        "b": pa.FixedSizeListArray.from_arrays(pa.array(p2.reshape(-1)), k),
    })
    path = tmp_path / "two.parquet"
    pq.write_table(table, path)
    code, out, err = run(["scan", path, "--pred-probs-col", "a", "--pred-probs-col", "b", "-o", tmp_path / "r"],
                         capsys)
    assert code == 0, err
    assert "2 combined by log_linear" in out
    issues = pq.read_table(tmp_path / "r" / "issues.parquet")
    disagree = issues.column("models_disagree").to_numpy(zero_copy_only=False)
    assert np.array_equal(disagree, p1.argmax(1) != p2.argmax(1))
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["models"]["rows_disagree"] == int(disagree.sum())
    code, _, err = run(["scan", path, "--pred-probs-col", "a", "--pred-probs-col", "b", "--engine", "stream",
                        "-o", tmp_path / "s"], capsys)
    assert code == 2 and "several" in err


@pytest.mark.parametrize("argv, message", [
    (["scan", "--bogus"], "No such option: --bogus"),
    (["scan"], "Missing argument"),
    (["scan", "x.parquet", "--top", "abc"], "Invalid value for '--top'"),
    (["fix", "x.parquet", "--strategy"], "Option '--strategy' requires an argument"),
])
def test_usage_errors_are_clicks_messages_with_exit_2(argv, message, capsys):
    """Usage errors show the parser's own message (typer's copy of click or click), exit 2; not a crash line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"Error: {message}" in err
    assert "unexpected" not in err
