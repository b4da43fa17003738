"""The shipped multi-label example: documented schema, valid contents,
reproducible, and its injected noise is found by the multi-label detector."""

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
SCRIPT = ROOT / "examples" / "multilabel" / "make_multilabel.py"
SHIPPED = ROOT / "examples" / "multilabel" / "digits_attributes_noisy.parquet"
CLASSES = ["even", "prime", "large", "loop", "square", "fibonacci"]


def _indicator(table: pa.Table, column: str) -> np.ndarray:
    sets = table.column(column).to_pylist()
    return np.array([[c in s for c in CLASSES] for s in sets], dtype=bool)


def _probs(table: pa.Table) -> np.ndarray:
    col = table.column("pred_probs").combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)


@pytest.fixture(scope="module")
def shipped() -> pa.Table:
    return pq.read_table(SHIPPED)


def test_schema(shipped: pa.Table) -> None:
    assert shipped.schema.names == ["id", "labels", "true_labels", "pred_probs"]
    assert shipped.schema.field("id").type == pa.int64()
    for name in ("labels", "true_labels"):
        assert shipped.schema.field(name).type == pa.list_(pa.string()), name
    assert shipped.schema.field("pred_probs").type == pa.list_(pa.float32())
    assert json.loads(shipped.schema.metadata[b"labelqa.classes"]) == CLASSES
    assert SHIPPED.stat().st_size < 1_000_000


def test_contents(shipped: pa.Table) -> None:
    n = shipped.num_rows
    assert n == 1797
    assert shipped.column("id").to_numpy().tolist() == list(range(n))
    for name in shipped.schema.names:
        assert shipped.column(name).null_count == 0, name
    given, true = _indicator(shipped, "labels"), _indicator(shipped, "true_labels")
    # every label is a known class, no duplicates in a set
    for name in ("labels", "true_labels"):
        sets = shipped.column(name).to_pylist()
        assert all(set(s) <= set(CLASSES) and len(set(s)) == len(s) for s in sets), name
    assert true.any(axis=1).all()  # every digit has at least one attribute
    noisy = (given != true).any(axis=1)
    assert noisy.sum() == round(0.08 * n)
    assert ((given != true).sum(axis=1) <= 1).all()  # one change per noisy row
    assert (given < true).sum() == (given > true).sum() == noisy.sum() // 2  # half removed, half added

    probs = _probs(shipped)
    assert probs.shape == (n, len(CLASSES)) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    # informative, yet out-of-sample: disagrees with most of the injected changes
    assert ((probs > 0.5) == true).mean() > 0.95
    changed = given != true
    assert ((probs > 0.5)[changed] != given[changed]).mean() > 0.5


def test_detector_finds_the_injected_noise(shipped: pa.Table) -> None:
    from sklearn.metrics import roc_auc_score

    from labelqa.detectors.multilabel import find_multilabel_issues, get_multilabel_quality_scores

    given, true, probs = _indicator(shipped, "labels"), _indicator(shipped, "true_labels"), _probs(shipped)
    noisy = (given != true).any(axis=1)
    # measured: AUROC 0.986 (EMA) / 0.994 (softmin); PBNR precision 0.84, recall 0.85
    assert roc_auc_score(noisy, -get_multilabel_quality_scores(given, probs)) > 0.96
    assert roc_auc_score(noisy, -get_multilabel_quality_scores(given, probs, aggregation="softmin")) > 0.97
    res = find_multilabel_issues(given, probs)
    hits = np.count_nonzero(res.issues & noisy)
    assert hits / res.issues.sum() > 0.7 and hits / noisy.sum() > 0.75
    assert (~true[res.to_remove]).mean() > 0.7  # removals mostly of labels the truth lacks


def test_regenerating_reproduces_shipped_file(shipped: pa.Table, tmp_path: Path) -> None:
    out = tmp_path / "ml.parquet"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "N=1797" in proc.stdout
    regen = pq.read_table(out)
    assert regen.schema.equals(shipped.schema, check_metadata=True)
    for name in ("id", "labels", "true_labels"):
        assert regen.column(name).equals(shipped.column(name)), name
    np.testing.assert_array_equal(_probs(regen), _probs(shipped))
