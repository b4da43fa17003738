"""Small static SVG charts for the HTML report: heatmap, bar charts, histogram.

Hand-written on purpose: the report must be one offline file, so charts are
plain inline ``<svg>`` strings built here, with no plotting dependency.
Every text that can come from a dataset (class names) goes through
:func:`esc`, so a label such as ``<script>`` is drawn as text.

Colours refer to CSS classes of the report's stylesheet where possible
(``.bar``, ``.bar-alt``...), so the charts follow the page theme.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Font size of chart text, in SVG user units (the charts scale with the page).
FONT = 12
#: Approximate width of one character at :data:`FONT`, for layout.
CHAR_W = 6.6


def esc(value: object) -> str:
    """Escape any value for SVG/HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def clip(text: object, n: int) -> str:
    """Shorten ``text`` to ``n`` characters with an ellipsis (not escaped)."""
    s = str(text).replace("\n", " ")
    return s if len(s) <= n else s[: max(n - 1, 1)] + "\u2026"


def fmt_num(x: float) -> str:
    """Compact number for axis ticks: 1200 -> 1.2k, 0.25 -> 0.25."""
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:g}M"
    if ax >= 1e4:
        return f"{x / 1e3:g}k"
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.3g}"


def nice_ticks(hi: float, n: int = 4, *, integer: bool = False) -> list[float]:
    """About ``n`` round tick values from 0 to at least ``hi`` (whole steps if ``integer``)."""
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    count = math.ceil(hi / step - 1e-9)
    return [i * step for i in range(count + 1)]


def _mix(hex_a: str, hex_b: str, t: float) -> str:
    """Colour between ``hex_a`` (t=0) and ``hex_b`` (t=1)."""
    a = [int(hex_a[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(hex_b[i : i + 2], 16) for i in (1, 3, 5)]
    t = min(max(t, 0.0), 1.0)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def _svg(width: float, height: float, body: list[str], label: str, cls: str = "chart") -> str:
    return (
        f'<svg class="{cls}" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'role="img" aria-label="{esc(label)}">'
        f"<title>{esc(label)}</title>" + "".join(body) + "</svg>"
    )


# ---- heatmap -----------------------------------------------------------------
def heatmap(
    counts: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    row_title: str,
    col_title: str,
    label: str,
    cell_note: Sequence[Sequence[str]] | None = None,
    probabilities: bool = False,
) -> str:
    """A K x K count (or probability) heatmap; diagonal cells blue, off-diagonal cells orange.

    The two groups are coloured on separate scales (square-root of the count
    over the group's maximum) so that rare confusions stay visible next to a
    large diagonal. Counts are printed in cells when they fit; every cell has
    a tooltip with the full class names.

    Args:
        counts: Row-major counts, ``counts[i][j]`` for row ``i`` and column ``j``.
        row_labels: Names of the rows (y axis).
        col_labels: Names of the columns (x axis).
        row_title: Axis title of the rows.
        col_title: Axis title of the columns.
        label: Accessible name of the chart.
        cell_note: Optional extra tooltip text per cell.
        probabilities: The values are probabilities: cells print them with two decimals and tooltips
            say ``P(row | column)``.
    """
    nr, nc = len(row_labels), len(col_labels)
    cell = max(14.0, min(44.0, 520.0 / max(nr, nc, 1)))
    show_text = cell >= 26
    max_chars = 16
    left = 30 + min(max_chars, max((len(str(s)) for s in row_labels), default=1)) * CHAR_W + 8
    top_lbl = min(max_chars, max((len(str(s)) for s in col_labels), default=1)) * CHAR_W * 0.72 + 14
    top = 26 + top_lbl
    # column labels rise at 45 degrees to the right: the last one needs that much room past the grid
    width = left + nc * cell + max(12.0, top_lbl - cell / 2)
    height = top + nr * cell + 12
    flat_diag = [counts[i][i] for i in range(min(nr, nc))]
    flat_off = [counts[i][j] for i in range(nr) for j in range(nc) if i != j]
    max_diag = max(flat_diag, default=0) or 1
    max_off = max(flat_off, default=0) or 1
    body = [
        f'<text class="axis-title" x="{left + nc * cell / 2:.1f}" y="14" text-anchor="middle">'
        f"{esc(col_title)} \u2192</text>",
        f'<text class="axis-title" transform="translate(14 {top + nr * cell / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{esc(row_title)} \u2192</text>',
    ]
    for j, name in enumerate(col_labels):
        x = left + (j + 0.5) * cell
        body.append(
            f'<text class="tick" transform="translate({x:.1f} {top - 6:.1f}) rotate(-45)" text-anchor="start">'
            f"<title>{esc(name)}</title>{esc(clip(name, max_chars))}</text>"
        )
    for i, name in enumerate(row_labels):
        y = top + (i + 0.5) * cell
        body.append(
            f'<text class="tick" x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">'
            f"<title>{esc(name)}</title>{esc(clip(name, max_chars))}</text>"
        )
    for i in range(nr):
        for j in range(nc):
            v = counts[i][j]
            diag = i == j
            t = math.sqrt(v / (max_diag if diag else max_off)) if v > 0 else 0.0
            fill = _mix("#f8fafc", "#1d4ed8" if diag else "#c2410c", 0.06 + 0.86 * t) if v > 0 else "#f8fafc"
            x, y = left + j * cell, top + i * cell
            note = f" ({cell_note[i][j]})" if cell_note is not None and cell_note[i][j] else ""
            if probabilities:
                tip = f"P({row_title} {row_labels[i]} | {col_title} {col_labels[j]}) = {v:.3f}{note}"
                data = f'data-p="{v:.6g}"'
            else:
                tip = f"given {row_labels[i]} \u2192 suggested {col_labels[j]}: {fmt_count(v)} rows{note}"
                data = f'data-count="{fmt_count(v)}"'
            body.append(
                f'<g class="cell" data-row="{i}" data-col="{j}" {data}>'
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell - 1:.1f}" height="{cell - 1:.1f}" rx="2" '
                f'fill="{fill}"><title>{esc(tip)}</title></rect>'
            )
            if show_text and v > 0:
                color = "#ffffff" if t > 0.5 else "#0f172a"
                size = FONT if cell >= 36 else FONT - 2
                body.append(
                    f'<text x="{x + (cell - 1) / 2:.1f}" y="{y + (cell - 1) / 2 + size / 3:.1f}" '
                    f'text-anchor="middle" font-size="{size}" fill="{color}" pointer-events="none">'
                    f"{esc(f'{v:.2f}'.lstrip('0') if probabilities and v < 1 else compact_count(v))}</text>"
                )
            body.append("</g>")
    return _svg(width, height, body, label, cls="chart heatmap")


def fmt_count(v: float) -> str:
    """A count as text: integers without decimals, others rounded."""
    return f"{int(round(v)):,}" if abs(v - round(v)) < 1e-9 else f"{v:,.1f}"


def compact_count(v: float) -> str:
    """A count short enough for a heatmap cell (12345 -> 12k)."""
    v = float(v)
    if v >= 1e6:
        return f"{v / 1e6:.1f}M".replace(".0M", "M")
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k".replace(".0k", "k")
    return fmt_count(v)


# ---- horizontal bars -----------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """One bar of :func:`hbars`.

    Attributes:
        label: Category name (dataset text; escaped when drawn).
        value: Bar length in data units.
        text: Value text drawn after the bar.
        marker: Optional second value drawn as a tick on the bar.
        tip: Tooltip text.
    """

    label: str
    value: float
    text: str
    marker: float | None = None
    tip: str = ""


def hbars(bars: Sequence[Bar], *, label: str, max_value: float | None = None, marker_name: str = "",
          cls: str = "bar", width: float = 520) -> str:
    """Horizontal bars, one row per item, in the given order."""
    row_h = 22
    max_chars = 24
    left = min(max_chars, max((len(str(b.label)) for b in bars), default=1)) * CHAR_W + 12
    right = max((len(b.text) for b in bars), default=4) * CHAR_W * 0.95 + 14
    # no wider than the labels and a 240-unit plot need: a narrow chart scales down less on a phone, so its
    # text stays readable
    width = min(width, left + right + 240)
    plot_w = max(width - left - right, 80)
    top = 4
    hi = max_value if max_value is not None else max((max(b.value, b.marker or 0) for b in bars), default=0)
    hi = hi or 1
    height = top + row_h * len(bars) + 6
    body = []
    for k, b in enumerate(bars):
        y = top + k * row_h
        w = plot_w * max(b.value, 0) / hi
        tip = esc(b.tip or f"{b.label}: {b.text}")
        body.append(
            f'<g class="row"><text class="tick" x="{left - 8:.1f}" y="{y + 15:.1f}" text-anchor="end">'
            f"<title>{esc(b.label)}</title>{esc(clip(b.label, max_chars))}</text>"
            f'<rect class="track" x="{left:.1f}" y="{y + 4:.1f}" width="{plot_w:.1f}" height="14" rx="3"/>'
            f'<rect class="{cls}" x="{left:.1f}" y="{y + 4:.1f}" width="{max(w, 0.0):.1f}" height="14" rx="3">'
            f"<title>{tip}</title></rect>"
        )
        if b.marker is not None:
            mx = left + plot_w * min(max(b.marker, 0), hi) / hi
            body.append(
                f'<rect class="marker" x="{mx - 1:.1f}" y="{y + 1:.1f}" width="2.5" height="20">'
                f"<title>{esc(marker_name)}: {esc(b.tip or b.label)}</title></rect>"
            )
        body.append(f'<text class="value" x="{left + plot_w + 8:.1f}" y="{y + 15:.1f}">{esc(b.text)}</text></g>')
    return _svg(width, height, body, label)


def diverging_bars(rows: Sequence[tuple[str, float, float]], *, left_name: str, right_name: str, label: str,
                   width: float = 520) -> str:
    """Two-sided bars per category: ``left`` grows leftwards, ``right`` rightwards.

    Used for multi-label per-class counts (labels to remove | labels to add).

    Args:
        rows: ``(category, left_value, right_value)`` in drawing order.
        left_name: Legend name of the left values.
        right_name: Legend name of the right values.
        label: Accessible name of the chart.
    """
    row_h = 22
    max_chars = 22
    name_w = min(max_chars, max((len(str(r[0])) for r in rows), default=1)) * CHAR_W + 12
    top = 24
    width = min(width, name_w + 16 + 2 * 150)  # as hbars: no wider than needed, to stay readable on a phone
    half = max((width - name_w - 16) / 2, 60)
    mid = name_w + half
    hi = max((max(a, b) for _, a, b in rows), default=0) or 1
    height = top + row_h * len(rows) + 8
    body = [
        f'<text class="legend" x="{mid - 8:.1f}" y="14" text-anchor="end">\u2190 {esc(left_name)}</text>',
        f'<text class="legend" x="{mid + 8:.1f}" y="14">{esc(right_name)} \u2192</text>',
        f'<line class="axis" x1="{mid:.1f}" x2="{mid:.1f}" y1="{top - 2}" y2="{height - 4:.1f}"/>',
    ]
    for k, (name, a, b) in enumerate(rows):
        y = top + k * row_h
        wa = (half - 44) * a / hi
        wb = (half - 44) * b / hi
        body.append(
            f'<g class="row" data-class="{esc(name)}"><text class="tick" x="{name_w - 8:.1f}" y="{y + 15:.1f}" '
            f'text-anchor="end"><title>{esc(name)}</title>{esc(clip(name, max_chars))}</text>'
            f'<rect class="bar-remove" x="{mid - wa:.1f}" y="{y + 4:.1f}" width="{wa:.1f}" height="14" rx="3">'
            f"<title>{esc(name)}: {fmt_count(a)} {esc(left_name)}</title></rect>"
            f'<rect class="bar-add" x="{mid:.1f}" y="{y + 4:.1f}" width="{wb:.1f}" height="14" rx="3">'
            f"<title>{esc(name)}: {fmt_count(b)} {esc(right_name)}</title></rect>"
            f'<text class="value" x="{mid - wa - 4:.1f}" y="{y + 15:.1f}" text-anchor="end">{fmt_count(a)}</text>'
            f'<text class="value" x="{mid + wb + 4:.1f}" y="{y + 15:.1f}">{fmt_count(b)}</text></g>'
        )
    return _svg(width, height, body, label)


# ---- histogram -----------------------------------------------------------------
def histogram(
    edges: Sequence[float],
    series: Sequence[tuple[str, Sequence[int], str]],
    *,
    label: str,
    x_title: str,
    threshold: float | None = None,
    threshold_name: str = "threshold",
    line_class: str = "threshold",
    width: float = 560,
    height: float = 250,
) -> str:
    """Stacked histogram with an optional vertical threshold line.

    The y axis switches to a log scale (``log10(1 + count)``) when the tallest
    bar is more than 50 times the smallest non-empty one, so a few flagged rows
    stay visible beside a large clean mass; the axis title says so.

    Args:
        edges: Bin edges, length ``n_bins + 1``.
        series: ``(name, counts per bin, css class)`` stacked bottom-up.
        label: Accessible name of the chart.
        x_title: Title of the x axis.
        threshold: x value of the dashed vertical line, or ``None``.
        threshold_name: Legend text of the line.
        line_class: CSS class of the line: ``threshold`` (dashed: a cut-off) or ``reference`` (dotted: a
            value marked for reference, not a cut-off).
    """
    left, right, top, bottom = 52, 14, 30, 40
    pw, ph = width - left - right, height - top - bottom
    n_bins = len(edges) - 1
    totals = [sum(s[1][b] for s in series) for b in range(n_bins)]
    hi = max(totals, default=0)
    nonzero = [t for t in totals if t > 0]
    log = bool(nonzero) and hi / min(nonzero) > 50

    def yv(v: float) -> float:
        return math.log10(1 + v) if log else v

    if log:
        ticks = [10**e for e in range(0, int(math.ceil(math.log10(max(hi, 1)))) + 1)]
        ticks = [0] + ticks
        y_hi = yv(ticks[-1])
    else:
        ticks = nice_ticks(hi, integer=True)
        y_hi = ticks[-1] or 1
    x0, x1 = float(edges[0]), float(edges[-1])
    span = (x1 - x0) or 1.0

    def sx(x: float) -> float:
        return left + pw * (x - x0) / span

    def sy(v: float) -> float:
        return top + ph - ph * yv(v) / y_hi

    body = []
    for t in ticks:
        y = sy(t)
        body.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                    f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt_num(t)}</text>')
    for k in range(n_bins):
        base = 0.0
        xa, xb = sx(edges[k]), sx(edges[k + 1])
        for name, counts, cls in series:
            c = counts[k]
            if c <= 0:
                continue
            ya, yb = sy(base + c), sy(base)
            body.append(
                f'<rect class="{cls}" x="{xa + 0.5:.1f}" y="{ya:.1f}" width="{max(xb - xa - 1, 0.5):.1f}" '
                f'height="{max(yb - ya, 0.5):.1f}"><title>{esc(name)}: {c:,} rows with {esc(x_title)} in '
                f"[{edges[k]:.3g}, {edges[k + 1]:.3g})</title></rect>"
            )
            base += c
    body.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    for t in nice_ticks(span, 4):
        xv = x0 + t
        if xv > x1 + 1e-9:
            break
        body.append(f'<text class="tick" x="{sx(xv):.1f}" y="{top + ph + 16}" text-anchor="middle">'
                    f"{fmt_num(round(xv, 6))}</text>")
    body.append(f'<text class="axis-title" x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                f"{esc(x_title)}</text>")
    body.append(
        f'<text class="axis-title" transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f'rows{" (log scale)" if log else ""}</text>'
    )
    # legend
    lx = left
    for name, _, cls in series:
        body.append(f'<rect class="{cls}" x="{lx}" y="8" width="12" height="12" rx="2"/>'
                    f'<text class="legend" x="{lx + 17}" y="18">{esc(name)}</text>')
        lx += 17 + len(name) * CHAR_W + 18
    if threshold is not None and x0 <= threshold <= x1:
        tx = sx(threshold)
        body.append(
            f'<line class="{line_class}" x1="{tx:.1f}" x2="{tx:.1f}" y1="{top - 4}" y2="{top + ph}">'
            f"<title>{esc(threshold_name)}: {threshold:.4g}</title></line>"
        )
        body.append(f'<line class="{line_class}" x1="{lx}" x2="{lx + 16}" y1="14" y2="14"/>'
                    f'<text class="legend" x="{lx + 21}" y="18">{esc(threshold_name)} {threshold:.3g}</text>')
    return _svg(width, height, body, label, cls="chart histogram")
