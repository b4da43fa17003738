"""labelqa.report.escape: hand-checked cases and hypothesis properties (random text, control characters included)."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.report.escape import (FORMULA_STARTS, csv_cell, markdown_code, markdown_text, neutralize_formulas,
                                   terminal_markup, terminal_text)

# text rich in the characters that matter: controls, C1, bidi, Markdown punctuation, formula starts
SPICY = st.text(alphabet=st.one_of(
    st.sampled_from(list("=+-@\t\r\n\x1b\x07\x9b\x9d\u202e\u2066|`*_[]()<>!&$#~:\\'\" 0123456789.eE")),
    st.characters(codec="utf-8")), max_size=40)

NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


# --------------------------------------------------------------------------- CSV
@pytest.mark.parametrize(("cell", "expected"), [
    ("=1+1", "'=1+1"), ("+A1", "'+A1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("-3", "-3"), ("+1.5e3", "+1.5e3"), ("-.5", "-.5"), ("-", "'-"), ("plain", "plain"),
    ("", ""), ("a=b", "a=b"), ("'=x", "'=x"),
])
def test_csv_cell(cell, expected):
    assert csv_cell(cell) == expected


def test_neutralize_formulas_changes_only_text_cells():
    table = pa.table({
        "text": ["=cmd|' /C calc'!A0", "-5", None, "ok", "@x"],
        "large": pa.array(["+x", "a", "b", "c", "d"], pa.large_string()),
        "dict": pa.array(["=x", "y", "=x", "y", "-1"]).dictionary_encode(),
        "int": [-1, -2, 3, 4, 5],
        "float": [-1.5, 0.0, 2.0, -0.1, 1e-3],
        "list": [["=a"], [], None, ["b"], ["-1"]],
    })
    out = neutralize_formulas(table)
    assert out.schema == table.schema
    assert out.column("text").to_pylist() == ["'=cmd|' /C calc'!A0", "-5", None, "ok", "'@x"]
    assert out.column("large").to_pylist() == ["'+x", "a", "b", "c", "d"]
    assert out.column("dict").to_pylist() == ["'=x", "y", "'=x", "y", "-1"]
    for name in ("int", "float", "list"):
        assert out.column(name).equals(table.column(name))


def test_neutralize_formulas_returns_a_safe_table_unchanged():
    table = pa.table({"a": ["x", "y"], "n": [-1, 2]})
    assert neutralize_formulas(table).equals(table)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), SPICY), min_size=1, max_size=20))
def test_no_text_cell_starts_like_a_formula(cells):
    out = neutralize_formulas(pa.table({"c": pa.array(cells, pa.string())})).column("c").to_pylist()
    for before, after in zip(cells, out):
        if before is None:
            assert after is None
            continue
        assert after == csv_cell(before)
        assert not after or after[0] not in FORMULA_STARTS or NUMBER.match(after)
        assert after in (before, "'" + before)  # nothing but the quote is ever added


# --------------------------------------------------------------------------- Markdown
def test_markdown_text_cases():
    assert markdown_text("![x](https://host/p.png)") == "\\!\\[x\\]\\(https\\://host/p.png\\)"
    assert markdown_text("a|b\r\nc\rd\ne") == "a\\|b c d e"
    assert markdown_text("<img src=x>") == "&lt;img src=x&gt;"
    assert markdown_text("&lt;") == "\\&lt;"  # shown as typed, not as "<"
    assert markdown_text("**b** `c` $x$") == "\\*\\*b\\*\\* \\`c\\` \\$x\\$"
    assert markdown_text(3) == "3"


@pytest.mark.parametrize(("name", "expected"), [
    ("data.csv", "`data.csv`"), ("a`b.csv", "``a`b.csv``"), ("`x`", "`` `x` ``"), ("a|b", "`a\\|b`"),
    ("a\nb", "`a b`"), ("``", "``` `` ```"),
])
def test_markdown_code_cases(name, expected):
    assert markdown_code(name) == expected


def unescaped(text: str, chars: str) -> list[int]:
    """Positions of characters of ``chars`` not preceded by an odd run of backslashes."""
    bad = []
    for i, ch in enumerate(text):
        if ch in chars:
            run = 0
            j = i - 1
            while j >= 0 and text[j] == "\\":
                run += 1
                j -= 1
            if run % 2 == 0:
                bad.append(i)
    return bad


@settings(max_examples=400, deadline=None)
@given(SPICY)
def test_markdown_text_is_inert(text):
    md = markdown_text(text)
    assert "\n" not in md and "\r" not in md and not CONTROL.search(md)
    assert "<" not in md and ">" not in md
    assert unescaped(md, "`*_[]()!|~$") == []  # no link, image, code, emphasis, math or cell break
    assert all(md.startswith(("&lt;", "&gt;"), i) for i in unescaped(md, "&"))  # only our own entities
    assert "](" not in md.replace("\\]\\(", "")


@settings(max_examples=300, deadline=None)
@given(SPICY)
def test_markdown_code_is_one_closed_span(text):
    md = markdown_code(text)
    fence = re.match("`+", md).group()
    inner = md[len(fence):-len(fence)]
    assert md.endswith(fence) and not re.search(f"(?<!`){fence}(?!`)", inner)  # nothing inside closes it
    assert "\n" not in md and "\r" not in md and not CONTROL.search(md)
    assert unescaped(md, "|") == []


# --------------------------------------------------------------------------- terminal
def test_terminal_text_cases():
    assert terminal_text("\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert terminal_text("\x9b2J") == "\\x9b2J"  # C1 CSI
    assert terminal_text("\u202eevil") == "\\u202eevil"  # bidi override
    assert terminal_text("tab\there") == "tab\\x09here"
    assert terminal_text("a\nb", keep="\n") == "a\nb"
    assert terminal_text("café ✓") == "café ✓"
    assert terminal_markup("[bold]x[/bold]") == "\\[bold]x\\[/bold]"


@settings(max_examples=400, deadline=None)
@given(SPICY)
def test_terminal_text_never_yields_a_control_character(text):
    out = terminal_text(text)
    assert not CONTROL.search(out) and "\x1b" not in out
    if not CONTROL.search(text):
        assert out == text  # printable text is shown as it is


def _printed_in_a_tag(text: str) -> str:
    from io import StringIO

    from labelqa.cli.console import stdout_console

    console = stdout_console()  # the commands' own console settings (no emoji codes, no highlighting)
    console.file = StringIO()
    console.width = 10_000
    console.print(f"[bold]{terminal_markup(text)}[/bold]", end="")  # as the commands use it: inside a tag
    return console.file.getvalue()


@pytest.mark.parametrize("text", ["\\[", "a\\[b", "\\\\[", "\\[[a]", "[a\\[b]", "\\[a]", "[bold]x",
                                  "x\\", ":smile:", ":warning: [red]no[/red]"])
def test_terminal_markup_prints_brackets_backslashes_and_emoji_codes_as_written(text):
    assert _printed_in_a_tag(text) == text


@settings(max_examples=400, deadline=None)
@given(SPICY)
def test_terminal_markup_prints_the_text_itself(text):
    assert _printed_in_a_tag(text) == terminal_text(text)
