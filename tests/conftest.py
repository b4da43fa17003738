"""Shared fixtures: small realistic datasets written to real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: without the plugin (-p no:xdist) it is not called
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one test worker per CPU this process may run on, at most 8.

    pytest-xdist would ask psutil for physical cores, which some 2-vCPU machines report as 1.
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set.
    """
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
    if env.isdigit():
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


# The known-answer toy of the spine issue: every method flags exactly row 2.
TOY_PROBS = np.array(
    [[0.9, 0.1, 0.0], [0.6, 0.2, 0.2], [0.1, 0.0, 0.9]] + [[0.1, 0.8, 0.1]] * 6 + [[0.1, 0.1, 0.8]]
)
TOY_LABELS = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 2])


def noisy_dataset(n: int = 2000, k: int = 4, noise: float = 0.1, seed: int = 0):
    """Synthetic classifier outputs with uniformly flipped labels.

    Returns (given_labels, true_labels, pred_probs float32, flipped mask).
    """
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), true] += 3.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs = probs.astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    flipped = rng.random(n) < noise
    given = true.copy()
    given[flipped] = (true[flipped] + rng.integers(1, k, flipped.sum())) % k
    return given, true, probs, flipped


def random_dynamics(e: int = 7, n: int = 300, k: int = 4, seed: int = 0):
    """Random (E, N, K) float32 logits whose label logit grows over the epochs, and the labels.

    Returns (labels, logits).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(e, n, k)).astype(np.float32)
    z[:, np.arange(n), labels] += np.linspace(0, 2, e)[:, None].astype(np.float32)
    return labels, z


def write_parquet(path: Path, labels, probs, *, classes=None, extra: dict | None = None) -> Path:
    """Write labels + a pred_probs list column (+ extra columns) to Parquet."""
    probs = np.asarray(probs, dtype=np.float32)
    n, k = probs.shape
    flat = pa.array(probs.reshape(-1))
    cols = {
        "id": pa.array(np.arange(n, dtype=np.int64)),
        "label": pa.array(list(labels)),
        "pred_probs": pa.FixedSizeListArray.from_arrays(flat, k),
    }
    cols.update(extra or {})
    table = pa.table(cols)
    if classes is not None:
        table = table.replace_schema_metadata({"labelqa.classes": json.dumps(list(classes))})
    pq.write_table(table, path)
    return path


@pytest.fixture
def noisy_parquet(tmp_path: Path):
    """A 2000-row, 4-class Parquet file with string labels and 10% flips."""
    given, true, probs, flipped = noisy_dataset()
    names = np.array(["ant", "bee", "cat", "dog"])
    path = write_parquet(tmp_path / "noisy.parquet", names[given], probs, classes=names,
                         extra={"true_label": pa.array(names[true])})
    return path, flipped


def build_label_data(*args, **kwargs):
    """``LabelData(**validated_fields(...))``: the loader's way of building validated data, for tests."""
    from labelqa.data.build import validated_fields
    from labelqa.data.model import LabelData

    return LabelData(**validated_fields(*args, **kwargs))
