"""The shipped example datasets: documented schema, valid contents, reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "make_digits.py"
SHIPPED = ROOT / "examples" / "digits" / "digits_noisy.parquet"
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _matrix(table: pa.Table, column: str) -> np.ndarray:
    col = table.column(column).combine_chunks()
    n = len(col)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(n, -1)


@pytest.fixture(scope="module")
def shipped() -> pa.Table:
    return pq.read_table(SHIPPED)


def test_schema(shipped: pa.Table) -> None:
    assert shipped.schema.names == ["id", "label", "true_label", "pred_probs", "features"]
    assert shipped.schema.field("id").type == pa.int64()
    assert shipped.schema.field("label").type == pa.string()
    assert shipped.schema.field("true_label").type == pa.string()
    for name in ("pred_probs", "features"):
        t = shipped.schema.field(name).type
        assert pa.types.is_list(t) and t.value_type == pa.float32(), (name, t)
    meta = shipped.schema.metadata
    assert json.loads(meta[b"labelqa.classes"]) == CLASSES


def test_contents(shipped: pa.Table) -> None:
    n = shipped.num_rows
    assert n == 1797
    assert shipped.column("id").to_numpy().tolist() == list(range(n))
    for name in ("id", "label", "true_label", "pred_probs", "features"):
        assert shipped.column(name).null_count == 0, name

    label = np.asarray(shipped.column("label").to_pylist(), dtype=object)
    true = np.asarray(shipped.column("true_label").to_pylist(), dtype=object)
    assert set(label) == set(CLASSES) and set(true) == set(CLASSES)
    noise_rate = float((label != true).mean())
    assert 0.08 <= noise_rate <= 0.12, noise_rate

    probs = _matrix(shipped, "pred_probs")
    assert probs.shape == (1797, 10) and probs.dtype == np.float32
    assert np.isfinite(probs).all()
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(axis=1, dtype=np.float64), 1.0, atol=1e-5)

    features = _matrix(shipped, "features")
    assert features.shape == (1797, 64) and features.dtype == np.float32
    assert features.min() >= 0.0 and features.max() <= 1.0

    # the probabilities are informative, yet out-of-sample: they disagree with
    # many wrong labels instead of having memorised them
    codes = {c: i for i, c in enumerate(CLASSES)}
    pred = probs.argmax(axis=1)
    true_codes = np.array([codes[c] for c in true])
    label_codes = np.array([codes[c] for c in label])
    assert (pred == true_codes).mean() > 0.85
    wrong = label != true
    assert (pred[wrong] != label_codes[wrong]).mean() > 0.5


def test_regenerating_reproduces_shipped_file(shipped: pa.Table, tmp_path: Path) -> None:
    out = tmp_path / "digits.parquet"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "N=1797" in proc.stdout

    regen = pq.read_table(out)
    assert regen.schema.equals(shipped.schema, check_metadata=True)
    for name in ("id", "label", "true_label"):
        assert regen.column(name).equals(shipped.column(name)), name
    for name in ("pred_probs", "features"):
        np.testing.assert_array_equal(_matrix(regen, name), _matrix(shipped, name), err_msg=name)
