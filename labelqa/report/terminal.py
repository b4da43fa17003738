"""Rich terminal rendering of a scan: summary, per-class table, top issues."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from labelqa.report.escape import terminal_text


def _text(value: Any, style: str = "") -> Text:
    """Dataset text for a rich cell: no markup, control characters shown (:func:`terminal_text`)."""
    return Text(terminal_text(value), style=style)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def render_summary(summary: dict[str, Any], issues: pa.Table | None = None, *, top: int = 10,
                   max_classes: int = 20) -> Group:
    """A renderable with the headline figures, per-class rates and top issues.

    Dataset strings are wrapped in :class:`rich.text.Text`, so markup-like
    labels such as ``[bold]`` are shown as typed, and their control
    characters (escape sequences) are shown, not run (:mod:`labelqa.report.escape`).
    """
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Source", _text(str(summary.get("source"))))
    head.add_row("Rows", f"{summary['rows']:,}")
    head.add_row("Classes", str(summary["n_classes"]))
    head.add_row("Label issues", f"{summary['issues_found']:,} ({_pct(summary['issue_rate'])})")
    head.add_row("Est. noise rate", _pct(summary.get("estimated_noise_rate")))
    runs = summary.get("detectors_run") or [summary.get("primary_detector")]
    rule = f" (issue rule: {summary['issue_rule']})" if len(runs) > 1 else ""
    head.add_row("Detectors", ", ".join(map(str, runs)) + rule)
    models = summary.get("models")
    if models:
        head.add_row("Models", _text(f"{models['n_models']} combined by {models['combine_models']}; they disagree on "
                                    f"{models['rows_disagree']:,} rows ({_pct(models['rows_disagree_rate'])})"))
    if summary.get("outliers_found") is not None:
        head.add_row("Outliers", f"{summary['outliers_found']:,}")
    gate = summary.get("gate")
    if gate and gate.get("rules"):
        style = "bold green" if gate["passed"] else "bold red"
        head.add_row("Quality gate", _text(("PASSED: " if gate["passed"] else "FAILED: ") + gate["reason"], style=style))
    parts: list[Any] = [Panel(head, title="labelqa scan", expand=False)]

    per_class = sorted(summary["per_class"], key=lambda r: -r["issue_rate"])
    multilabel = summary.get("task") == "multilabel"
    cls = Table(title="Per class (highest issue rate first)", title_justify="left")
    cols = [("class", "left"), ("rows", "right"), ("issues", "right"), ("issue rate", "right")]
    cols += [("remove", "right"), ("add", "right")] if multilabel else [("est. noise", "right")]
    for col, just in cols:
        cls.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in per_class[:max_classes]:
        cells = [_text(row["class"]), f"{row['count']:,}", f"{row['issues']:,}", _pct(row["issue_rate"])]
        if multilabel:
            cells += [f"{row.get('should_remove', 0):,}", f"{row.get('should_add', 0):,}"]
        else:
            cells.append(_pct(row.get("estimated_noise_rate")))
        cls.add_row(*cells)
    if len(per_class) > max_classes:
        cls.caption = f"{len(per_class) - max_classes} more classes in summary.json"
    parts.append(cls)

    if issues is not None and summary["issues_found"] and top > 0:
        parts.append(_top_table(issues, top, summary["issues_found"]))
    return Group(*parts)


def _top_table(issues: pa.Table, top: int, total: int) -> Table:
    flags = issues.column("is_label_issue").to_numpy(zero_copy_only=False)
    ranks = issues.column("rank").to_numpy()
    idx = np.flatnonzero(flags)
    idx = idx[np.argsort(ranks[idx], kind="stable")][:top]
    rows = issues.take(pa.array(idx)).to_pylist()
    table = Table(title=f"Top {len(rows)} of {total:,} label issues", title_justify="left")
    multilabel = "labels_to_remove" in issues.column_names
    cols = [("rank", "right"), ("id", "left"), ("given", "left")]
    cols += [("change", "left")] if multilabel else [("suggested", "left"), ("confidence", "right")]
    cols += [("quality", "right"), ("detectors", "left")]
    from labelqa.report.shown import display_text, shown_fields

    shown = shown_fields(issues)
    cols += [(name, "right" if kind == "number" else "left") for name, kind in shown]
    for col, just in cols:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        cells = [str(r["rank"]), _text(str(r["id"]))]
        if multilabel:
            change = [f"-{c}" for c in r["labels_to_remove"] or []] + [f"+{c}" for c in r["labels_to_add"] or []]
            cells += [_text(", ".join(map(str, r["given_label"] or []))), _text(" ".join(change))]
        else:
            conf = r.get("suggested_confidence")
            cells += [_text(str(r["given_label"])), _text(str(r["suggested_label"])),
                      "" if conf is None or conf != conf else f"{conf:.2f}"]
        cells += [f"{r['label_quality']:.4f}", _text(str(r.get("detectors") or ""))]
        for name, kind in shown:  # --show-cols: plain values, cut to one short line
            value = r.get(name)
            cells.append(_text("[image]" if kind == "image" and value is not None else display_text(value, 40)))
        table.add_row(*cells)
    table.caption = ("change: labels to remove (-) and add (+); " if multilabel else
                     "confidence = model probability of the suggested label; ") + "quality: lower = more suspect"
    return table


def print_summary(console: Console, summary: dict[str, Any], issues: pa.Table | None = None, *, top: int = 10) -> None:
    """Print :func:`render_summary` to ``console``."""
    console.print(render_summary(summary, issues, top=top))
