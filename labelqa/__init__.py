"""labelqa: find label errors in ML datasets.

The library is the core; the ``labelqa`` CLI is a thin shell over it::

    import labelqa
    result = labelqa.scan("data.parquet")          # or labelqa.scan(labelqa.load(...))
    labelqa.write_report(result, "labelqa-report")
    labelqa.fix("data.parquet", out="clean.parquet", strategy="relabel")
"""

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

__all__ = [
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
    "evaluate_detectors",
    "fix",
    "gate_rules",
    "load",
    "read_issues",
    "read_table",
    "scan",
    "write_report",
]
