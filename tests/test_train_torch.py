"""The torch trainer that records AUM dynamics (labelqa.train.torch_model)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from labelqa.data.dynamics import MANIFEST, load_dynamics
from labelqa.detectors.aum import score_dynamics
from labelqa.errors import LabelqaError


def _noisy_blobs(n=600, k=3, d=8, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    x = rng.normal(scale=3, size=(k, d))[true] + rng.normal(size=(n, d))
    given = true.copy()
    flip = rng.random(n) < noise
    given[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    return x, given, true


def test_missing_torch_says_what_to_install(monkeypatch):
    from labelqa.train.torch_model import require_torch

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(LabelqaError, match="labelqa train needs torch") as exc:
        require_torch()
    assert "labelqa[torch]" in str(exc.value) and "torch==2.13.0" in str(exc.value)


def test_train_dynamics_writes_what_scan_reads_and_finds_flips(tmp_path):
    torch = pytest.importorskip("torch")
    from labelqa.train.torch_model import TrainConfig, train_dynamics

    x, given, true = _noisy_blobs()
    threads_before = torch.get_num_threads()
    progress = []
    cfg = TrainConfig(epochs=8, hidden=32, seed=1, threads=1)
    info = train_dynamics(x, given, 3, tmp_path / "dyn", config=cfg, runs=2, classes=["a", "b", "c"],
                          progress=lambda *a: progress.append(a))
    assert torch.get_num_threads() == threads_before  # settings restored
    assert len(progress) == 16 and progress[-1] == ("run 2/2", 8, 8)
    manifest = json.loads((tmp_path / "dyn" / MANIFEST).read_text())
    assert manifest["n_runs"] == 2 and manifest["producer"]["hidden"] == 32
    logits = np.load(tmp_path / "dyn" / "run0" / "logits.npy", mmap_mode="r")
    assert logits.shape == (8, 600, 4) and logits.dtype == np.float32
    dyn = load_dynamics(tmp_path / "dyn", 600, 3, classes=["a", "b", "c"], labels=given)
    thr = np.stack([r.threshold for r in dyn.runs])
    assert not (thr[0] & thr[1]).any() and abs(thr[0].sum() - 150) <= 3
    np.testing.assert_array_equal(np.load(tmp_path / "dyn" / "run1" / "labels.npy"), np.where(thr[1], 3, given))
    assert all(r["train_accuracy_ordinary"] > 0.8 for r in info["runs"])
    res = score_dynamics(dyn, given)
    noisy = given != true
    assert res.flags[noisy].mean() > 0.8       # recall
    assert noisy[res.flags].mean() > 0.6       # precision


def test_deterministic_and_linear(tmp_path):
    pytest.importorskip("torch")
    from labelqa.train.torch_model import TrainConfig, train_dynamics

    x, given, _ = _noisy_blobs(n=200)
    cfg = TrainConfig(epochs=3, hidden=0, seed=4)
    for name in ("a", "b"):
        train_dynamics(x, given, 3, tmp_path / name, config=cfg, runs=2)
    for run in ("run0", "run1"):
        a = np.load(tmp_path / "a" / run / "logits.npy")
        np.testing.assert_array_equal(a, np.load(tmp_path / "b" / run / "logits.npy"))
    other = TrainConfig(epochs=3, hidden=0, seed=5)
    train_dynamics(x, given, 3, tmp_path / "c", config=other, runs=2)
    assert not np.array_equal(np.load(tmp_path / "a" / "run0" / "logits.npy"),
                              np.load(tmp_path / "c" / "run0" / "logits.npy"))


def test_config_validation():
    from labelqa.train.torch_model import TrainConfig

    with pytest.raises(LabelqaError, match="--epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(LabelqaError, match="--hidden"):
        TrainConfig(hidden=-1).validate()


def test_importing_labelqa_never_imports_torch():
    import subprocess

    code = ("import sys, labelqa, labelqa.data.dynamics, labelqa.detectors.aum, labelqa.train, labelqa.train.recorder, "
            "labelqa.train.dynamics_writer, labelqa.cli.train_cmd; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
