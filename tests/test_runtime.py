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
