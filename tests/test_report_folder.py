"""Reading a report folder (labelqa.report.folder): issues, summary, and rebuilding report.html."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

import labelqa
from labelqa.errors import LabelqaError
from labelqa.report.folder import read_issues, read_summary, write_html
from tests.conftest import noisy_dataset, write_parquet


@pytest.fixture(scope="module")
def streamed_report(tmp_path_factory):
    """A report written batch by batch by the streaming engine (the rebuild reads it whole)."""
    base = tmp_path_factory.mktemp("folder")
    given, _, probs, _ = noisy_dataset(n=3000, k=4, noise=0.15, seed=3)
    path = write_parquet(base / "d.parquet", given, probs)
    out = base / "rep"
    with labelqa.scan(str(path), engine="stream", batch_size=256, max_issue_rate=0.05) as result:
        labelqa.write_report(result, out)
    return out


def test_read_issues_and_summary_of_a_written_report(streamed_report):
    issues = read_issues(streamed_report)
    assert issues.equals(pq.read_table(streamed_report / "issues.parquet"))
    assert issues.num_rows == 3000 and issues.column("rank").to_pylist() != []
    summary = read_summary(streamed_report)
    assert summary == json.loads((streamed_report / "summary.json").read_text())
    assert summary["issues_found"] == issues.column("is_label_issue").to_pylist().count(True)
    assert labelqa.read_issues is read_issues  # the public name


def test_read_errors(tmp_path):
    with pytest.raises(LabelqaError, match="no issues.parquet in report folder") as err:
        read_issues(tmp_path)
    assert "labelqa scan" in err.value.hint
    with pytest.raises(LabelqaError, match="no summary.json in report folder"):
        read_summary(tmp_path)
    (tmp_path / "issues.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(LabelqaError, match="cannot read .*issues.parquet") as err:
        read_issues(tmp_path)
    assert "re-run `labelqa scan`" in err.value.hint
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(LabelqaError, match="cannot read .*summary.json"):
        read_summary(tmp_path)
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(LabelqaError, match="not a labelqa summary"):
        read_summary(tmp_path)


def test_write_html_errors(tmp_path):
    with pytest.raises(LabelqaError, match="no summary.json"):
        write_html(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(LabelqaError, match="cannot read"):
        write_html(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(LabelqaError, match="issues.parquet"):
        write_html(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_write_html_rebuilds_a_streamed_report(streamed_report, tmp_path):
    """From summary.json and issues.parquet alone, the page the streamed scan wrote (gate included)."""
    written = (streamed_report / "report.html").read_text(encoding="utf-8")
    assert "FAILED" in written  # the gate was decided on the streamed result
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("summary.json", "issues.parquet"):
        (out / name).write_bytes((streamed_report / name).read_bytes())
    assert write_html(out) == out / "report.html"
    assert (out / "report.html").read_text(encoding="utf-8") == written
    assert sorted(p.name for p in out.iterdir()) == ["issues.parquet", "report.html", "summary.json"]
    # fewer rows asked: a different (smaller) page, still rebuilt atomically over the old one
    write_html(out, max_rows=3)
    small = (out / "report.html").read_text(encoding="utf-8")
    assert small != written and len(small) < len(written)


def test_write_html_refuses_a_bad_evaluation(streamed_report, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("summary.json", "issues.parquet"):
        (out / name).write_bytes((streamed_report / name).read_bytes())
    (out / "evaluation.json").write_text("{oops")
    with pytest.raises(LabelqaError, match="cannot read .*evaluation.json") as err:
        write_html(out)
    assert "labelqa evaluate" in err.value.hint
    assert not (out / "report.html").exists()
