"""report.html: one self-contained, offline page for people to read a scan.

The page holds summary cards (with the quality gate when rules were set), a
noise-matrix heatmap, per-class issue-rate bars (or add/remove bars for
multi-label data), a label-quality histogram with the flagging threshold,
the most confused pairs and a sortable, filterable table of the top issues.

Everything is inline: CSS, a small vanilla script, the charts as ``<svg>``
built in Python (:mod:`labelqa.report.svg`) and the table rows as a JSON
``<script type="application/json">`` block. Nothing is fetched, so the file
works from disk, as a CI artifact and in air-gapped places.

Safety: every dataset string (class names, ids, reasons, the source path) is
escaped with :func:`html.escape` in markup, and the JSON block escapes
``<``, ``>``, ``&`` and U+2028/U+2029, so a label such as ``</script>`` cannot
end the block. The table rows are inserted with ``textContent``.

Size: the table is capped at ``max_rows`` best-ranked flagged rows (the full
list is issues.parquet) and charts are aggregated (histogram bins, at most
:data:`MAX_HEATMAP_CLASSES` heatmap classes, :data:`MAX_BAR_CLASSES` bars),
so the page stays a few hundred KB for any number of rows.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.compute as pc

from labelqa.report import svg
from labelqa.report.assets import CSS, JS
from labelqa.report.toprows import top_issue_rows

#: Heatmap classes shown at most (the classes most involved in confusions).
MAX_HEATMAP_CLASSES = 30
#: Per-class bars shown at most (highest issue rates first).
MAX_BAR_CLASSES = 40
#: Bins of the label-quality histogram.
HIST_BINS = 40

#: Columns of the top-issues table: (issues column, header, JSON type, css class, pill).
_TABLE_COLUMNS = (
    ("rank", "Rank", "int", "num", None),
    ("id", "ID", "text", "id mono", None),
    ("given_label", "Given", "text", "label", "given"),
    ("suggested_label", "Suggested", "text", "label", "sugg"),
    ("label_quality", "Quality", "float", "num", None),
    ("suggested_confidence", "Sugg. conf.", "float", "num", None),
    ("detectors", "Detectors", "text", "", None),
    ("reason", "Reason", "text", "reason", None),
)


def esc(value: Any) -> str:
    """Escape a value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\\u003c``/``\\u003e``/``\\u0026`` and the
    JavaScript line terminators U+2028/U+2029 are escaped too, so no dataset
    string can close the element or start a comment; ``JSON.parse`` restores
    the exact text. NaN/inf become ``null``.
    """
    text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.generic,)):
        return _finite(value.item())
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * float(x):.{digits}f}%"


def _int(x: Any) -> str:
    return "n/a" if x is None else f"{int(x):,}"


# ---- data extraction ------------------------------------------------------------
def _table_payload(top: pa.Table) -> dict[str, Any]:
    cols = []
    values = []
    for key, title, typ, cls, pill in _TABLE_COLUMNS:
        if key not in top.column_names:
            continue
        spec: dict[str, Any] = {"key": key, "title": title, "type": typ, "cls": cls}
        if pill:
            spec["pill"] = pill
        if key in ("reason", "id"):
            spec["title_attr"] = True
        if key == "id":
            spec["middle_clip"] = ID_CHARS
        cols.append(spec)
        col = top.column(key)
        if typ == "float":
            arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
            values.append([None if not math.isfinite(v) else round(v, 6) for v in arr.tolist()])
        else:
            values.append([_cell(v) for v in col.to_pylist()])
    _shown_payload(top, cols, values)
    rows = [list(r) for r in zip(*values)] if values else []
    return {"columns": cols, "rows": rows}


#: Characters of an id in the issues table; longer ids keep their start and end around an ellipsis (full on hover).
ID_CHARS = 20

#: Characters of shown text in a table cell before it is cut ("more" shows the rest).
SHOWN_TEXT_CHARS = 160


def _shown_payload(top: pa.Table, cols: list[dict[str, Any]], values: list[list[Any]]) -> None:
    """Append the data columns shown with ``--show-cols`` (text, numbers, image thumbnails as data URIs)."""
    import base64

    from labelqa.report.shown import shown_fields

    for name, kind in shown_fields(top):
        col = top.column(name)
        if kind == "image":
            cols.append({"key": name, "title": name, "type": "image", "cls": "thumb"})
            values.append([None if v is None else "data:image/png;base64," + base64.b64encode(v).decode("ascii")
                           if v.startswith(b"\x89PNG") else _raw_image_uri(v) for v in col.to_pylist()])
        elif kind == "number":
            cols.append({"key": name, "title": name, "type": "float" if pa.types.is_floating(col.type) else "int",
                         "cls": "num"})
            values.append([_cell(v) for v in col.to_pylist()])
        else:
            cols.append({"key": name, "title": name, "type": "text", "cls": "shown-text",
                         "clip": SHOWN_TEXT_CHARS})
            values.append([None if v is None else str(v) for v in col.to_pylist()])


_RAW_TYPES = ((b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"RIFF", "webp"))


def _raw_image_uri(data: bytes) -> str | None:
    """A data URI of encoded image bytes embedded as they are (no Pillow), by their signature."""
    import base64

    for sig, kind in _RAW_TYPES:
        if data.startswith(sig):
            return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")
    return None


def _cell(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53:
        return str(v)  # JavaScript numbers would round it
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_cell(x) for x in v]
    return str(v)


def confusion_counts(summary: dict[str, Any], issues: pa.Table | None) -> tuple[np.ndarray | None, str]:
    """The heatmap counts and a note of where they come from.

    Prefers the confident-learning detector's ``confident_joint_calibrated``
    (the primary detector's when it has one), whose rows are given labels
    and columns suggested (true) labels. Otherwise counts (given, suggested)
    pairs over the flagged rows of the issues table.
    """
    k = len(summary.get("classes") or [])
    detectors = summary.get("detectors") or {}
    names = [summary.get("primary_detector")] + [n for n in detectors if n != summary.get("primary_detector")]
    for name in names:
        cj = ((detectors.get(name) or {}).get("summary") or {}).get("confident_joint_calibrated")
        if cj is not None and len(cj) == k and all(len(r) == k for r in cj):
            # an array from matrices.npy (large K) or nested lists (inline): the same floats either way
            return np.asarray(cj, dtype=np.float64), (
                f"Calibrated confident joint of the {name!r} detector: estimated row counts by given label "
                "(rows) and suggested, i.e. likely true, label (columns). Off-diagonal cells are likely label errors."
            )
    if issues is None or k == 0 or not {"given_label", "suggested_label", "is_label_issue"} <= set(issues.column_names):
        return None, ""
    try:
        flagged = issues.filter(pc.fill_null(issues.column("is_label_issue"), False))
        given = pc.cast(flagged.column("given_label"), pa.string()).to_pylist()
        sugg = pc.cast(flagged.column("suggested_label"), pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None, ""
    pos = {str(c): i for i, c in enumerate(summary["classes"])}
    mat = np.zeros((k, k))
    for g, s in zip(given, sugg):
        if g in pos and s in pos:
            mat[pos[g], pos[s]] += 1
    return mat, "Flagged rows counted by given label (rows) and suggested label (columns)."


class QualityHistogram:
    """Histogram of ``label_quality``, split into flagged and clean rows, over batches of the issues table.

    The range is [0, 1] when every score lies there (confident learning),
    else the scores' min..max. ``threshold`` is the highest quality among
    flagged rows: every row at or below it that is not flagged was kept by
    the detector's per-class rules, every row above it is clean.

    Scores outside [0, 1] spread over several batches need their min and max
    before binning: :meth:`result` then returns ``None`` and the caller
    reads the written file again (:func:`file_histogram`).
    """

    def __init__(self, bins: int = HIST_BINS) -> None:
        self.bins = bins
        self.clean = np.zeros(bins, dtype=np.int64)
        self.flagged = np.zeros(bins, dtype=np.int64)
        self.lo, self.hi, self.threshold = np.inf, -np.inf, -np.inf
        self._batches = 0
        self._only: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, issues: pa.Table) -> None:
        """Fold one batch in."""
        if "label_quality" not in issues.column_names or issues.num_rows == 0:
            return
        q = issues.column("label_quality").to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if "is_label_issue" in issues.column_names:
            f = issues.column("is_label_issue").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        else:
            f = np.zeros(len(q), dtype=bool)
        ok = np.isfinite(q)
        if not ok.all():
            q, f = q[ok], f[ok]
        if q.size == 0:
            return
        self._batches += 1
        self._only = (q, f) if self._batches == 1 else None
        self.lo, self.hi = min(self.lo, float(q.min())), max(self.hi, float(q.max()))
        flagged = q[f]
        if flagged.size:
            self.threshold = max(self.threshold, float(flagged.max()))
        # bins + range (not an edges array) takes numpy's uniform-bin path: no sort, same counts. The clean
        # rows' counts are all rows' minus the flagged ones' (no copy of the clean majority).
        every = np.histogram(q, bins=self.bins, range=(0.0, 1.0))[0]
        some = np.histogram(flagged, bins=self.bins, range=(0.0, 1.0))[0]
        self.clean += every - some
        self.flagged += some

    def result(self) -> dict[str, Any] | None:
        """``{"edges", "clean", "flagged", "threshold"}``, or ``None`` (no scores, or a second pass needed)."""
        if self._batches == 0:
            return None
        lo, hi = self.lo, self.hi
        clean, flagged = self.clean, self.flagged
        if not (lo >= 0.0 and hi <= 1.0):
            if self._only is None:
                return None
            q, f = self._only
            if hi <= lo:
                hi = lo + 1.0
            clean = np.histogram(q[~f], bins=self.bins, range=(lo, hi))[0]
            flagged = np.histogram(q[f], bins=self.bins, range=(lo, hi))[0]
        else:
            lo, hi = 0.0, 1.0
        edges = np.linspace(lo, hi, self.bins + 1)
        return {"edges": edges.tolist(), "clean": clean.tolist(), "flagged": flagged.tolist(),
                "threshold": self.threshold if np.isfinite(self.threshold) else None}


def quality_histogram(issues: pa.Table, bins: int = HIST_BINS) -> dict[str, Any] | None:
    """:class:`QualityHistogram` of one issues table."""
    hist = QualityHistogram(bins)
    hist.add(issues)
    return hist.result()


def file_histogram(path: Path, bins: int = HIST_BINS, batch_rows: int = 1 << 20) -> dict[str, Any] | None:
    """:func:`quality_histogram` of an issues.parquet, read in batches (bounded memory; two passes
    when the scores leave [0, 1])."""
    pf = pq.ParquetFile(path)
    cols = ["label_quality", "is_label_issue"]

    def batches() -> Any:
        for batch in pf.iter_batches(columns=cols, batch_size=batch_rows):
            yield pa.Table.from_batches([batch])

    hist = QualityHistogram(bins)
    for table in batches():
        hist.add(table)
    out = hist.result()
    if out is not None or hist._batches == 0:
        return out
    lo, hi = hist.lo, hist.hi if hist.hi > hist.lo else hist.lo + 1.0
    clean = np.zeros(bins, dtype=np.int64)
    flagged = np.zeros(bins, dtype=np.int64)
    for table in batches():
        q = table.column(0).to_numpy(zero_copy_only=False).astype(np.float64)
        f = table.column(1).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        ok = np.isfinite(q)
        q, f = q[ok], f[ok]
        clean += np.histogram(q[~f], bins=bins, range=(lo, hi))[0]
        flagged += np.histogram(q[f], bins=bins, range=(lo, hi))[0]
    return {"edges": np.linspace(lo, hi, bins + 1).tolist(), "clean": clean.tolist(), "flagged": flagged.tolist(),
            "threshold": hist.threshold if np.isfinite(hist.threshold) else None}


# ---- sections -------------------------------------------------------------------
def _card(key: str, value: str, sub: str = "", cls: str = "", attrs: str = "") -> str:
    sub_html = f'<div class="s">{sub}</div>' if sub else ""
    return f'<div class="card {cls}"{attrs}><div class="k">{key}</div><div class="v">{value}</div>{sub_html}</div>'


def _cards(summary: dict[str, Any]) -> str:
    cards = []
    gate = summary.get("gate")
    if gate and gate.get("rules"):
        passed = bool(gate.get("passed"))
        rules = ", ".join(f"{esc(k)} = {esc(v)}" for k, v in gate["rules"].items())
        cards.append(_card(
            "Quality gate", "PASSED" if passed else "FAILED",
            f"{esc(gate.get('reason', ''))}<br><span class=\"mono\">{rules}</span>",
            "gate-pass" if passed else "gate-fail", f' id="gate" data-passed="{str(passed).lower()}"',
        ))
    cards.append(_card("Rows", _int(summary.get("rows")), f"{_int(summary.get('n_classes'))} classes"))
    cards.append(_card(
        "Label issues", _int(summary.get("issues_found")), f"{_pct(summary.get('issue_rate'), 2)} of rows flagged",
        "highlight", ' id="issues-found"',
    ))
    est = summary.get("estimated_noise_rate")
    est_n = summary.get("estimated_num_issues")
    cards.append(_card(
        "Est. noise rate", _pct(est, 2),
        f"about {_int(est_n)} rows mislabelled" if est_n is not None else "share of rows likely mislabelled",
    ))
    pairs = summary.get("confused_pairs") or []
    if pairs:
        p = pairs[0]
        cards.append(_card(
            "Top confusion", f"{esc(svg.clip(p['given'], 14))} \u2192 {esc(svg.clip(p['suggested'], 14))}",
            f"{_int(p['count'])} flagged rows", "text",
            attrs=f' title="{esc(p["given"])} \u2192 {esc(p["suggested"])}"',
        ))
    cards.append(_detector_card(summary))
    return '<section class="cards" aria-label="Summary">' + "".join(cards) + "</section>"


def _detector_card(summary: dict[str, Any]) -> str:
    """"Detector: cl", or with several "Detectors: cl + nrg" and the primary and the issue rule."""
    runs = [str(n) for n in summary.get("detectors_run") or summary.get("detectors") or []]
    primary = str(summary.get("primary_detector", "n/a"))
    if len(runs) <= 1:
        return _card("Detector", esc(runs[0] if runs else primary), "the one detector run", "text")
    rule = summary.get("issue_rule", "primary_or_2")
    return _card("Detectors", esc(" + ".join(runs)), f"primary {esc(primary)}; issue rule {esc(rule)}", "text",
                 ' id="detectors-card"')


def _panel(title: str, sub: str, body: str, pid: str) -> str:
    return (f'<section class="panel" id="{pid}"><h2>{title}</h2><p class="sub">{sub}</p>'
            f'<div class="chart-wrap">{body}</div></section>')


def _empty(text: str) -> str:
    return f'<div class="empty">{text}</div>'


def _heatmap_panel(summary: dict[str, Any], issues: pa.Table | None) -> str:
    classes = [str(c) for c in summary.get("classes") or []]
    counts, note = confusion_counts(summary, issues)
    if counts is None:
        return _panel("Given vs suggested labels", "Given vs suggested label counts.",
                      _empty("Not available for this scan."), "heatmap")
    k = len(classes)
    keep = list(range(k))
    if k > MAX_HEATMAP_CLASSES:
        off = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
        keep = sorted(np.argsort(-off, kind="stable")[:MAX_HEATMAP_CLASSES].tolist())
        note += f" Showing the {MAX_HEATMAP_CLASSES} of {k} classes most involved in confusions."
    nm = summary.get("noise_matrix")
    sub_counts = counts[np.ix_(keep, keep)].tolist()  # only the shown cells become Python floats (K = 1,000: 1M)
    legend_scale = "darker = more rows (square-root scale, each colour on its own scale)"
    if nm is not None and len(nm) == k and all(len(r) == k for r in nm) and not note.startswith("Flagged rows"):
        # noise_matrix[i][j] = P(given = i | true = j): rows of the heatmap are given labels, columns true labels;
        # each column sums to 1. The cells show the probabilities, the tooltips the row counts.
        values = np.asarray(nm, dtype=np.float64)[np.ix_(keep, keep)].tolist()
        notes = [[f"{svg.fmt_count(sub_counts[a][b])} rows in the calibrated confident joint"
                  for b in range(len(keep))] for a in range(len(keep))]
        chart = svg.heatmap(values, [classes[i] for i in keep], [classes[j] for j in keep],
                            row_title="given label", col_title="true label (estimated)", label="Noise matrix heatmap",
                            cell_note=notes, probabilities=True)
        title = "Noise matrix"
        sub = ("Estimated P(given label | true label): each column sums to 1, off-diagonal cells are the chance "
               "that a row of that true class carries the wrong given label. Hover a cell for the row counts "
               "of the calibrated confident joint.")
        if len(keep) < k:
            sub += f" Showing the {MAX_HEATMAP_CLASSES} of {k} classes most involved in confusions."
        legend_scale = "darker = higher probability (square-root scale, each colour on its own scale)"
    else:
        chart = svg.heatmap(sub_counts, [classes[i] for i in keep], [classes[j] for j in keep],
                            row_title="given label", col_title="suggested label",
                            label="Given vs suggested label heatmap")
        title, sub = "Given vs suggested labels", note
    legend = ('<div class="legend-row"><span><span class="swatch" style="background:#1d4ed8"></span>agrees '
              '(diagonal)</span><span><span class="swatch" style="background:#c2410c"></span>given \u2260 '
              f'{"true" if title == "Noise matrix" else "suggested"}</span><span>{legend_scale}</span></div>')
    return _panel(title, esc(sub), chart + legend, "heatmap")


def _class_bars_panel(summary: dict[str, Any]) -> str:
    per_class = list(summary.get("per_class") or [])
    multilabel = summary.get("task") == "multilabel" and any(
        "should_remove" in r or "should_add" in r for r in per_class
    )
    if multilabel:
        rows = sorted(per_class, key=lambda r: -(r.get("should_remove", 0) + r.get("should_add", 0)))
        note = "Flagged labels per class: labels given but likely wrong (remove) and labels missing (add)."
        if len(rows) > MAX_BAR_CLASSES:
            note += f" Top {MAX_BAR_CLASSES} of {len(rows)} classes."
        rows = rows[:MAX_BAR_CLASSES]
        chart = svg.diverging_bars(
            [(str(r["class"]), float(r.get("should_remove", 0)), float(r.get("should_add", 0))) for r in rows],
            left_name="remove", right_name="add", label="Per-class labels to remove and add",
        )
        return _panel("Per-class label changes", esc(note), chart, "per-class")
    if not per_class:
        return _panel("Per-class issue rate", "", _empty("No classes."), "per-class")
    rows = sorted(per_class, key=lambda r: (-float(r.get("issue_rate") or 0), str(r.get("class"))))
    note = "Share of each class's rows flagged, highest first."
    has_est = any(r.get("estimated_noise_rate") is not None for r in rows)
    if has_est:
        note += " The dark tick marks the class's estimated noise rate."
    if len(rows) > MAX_BAR_CLASSES:
        note += f" Top {MAX_BAR_CLASSES} of {len(rows)} classes."
    rows = rows[:MAX_BAR_CLASSES]
    bars = [
        svg.Bar(
            label=str(r["class"]), value=float(r.get("issue_rate") or 0),
            text=f"{_pct(r.get('issue_rate'))} ({_int(r.get('issues'))}/{_int(r.get('count'))})",
            marker=float(r["estimated_noise_rate"]) if r.get("estimated_noise_rate") is not None else None,
            tip=f"{r['class']}: {_int(r.get('issues'))} of {_int(r.get('count'))} rows flagged",
        )
        for r in rows
    ]
    hi = max(max(b.value, b.marker or 0) for b in bars) or 1.0
    chart = svg.hbars(bars, label="Per-class issue rate", max_value=hi, marker_name="estimated noise rate")
    return _panel("Per-class issue rate", esc(note), chart, "per-class")


def _histogram_panel(issues: pa.Table | None, histogram: dict[str, Any] | None = None) -> str:
    h = histogram if histogram is not None else quality_histogram(issues) if issues is not None else None
    if h is None:
        return _panel("Label quality", "", _empty("No scores."), "histogram")
    line = h["threshold"]
    # unflagged rows in bins wholly below the highest flagged quality: then the line is no cut-off
    below = sum(c for c, hi in zip(h["clean"], h["edges"][1:]) if line is not None and hi <= line)
    is_cut = line is not None and below == 0
    chart = svg.histogram(
        h["edges"], [("flagged", h["flagged"], "h-flag"), ("not flagged", h["clean"], "h-clean")],
        label="Label quality histogram", x_title="label quality (lower = more suspect)",
        threshold=line, threshold_name="threshold" if is_cut else "highest flagged",
        line_class="threshold" if is_cut else "reference",
    )
    sub = "Label quality of every row."
    if is_cut:
        sub += (f" The dashed line is the flagging threshold: every row at or below {line:.4g} is flagged, "
                "every row above it kept.")
    elif line is not None:
        sub += (f" Flagged rows reach quality {line:.4g} (dotted line), yet at least {below:,} rows below it are "
                "not flagged: the detectors decide per class and by rank, not at one cut-off.")
    return _panel("Label quality", esc(sub), chart, "histogram")


def _changes_panel(summary: dict[str, Any]) -> str:
    """Multi-label: the most frequent single-label changes (remove or add one class) over the flagged rows."""
    changes = []
    for r in summary.get("per_class") or []:
        for kind, key in (("remove", "should_remove"), ("add", "should_add")):
            if r.get(key):
                changes.append((f"{kind} {r['class']}", int(r[key]), kind))
    changes.sort(key=lambda c: (-c[1], c[0]))
    if not changes:
        return _panel("Most frequent label changes", "", _empty("No label changes suggested."), "pairs")
    bars = [svg.Bar(label=name, value=float(n), text=f"{n:,}", tip=f"{name}: suggested for {n:,} flagged rows")
            for name, n, _ in changes[:12]]
    chart = svg.hbars(bars, label="Most frequent label changes", cls="bar-pair")
    sub = "Labels to remove or add, counted over the flagged rows, most frequent first."
    return _panel("Most frequent label changes", esc(sub), chart, "pairs")


def _pairs_panel(summary: dict[str, Any]) -> str:
    if summary.get("task") == "multilabel":
        return _changes_panel(summary)
    pairs = summary.get("confused_pairs") or []
    if not pairs:
        return _panel("Most confused pairs", "", _empty("No confused pairs among flagged rows."), "pairs")
    bars = [
        # each class clipped on its own, so a long given label never hides the suggested one
        svg.Bar(label=f"{svg.clip(p['given'], 10)} \u2192 {svg.clip(p['suggested'], 10)}", value=float(p["count"]),
                text=f"{int(p['count']):,}",
                tip=f"given {p['given']}, suggested {p['suggested']}: {int(p['count']):,} flagged rows")
        for p in pairs
    ]
    chart = svg.hbars(bars, label="Most confused pairs", cls="bar-pair")
    return _panel("Most confused pairs", "Flagged rows by given \u2192 suggested label.", chart, "pairs")


def _table_section(summary: dict[str, Any], issues: pa.Table | None, max_rows: int) -> str:
    top = top_issue_rows(issues, max_rows) if issues is not None else None
    payload = _table_payload(top) if top is not None else {"columns": [], "rows": []}
    n_flag = int(summary.get("issues_found") or 0)
    shown = len(payload["rows"])
    heads = "".join(
        f'<th scope="col" data-key="{esc(c["key"])}" class="{"num" if c["type"] not in ("text", "image") else ""}" '
        f'aria-sort="{"ascending" if c["key"] == "rank" else "none"}"><button type="button">{esc(c["title"])}'
        "</button></th>"
        for c in payload["columns"]
    )
    if shown < n_flag:
        sub = (f"The {shown:,} best-ranked of {n_flag:,} flagged rows; the full list is in "
               "<code>issues.parquet</code> (and issues.csv).")
    else:
        sub = f"All {n_flag:,} flagged rows, most suspect first; every row is in <code>issues.parquet</code>."
    sub += " Click a header to sort, type to filter (all words must match)."
    return (
        '<section class="panel table-panel" id="issues"><h2>Top issues</h2>'
        f'<p class="sub">{sub}</p>'
        '<div class="toolbar"><input type="search" id="issues-filter" placeholder="Filter: id, label, reason\u2026" '
        'aria-label="Filter issues" autocomplete="off"><span class="count" id="issues-count" aria-live="polite">'
        f"{shown:,} rows</span></div>"
        f'<div class="table-scroll"><table class="issues" id="issues-table"><thead><tr>{heads}</tr></thead>'
        "<tbody></tbody></table></div>"
        "<noscript><p>Enable JavaScript to see the table, or open issues.csv.</p></noscript>"
        f'<script type="application/json" id="issues-data">{script_json(payload)}</script>'
        "</section>"
    )


def _details(summary: dict[str, Any]) -> str:
    rows = [
        ("Source", f'<span class="mono">{esc(summary.get("source"))}</span>'),
        ("Task", esc(summary.get("task", "multiclass"))),
        ("Classes", esc(", ".join(str(c) for c in (summary.get("classes") or [])[:200]))
         + (" \u2026" if len(summary.get("classes") or []) > 200 else "")),
    ]
    for name, det in (summary.get("detectors") or {}).items():
        params = ", ".join(f"{k}={v}" for k, v in (det.get("params") or {}).items())
        rows.append((f"Detector {esc(name)}",
                     f"{_int(det.get('issues_found'))} flagged<br><span class=\"mono\">{esc(params)}</span>"))
    rows.append(("Summary schema", esc(summary.get("schema_version"))))
    body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<details class="more panel"><summary>Scan details</summary><table class="kv">{body}</table></details>'


# ---- public API -------------------------------------------------------------------
def _evaluation_panel(evaluation: dict[str, Any] | None) -> str:
    if not evaluation:
        return ""
    from labelqa.evaluate import METRICS, describe_truth, fmt_metric, table_rows

    head = "".join(f"<th>{esc(h)}</th>" for h in ["Detector", "Flagged"] + [t for _, t in METRICS])
    rows = "".join(
        "<tr>" + f"<td>{esc(name)}</td><td>{_int(m['flagged'])}</td>"
        + "".join(f"<td>{esc(fmt_metric(m.get(key)))}</td>" for key, _ in METRICS) + "</tr>"
        for name, m in table_rows(evaluation)
    )
    return _panel("Detection quality", esc(describe_truth(evaluation)),
                  f'<table class="kv eval"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>', "evaluation")


def render_html(summary: dict[str, Any], issues: pa.Table | None, *, max_rows: int = 1000,
                evaluation: dict[str, Any] | None = None, histogram: dict[str, Any] | None = None) -> str:
    """Render report.html from a scan summary and its issues table.

    Args:
        summary: The dict of :meth:`labelqa.result.ScanResult.summary`, with
            ``gate`` when the CLI added one.
        issues: The issues table (issues.parquet); ``None`` leaves out the
            histogram and the table.
        max_rows: Most flagged rows listed in the table (best-ranked first).
        evaluation: An evaluation (``labelqa evaluate``) to show as a table.
        histogram: A precomputed :func:`quality_histogram` (e.g. from
            :func:`file_histogram`), so ``issues`` may hold only the top rows.

    Returns:
        The complete HTML document.
    """
    version = summary.get("labelqa_version", "")
    source = summary.get("source")
    title = f"labelqa report \u2013 {source}" if source else "labelqa report"
    meta = (f'<span class="mono">{esc(source)}</span> \u00b7 ' if source else "") + (
        f"{_int(summary.get('rows'))} rows \u00b7 labelqa {esc(version)}")
    body = (
        f'<main><header class="page"><h1><span class="brand">labelqa</span> label quality report</h1>'
        f'<div class="meta">{meta}</div></header>'
        + _cards(summary)
        + '<div class="grid">'
        + (_heatmap_panel(summary, issues) if summary.get("task") != "multilabel" else "")
        + _class_bars_panel(summary)
        + _histogram_panel(issues, histogram)
        + _pairs_panel(summary)
        + "</div>"
        + _evaluation_panel(evaluation)
        + _table_section(summary, issues, max_rows)
        + _details(summary)
        + f"<footer>Generated by labelqa {esc(version)} \u00b7 self-contained: no network access needed</footer></main>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        '<meta name="generator" content="labelqa">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}<script>{JS}</script></body></html>\n"
    )
