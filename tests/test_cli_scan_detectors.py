"""`labelqa scan` with AUM and NRG inputs: options reach the loader and detectors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from labelqa.cli.app import main
from tests.conftest import REPO

DIGITS = REPO / "examples" / "digits" / "digits_noisy.parquet"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def noisy_mask():
    t = pq.read_table(DIGITS, columns=["label", "true_label"])
    return np.array(t.column("label").to_pylist()) != np.array(t.column("true_label").to_pylist())


def test_embeddings_column_runs_nrg(tmp_path, capsys):
    code, _, err = run(["scan", DIGITS, "--embeddings-col", "features", "-o", tmp_path / "r", "-q",
                        "--outlier-rate", "0.02", "--nrg-mode", "exact"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["detectors_run"] == ["cl", "nrg"]
    assert summary["detectors"]["nrg"]["params"]["outlier_rate"] == 0.02
    assert summary["detectors"]["nrg"]["params"]["nrg_mode"] == "exact"  # params are spelled like the flags
    issues = pq.read_table(tmp_path / "r" / "issues.parquet")
    assert issues.column("is_outlier").to_numpy().sum() == summary["outliers_found"] > 0
    nrg_flags = issues.column("nrg_issue").to_numpy()
    noisy = noisy_mask()
    assert noisy[nrg_flags].mean() > 0.5  # most NRG flags are injected errors


def test_detectors_option_limits_the_run(tmp_path, capsys):
    code, _, err = run(["scan", DIGITS, "--embeddings-col", "features", "--detectors", "cl", "-o", tmp_path / "r",
                        "-q"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["detectors_run"] == ["cl"]
    code, _, err = run(["scan", DIGITS, "--detectors", "nrg", "-o", tmp_path / "s"], capsys)
    assert code == 2 and "embeddings" in err and not (tmp_path / "s").exists()


def test_aum_options_need_dynamics(tmp_path, capsys):
    code, _, err = run(["scan", DIGITS, "--aum-cutoff", "0.5", "-o", tmp_path / "r"], capsys)
    assert code == 2 and "--logits-by-epoch" in err


def test_train_then_scan_with_dynamics(tmp_path, capsys):
    pytest.importorskip("torch")
    code, _, err = run(["train", DIGITS, "--features-col", "features", "--epochs", "12", "-o", tmp_path / "t", "-q"],
                       capsys)
    assert code == 0, err
    code, _, err = run(["scan", tmp_path / "t" / "data.parquet", "--logits-by-epoch", tmp_path / "t" / "dynamics",
                        "-o", tmp_path / "r", "-q"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["detectors_run"] == ["cl", "aum"]
    issues = pq.read_table(tmp_path / "r" / "issues.parquet")
    aum = issues.column("aum").to_numpy()
    noisy = noisy_mask()
    assert aum[noisy].mean() < aum[~noisy].mean()
    flags = issues.column("aum_issue").to_numpy()
    assert noisy[flags].mean() > 0.6 and flags[noisy].mean() > 0.8


def test_aum_options_reach_the_detector(tmp_path, capsys):
    from tests.conftest import random_dynamics, write_parquet

    labels, z = random_dynamics(e=3, n=40, k=3, seed=2)
    probs = np.full((40, 3), 1 / 3)
    write_parquet(tmp_path / "d.parquet", labels, probs)
    np.save(tmp_path / "z.npy", z)
    code, _, err = run(["scan", tmp_path / "d.parquet", "--logits-by-epoch", tmp_path / "z.npy",
                        "--aum-percentile", "25", "-o", tmp_path / "r", "-q"], capsys)
    assert code == 0, err
    aum = json.loads((tmp_path / "r" / "summary.json").read_text())["detectors"]["aum"]
    assert aum["params"]["aum_percentile"] == 25 and aum["params"]["aum_cutoff"] is None
    assert aum["summary"]["rule"] == "percentile" and aum["issues_found"] == 10
