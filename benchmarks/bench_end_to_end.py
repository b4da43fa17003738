"""The whole run as a user feels it: ``labelqa scan`` end to end beside cleanlab, and the streaming engine.

One table per question, each case in fresh processes, labelqa and the peer
interleaved, best of ``--repeat``:

1. **scan vs cleanlab** (multiclass and multi-label). "cleanlab" is what a
   user would write: import, read the Parquet file with pyarrow into an
   N x K array, ``find_label_issues``, ``get_label_quality_scores``, write a
   results Parquet (row, flag, score). "labelqa" is ``labelqa scan FILE --out
   DIR -q`` with its defaults (issues.parquet, summary.json, matrices.npy,
   summary.md, report.html; issues.csv only with ``--csv``). Multi-label cleanlab runs
   with ``n_jobs=1`` (its pool of 2 is slower on this machine and far
   bigger).
2. **stream vs memory**: ``labelqa scan FILE --engine memory|stream --out
   DIR -q`` (every default report file, report.html included) at 1M and 4M
   x 10 (``--large``: also 16M x 10): wall time, CPU time (user + system:
   above wall = both cores busy), peak RSS of the process, seconds per
   million rows, and stream / memory.

The machine is shared: the load average (``/proc/loadavg``) is printed
before and after each table, and each row says the load while it ran.

Needs the benchmark environment (``bash benchmarks/setup_env.sh``) for
cleanlab; run from the repo root with ``.venv-bench/bin/python``. Data is
generated into ``.bench-data/`` (gitignored) and reused.

    .venv-bench/bin/python benchmarks/bench_end_to_end.py            # all of 1 and 2 (~10 min)
    .venv-bench/bin/python benchmarks/bench_end_to_end.py --quick    # 200k x 10 and 100k x 50, stream 1M
    .venv-bench/bin/python benchmarks/bench_end_to_end.py --only stream --large
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / ".bench-data"
sys.path.insert(0, str(HERE))  # the sibling benchmark modules, imported by the parent only (children stay lean)

MULTICLASS = ["1000000x10", "1000000x100", "200000x1000"]
#: issue 16's "done when" leads over cleanlab, by job.
TARGET = {"1,000,000 x 10": 4.0, "1,000,000 x 100": 4.0, "200,000 x 1,000": 3.0, "multi-label 1,000,000 x 50": 15.0}
MULTILABEL = ["1000000x50"]
STREAM = ["1000000x10", "4000000x10"]
QUICK = {"multiclass": ["200000x10"], "multilabel": ["100000x50"], "stream": ["1000000x10"]}


# --------------------------------------------------------------------------- data
def multiclass_file(n: int, k: int) -> Path:
    """synthetic.py's cached multiclass dataset (10% uniform noise)."""
    from synthetic import ensure_dataset  # noqa: PLC0415

    return ensure_dataset(n, k)


def multilabel_file(n: int, k: int) -> Path:
    """The multi-label benchmark data (bench_multilabel.py's generator) as Parquet: label lists + probabilities."""
    path = DATA / f"e2e_ml_n{n}_k{k}.parquet"
    if path.exists():
        return path
    from bench_multilabel import ensure_dataset as ensure_multilabel_npy  # noqa: PLC0415

    npy = ensure_multilabel_npy(n, k)
    given, probs = np.load(npy["given"]), np.load(npy["probs"])
    rows, cols = np.nonzero(given)
    offsets = np.concatenate([[0], np.cumsum(given.sum(axis=1))]).astype(np.int32)
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(cols.astype(np.int64)))
    flat = pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), k)
    DATA.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table({"label": labels, "pred_probs": flat}), tmp, row_group_size=100_000)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- the peer, in a child process
def cleanlab_child(path: str, out: str, task: str) -> None:
    """What a cleanlab user writes: read into an array, find issues, score, write results."""
    import warnings

    warnings.simplefilter("ignore")
    table = pq.read_table(path)
    probs_col = table.column("pred_probs").combine_chunks()
    probs = probs_col.flatten().to_numpy().reshape(len(probs_col), -1)
    if task == "multilabel":
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        labels = table.column("label").to_pylist()
        flags = find_label_issues(labels, probs, n_jobs=1)
        scores = get_label_quality_scores(labels, probs)
    else:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        labels = table.column("label").to_numpy()
        flags = find_label_issues(labels, probs)
        scores = get_label_quality_scores(labels, probs)
    pq.write_table(pa.table({"row": np.arange(len(flags)), "is_label_issue": flags, "label_quality": scores}), out)
    print(json.dumps({"flagged": int(np.count_nonzero(flags))}))


# --------------------------------------------------------------------------- measuring
def compile_packages() -> None:
    """Byte-compile labelqa once before timing, so the first timed process does not pay for writing .pyc files."""
    import compileall

    compileall.compile_dir(str(ROOT / "labelqa"), quiet=1)


def measured(cmd: list[str]) -> dict:
    """run_measured plus the child's CPU seconds (user + system)."""
    from bench_confident import run_measured  # noqa: PLC0415

    before = os.times()
    res = run_measured(cmd)
    after = os.times()
    res["cpu"] = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if res["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res['stderr'][-2000:]}")
    return res


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall"])


def load() -> str:
    """The 1-minute load average (2 cores: above 2 means other work competed)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def scan_vs_cleanlab(case: str, task: str, repeat: int) -> dict:
    n, k = map(int, case.split("x"))
    path = multilabel_file(n, k) if task == "multilabel" else multiclass_file(n, k)
    from bench_confident import labelqa_exe  # noqa: PLC0415

    exe = labelqa_exe()
    if exe is None:
        raise SystemExit("the labelqa command is not installed in this environment (pip install -e .)")
    out = DATA / "e2e-out"
    runs: dict[str, list[dict]] = {"labelqa": [], "cleanlab": []}
    loads = [load()]
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        runs["labelqa"].append(measured([exe, "scan", str(path), "--out", str(out), "-q"]))
        runs["cleanlab"].append(measured([sys.executable, __file__, "--child", "cleanlab", str(path),
                                          str(DATA / "e2e-cleanlab.parquet"), task]))
        loads.append(load())
    shutil.rmtree(out, ignore_errors=True)
    lq, cl = best(runs["labelqa"]), best(runs["cleanlab"])
    return {"case": f"{'multi-label ' if task == 'multilabel' else ''}{n:,} x {k:,}", "cleanlab": cl["wall"],
            "labelqa": lq["wall"], "lead": cl["wall"] / lq["wall"], "cl_mb": cl["peak_mb"], "lq_mb": lq["peak_mb"],
            "load": "-".join(loads)}


def stream_vs_memory(case: str, repeat: int) -> list[dict]:
    n, k = map(int, case.split("x"))
    from bench_stream import generate  # noqa: PLC0415

    path = generate(n, k)
    from bench_confident import labelqa_exe  # noqa: PLC0415

    exe = labelqa_exe()
    if exe is None:
        raise SystemExit("the labelqa command is not installed in this environment (pip install -e .)")
    out = DATA / "e2e-stream-out"
    runs: dict[str, list[dict]] = {"memory": [], "stream": []}
    engines = ["memory", "stream"] if n <= 4_000_000 else ["stream"]
    loads = [load()]
    for _ in range(repeat):
        for engine in engines:
            shutil.rmtree(out, ignore_errors=True)
            runs[engine].append(measured([exe, "scan", str(path), "--engine", engine, "--out", str(out), "-q"]))
        loads.append(load())
    shutil.rmtree(out, ignore_errors=True)
    rows = []
    for engine in engines:
        r = best(runs[engine])
        rows.append({"case": f"{n:,} x {k}", "engine": engine, "wall": r["wall"], "cpu": r["cpu"],
                     "peak_mb": r["peak_mb"], "per_million": r["wall"] / (n / 1e6), "load": "-".join(loads)})
    if "memory" in engines:
        rows[1]["vs_memory"] = rows[1]["wall"] / rows[0]["wall"]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large", action="store_true", help="also stream 16M x 10")
    ap.add_argument("--only", choices=["scan", "stream"], default=None)
    ap.add_argument("--cases", default=None, help="only these NxK cases, comma-separated (e.g. 1000000x10,1000000x100)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _kind, *rest = args.child  # "cleanlab"
        cleanlab_child(*rest)
        return 0
    compile_packages()
    sizes = QUICK if args.quick else {"multiclass": MULTICLASS, "multilabel": MULTILABEL,
                                      "stream": STREAM + (["16000000x10"] if args.large else [])}
    if args.cases:
        keep = set(args.cases.split(","))
        sizes = {task: [c for c in cases if c in keep] for task, cases in sizes.items()}
    print(f"# labelqa end to end ({os.cpu_count()} CPUs, best of {args.repeat}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load {load()})\n")
    if args.only in (None, "scan"):
        print("| job | cleanlab | labelqa scan | lead | target | cleanlab peak MB | labelqa peak MB | load (1 min) |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for task in ("multiclass", "multilabel"):
            for case in sizes[task]:
                r = scan_vs_cleanlab(case, task, args.repeat)
                target = TARGET.get(r["case"])
                mark = "" if target is None else f"{target:g}x {'met' if r['lead'] >= target else 'NOT met'}"
                print(f"| {r['case']} | {r['cleanlab']:.2f} s | {r['labelqa']:.2f} s | {r['lead']:.1f}x | {mark} | "
                      f"{r['cl_mb']:,.0f} | {r['lq_mb']:,.0f} | {r['load']} |", flush=True)
        print()
    if args.only in (None, "stream"):
        print("| N x K | engine | wall | CPU (user+sys) | peak RSS MB | s per million rows | stream / memory | "
              "load (1 min) |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        for case in sizes["stream"]:
            for r in stream_vs_memory(case, args.repeat):
                ratio = f"{r['vs_memory']:.2f}x" if "vs_memory" in r else ""
                print(f"| {r['case']} | {r['engine']} | {r['wall']:.2f} s | {r['cpu']:.2f} s | {r['peak_mb']:,.0f} | "
                      f"{r['per_million']:.2f} | {ratio} | {r['load']} |", flush=True)
    print(f"\nload at the end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
