"""labelqa: find label errors in ML datasets.

The library is the core; the ``labelqa`` CLI is a thin shell over it::

    import labelqa
    result = labelqa.scan("data.parquet")          # or a DataFrame, Arrow table, dict, arrays
    labelqa.write_report(result, "labelqa-report")
    labelqa.fix("data.parquet", out="clean.parquet", strategy="relabel")

In a notebook, from a DataFrame of features and labels without probabilities::

    result = labelqa.find_issues(df, label_col="label")   # cross-validated scikit-learn model
    result.ranked_issues()                                 # pandas DataFrame, most suspect first
    clean = result.cleaned(df)

cleanlab-style array functions: :func:`find_label_issues`,
:func:`get_label_quality_scores` (:mod:`labelqa.compat`).

``import labelqa`` stays light: scikit-learn, pandas and torch are imported
only when a function that needs them runs. The names of :mod:`labelqa.learn`
and :mod:`labelqa.compat` are loaded on first use (module ``__getattr__``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labelqa._version import __version__
from labelqa.data import load, read_table
from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.detectors.confident import ConfidentLearning
from labelqa.errors import LabelqaError
from labelqa.evaluate_run import evaluate_detectors
from labelqa.fix import FixResult, apply_fix, fix
from labelqa.gate import GateResult, check_gate, gate_rules
from labelqa.report.folder import read_issues
from labelqa.result import ScanResult
from labelqa.scan import scan, write_report

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily (below)
    from labelqa.compat import find_label_issues, get_label_quality_scores
    from labelqa.learn import CleanClassifier, cross_val_pred_probs, find_issues, make_model

#: Public names loaded on first access, by the module that defines them.
_LAZY = {
    "CleanClassifier": "labelqa.learn",
    "cross_val_pred_probs": "labelqa.learn",
    "find_issues": "labelqa.learn",
    "make_model": "labelqa.learn",
    "find_label_issues": "labelqa.compat",
    "get_label_quality_scores": "labelqa.compat",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labelqa' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CleanClassifier",
    "ConfidentLearning",
    "Detector",
    "DetectorResult",
    "FixResult",
    "GateResult",
    "LabelData",
    "LabelqaError",
    "ScanResult",
    "__version__",
    "apply_fix",
    "check_gate",
    "cross_val_pred_probs",
    "evaluate_detectors",
    "find_issues",
    "find_label_issues",
    "fix",
    "gate_rules",
    "get_label_quality_scores",
    "load",
    "make_model",
    "read_issues",
    "read_table",
    "scan",
    "write_report",
]
