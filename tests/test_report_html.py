"""report.html: self-contained, escaped, capped, and its charts match the scan."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.errors import LabelqaError
from labelqa.report.folder import write_html
from labelqa.report.html import _histogram_panel, render_html, script_json, top_issue_rows
from labelqa.report.writers import write_report
from labelqa.scan import scan
from tests.conftest import noisy_dataset

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>alert(2)</script>",
    "a\u2028b & 'c' <!--",
]


class Page(HTMLParser):
    """Collects what a browser would see: tags with attributes, script bodies, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)


def parse(doc: str) -> Page:
    page = Page()
    page.feed(doc)
    page.close()
    return page


def table_data(doc: str) -> dict:
    (body,) = [b for a, b in parse(doc).scripts if a.get("id") == "issues-data"]
    return json.loads(body)


@pytest.fixture(scope="module")
def hostile():
    given, _, probs, _ = noisy_dataset(n=3000, k=4, noise=0.15, seed=3)
    result = scan(LabelData.from_arrays(given, probs, classes=HOSTILE))
    summary = result.summary()
    summary["gate"] = {"passed": False, "reason": "issue rate 14% exceeds the maximum 5%",
                       "rules": {"max_issue_rate": 0.05}}
    return result, summary, render_html(summary, result.issues_table())


def test_page_is_self_contained(hostile):
    _, _, doc = hostile
    page = parse(doc)
    assert doc.startswith("<!DOCTYPE html>")
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            assert name not in attrs, (tag, attrs)  # nothing is loaded from anywhere
        assert tag not in ("link", "iframe", "img", "object", "embed", "base"), tag
    lower = doc.lower()
    for needle in ("http://", "https://", "url(", "@import", "@font-face", "src=\"//", "href=\"//"):
        assert needle not in lower, needle
    # A content security policy forbids any network fetch even if something slipped in.
    (csp,) = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp
    scripts = [a for a, _ in page.scripts]
    assert scripts == [{"type": "application/json", "id": "issues-data"}, {}]


def test_hostile_labels_stay_text(hostile):
    result, _, doc = hostile
    page = parse(doc)
    # No label became markup: the only elements are the report's own.
    assert not [t for t, _ in page.tags if t in ("img",)]
    assert len(page.scripts) == 2
    assert "<script>alert" not in doc and "<img" not in doc and "</script><script>" not in doc
    assert not [b for _, b in page.scripts if "\u2028" in b]  # a JS line terminator only matters in scripts
    # ...and they are shown as the exact text (in the SVG charts and the cards).
    text = "".join(page.text)
    for name in HOSTILE[:3]:
        assert name in text, name
    # The JSON block round-trips to the exact strings.
    data = table_data(doc)
    keys = [c["key"] for c in data["columns"]]
    given = {r[keys.index("given_label")] for r in data["rows"]}
    assert given <= set(HOSTILE) and len(given) >= 3
    assert any("</script>" in r[keys.index("reason")] for r in data["rows"])


def test_script_json_escapes_breakouts():
    value = {"x": "</script><!-- & \u2028\u2029 >", "n": float("nan")}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"x": value["x"], "n": None}


def test_table_lists_the_best_ranked_flagged_rows(hostile):
    result, summary, _ = hostile
    issues = result.issues_table()
    doc = render_html(summary, issues, max_rows=50)
    data = table_data(doc)
    keys = [c["key"] for c in data["columns"]]
    assert keys == ["rank", "id", "given_label", "suggested_label", "label_quality", "suggested_confidence",
                    "detectors", "reason"]
    assert len(data["rows"]) == 50
    assert [r[0] for r in data["rows"]] == list(range(1, 51))
    flags = np.asarray(issues.column("is_label_issue").to_pylist())
    quality = issues.column("label_quality").to_numpy()
    ids = issues.column("id").to_numpy()
    expected = np.flatnonzero(flags)[np.argsort(quality[flags], kind="stable")][:50]
    assert [r[1] for r in data["rows"]] == ids[expected].tolist()
    assert all(flags[ids == r[1]][0] for r in data["rows"])
    q = [r[keys.index("label_quality")] for r in data["rows"]]
    assert q == sorted(q)
    assert "50 best-ranked of" in doc and "issues.parquet" in doc


def test_noise_matrix_shows_probabilities_with_counts_on_hover(hostile):
    _, summary, doc = hostile
    cj = summary["detectors"]["cl"]["summary"]["confident_joint_calibrated"]
    nm = summary["noise_matrix"]
    cells = {(int(a["data-row"]), int(a["data-col"])): float(a["data-p"])
             for t, a in parse(doc).tags if t == "g" and a.get("class") == "cell"}
    k = len(cj)
    assert len(cells) == k * k
    for i in range(k):
        for j in range(k):
            assert cells[i, j] == pytest.approx(nm[i][j], rel=1e-5)  # rows given, columns true: P(given | true)
    for j in range(k):
        assert sum(cells[i, j] for i in range(k)) == pytest.approx(1.0, abs=1e-4)  # each column sums to 1
    tips = re.findall(r"= ([0-9.]+) \(([\d,]+) rows in the calibrated confident joint\)</title>", html.unescape(doc))
    assert len(tips) == k * k
    assert sorted(int(n.replace(",", "")) for _, n in tips) == sorted(v for row in cj for v in row)
    assert "Estimated P(given label | true label)" in doc


def test_heatmap_falls_back_to_flagged_pairs(hostile):
    result, summary, _ = hostile
    bare = json.loads(json.dumps(summary))
    for det in bare["detectors"].values():
        det["summary"] = {}
    doc = render_html(bare, result.issues_table())
    cells = {(int(a["data-row"]), int(a["data-col"])): int(a["data-count"].replace(",", ""))
             for t, a in parse(doc).tags if t == "g" and a.get("class") == "cell"}
    pos = {c: i for i, c in enumerate(bare["classes"])}
    for pair in bare["confused_pairs"]:
        assert cells[pos[pair["given"]], pos[pair["suggested"]]] == pair["count"]
    assert sum(cells.values()) == bare["issues_found"]
    assert "Flagged rows counted by given label" in doc


def test_charts_and_gate_are_present(hostile):
    _, summary, doc = hostile
    page = parse(doc)
    ids = {a.get("id") for _, a in page.tags}
    assert {"heatmap", "per-class", "histogram", "pairs", "issues", "gate", "issues-filter", "issues-table"} <= ids
    gate = [a for t, a in page.tags if a.get("id") == "gate"][0]
    assert gate["data-passed"] == "false" and "gate-fail" in gate["class"]
    assert "FAILED" in "".join(page.text)
    assert doc.count("<svg") == 4
    # The histogram covers every row and marks the flagging threshold.
    rects = re.findall(r"<title>(flagged|not flagged): ([\d,]+) rows", doc)
    assert sum(int(n.replace(",", "")) for _, n in rects) == summary["rows"]
    assert sum(int(n.replace(",", "")) for kind, n in rects if kind == "flagged") == summary["issues_found"]
    # the line is called a threshold only when it is one: no unflagged row below it
    issues = hostile[0].issues_table()
    q = issues.column("label_quality").to_numpy()
    f = np.asarray(issues.column("is_label_issue").to_pylist())
    is_cut = not (q[~f] < q[f].max()).any()
    assert ('class="threshold"' in doc) == is_cut and ('class="reference"' in doc) != is_cut
    assert "not at one cut-off" in doc or is_cut


def test_histogram_line_is_a_threshold_only_when_it_is_one():
    edges = np.linspace(0, 1, 5).tolist()
    cut = _histogram_panel(None, {"edges": edges, "flagged": [3, 2, 0, 0], "clean": [0, 0, 5, 9], "threshold": 0.5})
    assert 'class="threshold"' in cut and "flagging threshold" in cut and 'class="reference"' not in cut
    mixed = _histogram_panel(None, {"edges": edges, "flagged": [3, 2, 0, 0], "clean": [4, 0, 5, 9],
                                    "threshold": 0.5})
    assert 'class="reference"' in mixed and 'class="threshold"' not in mixed
    assert "highest flagged" in mixed and "at least 4 rows below it are not flagged" in mixed


def test_passing_gate_and_no_gate():
    given, _, probs, _ = noisy_dataset(n=400, k=3, seed=5)
    result = scan(LabelData.from_arrays(given, probs, classes=["x", "y", "z"]))
    summary = result.summary()
    assert 'id="gate"' not in render_html(summary, result.issues_table())
    summary["gate"] = {"passed": True, "reason": "ok", "rules": {"max_issue_rate": 0.5}}
    doc = render_html(summary, result.issues_table())
    assert 'data-passed="true"' in doc and "PASSED" in doc
    summary["gate"] = {"passed": True, "reason": "no gate rule set", "rules": {}}
    assert 'id="gate"' not in render_html(summary, result.issues_table())


def test_size_stays_small_for_a_million_rows():
    given, _, probs, _ = noisy_dataset(n=1_000_000, k=6, noise=0.1, seed=7)
    result = scan(LabelData.from_arrays(given, probs))
    summary = result.summary()
    assert summary["issues_found"] > 50_000
    doc = render_html(summary, result.issues_table())
    size = len(doc.encode("utf-8"))
    assert 20_000 < size < 400_000, size
    data = table_data(doc)
    assert len(data["rows"]) == 1000
    assert [r[0] for r in data["rows"]] == list(range(1, 1001))
    assert f"1,000 best-ranked of {summary['issues_found']:,} flagged rows" in doc


def test_many_classes_are_capped():
    given, _, probs, _ = noisy_dataset(n=20_000, k=60, noise=0.1, seed=2)
    result = scan(LabelData.from_arrays(given, probs))
    doc = render_html(result.summary(), result.issues_table())
    assert doc.count('class="cell"') == 30 * 30
    assert "30 of 60 classes" in doc and "Top 40 of 60 classes" in doc
    assert len(doc.encode()) < 600_000


def test_multilabel_summary_draws_add_remove_bars():
    classes = ["cat", "dog", "<b>bird</b>"]
    summary = {
        "schema_version": 1, "labelqa_version": "0.0.0", "source": "ml.parquet", "task": "multilabel",
        "rows": 3, "n_classes": 3, "classes": classes, "primary_detector": "ml", "issues_found": 2,
        "issue_rate": 2 / 3, "estimated_noise_rate": None, "noise_matrix": None,
        "per_class": [
            {"class": "cat", "count": 2, "issues": 1, "issue_rate": 0.5, "should_remove": 4, "should_add": 1},
            {"class": "dog", "count": 1, "issues": 0, "issue_rate": 0.0, "should_remove": 0, "should_add": 7},
            {"class": "<b>bird</b>", "count": 1, "issues": 1, "issue_rate": 1.0, "should_remove": 2,
             "should_add": 2},
        ],
        "confused_pairs": [], "detectors": {"ml": {"issues_found": 2, "params": {}, "summary": {}}},
    }
    issues = pa.table({
        "id": [0, 1, 2**60],
        "given_label": [["cat"], ["cat", "dog"], ["<b>bird</b>"]],
        "suggested_label": [["cat"], ["dog"], []],
        "label_quality": [0.9, 0.1, 0.2],
        "is_label_issue": [False, True, True],
        "rank": [3, 1, 2],
        "suggested_confidence": [None, 0.8, 0.7],
        "detectors": ["", "ml", "ml"],
        "reason": ["", "remove 'cat'", "remove '<b>bird</b>'"],
    })
    doc = render_html(summary, issues)
    page = parse(doc)
    rows = [a["data-class"] for t, a in page.tags if t == "g" and a.get("data-class")]
    assert rows == ["dog", "cat", "<b>bird</b>"]  # by total changes
    assert doc.count('class="bar-remove"') == 3 and doc.count('class="bar-add"') == 3
    assert "cat: 4 remove" in "".join(page.text) and "dog: 7 add" in "".join(page.text)
    assert "<b>" not in doc
    data = table_data(doc)
    assert [r[0] for r in data["rows"]] == [1, 2]
    assert data["rows"][0][2] == ["cat", "dog"]
    assert data["rows"][1][1] == str(2**60)  # ids beyond JavaScript's exact integers stay exact


def test_no_issues_and_no_table():
    probs = np.eye(3)[[0, 1, 2] * 10] * 0.9 + 0.1 / 3
    result = scan(LabelData.from_arrays(np.array([0, 1, 2] * 10), probs, classes=["a", "b", "c"]))
    summary = result.summary()
    assert summary["issues_found"] == 0
    doc = render_html(summary, result.issues_table())
    assert table_data(doc)["rows"] == []
    assert "No confused pairs among flagged rows." in doc
    assert "<svg" in render_html(summary, None)
    assert top_issue_rows(result.issues_table(), 0).num_rows == 0


def test_write_html_rebuilds_from_report_folder(hostile, tmp_path):
    result, summary, doc = hostile
    out = tmp_path / "rep"
    write_report(result, out, summary=summary, csv=False)
    (out / "report.html").write_text("stale")
    path = write_html(out)
    assert path == out / "report.html"
    assert path.read_text(encoding="utf-8") == doc  # same page as from the in-memory scan
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("."))  == []
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_report_command(hostile, tmp_path, capsys):
    from labelqa.cli.report_cmd import report

    result, summary, doc = hostile
    out = tmp_path / "rep"
    write_report(result, out, summary=summary, csv=False)
    assert report(out, quiet=False) == 0
    assert "report.html" in capsys.readouterr().out
    assert (out / "report.html").read_text(encoding="utf-8") == doc
    (out / "report.html").unlink()
    assert report(out, quiet=True) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(LabelqaError):
        report(Path(tmp_path / "missing"), quiet=True)


def test_file_histogram_equals_in_memory_histogram(tmp_path):
    """report rebuilds read issues.parquet in batches; the histogram must not change."""
    import pyarrow.parquet as pq

    from labelqa.report.html import file_histogram, quality_histogram

    rng = np.random.default_rng(3)
    q = rng.random(5000)
    flags = q < 0.1
    table = pa.table({"label_quality": q, "is_label_issue": flags})
    pq.write_table(table, tmp_path / "issues.parquet", row_group_size=700)
    assert file_histogram(tmp_path / "issues.parquet", batch_rows=333) == quality_histogram(table)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.025, 0.5, 0.975, 1.0]),
                          st.floats(-3, 3)), min_size=1, max_size=300),
       st.integers(0, 2**32 - 1))
def test_quality_histogram_counts_like_explicit_edges(values, seed):
    """The uniform-bin path counts exactly as np.histogram over the linspace edges would (edge values too)."""
    from labelqa.report.html import HIST_BINS, file_histogram, quality_histogram

    q = np.array(values)
    flags = np.random.default_rng(seed).random(q.size) < 0.3
    hist = quality_histogram(pa.table({"label_quality": q, "is_label_issue": flags}))
    lo, hi = (0.0, 1.0) if q.min() >= 0 and q.max() <= 1 else (q.min(), q.max() if q.max() > q.min() else q.min() + 1)
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    assert hist["edges"] == edges.tolist()
    assert hist["clean"] == np.histogram(q[~flags], bins=edges)[0].tolist()
    assert hist["flagged"] == np.histogram(q[flags], bins=edges)[0].tolist()
    import tempfile

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:  # the bounded-memory reader agrees
        path = Path(tmp) / "issues.parquet"
        pq.write_table(pa.table({"label_quality": q, "is_label_issue": flags}), path, row_group_size=37)
        assert file_histogram(path, batch_rows=50) == hist
