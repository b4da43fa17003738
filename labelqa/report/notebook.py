"""A scan result in a notebook: a short ``repr``, an HTML view, and a cleaned DataFrame.

:func:`render_html` shows the headline figures, the per-class table and the
top issues; every piece of dataset text (class names, ids, labels, the
source name) is HTML-escaped. Nothing here imports pandas unless a DataFrame
is asked for.
"""

from __future__ import annotations

import html
from typing import Any

from labelqa.errors import LabelqaError

__all__ = ["cleaned_frame", "render_html", "short_repr"]

#: Flagged rows shown in the HTML view.
TOP_ROWS = 10


def short_repr(result: Any) -> str:
    """One line: rows, issues and rate, detectors, task and engine (never the rows themselves)."""
    gate = "" if result.gate is None else f", gate {'passed' if result.gate.passed else 'FAILED'}"
    return (f"<ScanResult {result.n_rows:,} rows, {result.n_issues:,} issues ({result.issue_rate:.1%}), "
            f"detectors {','.join(result.outcomes)}, {result.task}, engine {result.engine}{gate}>")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value == value else ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return html.escape("" if value is None else str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(result: Any, top: int = TOP_ROWS) -> str:
    """The result as HTML for Jupyter: headline figures, per-class table, the ``top`` best-ranked issues."""
    summary = result.summary()
    source = html.escape(str(summary.get("source") or "in-memory data"))
    noise = summary.get("estimated_noise_rate")
    head = (f"<p><b>labelqa scan</b> of {source}: {summary['rows']:,} rows, {summary['n_classes']} classes, "
            f"<b>{summary['issues_found']:,} label issues ({summary['issue_rate']:.1%})</b>"
            + (f", estimated noise rate {noise:.1%}" if isinstance(noise, float) else "")
            + f"; detectors {html.escape(', '.join(summary['detectors_run']))}</p>")
    if result.gate is not None:
        head += f"<p>Quality gate: <b>{'passed' if result.gate.passed else 'FAILED'}</b></p>"
    per_class = _table(["class", "rows", "issues", "issue rate"],
                       [[c["class"], c["count"], c["issues"], c["issue_rate"]] for c in summary["per_class"]])
    shown = result.top_issues(top).select(
        ["rank", "id", "given_label", "suggested_label", "label_quality", "reason"]).to_pylist()
    issues = _table(["rank", "id", "given", "suggested", "quality", "reason"],
                    [[r["rank"], r["id"], r["given_label"], r["suggested_label"], r["label_quality"], r["reason"]]
                     for r in shown])
    return (f"<div class='labelqa-result'>{head}<details><summary>Per class</summary>{per_class}</details>"
            f"<p>Top {len(shown)} issues (result.ranked_issues() for all):</p>{issues}</div>")


def cleaned_frame(result: Any, frame: Any, strategy: str = "remove") -> Any:
    """A copy of ``frame`` (the scanned DataFrame) with flagged rows removed or relabelled.

    Raises:
        LabelqaError: ``frame`` does not have the scanned rows, or an unknown strategy.
    """
    flags = result.is_label_issue
    if len(frame) != len(flags):
        raise LabelqaError(f"the DataFrame has {len(frame)} rows but the scan had {len(flags)}",
                           "pass the DataFrame that was scanned")
    if strategy == "remove":
        return frame[~flags].copy()
    if strategy != "relabel":
        raise LabelqaError(f"unknown strategy {strategy!r}", "use 'remove' or 'relabel'")
    if result.multilabel:
        raise LabelqaError("relabel of multi-label rows in a DataFrame is not supported",
                           "use strategy='remove', or labelqa.fix on a file")
    label_col = result.data.label_col or "label"
    if label_col not in frame.columns:
        raise LabelqaError(f"the DataFrame has no label column {label_col!r}")
    out = frame.copy()
    suggested = result.data.label_values(result.suggested)
    rows = flags.nonzero()[0]
    out.iloc[rows, out.columns.get_loc(label_col)] = suggested[rows].tolist()
    return out
