"""Process settings of the CLI: numpy's huge-page advice is switched off unless the user chose."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str, env_value: str | None) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


CODE = (
    "import numpy as np; from labelqa.runtime import prefer_small_pages; changed = prefer_small_pages(); "
    "print(changed, np._core.multiarray._set_madvise_hugepage(True))"  # the setter returns the previous value
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy only advises huge pages on Linux")
def test_prefer_small_pages_turns_numpy_advice_off():
    assert _run(CODE, None) == ["True", "False"]


def test_prefer_small_pages_respects_the_users_choice():
    changed, _ = _run(CODE, "1")
    assert changed == "False"


def test_pyarrow_pandas_probe_skipped_and_pandas_still_works():
    """After the skip a scan never imports pandas, yet to_pandas and import pandas work as usual."""
    code = (
        "import sys\n"
        "from labelqa.runtime import skip_pyarrow_pandas_probe\n"
        "assert skip_pyarrow_pandas_probe()\n"
        "import numpy as np, labelqa\n"
        "from tests.conftest import noisy_dataset\n"
        "given, _, probs, _ = noisy_dataset(n=500, k=3, seed=1)\n"
        "res = labelqa.scan(labelqa.LabelData.from_arrays(given, probs))\n"
        "table = res.issues_table()\n"
        "print('pandas' in sys.modules)\n"
        "df = table.to_pandas()\n"
        "import pandas as pd\n"
        "import pyarrow as pa\n"
        "print(len(df) == 500, pa.array(pd.Series([1, 2])).to_pylist() == [1, 2])\n"
    )
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)}).stdout.split()
    assert out == ["False", "True", "True"]
