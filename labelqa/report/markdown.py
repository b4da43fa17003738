"""summary.md: the dataset summary for people (fits a GitHub step summary).

Dataset text (source, classes, ids, labels, reasons, the gate's reason) is
escaped with :mod:`labelqa.report.escape`: it renders as the text it is.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from labelqa.report.escape import markdown_code, markdown_text
from labelqa.report.toprows import top_issue_rows


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def render_markdown(summary: dict[str, Any], issues: pa.Table | None = None, top: int = 20,
                    evaluation: dict[str, Any] | None = None) -> str:
    """Render summary.md from a summary dict and (optionally) the issues table.

    Args:
        summary: The dict of :meth:`labelqa.result.ScanResult.summary`.
        issues: The issues table; its ``top`` best-ranked flagged rows are listed.
        top: How many issues to list.
        evaluation: An evaluation (``labelqa evaluate``) to append as a table.
    """
    lines = ["# labelqa scan report", ""]
    gate = summary.get("gate")
    if gate:
        status = "PASSED" if gate["passed"] else "FAILED"
        lines += [f"**Quality gate: {status}** ({_escape(gate['reason'])})", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| Source | {markdown_code(summary.get('source'))} |",
        f"| Rows | {summary['rows']:,} |",
        f"| Classes | {summary['n_classes']} |",
        f"| Label issues found | {summary['issues_found']:,} ({_pct(summary['issue_rate'])}) |",
        f"| Estimated noise rate | {_pct(summary.get('estimated_noise_rate'))} |",
        f"| Primary detector | {summary['primary_detector']} |",
        f"| labelqa | {summary['labelqa_version']} |",
        "",
        "## Per class",
        "",
    ]
    if summary.get("task") == "multilabel":
        lines += ["| class | rows with label | issues | issue rate | should remove | should add |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in summary["per_class"]:
            lines.append(
                f"| {_escape(row['class'])} | {row['count']:,} | {row['issues']:,} | {_pct(row['issue_rate'])} "
                f"| {row.get('should_remove', 0):,} | {row.get('should_add', 0):,} |"
            )
    else:
        lines += ["| class | rows | issues | issue rate | est. noise rate |", "|---|---:|---:|---:|---:|"]
        for row in summary["per_class"]:
            lines.append(
                f"| {_escape(row['class'])} | {row['count']:,} | {row['issues']:,} | {_pct(row['issue_rate'])} "
                f"| {_pct(row.get('estimated_noise_rate'))} |"
            )
    pairs = summary.get("confused_pairs") or []
    if pairs:
        lines += ["", "## Most confused pairs (given -> suggested)", "", "| given | suggested | rows |", "|---|---|---:|"]
        lines += [f"| {_escape(p['given'])} | {_escape(p['suggested'])} | {p['count']:,} |" for p in pairs]
    if evaluation:
        from labelqa.evaluate import describe_truth, render_markdown_table

        lines += ["", "## Detection quality", "", _escape(describe_truth(evaluation)), "", render_markdown_table(evaluation).rstrip()]
    if issues is not None and summary["issues_found"]:
        lines += _top_issues(issues, top)
    return "\n".join(lines) + "\n"


def _top_issues(issues: pa.Table, top: int) -> list[str]:
    from labelqa.report.shown import display_text, shown_fields

    shown = shown_fields(issues)
    sub = top_issue_rows(issues, top).to_pylist()
    head = "| rank | id | given | suggested | quality | reason |" + "".join(f" {_escape(n)} |" for n, _ in shown)
    rule = "|---:|---|---|---|---:|---|" + "".join("---:|" if k == "number" else "---|" for _, k in shown)
    lines = ["", f"## Top {len(sub)} issues", "", head, rule]
    for r in sub:
        extra = "".join(
            f" {'(image in report.html)' if kind == 'image' and r.get(name) is not None else _escape(display_text(r.get(name), 80))} |"
            for name, kind in shown)
        lines.append(
            f"| {r['rank']} | {_escape(r['id'])} | {_escape(r['given_label'])} | {_escape(r['suggested_label'])} "
            f"| {r['label_quality']:.4f} | {_escape(r['reason'])} |{extra}"
        )
    return lines


def _escape(value: Any) -> str:
    """Dataset text as inert Markdown (see :func:`labelqa.report.escape.markdown_text`)."""
    return markdown_text(value)
