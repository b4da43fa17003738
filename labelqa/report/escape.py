"""Escaping dataset text for every output, in one place: nothing in the data can act on the reader.

Labels, ids, class names, file names and reasons come from the user's data
and are shown in several formats; each has its own active characters:

* **CSV** (issues.csv, ``fix`` CSV output): a cell starting with ``=``,
  ``+``, ``-``, ``@``, tab or carriage return is run as a formula by
  spreadsheets. :func:`csv_cell` / :func:`neutralize_formulas` prefix such
  text cells with a single quote, as OWASP recommends ("CSV Injection").
  Numbers are not touched: numeric columns are never changed, and a text
  cell that is a plain number (``-3``, ``+1.5e3``) stays as written (a
  spreadsheet reads it as that number, nothing else runs).
  ``--csv-formulas`` turns this off.
* **Markdown** (summary.md, ``$GITHUB_STEP_SUMMARY``): :func:`markdown_text`
  backslash-escapes the characters that start links, images, code,
  emphasis, math and table cells (``<``/``>`` as ``&lt;``/``&gt;``: no HTML),
  and turns line breaks into spaces;
  :func:`markdown_code` makes a code span no backtick can close.
* **Terminal** (rich tables, error lines, GitHub log annotations):
  :func:`terminal_text` shows control characters (escape sequences that clear
  the screen, set the window title, make hyperlinks; C1 controls; bidi
  overrides) as visible ``\\x1b``-style text; :func:`terminal_markup` also
  escapes rich markup for text put into a markup string.

HTML (report.html) is escaped by :mod:`html` in :mod:`labelqa.report.html`.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["FORMULA_STARTS", "csv_cell", "markdown_code", "markdown_text", "neutralize_formulas", "terminal_markup",
           "terminal_text"]

#: First characters that make a spreadsheet evaluate a cell (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_FORMULA_START = r"^[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_PLAIN_NUMBER_RE = re.compile(_PLAIN_NUMBER)

# a rich markup tag (rich.markup's own pattern) with the backslashes before it, or else a bracket
# after backslashes (rich drops the backslash of any "\\[" in plain text)
_RICH_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])|(\\+)\[")

# C0 controls, DEL, C1 controls (CSI, OSC... as single bytes), and the Unicode bidi/format controls
# that reorder or hide text ("Trojan source"), plus line and paragraph separators.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

# Markdown: every character that can open an inline construct or end a table cell.
_MARKDOWN_ACTIVE = "\\`*_[]()<>!|~&$#@:{}"
_MARKDOWN_RE = re.compile("[" + re.escape(_MARKDOWN_ACTIVE) + "]")


def _markdown_escape(match: re.Match[str]) -> str:
    char = match.group()
    return "&lt;" if char == "<" else "&gt;" if char == ">" else "\\" + char


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(value: Any, keep: str = "") -> str:
    """``value`` as text whose control characters are shown (``\\x1b``), never run by a terminal.

    Args:
        value: Any value (``str()`` of it).
        keep: Control characters left as they are (``"\\r\\n"`` where the caller escapes line breaks itself).
    """
    text = str(value)
    if keep:
        return _CONTROL_RE.sub(lambda m: m.group() if m.group() in keep else _visible(m), text)
    return _CONTROL_RE.sub(_visible, text)


def _escape_rich(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        return f"{match.group(1)}{match.group(1)}\\{match.group(2)}"
    return f"{match.group(3)}\\["


def terminal_markup(value: Any) -> str:
    """:func:`terminal_text`, with rich markup (``[bold]``) escaped, for a rich markup string where it is
    followed by a tag (``f"[bold]{terminal_markup(path)}[/bold]"``).

    rich reads backslashes right before a tag: those before a tag-like ``[...]`` of the text are
    doubled and one more escapes it; elsewhere it drops one backslash before any ``[``, so one more is
    added there; a trailing run is doubled so the closing tag stays a tag (rich's own ``escape`` gets
    runs of two or more wrong). Consoles are made with ``emoji=False`` so ``:smile:`` stays text.
    """
    text = _RICH_TAG.sub(_escape_rich, terminal_text(value))
    trailing = len(text) - len(text.rstrip("\\"))
    return text + "\\" * trailing


def markdown_text(value: Any) -> str:
    """``value`` as inert Markdown text (fits one table cell): control characters shown, line breaks as
    spaces, active characters backslash-escaped."""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = _CONTROL_RE.sub(_visible, text)
    return _MARKDOWN_RE.sub(_markdown_escape, text)


def markdown_code(value: Any) -> str:
    """``value`` as a Markdown code span (file names): a backtick fence longer than any run inside, pipes
    escaped (GitHub tables split cells on them even in code), control characters shown, one line."""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    # a pipe escaped for GitHub's table splitter, which reads "\\" as one escaped character: the backslashes
    # before a pipe are doubled so an odd number of them cannot end the cell
    text = re.sub(r"(\\*)\|", lambda m: m.group(1) * 2 + "\\|", _CONTROL_RE.sub(_visible, text))
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def csv_cell(text: str) -> str:
    """One text cell, neutralised: ``'`` prefixed when it starts like a formula and is not a plain number."""
    if text and text[0] in FORMULA_STARTS and not _PLAIN_NUMBER_RE.match(text):
        return "'" + text
    return text


def _neutralize_array(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        return pa.DictionaryArray.from_arrays(arr.indices, _neutralize_array(arr.dictionary))
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    risky = pc.and_(pc.match_substring_regex(arr, _FORMULA_START),
                    pc.invert(pc.match_substring_regex(arr, _PLAIN_NUMBER)))
    if not pc.any(risky).as_py():
        return arr
    quoted = pc.binary_join_element_wise(pa.scalar("'", arr.type), arr, pa.scalar("", arr.type))
    return pc.if_else(risky, quoted, arr)


def neutralize_formulas(table: pa.Table) -> pa.Table:
    """``table`` with every text cell that a spreadsheet would run as a formula prefixed by ``'`` (vectorised).

    Only string columns (and dictionary-encoded strings) change; numbers,
    booleans, dates and lists are returned as they are (convert lists to
    text first, e.g. with :func:`labelqa.report.textlists.lists_to_text`).
    """
    for i, field in enumerate(table.schema):
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            continue
        col = table.column(i)
        chunks = [_neutralize_array(chunk) for chunk in col.chunks]
        table = table.set_column(i, field, pa.chunked_array(chunks, type=col.type))
    return table
