"""The CI quality gate: pass or fail a scan by rules on its results.

Rules (all optional; unset rules are left out of the rules dict):

* ``max_issue_rate``: fail when the share of flagged rows exceeds this
  fraction;
* ``max_class_issue_rate``: fail when, in any class, the share of the rows
  given that class that are flagged exceeds this fraction;
* ``max_issues``: fail when more than this many rows are flagged;
* ``max_noise_rate``: fail when the estimated noise rate (of the
  confident-learning detector) exceeds this fraction. ``noise_rate_bound``
  picks the figure compared: ``point`` (the estimate, default), ``lower``
  (the lower end of its 95% bootstrap interval: fail only when the noise is
  clearly above the limit) or ``upper`` (the upper end: fail unless it is
  clearly below);
* ``gate_detectors``: which rows count as flagged for the rate and count
  rules: the rows flagged by any of these detectors. Default: the scan's
  combined flags (the ensemble rule, ``ScanResult.is_label_issue``).

Every rule is checked; the reason lists every failing rule (or, when all
pass, every check).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError
from labelqa.result import RowTotals, ScanResult

#: The figures ``noise_rate_bound`` can compare with ``max_noise_rate``.
NOISE_RATE_BOUNDS = ("point", "lower", "upper")

#: Rule names, in the order they are checked and reported.
RULES = ("max_issue_rate", "max_issues", "max_class_issue_rate", "max_noise_rate")


@dataclass(frozen=True)
class GateResult:
    """Outcome of the quality gate.

    Attributes:
        passed: Whether every rule passed (``True`` when no rule was set).
        reason: One line explaining the outcome: every failing rule, joined
            by ``"; "``, or every passing check.
        rules: The rules that were checked, as given.
        failures: One message per failing rule.
        checks: One dict per rule checked: ``rule``, ``value``, ``limit``,
            ``passed``, ``message`` (and ``classes`` for the failing classes
            of ``max_class_issue_rate``).
    """

    passed: bool
    reason: str
    rules: dict[str, Any]
    failures: tuple[str, ...] = ()
    checks: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The outcome as written into summary.json under ``gate``."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "rules": dict(self.rules),
            "failures": list(self.failures),
            "checks": [dict(c) for c in self.checks],
        }


def _fraction(name: str, value: float | None, example: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        0.0 <= float(value) <= 1.0
    ):
        raise LabelqaError(f"--{name.replace('_', '-')} must be a fraction between 0 and 1, got {value}",
                           f"e.g. --{name.replace('_', '-')} {example}")
    return float(value)


def _names(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))
    if not names:
        raise LabelqaError("--gate-detectors is empty", "e.g. --gate-detectors cl or --gate-detectors cl,nrg")
    return names


def gate_rules(
    *,
    max_issue_rate: float | None = None,
    max_class_issue_rate: float | None = None,
    max_issues: int | None = None,
    max_noise_rate: float | None = None,
    noise_rate_bound: str | None = None,
    gate_detectors: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Validate gate options and return them as a rules dict (unset rules left out).

    Args:
        max_issue_rate: Fail when the share of flagged rows exceeds this
            fraction in [0, 1].
        max_class_issue_rate: Fail when any class's share of flagged rows
            exceeds this fraction in [0, 1].
        max_issues: Fail when more than this many rows (>= 0) are flagged.
        max_noise_rate: Fail when the estimated noise rate exceeds this
            fraction in [0, 1].
        noise_rate_bound: ``point`` (default), ``lower`` or ``upper``: the
            figure compared with ``max_noise_rate``.
        gate_detectors: Detector names (a list or ``"cl,nrg"``) whose flags
            count; default the ensemble flags.

    Raises:
        LabelqaError: On an out-of-range value or an unknown bound.
    """
    rules: dict[str, Any] = {}
    rate = _fraction("max_issue_rate", max_issue_rate, "0.05 for 5%")
    if rate is not None:
        rules["max_issue_rate"] = rate
    if max_issues is not None:
        if isinstance(max_issues, bool) or not isinstance(max_issues, (int, np.integer)) or max_issues < 0:
            raise LabelqaError(f"--max-issues must be a whole number >= 0, got {max_issues}", "e.g. --max-issues 100")
        rules["max_issues"] = int(max_issues)
    class_rate = _fraction("max_class_issue_rate", max_class_issue_rate, "0.2")
    if class_rate is not None:
        rules["max_class_issue_rate"] = class_rate
    noise = _fraction("max_noise_rate", max_noise_rate, "0.1")
    if noise_rate_bound is not None and noise_rate_bound not in NOISE_RATE_BOUNDS:
        raise LabelqaError(f"unknown --noise-rate-bound {noise_rate_bound!r}",
                           f"choose one of {', '.join(NOISE_RATE_BOUNDS)}")
    if noise is not None:
        rules["max_noise_rate"] = noise
        rules["noise_rate_bound"] = noise_rate_bound or "point"
    elif noise_rate_bound not in (None, "point"):
        raise LabelqaError(f"--noise-rate-bound {noise_rate_bound} given without --max-noise-rate",
                           "add e.g. --max-noise-rate 0.1")
    names = _names(gate_detectors)
    if names is not None:
        rules["gate_detectors"] = list(names)
    return rules


def _noise_source(result: ScanResult) -> tuple[str, dict[str, Any]]:
    outcomes = result.outcomes
    ordered = [result.primary] + [n for n in outcomes if n != result.primary]
    for name in ordered:
        summary = outcomes[name].summary
        if summary.get("estimated_noise_rate") is not None:
            return name, summary
    raise LabelqaError(
        "--max-noise-rate needs an estimated noise rate, which no detector of this scan reports",
        "run the cl detector on multiclass data, or drop max_noise_rate",
    )


def noise_rate_figure(result: ScanResult, bound: str = "point") -> tuple[float, str]:
    """The estimated noise rate, or an end of its bootstrap interval, and the detector it came from.

    Uses the detector summary's ``estimated_noise_rate_interval`` when present,
    else computes the interval from its ``confident_joint`` and class counts
    (:func:`labelqa.stats.noise_interval.noise_rate_interval`, seed 0).
    """
    name, summary = _noise_source(result)
    point = float(summary["estimated_noise_rate"])
    if bound == "point":
        return point, name
    interval = summary.get("estimated_noise_rate_interval")
    if interval is None:
        from labelqa.stats.noise_interval import noise_rate_interval

        joint = np.asarray(summary.get("confident_joint", []))
        per_class = summary.get("per_class") or []
        counts = np.asarray([row.get("class_count", -1) for row in per_class])
        if joint.ndim != 2 or counts.shape != (joint.shape[0],) or (counts < 0).any():
            raise LabelqaError(f"--noise-rate-bound {bound} needs the noise-rate interval, which detector "
                               f"{name!r} does not report", "use --noise-rate-bound point")
        interval = noise_rate_interval(joint, counts)
    low, high = float(interval[0]), float(interval[1])
    return (low if bound == "lower" else high), name


def noise_rate_wording(result: ScanResult, bound: str) -> str:
    """How the gate names the noise figure: which bound, of which interval, by which estimator.

    E.g. ``upper bound of the estimated noise rate (bootstrap 95%) by calibrated_confident_joint``.
    """
    _, summary = _noise_source(result)
    estimator = summary.get("estimated_noise_rate_estimator")
    kind = (summary.get("noise_rate_estimates") or {}).get(estimator, {}).get("interval_kind", "95%")
    what = {"point": "estimated noise rate", "lower": f"lower bound of the estimated noise rate ({kind})",
            "upper": f"upper bound of the estimated noise rate ({kind})"}[bound]
    return f"{what} by {estimator}" if estimator else what


@dataclass(frozen=True)
class _Figures:
    """What the gate rules look at: row totals of the counted flags, and the noise figure."""

    totals: RowTotals
    class_names: list[str]
    noise: Callable[[str], tuple[float, str]]
    noise_wording: Callable[[str], str]


def check_gate(result: ScanResult, rules: dict[str, Any] | None = None) -> GateResult:
    """Check a scan (any engine's) against gate rules from :func:`gate_rules`.

    The rules look only at row totals (rows, flagged rows, per-class issue
    rates: those of the combined flags, or of the rows any of
    ``gate_detectors`` flagged) and at the detectors' summaries, so nothing
    needs to be written first.

    Args:
        result: The scan to check.
        rules: Validated rules; empty or ``None`` passes.

    Returns:
        The gate outcome; the CLI exits 1 when it did not pass.

    Raises:
        LabelqaError: A gate detector that did not run, or a noise-rate rule
            with no detector estimating the noise rate.
    """
    rules = dict(rules or {})
    if not any(rules.get(r) is not None for r in RULES):
        return GateResult(True, "no gate rule set", rules)
    totals = result.totals_for(rules.get("gate_detectors"))
    figures = _Figures(totals, [str(c) for c in result.classes], lambda bound: noise_rate_figure(result, bound),
                       lambda bound: noise_rate_wording(result, bound))
    return _judge(figures, rules)


def _judge(fig: _Figures, rules: dict[str, Any]) -> GateResult:
    detectors = rules.get("gate_detectors")
    whose = f" (rows flagged by {', '.join(detectors)})" if detectors else ""
    n_rows, n_flagged = fig.totals.n_rows, fig.totals.n_flagged
    checks: list[dict[str, Any]] = []
    def check(rule: str, value: float, limit: float, ok: bool, message: str, **extra: Any) -> None:
        checks.append({"rule": rule, "value": value, "limit": limit, "passed": ok, "message": message, **extra})

    limit = rules.get("max_issue_rate")
    if limit is not None:
        rate = n_flagged / n_rows if n_rows else 0.0
        ok = rate <= limit
        check("max_issue_rate", rate, limit, ok,
              f"issue rate {rate:.2%}{whose} {'is within' if ok else 'exceeds'} the maximum {limit:.2%}")
    limit = rules.get("max_issues")
    if limit is not None:
        ok = n_flagged <= limit
        one = n_flagged == 1
        verb = ("is within" if one else "are within") if ok else ("exceeds" if one else "exceed")
        check("max_issues", n_flagged, limit, ok,
              f"{n_flagged:,} issue{'' if one else 's'}{whose} {verb} the maximum {limit:,}")
    limit = rules.get("max_class_issue_rate")
    if limit is not None:
        rates, issues, names = fig.totals.class_rates, fig.totals.class_issues, fig.class_names
        bad = [int(c) for c in np.argsort(-rates, kind="stable") if rates[c] > limit]
        worst = int(np.argmax(rates)) if rates.size else 0
        if bad:
            shown = ", ".join(f"{names[c]!r} {rates[c]:.2%}" for c in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            message = (f"class issue rate{whose} exceeds the maximum {limit:.2%} in {len(bad)} "
                       f"class{'es' if len(bad) != 1 else ''}: {shown}{more}")
        else:
            top = f" (highest: {names[worst]!r} {rates[worst]:.2%})" if rates.size else ""
            message = f"every class issue rate{whose} is within the maximum {limit:.2%}{top}"
        check("max_class_issue_rate", float(rates[worst]) if rates.size else 0.0, limit, not bad, message,
              classes=[{"class": names[c], "issue_rate": float(rates[c]), "issues": int(issues[c])} for c in bad])
    limit = rules.get("max_noise_rate")
    if limit is not None:
        bound = rules.get("noise_rate_bound", "point")
        value, source = fig.noise(bound)
        what = fig.noise_wording(bound)
        ok = value <= limit
        check("max_noise_rate", value, limit, ok,
              f"{what} {value:.2%} ({source}) {'is within' if ok else 'exceeds'} the maximum {limit:.2%}",
              bound=bound)
    failures = tuple(c["message"] for c in checks if not c["passed"])
    reason = "; ".join(failures) if failures else "; ".join(c["message"] for c in checks)
    return GateResult(not failures, reason, rules, failures, tuple(checks))
