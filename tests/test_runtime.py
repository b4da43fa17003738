"""The CLI's process tricks (labelqa.runtime): each does what it says and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


def _pages(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    code = ("import numpy as np; from labelqa.runtime import prefer_small_pages; changed = prefer_small_pages(); "
            "print(changed, np._core.multiarray._set_madvise_hugepage(True))")  # the setter returns the old value
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, check=True)
    return proc.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy only advises huge pages on Linux")
def test_prefer_small_pages_turns_numpy_advice_off():
    assert _pages(None) == ["True", "False"]


def test_prefer_small_pages_respects_the_users_choice():
    changed, _ = _pages("1")
    assert changed == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy only advises huge pages on Linux")
def test_small_pages_is_scoped_to_the_library_call():
    """Inside ``labelqa.load`` numpy's advice is off; after it (also after an error) numpy's own setting is back."""
    code = (
        "import numpy as np, labelqa, labelqa.runtime as rt\n"
        "setter = np._core.multiarray._set_madvise_hugepage\n"
        "seen = []\n"
        "probe = rt.small_pages(lambda: seen.append(setter(False)))\n"
        "for start in (True, False):\n"
        "    setter(start); probe(); seen.append(setter(start))\n"
        "def boom(): raise ValueError('x')\n"
        "setter(True)\n"
        "try: rt.small_pages(boom)()\n"
        "except ValueError: pass\n"
        "seen.append(setter(True))\n"
        "labelqa.load('examples/digits/digits_noisy.parquet'); seen.append(setter(True))\n"
        "print(seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # inside: off (False) both times; after: the start value; after an error and after load: True again
    assert proc.stdout.split() == ["[False,", "True,", "False,", "False,", "True,", "True]"]


def _malloc(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = ("import numpy as np; from labelqa.runtime import keep_freed_memory; changed = keep_freed_memory(); "
            "a = np.ones(1 << 25); del a; print(changed)")
    proc = subprocess.run([sys.executable, "-c", code], env={**env, **env_extra, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc only")
def test_keep_freed_memory_sets_glibc_thresholds():
    assert _malloc({}) == "True"


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_keep_freed_memory_respects_the_users_choice(name):
    assert _malloc({name: "131072"}) == "False"


def _reuse_across_threads(env_extra: dict[str, str], one_arena: bool) -> tuple[str, int]:
    """(changed, page faults) of a main-thread block of 48 MB allocated after a worker thread freed one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = (
        "import resource, threading, numpy as np\n"
        "from labelqa.runtime import keep_freed_memory, one_malloc_arena, prefer_small_pages\n"
        f"prefer_small_pages(); keep_freed_memory(); changed = one_malloc_arena() if {one_arena} else None\n"
        "def work():\n"
        "    a = np.ones(6 << 20); del a\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "b = np.ones(6 << 20)\n"
        "print(changed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**env, **env_extra, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True)
    changed, faults = proc.stdout.split()
    return changed, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc only")
def test_one_malloc_arena_lets_the_main_thread_reuse_a_workers_freed_block():
    """A worker's freed 48 MB block is reused by the main thread (no fresh pages) with one arena only."""
    changed, faults = _reuse_across_threads({}, one_arena=True)
    assert changed == "True" and faults < 1_000
    _, apart = _reuse_across_threads({}, one_arena=False)
    assert apart > 10_000  # 48 MB of fresh 4 kB pages
    assert _reuse_across_threads({"MALLOC_ARENA_MAX": "4"}, one_arena=True)[0] == "False"  # the user's choice wins


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
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "True"]


def test_pyarrow_pandas_probe_left_alone_once_pandas_is_imported():
    proc = _python("import pandas\nfrom labelqa.runtime import skip_pyarrow_pandas_probe\n"
                   "print(skip_pyarrow_pandas_probe())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]


def test_exit_now_flushes_and_returns_the_code_without_teardown():
    """Buffered output (stdout is a pipe here) arrives, the code is the exit status, atexit handlers do not run."""
    proc = _python("import atexit, sys\nfrom labelqa.runtime import exit_now\n"
                   "atexit.register(print, 'teardown ran')\n"
                   "print('out', end='')\nsys.stderr.write('err')\nexit_now(3)")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out", "err")


def test_console_script_exit_codes_and_complete_output(noisy_parquet, tmp_path):
    """``python -m labelqa`` ends through exit_now: gate failure is 1 with the whole JSON on stdout, usage error 2."""
    path, _ = noisy_parquet
    cmd = [sys.executable, "-m", "labelqa", "scan", str(path), "-o", str(tmp_path / "rep"), "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*cmd, "--max-issue-rate", "0.01"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout) == json.loads((tmp_path / "rep" / "summary.json").read_text())
    proc = subprocess.run([*cmd, "--top", "-1"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc only")
def test_trim_heap_hands_kept_free_pages_back():
    """Freed heap blocks that trick 5 keeps stay resident until trim_heap returns their pages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = (
        "import numpy as np\n"
        "from labelqa.runtime import keep_freed_memory, trim_heap\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20\n"
        "assert keep_freed_memory()\n"
        "blocks = [np.ones(1 << 17) for _ in range(200)]  # 200 MB of 1 MB heap blocks\n"
        "keep = np.ones(1)  # a live block above them: the heap's top cannot shrink\n"
        "del blocks\n"
        "kept = rss()\n"
        "trim_heap()\n"
        "print(kept, rss())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True)
    kept, trimmed = map(int, proc.stdout.split())
    assert kept - trimmed > 150, (kept, trimmed)
