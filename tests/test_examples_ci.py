"""The CI examples run as written: the workflow's scan step and the pre-commit hook's entry."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

CI = REPO / "examples" / "ci"


def labelqa_cmd() -> list[str]:
    exe = shutil.which("labelqa")
    return [exe] if exe else [sys.executable, "-m", "labelqa"]


@pytest.fixture
def workdir(tmp_path):
    """A folder where the examples' relative paths resolve, so reports land in tmp_path."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    return tmp_path


def workflow_scan_line() -> tuple[str, dict[str, str]]:
    text = (CI / "label-quality.yml").read_text()
    env = dict(re.findall(r"^\s+(DATA): (\S+)$", text, flags=re.M))
    line = next(m.group(1) for m in re.finditer(r"run: (labelqa scan .*)$", text, flags=re.M))
    return line, env


def test_workflow_scan_step(workdir):
    line, env = workflow_scan_line()
    args = shlex.split(line.replace('"$DATA"', env["DATA"]))
    assert args[:2] == ["labelqa", "scan"]
    step = workdir / "step_summary.md"
    run_env = {**os.environ, "GITHUB_STEP_SUMMARY": str(step)}
    proc = subprocess.run(labelqa_cmd() + args[1:], cwd=workdir, env=run_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr  # digits: 11.4% flagged, under the 15% gate
    warnings = [x for x in proc.stdout.splitlines() if x.startswith("::warning ")]
    assert len(warnings) == 10
    assert any(x.startswith("::notice ") for x in proc.stdout.splitlines())
    assert "labelqa scan report" in step.read_text()
    assert (workdir / "labelqa-report" / "report.html").exists()


def test_workflow_gate_fails_on_a_stricter_rate(workdir):
    line, env = workflow_scan_line()
    args = shlex.split(line.replace('"$DATA"', env["DATA"]).replace("0.15", "0.05"))
    env_no_summary = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    proc = subprocess.run(labelqa_cmd() + args[1:], cwd=workdir, env=env_no_summary, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error ")


def test_pre_commit_hook_entry(workdir):
    text = (CI / "pre-commit-config.yaml").read_text()
    entry = re.search(r"entry: (.*)$", text, flags=re.M).group(1)
    assert "pass_filenames: false" in text
    args = shlex.split(entry)
    proc = subprocess.run(labelqa_cmd() + args[1:], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # -q: silent when the gate passes
    assert (workdir / "labelqa-report" / "summary.json").exists()


@pytest.mark.parametrize("name", ["label-quality.yml", "pre-commit-config.yaml"])
def test_examples_name_existing_data(name):
    text = (CI / name).read_text()
    for path in re.findall(r"examples/\S+\.parquet", text):
        assert (REPO / path).exists(), path
