"""`labelqa evaluate` from the command line: truth column, injected noise, outputs, config, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelqa.cli import evaluate_cmd
from labelqa.cli.app import app, main
from labelqa.detectors.confident import ConfidentLearning
from tests.conftest import SHARED_DATA


@pytest.fixture(autouse=True)
def registered():
    """Register the command when the app does not (yet) have it."""
    names = {c.name for c in app.registered_commands}
    if "evaluate" not in names:
        app.command("evaluate")(evaluate_cmd.evaluate)
        yield
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "evaluate"]
    else:
        yield


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_truth_column_table(noisy_parquet, capsys):
    path, flipped = noisy_parquet
    code, out, err = run(["evaluate", path, "--truth-col", "true_label"], capsys)
    assert code == 0, err
    assert "Precision" in out and "AUROC" in out and "P@true" in out
    assert f"{int(flipped.sum()):,} label errors in 2,000 rows" in out
    assert err == ""


def test_json_stdout_equals_file(noisy_parquet, tmp_path, capsys):
    path, flipped = noisy_parquet
    code, out, _ = run(["evaluate", path, "--truth-col", "true_label", "--format", "json", "-o", tmp_path / "rep"],
                       capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc == json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    assert doc["true_errors"] == int(flipped.sum())
    assert doc["truth"] == {"kind": "column", "column": "true_label"}
    cl = doc["detectors"]["cl"]
    assert cl["precision"] > 0.8 and cl["recall"] > 0.6 and cl["auroc"] > 0.9
    assert set(cl) >= {"precision", "recall", "f1", "auroc", "average_precision", "precision_at_true_count"}


def test_truth_never_reaches_the_detectors(noisy_parquet, monkeypatch, capsys):
    path, _ = noisy_parquet
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = table.schema.metadata and json.loads(table.schema.metadata[b"labelqa.classes"])
    given = np.array([names.index(v) for v in table.column("label").to_pylist()])
    truth = np.array([names.index(v) for v in table.column("true_label").to_pylist()])
    seen = []
    original = ConfidentLearning.detect

    def spy(self, data):
        seen.append(data)
        return original(self, data)

    monkeypatch.setattr(ConfidentLearning, "detect", spy)
    code, _, err = run(["evaluate", path, "--truth-col", "true_label", "-q"], capsys)
    assert code == 0, err
    (data,) = seen
    assert np.array_equal(data.labels, given) and not np.array_equal(data.labels, truth)
    assert data.embeddings is None and data.logits_by_epoch is None
    assert "true_label" not in json.dumps(data.meta, default=str)


def test_injected_noise_is_seeded(noisy_parquet, capsys):
    path, _ = noisy_parquet
    argv = ["evaluate", path, "--inject-noise", "uniform:0.2", "--format", "json"]
    a = json.loads(run(argv + ["--seed", "1"], capsys)[1])
    b = json.loads(run(argv + ["--seed", "1"], capsys)[1])
    c = json.loads(run(argv + ["--seed", "2"], capsys)[1])
    assert a == b and a != c
    assert a["truth"]["kind"] == "injected" and a["truth"]["noise"] == "uniform" and "never saw" in a["truth"]["caveat"]
    assert abs(a["true_noise_rate"] - 0.2) < 5 * np.sqrt(0.2 * 0.8 / 2000)


def test_injected_noise_table_shows_caveat(noisy_parquet, capsys):
    path, _ = noisy_parquet
    code, out, _ = run(["evaluate", path, "--inject-noise", "pairflip:0.1"], capsys)
    assert code == 0
    assert "pairflip noise injected at rate 0.1 (seed 0)" in out and "Note:" in out


def test_markdown(noisy_parquet, capsys):
    path, _ = noisy_parquet
    code, out, _ = run(["evaluate", path, "--truth-col", "true_label", "--format", "markdown"], capsys)
    assert code == 0
    assert "| Detector | Flagged | Precision |" in out and "| cl |" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs ground truth"),
        (["--inject-noise", "uniform"], "KIND:RATE"),
        (["--truth-col", "nope"], "no column 'nope'"),
        (["--truth-col", "label"], "is the label column"),
        (["--truth-col", "pred_probs"], "detector input"),
    ],
)
def test_errors_exit_2_with_one_line(noisy_parquet, tmp_path, capsys, extra, message):
    path, _ = noisy_parquet
    code, out, err = run(["evaluate", path, "-o", tmp_path / "rep", *extra], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("labelqa: error:")
    assert not (tmp_path / "rep").exists()


def test_config_file_supplies_defaults(noisy_parquet, tmp_path, monkeypatch, capsys):
    path, _ = noisy_parquet
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labelqa.toml").write_text('[evaluate]\ntruth_col = "true_label"\nformat = "json"\n'
                                           '[scan]\nfilter_by = "predicted_neq_given"\nformat = "human"\n')
    code, out, err = run(["evaluate", path], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["truth"]["column"] == "true_label"
    flagged = doc["detectors"]["cl"]["flagged"]
    code, out, _ = run(["evaluate", path, "--filter-by", "prune_by_noise_rate"], capsys)  # the flag wins
    assert json.loads(out)["detectors"]["cl"]["flagged"] != flagged


def test_config_unknown_key(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    cfg = tmp_path / "ci.toml"
    cfg.write_text("[evaluate]\ntruth_column = 'x'\n")
    code, _, err = run(["evaluate", path, "--config", cfg], capsys)
    assert code == 2 and "unknown key 'truth_column'" in err and str(cfg) in err


CIFAR = sorted((SHARED_DATA / "cifar10n").glob("*.parquet"))


@pytest.mark.skipif(not CIFAR, reason="CIFAR-10N benchmark files not available")
def test_cifar10n_aggre(capsys):
    path = next(p for p in CIFAR if "aggre_resnet18" in p.name)
    code, out, err = run(["evaluate", path, "--truth-col", "true_label", "--format", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["true_errors"] == 4505
    cl = doc["detectors"]["cl"]
    assert cl["precision"] > 0.8 and cl["auroc"] > 0.95
