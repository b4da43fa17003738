"""The README's "from a CSV to a report in two commands", run as written, in an interpreter without torch."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet  # noqa: F401  (pa.parquet)

REPO = Path(__file__).resolve().parents[1]

NO_TORCH = """import sys
class NoTorch:  # as if torch were not installed (a base `pip install labelqa`)
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch':
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, NoTorch())
"""


def readme_commands() -> list[str]:
    """The shell lines of the first code block of the README's "Probabilities from any model" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Probabilities from any model", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_csv_to_report_in_two_commands(tmp_path):
    commands = readme_commands()
    assert len(commands) == 2 and commands[0].startswith("labelqa train data.csv")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(scale=3, size=(3, 6))[y] + rng.normal(size=(300, 6))
    noisy = y.copy()
    noisy[:30] = (y[:30] + 1) % 3  # 10% wrong labels
    pcsv.write_csv(pa.table({"y": np.array(["ant", "bee", "cat"])[noisy], **{f"f_{i}": x[:, i] for i in range(6)},
                             "note": ["free text"] * 300}), tmp_path / "data.csv")
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(NO_TORCH)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'block'}{os.pathsep}{REPO}"}

    def run(line: str) -> subprocess.CompletedProcess:
        argv = shlex.split(line)
        assert argv[0] == "labelqa"
        return subprocess.run([sys.executable, "-m", "labelqa", *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    train = run(commands[0])
    assert train.returncode == 0, train.stderr
    printed = next(line for line in train.stdout.splitlines() if line.startswith("Next: "))[len("Next: "):]
    assert printed == commands[1]  # the README shows what train prints
    scan = run(printed)
    assert scan.returncode == 0, scan.stderr
    issues = pa.parquet.read_table(tmp_path / "labelqa-report" / "issues.parquet")
    flagged = np.array(issues.column("id").to_pylist())[np.array(issues.column("is_label_issue").to_pylist())]
    assert np.mean(np.isin(flagged, np.arange(30))) > 0.8  # mostly the 30 wrong labels
    assert (tmp_path / "labelqa-report" / "report.html").exists()
