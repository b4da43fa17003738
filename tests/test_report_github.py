"""GitHub Actions output: workflow-command annotations and the step summary."""

from __future__ import annotations

import numpy as np
import pytest

from labelqa.data.model import LabelData
from labelqa.gate import check_gate, gate_rules
from labelqa.report.github import (
    append_step_summary,
    escape_data,
    escape_property,
    github_annotations,
    workflow_command,
)
from labelqa.scan import scan
from tests.conftest import TOY_LABELS, TOY_PROBS, noisy_dataset


def test_escaping():
    assert escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert escape_data("a:b,c") == "a:b,c"  # only properties escape : and ,
    assert workflow_command("warning", "x,y: 1%", file="d,1.csv", title="t:1", line=None) == (
        "::warning file=d%2C1.csv,title=t%3A1::x,y: 1%25"
    )
    assert workflow_command("notice", "plain") == "::notice::plain"


@pytest.fixture(scope="module")
def noisy():
    given, _, probs, _ = noisy_dataset(n=600, k=3, noise=0.2, seed=4)
    names = np.array(["cat", "dog", "emu"])
    return scan(LabelData.from_arrays(names[given], probs, classes=list(names), source="data/train.parquet"))


def test_top_issues_capped_with_notice_for_the_rest(noisy):
    summary = noisy.summary()
    table = noisy.issues_table()
    text = github_annotations(summary, table)
    lines = text.splitlines()
    warnings = [line for line in lines if line.startswith("::warning ")]
    notices = [line for line in lines if line.startswith("::notice ")]
    assert len(warnings) == 10 and len(notices) == 1
    assert noisy.n_issues > 10
    assert f"{noisy.n_issues - 10:,} more suspect labels not annotated ({noisy.n_issues:,} flagged of 600 rows)" \
        in notices[0]
    assert all(line.startswith("::warning file=data/train.parquet,title=labelqa%3A suspect label (rank ")
               for line in warnings)
    # the best-ranked issues, in rank order
    ranks = np.asarray(table.column("rank"))
    first = int(np.flatnonzero(ranks == 1)[0])
    assert f"row {first} (id {first}): given label" in warnings[0] and "(rank 1)" in warnings[0]
    assert "(rank 10)" in warnings[9]
    assert "line=" not in text  # Parquet rows have no line numbers
    assert text.endswith("\n") and "::error" not in text


def test_cap_file_and_line_numbers(noisy):
    text = github_annotations(noisy.summary(), noisy.issues_table(), cap=2, file="data/train.csv")
    warnings = [line for line in text.splitlines() if line.startswith("::warning")]
    assert len(warnings) == 2
    row = int(warnings[0].split("::", 2)[2].split()[1])
    assert f"file=data/train.csv,line={row + 2}," in warnings[0]  # header line + 1-based
    jsonl = github_annotations(noisy.summary(), noisy.issues_table(), cap=1, file="x.jsonl")
    assert f"line={row + 1}," in jsonl


def test_no_issues_table_only_counts(noisy):
    text = github_annotations(noisy.summary(), None)
    assert text.count("\n") == 1 and text.startswith("::notice ")


def test_failed_gate_is_an_error():
    result = scan(LabelData.from_arrays(TOY_LABELS, TOY_PROBS))  # 1 of 10 rows flagged
    summary = result.summary()
    summary["gate"] = check_gate(result, gate_rules(max_issue_rate=0.05, max_issues=0)).as_dict()
    lines = github_annotations(summary, result.issues_table()).splitlines()
    assert lines[0].startswith("::error title=labelqa quality gate failed::labelqa quality gate failed: issue rate "
                               "10.00%25 exceeds the maximum 5.00%25; 1 issue exceeds the maximum 0")
    assert len(lines) == 2 and lines[1].startswith("::warning ")  # the one issue, no notice
    summary["gate"] = check_gate(result, gate_rules(max_issue_rate=0.5)).as_dict()
    assert "::error" not in github_annotations(summary, result.issues_table())


def test_messages_with_newlines_stay_on_one_line():
    result = scan(LabelData.from_arrays(["a\nb", "c", "c", "c"], np.array(
        [[0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]), classes=["a\nb", "c"]))
    text = github_annotations(result.summary(), result.issues_table(), file="f")
    assert result.n_issues >= 1
    assert all(line.startswith("::") for line in text.splitlines())
    assert "a%0Ab" in text


def test_multilabel_label_sets():
    labels = [["a"], ["a", "b"], ["b"], []] * 5
    probs = np.tile([[0.9, 0.1], [0.9, 0.9], [0.1, 0.9], [0.1, 0.1]], (5, 1))
    probs[0] = [0.02, 0.98]
    result = scan(LabelData.from_arrays(labels, probs, task="multilabel", classes=["a", "b"]))
    text = github_annotations(result.summary(), result.issues_table(), file="f")
    assert result.n_issues == 1
    assert "row 0 (id 0): given label '{a}', suggested '{b}'" in text


def test_append_step_summary(tmp_path):
    target = tmp_path / "summary.md"
    target.write_text("# earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(target)}
    assert append_step_summary("## labelqa\n| a |", env=env) == target
    assert append_step_summary("more\n", env=env) == target
    assert target.read_text() == "# earlier step\n## labelqa\n| a |\nmore\n"
    assert append_step_summary("x", env={}) is None
    assert append_step_summary("x", env={"GITHUB_STEP_SUMMARY": ""}) is None
