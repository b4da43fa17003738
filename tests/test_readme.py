"""The README's "In a notebook" code runs as printed: a DataFrame without probabilities to issues and clean data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_code(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"README has no section {title!r}"
    blocks = re.findall(r"```python\n(.*?)```", match.group(1), flags=re.S)
    assert len(blocks) == 1, "one python block in the section"
    return blocks[0]


def test_in_a_notebook_section_runs():
    pytest.importorskip("sklearn")
    code = _section_code("In a notebook")
    assert len([line for line in code.splitlines() if line.startswith(("result =", "issues =", "clean ="))]) == 3
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    df, result, issues, clean = (namespace[k] for k in ("df", "result", "issues", "clean"))
    assert result.n_issues >= 1 and len(issues) == result.n_issues
    assert issues["is_label_issue"].all() and list(issues["rank"]) == sorted(issues["rank"])
    assert len(clean) == len(df) - result.n_issues and set(clean.index).isdisjoint(issues.index)
    assert df["label"].dtype != "int64"  # string labels, no probability columns
    assert not any(str(c).startswith("prob") for c in df.columns)
