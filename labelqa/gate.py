"""The CI quality gate: pass or fail a scan by rules on its results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelqa.errors import LabelqaError
from labelqa.result import ScanResult


@dataclass(frozen=True)
class GateResult:
    """Outcome of the quality gate.

    Attributes:
        passed: Whether every rule passed (``True`` when no rule was set).
        reason: One line explaining the outcome.
        rules: The rules that were checked, as given.
    """

    passed: bool
    reason: str
    rules: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The outcome as written into summary.json under ``gate``."""
        return {"passed": self.passed, "reason": self.reason, "rules": dict(self.rules)}


def gate_rules(*, max_issue_rate: float | None = None) -> dict[str, Any]:
    """Validate gate options and return them as a rules dict (unset rules left out).

    Args:
        max_issue_rate: Fail when the share of flagged rows exceeds this
            fraction in [0, 1].

    Raises:
        LabelqaError: On an out-of-range value.
    """
    rules: dict[str, Any] = {}
    if max_issue_rate is not None:
        if not 0.0 <= max_issue_rate <= 1.0:
            raise LabelqaError(
                f"--max-issue-rate must be a fraction between 0 and 1, got {max_issue_rate}",
                "e.g. --max-issue-rate 0.05 for 5%",
            )
        rules["max_issue_rate"] = max_issue_rate
    return rules


def check_gate(result: ScanResult, rules: dict[str, Any] | None = None) -> GateResult:
    """Check a scan against gate rules from :func:`gate_rules`.

    Args:
        result: The scan to check.
        rules: Validated rules; empty or ``None`` passes.

    Returns:
        The gate outcome; the CLI exits 1 when it did not pass.
    """
    rules = dict(rules or {})
    limit = rules.get("max_issue_rate")
    if limit is None:
        return GateResult(True, "no gate rule set", rules)
    rate = result.issue_rate
    if rate > limit:
        return GateResult(False, f"issue rate {rate:.2%} exceeds the maximum {limit:.2%}", rules)
    return GateResult(True, f"issue rate {rate:.2%} is within the maximum {limit:.2%}", rules)
