"""examples/notebook.ipynb, executed by a real Jupyter kernel (nbclient), finds the labels it flipped.

The stored notebook has no outputs; the test runs a copy top to bottom in a ``python3`` kernel started in
examples/ with this checkout first on PYTHONPATH, then checks the outputs the cells displayed and, through one
extra cell run in the same kernel, the objects they made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"

nbformat = pytest.importorskip("nbformat")

#: Appended to the executed copy (never to the file): the figures the assertions need, as one JSON line.
CHECK_CELL = """
import json as _json
print("CHECK " + _json.dumps({
    "labelqa_file": labelqa.__file__,
    "rows": len(df), "n_issues": int(result.n_issues), "clean_rows": len(clean), "issues_rows": len(issues),
    "issues_columns": list(issues.columns), "clean_columns": list(clean.columns),
    "issues_index_in_df": bool(issues.index.isin(df.index).all()),
    "issues_sorted": bool(issues["label_quality"].is_monotonic_increasing),
    "flipped": sorted(int(i) for i in flipped), "flagged": sorted(int(i) for i in issues.index),
    "precision": precision, "recall": recall,
    "right_before": float((df["label"] == true_label).mean()),
    "right_fixed": float((fixed["label"] == true_label).mean()),
    "right_relabelled": float((relabelled["label"] == true_label).mean()),
    "ranked_is_mask": sorted(int(i) for i in ranked) == [int(i) for i in mask.nonzero()[0]],
}))
"""


def test_the_stored_notebook_is_valid_and_has_no_outputs():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert not any(line.lstrip().startswith(("%", "!")) for c in code for line in c.source.splitlines())


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output["text"]
    data = output.get("data", {})
    return data.get("text/html", "") + data.get("text/plain", "")


def test_the_notebook_runs_in_a_kernel_and_finds_the_flipped_labels():
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    n_cells = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_CELL))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=False,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute(env=env)  # raises CellExecutionError, with the cell and traceback, if any cell fails

    code = [c for c in nb.cells[:n_cells] if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    shown = ["".join(text_of(o) for o in c.outputs) for c in code]
    # the cells' displayed outputs: the data, the result's summary, the ranked issues table, the check
    assert "barolo" in shown[0] or "grignolino" in shown[0] or "barbera" in shown[0]
    assert "<table" in shown[1] and "issues" in shown[1].lower()  # ScanResult._repr_html_
    for column in ("given_label", "suggested_label", "label_quality", "reason"):
        assert column in shown[2]
    assert "precision" in shown[3] and "recall" in shown[3]

    line = next(ln for o in nb.cells[-1].outputs if o["output_type"] == "stream"
                for ln in o["text"].splitlines() if ln.startswith("CHECK "))
    got = json.loads(line[len("CHECK "):])
    assert Path(got["labelqa_file"]).resolve().is_relative_to(ROOT)  # this checkout, not another install
    assert got["issues_rows"] == got["n_issues"] and got["clean_rows"] == got["rows"] - got["n_issues"]
    assert 6 <= got["n_issues"] <= 40  # 12 of 178 labels flipped
    assert {"given_label", "suggested_label", "label_quality", "is_label_issue", "reason"} <= set(
        got["issues_columns"])
    assert "label" in got["clean_columns"] and "alcohol" in got["clean_columns"]
    assert got["issues_index_in_df"] and got["issues_sorted"]
    caught = set(got["flagged"]) & set(got["flipped"])
    assert got["precision"] == len(caught) / len(got["flagged"]) and got["recall"] == len(caught) / 12
    assert got["precision"] >= 0.7 and got["recall"] >= 0.6
    assert got["right_fixed"] > got["right_before"] and got["right_relabelled"] > got["right_before"]
    assert got["ranked_is_mask"]
