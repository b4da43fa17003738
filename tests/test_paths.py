"""The one guard against writing over an input (labelqa/paths.py); the commands are tried in
tests/test_safety_inputs.py."""

from __future__ import annotations

import os

import pytest

from labelqa.errors import LabelqaError
from labelqa.paths import option_inputs, refuse_overwriting_inputs


def test_outputs_inside_an_input_folder_are_refused(tmp_path):
    dataset = tmp_path / "hive"
    dataset.mkdir()
    (dataset / "part-0.parquet").write_bytes(b"x")
    with pytest.raises(LabelqaError, match="lies inside the input folder"):
        refuse_overwriting_inputs([("data", dataset)], out_dir=dataset / "rep")
    with pytest.raises(LabelqaError, match="lies inside the input folder"):
        refuse_overwriting_inputs([("data", dataset)], out_file=dataset / "fixed.parquet")
    with pytest.raises(LabelqaError, match="is the output folder|lies inside"):
        refuse_overwriting_inputs([("data", dataset)], out_dir=dataset)
    # siblings are fine, and so are inputs that do not exist (their own check reports them)
    refuse_overwriting_inputs([("data", dataset), ("classes_file", tmp_path / "missing.txt")],
                              out_dir=tmp_path / "rep")
    refuse_overwriting_inputs([("data", dataset / "part-0.parquet")], out_file=tmp_path / "hivefixed.parquet")


def test_option_inputs_finds_every_input_path(tmp_path):
    (tmp_path / "dyn").mkdir()
    values = {"data": "d.parquet", "pred_probs": ["a.npy", "b.npy"], "classes_file": None, "out": "rep",
              "logits_by_epoch": str(tmp_path / "dyn"), "threshold_samples": "thr_col", "report": "r",
              "label_col": "label"}
    found = option_inputs(values)
    assert ("data", "d.parquet") in found and ("pred_probs", "b.npy") in found
    assert ("logits_by_epoch", str(tmp_path / "dyn")) in found  # an existing path
    assert all(name != "threshold_samples" for name, _ in found)  # a column name
    assert ("report", os.path.join("r", "issues.parquet")) in found
    assert all(name not in ("out", "label_col") for name, _ in found)


def test_library_write_report_refuses_a_folder_holding_its_input(noisy_parquet, tmp_path):
    import shutil

    import labelqa

    path, _ = noisy_parquet
    hive = tmp_path / "hive"
    hive.mkdir()
    shutil.copy(path, hive / "part-0.parquet")
    result = labelqa.scan(hive)
    before = (hive / "part-0.parquet").read_bytes()
    with pytest.raises(LabelqaError, match="lies inside the input folder"):
        labelqa.write_report(result, hive / "rep")  # the report would become part of the dataset
    # the data named as issues.parquet of the folder written to: the report-file names pass the folder check
    rep = tmp_path / "rep"
    rep.mkdir()
    shutil.copy(path, rep / "issues.parquet")
    with pytest.raises(LabelqaError, match="never writes over"):
        labelqa.write_report(labelqa.scan(rep / "issues.parquet"), rep)
    assert (hive / "part-0.parquet").read_bytes() == before and not (hive / "rep").exists()
    assert (rep / "issues.parquet").read_bytes() == path.read_bytes()
