"""The public API is what it claims, and importing it does not pull in the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

import labelqa


def test_all_names_exist():
    for name in labelqa.__all__:
        assert hasattr(labelqa, name), name


def test_import_does_not_load_the_cli():
    code = "import sys, labelqa; print('typer' in sys.modules, 'labelqa.cli' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_python_api_round_trip(noisy_parquet, tmp_path):
    path, _ = noisy_parquet
    data = labelqa.load(path)
    result = labelqa.scan(data, detectors=[labelqa.ConfidentLearning(filter_by="both")])
    labelqa.write_report(result, tmp_path / "rep")
    gate = labelqa.check_gate(result, labelqa.gate_rules(max_issue_rate=0.0))
    assert not gate.passed
    fixed = labelqa.fix(path, out=tmp_path / "clean.parquet", report=tmp_path / "rep")
    assert fixed.out.exists()


def test_import_is_light():
    """``import labelqa`` loads none of scikit-learn, pandas, torch, polars, datasets; the lazy names still resolve."""
    heavy = "('sklearn', 'pandas', 'torch', 'polars', 'datasets')"
    code = (f"import sys, labelqa; print([m for m in {heavy} if m in sys.modules]); "
            "labelqa.find_label_issues; labelqa.CleanClassifier; labelqa.find_issues; "
            f"print([m for m in {heavy} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "[]"]


def test_lazy_names_are_the_real_objects():
    from labelqa import compat, learn

    assert labelqa.find_issues is learn.find_issues and labelqa.CleanClassifier is learn.CleanClassifier
    assert labelqa.cross_val_pred_probs is learn.cross_val_pred_probs
    assert labelqa.get_label_quality_scores is compat.get_label_quality_scores
    assert set(labelqa.__all__) <= set(dir(labelqa))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        labelqa.nope  # noqa: B018
