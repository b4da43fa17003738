"""report.html in a real browser: headless Chromium driven by Playwright.

Needs Chromium (``/usr/bin/chromium``, or ``LABELQA_CHROMIUM``) and the
``playwright`` package; ``bash ci/install-browser.sh`` installs both. Outside
CI the test is skipped with the reason when either is missing; in CI
(``CI`` set) a missing browser is a failure, so the test cannot silently
stop running there.

Set ``LABELQA_SCREENSHOT_DIR`` to keep a copy of the screenshot.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from labelqa.data.model import LabelData
from labelqa.report.folder import write_html
from labelqa.report.writers import write_report
from labelqa.scan import scan
from tests.conftest import noisy_dataset

CLASSES = ["ant", "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "dog </script>"]

#: Flags that keep Chromium quiet and local on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str):
    hint = f"{reason}; run `bash ci/install-browser.sh`"
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {hint}")
    pytest.skip(hint)


def _chromium() -> str:
    path = os.environ.get("LABELQA_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        path = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    if not path:
        _missing("Chromium not found (looked for LABELQA_CHROMIUM, /usr/bin/chromium, chromium on PATH)")
    return path


@pytest.fixture
def browser_page(tmp_path):
    """A fresh headless Chromium page, with console errors and requests recorded."""
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    events: dict[str, list] = {"errors": [], "requests": [], "dialogs": []}
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # new, empty user-data dir
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda m: events["errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: events["errors"].append(f"uncaught: {e}"))
            page.on("request", lambda r: events["requests"].append(r.url))
            page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
            yield page, events
        finally:
            context.close()


@pytest.fixture
def report_file(tmp_path) -> Path:
    given, _, probs, _ = noisy_dataset(n=2000, k=4, noise=0.12, seed=11)
    result = scan(LabelData.from_arrays(given, probs, classes=CLASSES))
    summary = result.summary()
    summary["gate"] = {"passed": False, "reason": "issue rate exceeds the maximum 5.00%",
                       "rules": {"max_issue_rate": 0.05}}
    out = tmp_path / "rep"
    write_report(result, out, summary=summary, csv=False)
    return write_html(out)


def _column(page, key: str) -> list[str]:
    idx = page.eval_on_selector_all("#issues-table thead th", "ths => ths.map(th => th.dataset.key)").index(key)
    return page.eval_on_selector_all(
        "#issues-table tbody tr", f"trs => trs.map(tr => tr.cells[{idx}].textContent)"
    )


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_renders_sorts_and_filters(browser_page, report_file, tmp_path):
    page, events = browser_page
    page.goto(report_file.as_uri())
    page.wait_for_selector("#issues-table tbody tr")

    n_flagged = int(page.text_content("#issues-found .v").replace(",", ""))
    ranks = [int(r) for r in _column(page, "rank")]
    assert ranks == list(range(1, n_flagged + 1))  # rank order on load
    assert page.get_attribute('th[data-key="rank"]', "aria-sort") == "ascending"
    # Hostile labels are shown as text, nothing from them ran.
    assert "<script>alert(1)</script>" in _column(page, "given_label") + _column(page, "suggested_label")
    assert page.locator("img").count() == 0

    # Sort by quality: ascending, then descending on a second click.
    page.click('th[data-key="label_quality"] button')
    asc = [float(q) for q in _column(page, "label_quality")]
    assert asc == sorted(asc)
    assert page.get_attribute('th[data-key="label_quality"]', "aria-sort") == "ascending"
    assert page.get_attribute('th[data-key="rank"]', "aria-sort") == "none"
    page.click('th[data-key="label_quality"] button')
    desc = [float(q) for q in _column(page, "label_quality")]
    assert desc == sorted(asc, reverse=True) and desc != asc
    assert page.get_attribute('th[data-key="label_quality"]', "aria-sort") == "descending"
    # Sort by id (integers compare as numbers, not text).
    page.click('th[data-key="id"] button')
    ids = [int(i) for i in _column(page, "id")]
    assert ids == sorted(ids) and len(set(ids)) == n_flagged

    # Filter: only rows mentioning the text stay, and the counter says so.
    word = "onerror"
    expected = sum(
        1 for row in page.eval_on_selector_all("#issues-table tbody tr", "trs => trs.map(t => t.textContent)")
        if word in row.lower()
    )
    assert 0 < expected < n_flagged
    page.fill("#issues-filter", word.upper())  # case-insensitive
    rows = page.eval_on_selector_all("#issues-table tbody tr", "trs => trs.map(t => t.textContent)")
    assert len(rows) == expected and all(word in r.lower() for r in rows)
    assert page.text_content("#issues-count") == f"Showing {expected:,} of {n_flagged:,} rows"
    page.fill("#issues-filter", "no such row anywhere")
    assert page.locator("#issues-table tbody tr").count() == 0
    page.fill("#issues-filter", "")
    assert page.locator("#issues-table tbody tr").count() == n_flagged
    assert [int(i) for i in _column(page, "id")] == ids  # the sort order survives filtering

    # Charts rendered with a real size.
    for sel in ("#heatmap svg", "#per-class svg", "#histogram svg", "#pairs svg"):
        box = page.locator(sel).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 60, sel

    page.click('th[data-key="rank"] button')  # back to rank order for the picture
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = _png_size(shot)
    assert width >= 1200 and height > 1200, (width, height)
    assert shot.stat().st_size > 50_000
    if os.environ.get("LABELQA_SCREENSHOT_DIR"):
        dest = Path(os.environ["LABELQA_SCREENSHOT_DIR"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / "report.png")

    assert events["errors"] == []
    assert events["dialogs"] == []  # no hostile label ran alert()
    assert [u for u in events["requests"] if not u.startswith("file://")] == []


# --------------------------------------------------------------------------- layout at two widths
REPO = Path(__file__).resolve().parents[1]
LONG_CLASSES = ["grignoli_nonsense_name", "s0001_very_long_label", "cat", "dog"]


def _layout_report(kind: str, out: Path) -> Path:
    """A multiclass report with long unbreakable ids and labels, the multi-label example, or cl + nrg on digits."""
    import numpy as np

    if kind == "multiclass":
        given, _, probs, _ = noisy_dataset(n=1500, k=4, noise=0.12, seed=4)
        ids = np.array([f"s{i:04d}_sample_with_a_long_identifier" for i in range(1500)])
        result = scan(LabelData.from_arrays(given, probs, classes=LONG_CLASSES, ids=ids))
    elif kind == "multilabel":
        result = scan(REPO / "examples" / "multilabel" / "digits_attributes_noisy.parquet", label_col="labels")
    else:
        result = scan(REPO / "examples" / "digits" / "digits_noisy.parquet", embeddings_col="features",
                      detectors="cl,nrg")
    write_report(result, out, csv=False)
    return out / "report.html"


_LAYOUT_PROBE = r"""() => {
  const inside = (a, b) => a.left >= b.left - 1 && a.right <= b.right + 1 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
  const clipped = [];
  document.querySelectorAll("svg.chart").forEach(svg => {
    const box = svg.getBoundingClientRect();
    svg.querySelectorAll("text").forEach(t => { if (!inside(t.getBoundingClientRect(), box)) clipped.push(t.textContent); });
  });
  // a word is broken when its characters lie on more than one line
  const brokenWord = el => {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const re = /\S+/g;
      let m;
      while ((m = re.exec(node.data)) !== null) {
        const r = document.createRange();
        r.setStart(node, m.index);
        r.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(r.getClientRects()).map(b => Math.round(b.top)));
        if (tops.size > 1) return m[0];
      }
    }
    return null;
  };
  const broken = [];
  document.querySelectorAll("#issues-table td.id, #issues-table .pill, .card .v").forEach(el => {
    const word = brokenWord(el);
    if (word) broken.push(word);
  });
  const reason = document.querySelector("#issues-table tbody tr td.reason");
  const frame = document.querySelector(".table-scroll");
  return {
    reasonHidden: reason.getBoundingClientRect().right - frame.getBoundingClientRect().right,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    clipped: clipped, broken: broken,
    empty: Array.from(document.querySelectorAll(".panel .empty")).map(e => e.closest(".panel").id),
    panels: Array.from(document.querySelectorAll(".grid > .panel h2")).map(h => h.textContent),
    cards: Array.from(document.querySelectorAll(".card")).map(c => c.textContent),
  };
}"""


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "multidetector"])
@pytest.mark.parametrize("width", [1280, 420])
def test_report_layout_at_two_widths(browser_page, tmp_path, kind, width):
    """Nothing clipped or broken mid-word, no empty panel, the right cards; a screenshot of each to look at."""
    page, events = browser_page
    report = _layout_report(kind, tmp_path / "rep")
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(report.as_uri())
    page.wait_for_selector("#issues-table tbody tr")
    probe = page.evaluate(_LAYOUT_PROBE)
    assert probe["overflow"] <= 1, "the page scrolls sideways"  # only the issues table may scroll
    assert probe["clipped"] == [], "chart text outside its chart"
    assert probe["broken"] == [], "an id or label broken inside a word"
    assert probe["empty"] == []
    assert probe["reasonHidden"] <= 1, "the first row's reason needs sideways scrolling"  # a card on a phone
    if kind == "multilabel":
        assert probe["panels"] == ["Per-class label changes", "Label quality", "Most frequent label changes"]
    else:
        assert probe["panels"][0] == "Noise matrix"
    detector_card = next(c for c in probe["cards"] if c.startswith(("Detector", "DETECTOR")))
    if kind == "multidetector":
        assert "cl + nrg" in detector_card and "primary cl" in detector_card
    else:
        assert "detector(s)" not in detector_card
    shot = tmp_path / f"report_{kind}_{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert _png_size(shot)[0] == width
    if os.environ.get("LABELQA_SCREENSHOT_DIR"):
        dest = Path(os.environ["LABELQA_SCREENSHOT_DIR"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)
    assert events["errors"] == [] and [u for u in events["requests"] if not u.startswith("file://")] == []
