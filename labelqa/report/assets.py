"""Inline CSS and JavaScript of the HTML report (kept as strings: no package data).

The script is plain ES2017 with no library: it renders the top-issues table
from the embedded JSON block (cells are set with ``textContent``, never
``innerHTML``, so dataset strings stay text), sorts it when a header is
clicked and filters it as the user types.
"""

from __future__ import annotations

CSS = r"""
:root {
  --bg: #f5f7fb; --card: #ffffff; --ink: #0f172a; --muted: #526077; --line: #e2e8f0;
  --accent: #2563eb; --accent-soft: #dbeafe; --warn: #c2410c; --warn-soft: #ffedd5;
  --ok: #15803d; --ok-soft: #dcfce7; --bad: #b91c1c; --bad-soft: #fee2e2;
  --radius: 12px; --shadow: 0 1px 2px rgba(15,23,42,.06), 0 4px 16px rgba(15,23,42,.05);
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
        "Liberation Sans", sans-serif;
}
main { max-width: 1240px; margin: 0 auto; padding: 28px 24px 48px; }
header.page { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 8px 24px;
  margin-bottom: 20px; }
header.page h1 { font-size: 24px; margin: 0; letter-spacing: -.01em; }
header.page h1 .brand { color: var(--accent); }
header.page .meta { color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 14px; margin-bottom: 18px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius); box-shadow: var(--shadow);
  padding: 14px 16px; min-width: 0; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .06em; font-weight: 600; }
.card .v { font-size: 26px; font-weight: 700; margin-top: 2px; font-variant-numeric: tabular-nums; letter-spacing: -.01em; }
.card .s { color: var(--muted); font-size: 12.5px; margin-top: 2px; overflow-wrap: anywhere; }
.card.highlight .v { color: var(--warn); }
.card.text .v { font-size: 17px; line-height: 1.35; padding: 5px 0 3px; overflow-wrap: normal; }
.card.gate-pass { border-color: #86efac; background: linear-gradient(180deg, var(--ok-soft), #fff 70%); }
.card.gate-pass .v { color: var(--ok); }
.card.gate-fail { border-color: #fca5a5; background: linear-gradient(180deg, var(--bad-soft), #fff 70%); }
.card.gate-fail .v { color: var(--bad); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; margin-bottom: 16px;
  align-items: start; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius); box-shadow: var(--shadow);
  padding: 16px 18px; min-width: 0; }
.panel h2 { font-size: 16px; margin: 0 0 2px; }
.panel .sub { color: var(--muted); font-size: 12.5px; margin: 0 0 12px; }
.panel .empty { color: var(--muted); padding: 24px 0; text-align: center; }
.chart-wrap { overflow-x: auto; }
.chart-wrap svg.heatmap { margin: 0 auto; }
svg.chart { max-width: 100%; height: auto; display: block; font-size: 12px; font-family: inherit; }
svg .tick { fill: var(--muted); font-size: 11.5px; }
svg .value { fill: var(--ink); font-size: 11.5px; font-variant-numeric: tabular-nums; }
svg .legend { fill: var(--ink); font-size: 12px; }
svg .axis-title { fill: var(--muted); font-size: 12px; font-weight: 600; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .axis { stroke: #94a3b8; stroke-width: 1; }
svg .track { fill: #f1f5f9; }
svg .bar { fill: var(--warn); }
svg .bar-pair { fill: #7c3aed; }
svg .bar-remove { fill: #dc2626; }
svg .bar-add { fill: #16a34a; }
svg .marker { fill: var(--ink); opacity: .75; }
svg .h-clean { fill: #93c5fd; }
svg .h-flag { fill: var(--warn); }
svg .threshold { stroke: var(--ink); stroke-width: 1.6; stroke-dasharray: 5 4; }
svg .reference { stroke: var(--muted); stroke-width: 1.4; stroke-dasharray: 1.5 3; stroke-linecap: round; }
svg .cell rect:hover { stroke: var(--ink); stroke-width: 1.5; }
.legend-row { display: flex; gap: 16px; flex-wrap: wrap; color: var(--muted); font-size: 12px; margin-top: 8px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.table-panel { margin-top: 0; }
.toolbar { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: center; justify-content: space-between; margin-bottom: 10px; }
.toolbar input[type=search] { width: min(360px, 100%); padding: 8px 12px; border: 1px solid #cbd5e1; border-radius: 8px;
  font: inherit; background: #fff; color: var(--ink); }
.toolbar input[type=search]:focus { outline: 2px solid var(--accent-soft); border-color: var(--accent); }
.toolbar .count { color: var(--muted); font-size: 12.5px; }
.table-scroll { overflow: auto; max-height: 640px; border: 1px solid var(--line); border-radius: 8px; }
table.issues { border-collapse: collapse; width: 100%; font-size: 13px; }
table.issues th { position: sticky; top: 0; background: #f8fafc; z-index: 1; text-align: left; border-bottom: 1px solid var(--line);
  padding: 0; white-space: nowrap; }
table.issues th button { all: unset; box-sizing: border-box; display: block; width: 100%; padding: 8px 10px; cursor: pointer;
  font-weight: 600; color: var(--ink); }
table.issues th button:focus-visible { outline: 2px solid var(--accent); outline-offset: -2px; }
table.issues th button::after { content: "\2195"; color: #94a3b8; margin-left: 6px; font-weight: 400; }
table.issues th[aria-sort=ascending] button::after { content: "\2191"; color: var(--accent); }
table.issues th[aria-sort=descending] button::after { content: "\2193"; color: var(--accent); }
table.issues th.num button { text-align: right; }
table.issues td { padding: 6px 10px; border-bottom: 1px solid #f1f5f9; vertical-align: top; }
table.issues td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.issues td.reason { color: var(--muted); min-width: 200px; }
table.issues td.label { min-width: 90px; max-width: 260px; }
table.issues td.id { white-space: nowrap; max-width: 190px; overflow: hidden; text-overflow: ellipsis; }
table.issues td.thumb img { display: block; max-width: 64px; max-height: 64px; image-rendering: pixelated;
  border-radius: 4px; background: #fff; }
table.issues td.shown-text { min-width: 220px; max-width: 420px; overflow-wrap: anywhere; }
table.issues td button.more { all: unset; cursor: pointer; color: var(--accent); font-size: 12px; }
table.issues td button.more:focus-visible { outline: 2px solid var(--accent); }
table.issues tbody tr:nth-child(even) { background: #fbfcfe; }
table.issues tbody tr:hover { background: var(--accent-soft); }
.pill { display: inline-block; padding: 1px 8px; border-radius: 6px; font-size: 12px; background: #f1f5f9;
  overflow-wrap: normal; word-break: normal; margin: 0 4px 2px 0; }
.pill.sugg { background: var(--ok-soft); color: #14532d; }
.pill.given { background: var(--bad-soft); color: #7f1d1d; }
.q { display: inline-block; min-width: 52px; }
details.more { margin-top: 16px; }
details.more summary { cursor: pointer; color: var(--muted); font-weight: 600; }
table.kv { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
table.kv td { padding: 4px 12px 4px 0; vertical-align: top; overflow-wrap: anywhere; }
table.kv td:first-child { color: var(--muted); white-space: nowrap; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; text-align: center; }
@media (max-width: 600px) { .grid { grid-template-columns: 1fr; } main { padding: 16px 12px; } }
/* narrow screens: each flagged row is a card (label: value lines), the sort buttons a row of chips */
@media (max-width: 600px) {
  table.issues, table.issues thead, table.issues tbody, table.issues tr { display: block; }
  table.issues thead tr { display: flex; flex-wrap: wrap; gap: 4px; padding: 6px; background: #f8fafc;
    border-bottom: 1px solid var(--line); }
  table.issues th { position: static; border: 0; background: transparent; }
  table.issues th button { padding: 3px 8px; border: 1px solid var(--line); border-radius: 6px; font-size: 12px;
    background: #fff; }
  table.issues tbody tr { padding: 8px 10px; border-bottom: 1px solid var(--line); }
  table.issues td, table.issues td.num, table.issues td.reason, table.issues td.label, table.issues td.shown-text {
    display: block; border: 0; padding: 2px 0; min-width: 0; max-width: none; text-align: left; }
  table.issues td.id { max-width: 100%; }
  table.issues td::before { content: attr(data-label); display: inline-block; min-width: 86px; color: var(--muted);
    font-size: 11.5px; font-family: system-ui, sans-serif; }
  table.issues td:empty { display: none; }
}
@media print { .table-scroll { max-height: none; } body { background: #fff; } }
"""

JS = r"""
(function () {
  "use strict";
  var node = document.getElementById("issues-data");
  if (!node) { return; }
  var data = JSON.parse(node.textContent);
  var cols = data.columns;
  var rows = data.rows;
  var table = document.getElementById("issues-table");
  var tbody = table.tBodies[0];
  var input = document.getElementById("issues-filter");
  var counter = document.getElementById("issues-count");
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var index = {};
  cols.forEach(function (c, i) { index[c.key] = i; });
  var haystack = rows.map(function (r) {
    return r.map(function (v, ci) {
      return v === null || cols[ci].type === "image" ? "" : String(v);
    }).join("\u0001").toLowerCase();
  });
  var order = rows.map(function (_, i) { return i; });
  var sortKey = "rank" in index ? "rank" : null;  // rows arrive in rank order
  var sortDir = 1;
  var nf = new Intl.NumberFormat(undefined);

  function fmt(col, v) {
    if (v === null || v === undefined) { return ""; }
    if (col.type === "float") { return Number(v).toFixed(col.digits || 4); }
    if (col.type === "int") { return nf.format(v); }
    if (Array.isArray(v)) { return v.join(", "); }
    return String(v);
  }

  function compare(a, b, i) {
    var x = rows[a][i], y = rows[b][i];
    if (x === y) { return a - b; }
    if (x === null || x === undefined) { return 1; }
    if (y === null || y === undefined) { return -1; }
    var r;
    if (typeof x === "number" && typeof y === "number") { r = x - y; }
    else { r = String(x).localeCompare(String(y), undefined, { numeric: true, sensitivity: "base" }); }
    return r === 0 ? a - b : r * sortDir;
  }

  function render() {
    var q = input.value.trim().toLowerCase();
    var terms = q ? q.split(/\s+/) : [];
    var frag = document.createDocumentFragment();
    var shown = 0;
    order.forEach(function (ri) {
      var h = haystack[ri];
      for (var t = 0; t < terms.length; t++) { if (h.indexOf(terms[t]) < 0) { return; } }
      var tr = document.createElement("tr");
      tr.dataset.row = String(ri);
      cols.forEach(function (col, ci) {
        var td = document.createElement("td");
        td.className = col.cls || "";
        td.dataset.label = col.title;  // shown before the value when rows are cards (narrow screens)
        var v = rows[ri][ci];
        var text = fmt(col, v);
        if (col.type === "image") {
          if (typeof v === "string" && v.indexOf("data:image/") === 0) {
            var img = document.createElement("img");
            img.src = v;  // a data: URI built by labelqa (the page's CSP allows data: images only)
            img.alt = "image of row " + String(rows[ri][index.id] || "");
            img.loading = "lazy";
            td.appendChild(img);
          }
        } else if (col.clip && text.length > col.clip) {
          var cut = document.createElement("span");
          cut.textContent = text.slice(0, col.clip) + "\u2026 ";
          var more = document.createElement("button");
          more.type = "button";
          more.className = "more";
          more.textContent = "more";
          more.addEventListener("click", function () {
            var full = cut.dataset.full !== "1";
            cut.dataset.full = full ? "1" : "0";
            cut.textContent = full ? text + " " : text.slice(0, col.clip) + "\u2026 ";
            more.textContent = full ? "less" : "more";
          });
          td.appendChild(cut);
          td.appendChild(more);
        } else if (col.pill) {
          // one pill per label (a label set gives several): lines break between labels, never inside one
          (Array.isArray(v) ? v : [v]).forEach(function (item) {
            if (item === null || item === undefined) { return; }
            var span = document.createElement("span");
            span.className = "pill " + col.pill;
            span.textContent = String(item);
            td.appendChild(span);
          });
        } else if (col.middle_clip && text.length > col.middle_clip) {
          // long ids: both ends stay visible (they often differ only at the end), the whole id on hover
          var head = Math.ceil((col.middle_clip - 1) / 2);
          td.textContent = text.slice(0, head) + "\u2026" + text.slice(text.length - (col.middle_clip - 1 - head));
        } else {
          td.textContent = text;
        }
        if (col.title_attr) { td.title = text; }
        tr.appendChild(td);
      });
      frag.appendChild(tr);
      shown++;
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    counter.textContent = "Showing " + nf.format(shown) + " of " + nf.format(rows.length) + " rows";
  }

  function sortBy(key) {
    var i = index[key];
    if (sortKey === key) { sortDir = -sortDir; } else { sortKey = key; sortDir = 1; }
    order.sort(function (a, b) { return compare(a, b, i); });
    headers.forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key === key ? (sortDir > 0 ? "ascending" : "descending") : "none");
    });
    render();
  }

  headers.forEach(function (th) {
    var btn = th.querySelector("button");
    btn.addEventListener("click", function () { sortBy(th.dataset.key); });
  });
  input.addEventListener("input", render);
  render();
})();
"""
