"""`labelqa fix` from the command line."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from labelqa.cli.app import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fix_with_and_without_report(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    code, out, err = run(["fix", path, "--out", tmp_path / "a.parquet"], capsys)
    assert code == 0, err
    assert "relabelled" in out
    assert run(["scan", path, "-o", tmp_path / "rep", "-q"], capsys)[0] == 0
    code, _, err = run(["fix", path, "--report", tmp_path / "rep", "--out", tmp_path / "b.parquet", "-q"], capsys)
    assert code == 0, err
    a = pq.read_table(tmp_path / "a.parquet")
    b = pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b)  # scanning now or reusing the report gives the same result


def test_min_confidence_and_strategies(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    counts = {}
    for p in ("0", "0.9"):
        out = tmp_path / f"r{p}.parquet"
        assert run(["fix", path, "-o", out, "--min-confidence", p, "-q"], capsys)[0] == 0
        actions = np.array(pq.read_table(out).column("fix_action").to_pylist())
        counts[p] = ((actions == "relabel").sum(), (actions == "flag").sum())
    assert counts["0.9"][0] < counts["0"][0]
    assert sum(counts["0.9"]) == sum(counts["0"])  # same flagged rows, split differently
    out = tmp_path / "d.parquet"
    assert run(["fix", path, "-o", out, "--strategy", "drop", "-q"], capsys)[0] == 0
    assert pq.read_table(out).num_rows == 2000 - counts["0"][0]


def test_fix_errors_exit_2(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    out = tmp_path / "x.parquet"
    out.write_text("keep me")
    code, _, err = run(["fix", path, "-o", out], capsys)
    assert code == 2 and "--force" in err and err.count("\n") == 1
    assert out.read_text() == "keep me"
    code, _, err = run(["fix", path, "-o", tmp_path / "y.parquet", "--report", tmp_path / "nothing"], capsys)
    assert code == 2 and "issues.parquet" in err
    code, _, err = run(["fix", path, "-o", tmp_path / "z.parquet", "--strategy", "burn"], capsys)
    assert code == 2
