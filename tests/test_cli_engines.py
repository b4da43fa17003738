"""`labelqa scan --engine`: the streaming engine gives the in-memory report through the CLI (the auto rule: test_run_engine.py)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from labelqa.cli.app import main
from tests.conftest import REPO, noisy_dataset, write_parquet

DIGITS = REPO / "examples" / "digits" / "digits_noisy.parquet"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def big(tmp_path):
    given, _, probs, _ = noisy_dataset(n=30_000, k=6, seed=9)
    return write_parquet(tmp_path / "big.parquet", given, probs)


def test_stream_engine_matches_memory_through_the_cli(big, tmp_path, capsys):
    code, _, err = run(["scan", big, "-o", tmp_path / "m", "--engine", "memory", "-q"], capsys)
    assert code == 0, err
    code, _, err = run(["scan", big, "-o", tmp_path / "s", "--engine", "stream", "--batch-size", "4096", "-q",
                        "--max-issue-rate", "0.01"], capsys)
    assert code == 1 and "quality gate failed" in err  # the gate works on the stream engine's summary too
    assert pq.read_table(tmp_path / "s" / "issues.parquet").equals(pq.read_table(tmp_path / "m" / "issues.parquet"))
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    m = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert s["gate"]["passed"] is False and s["options"]["engine"] == "stream"
    assert (s["issues_found"], s["estimated_noise_rate"]) == (m["issues_found"], m["estimated_noise_rate"])
    assert "Quality gate: FAILED" in (tmp_path / "s" / "summary.md").read_text()


def test_stream_refuses_what_it_cannot_run(tmp_path, capsys):
    code, _, err = run(["scan", DIGITS, "--engine", "stream", "--embeddings-col", "features", "-o", tmp_path / "r"],
                       capsys)
    assert code == 2 and "--engine memory" in err


def test_stream_engine_writes_report_html(big, tmp_path, capsys):
    code, _, err = run(["scan", big, "-o", tmp_path / "s", "--engine", "stream", "-q"], capsys)
    assert code == 0, err
    html = (tmp_path / "s" / "report.html").read_text()
    code, _, err = run(["scan", big, "-o", tmp_path / "m", "--engine", "memory", "-q"], capsys)
    mem = (tmp_path / "m" / "report.html").read_text()

    def section(page: str, pid: str) -> str:
        start = page.index(f'id="{pid}"')
        return page[start:page.index("</section>", start)]

    for pid in ("histogram", "issues", "heatmap" if 'id="heatmap"' in mem else "histogram"):
        assert section(html, pid) == section(mem, pid), pid


def test_stream_engine_multilabel_matches_memory(tmp_path, capsys):
    ml = REPO / "examples" / "multilabel" / "digits_attributes_noisy.parquet"
    for engine in ("memory", "stream"):
        code, _, err = run(["scan", ml, "--label-col", "labels", "--engine", engine, "--batch-size", "256",
                            "-o", tmp_path / engine, "-q"], capsys)
        assert code == 0, err
    assert pq.read_table(tmp_path / "stream" / "issues.parquet").equals(
        pq.read_table(tmp_path / "memory" / "issues.parquet"))
