"""What each of the CLI's start-up and memory tricks saves, so only the ones worth keeping stay.

Every trick is switched off alone and ``labelqa`` is run in fresh
subprocesses, rounds interleaved (each round runs every variant once, in a
rotating order), best of ``--repeat``; wall time is measured around the
child, peak RSS and CPU time come from ``os.wait4`` on it. Variants:

- ``all on``: the CLI as shipped (the baseline);
- ``pandas probe``: :func:`labelqa.runtime.skip_pyarrow_pandas_probe`
  replaced by a no-op, so pyarrow imports pandas on its first array;
- ``huge pages``: ``NUMPY_MADVISE_HUGEPAGE=1``, numpy's own switch, which
  :func:`labelqa.runtime.prefer_small_pages` respects: numpy's default advice;
- ``exit shortcut``: ``main(argv)`` returns the code and the interpreter
  tears down as usual (``sys.exit``) instead of ``os._exit`` after flushing;
- ``typer pin``: the same CLI under the newest typer, from the Python given
  by ``--typer-python`` (a venv made with ``--system-site-packages`` and only
  typer installed into it, so every other package is the same build).

Inputs: ``labelqa --help``, ``labelqa scan`` of the bundled
``examples/digits/digits_noisy.parquet`` (start-up dominated), and of a
synthetic 1M x 100 float32 file (``benchmarks/synthetic.py``, cached in
``.bench-data/``, ~400 MB; the in-memory engine). Reports go to a temporary
folder, removed after each run. labelqa's bytecode is compiled first, as an
installed tool's is (see ``synthetic.compile_labelqa``).

    python benchmarks/startup.py                                  # all, best of 7
    python -m venv --system-site-packages /tmp/tv && /tmp/tv/bin/pip install --no-deps typer==0.29.2
    python benchmarks/startup.py --typer-python /tmp/tv/bin/python
    python benchmarks/startup.py --repeat 3 --no-large            # quick

Run it with this tree importable (``PYTHONPATH=$PWD`` or an editable install).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import ROOT, compile_labelqa, ensure_dataset  # noqa: E402

SMALL = ROOT / "examples" / "digits" / "digits_noisy.parquet"

# The child: the console script's ``sys.exit(main())``, with one trick switched off as LABELQA_BENCH_OFF says.
CHILD = """\
import os, sys
off = os.environ.pop("LABELQA_BENCH_OFF", "")
import labelqa.runtime
if off == "probe":
    labelqa.runtime.skip_pyarrow_pandas_probe = lambda: False
from labelqa.cli.app import main
sys.argv[0] = "labelqa"
sys.exit(main(sys.argv[1:]) if off == "exit" else main())
"""

# name, how it is switched off (for the table), extra environment, python (None: this one)
VARIANTS = [
    ("all on", "-", {}, None),
    ("pandas probe", "skip_pyarrow_pandas_probe -> no-op", {"LABELQA_BENCH_OFF": "probe"}, None),
    ("huge pages", "NUMPY_MADVISE_HUGEPAGE=1", {"NUMPY_MADVISE_HUGEPAGE": "1"}, None),
    ("exit shortcut", "sys.exit(main(argv)), no os._exit", {"LABELQA_BENCH_OFF": "exit"}, None),
    ("typer pin", "newest typer (--typer-python)", {}, "typer"),
]


def run_once(python: str, args: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS (MB) of one child."""
    with tempfile.TemporaryDirectory(prefix="labelqa-startup-") as tmp:
        argv = [a.replace("{out}", str(Path(tmp) / "report")) for a in args]
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, "-c", CHILD, *argv], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode()
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"labelqa {' '.join(argv)} exited {proc.returncode}:\n{err}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def python_version_of(python: str, module: str) -> str:
    code = f"import {module}; print({module}.__version__)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds; every figure is the best of them")
    parser.add_argument("--typer-python", help="python of a venv with the newest typer (see the docstring)")
    parser.add_argument("--no-large", action="store_true", help="skip the 1M x 100 file")
    parser.add_argument("--large", default="1000000x100", help="N x K of the synthetic file")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--only", nargs="+", metavar="TRICK", help="measure only these tricks (and 'all on')")
    parser.add_argument("--inputs", nargs="+", choices=["help", "small", "large"], default=["help", "small", "large"])
    args = parser.parse_args(argv)

    compile_labelqa(sys.executable)
    inputs: list[tuple[str, list[str]]] = []
    if "help" in args.inputs:
        inputs.append(("--help", ["--help"]))
    if "small" in args.inputs:
        inputs.append(("small", ["scan", str(SMALL), "--out", "{out}", "-q"]))
    if "large" in args.inputs and not args.no_large:
        n, k = (int(x) for x in args.large.lower().split("x"))
        inputs.append((f"{n // 1_000_000}M x {k}" if n % 1_000_000 == 0 else f"{n} x {k}",
                       ["scan", str(ensure_dataset(n, k)), "--out", "{out}", "-q"]))
    variants = [v for v in VARIANTS if (v[3] != "typer" or args.typer_python)
                and (args.only is None or v[0] == "all on" or v[0] in args.only)]
    pythons = {None: sys.executable, "typer": args.typer_python}
    base_env = {k: v for k, v in os.environ.items() if k not in ("NUMPY_MADVISE_HUGEPAGE", "LABELQA_BENCH_OFF")}
    typers = {name: python_version_of(pythons[py], "typer") for name, _, _, py in variants}
    pin = f", {typers['typer pin']} in {args.typer_python}" if "typer pin" in typers else " (typer pin not measured)"
    print(f"typer: {typers['all on']} here{pin}", file=sys.stderr)

    runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for label, cmd in inputs:
        for name, _, env, py in variants:  # warm-up: page cache, bytecode
            run_once(pythons[py], cmd, {**base_env, **env})
        for r in range(args.repeat):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for name, _, env, py in order:
                runs.setdefault((label, name), []).append(run_once(pythons[py], cmd, {**base_env, **env}))
            print(f"{label}: round {r + 1}/{args.repeat}", file=sys.stderr)

    def best(label: str, name: str) -> tuple[float, float, float, float]:
        rs = runs[(label, name)]
        return (min(w for w, _, _ in rs), statistics.median(w for w, _, _ in rs),
                min(c for _, c, _ in rs), min(m for _, _, m in rs))

    print(f"## Per run (best of {args.repeat}; median wall in brackets)\n")
    print("| variant | trick off by | " + " | ".join(f"{label}: wall s, CPU s, RSS MB" for label, _ in inputs) + " |")
    print("|---|---|" + "---:|" * len(inputs))
    for name, how, _, _ in variants:
        cells = []
        for label, _ in inputs:
            w, med, c, m = best(label, name)
            cells.append(f"{w:.3f} ({med:.3f}), {c:.2f}, {m:.0f}")
        print(f"| {name} | {how} | " + " | ".join(cells) + " |")

    print("\n## What each trick saves (trick off minus all on; + = the trick helps)\n")
    print("| trick | " + " | ".join(f"{label}: s, MB" for label, _ in inputs) + " | verdict |")
    print("|---|" + "---:|" * len(inputs) + "---|")
    base = {label: best(label, "all on") for label, _ in inputs}
    saved: dict[str, dict[str, tuple[float, float]]] = {}
    for name, _, _, _ in variants[1:]:
        saved[name] = {}
        cells = []
        for label, _ in inputs:
            w, _, _, m = best(label, name)
            saved[name][label] = (w - base[label][0], m - base[label][3])
            cells.append(f"{w - base[label][0]:+.3f}, {m - base[label][3]:+.0f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {verdict(saved[name], base, inputs)} |")
    print("\nkeep: saves >= 0.1 s or >= 50 MB on the large file, or >= 10% (and >= 0.03 s) of the small scan")

    if args.json:
        args.json.write_text(json.dumps({
            "repeat": args.repeat, "typer": typers, "inputs": [label for label, _ in inputs],
            "runs": {f"{label} | {name}": rs for (label, name), rs in runs.items()},
            "saved": saved,
        }, indent=1))
    return 0


def verdict(saved: dict[str, tuple[float, float]], base: dict, inputs: list) -> str:
    """The rule of thumb printed under the table."""
    for label, _ in inputs:
        s, mb = saved[label]
        if label == "small" and s >= max(0.03, 0.1 * base[label][0]):
            return "keep"
        if label not in ("small", "--help") and (s >= 0.1 or mb >= 50):
            return "keep"
    return "drop"


if __name__ == "__main__":
    sys.exit(main())
