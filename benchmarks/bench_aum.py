"""Time and memory of `labelqa train` and of AUM scoring from a memory-mapped file.

Cases, each run in a fresh subprocess whose peak RSS comes from os.wait4 (the
rusage of that one child: interpreter, imports, data and the work):

  train NxD     `labelqa train` end to end (the typer command function called
                in-process by the child: read Parquet, 5-fold logistic
                regression pred_probs, 2 torch runs x 30 epochs of a 64->128->11
                MLP with threshold samples, write data.parquet + dynamics/),
                on synthetic data with N rows, D=64 float32 features, K=10,
                10% uniform label noise. Also the time of its two main phases.
  aum ExNxK     AUM scoring (labelqa.data.dynamics.load_dynamics +
                labelqa.detectors.aum.score_dynamics) of an (E, N, K)
                float32 .npy, streamed epoch by epoch through per-epoch
                memory maps; the requirement is peak RSS < 1 GB.

Generated inputs are cached in .bench-data/ (gitignored); the 100 x 1M x 10
file is 4 GB. It was just written, so it is mostly in the page cache: the
time is compute-bound, not disk-bound (a cold read adds file size / disk
bandwidth). The machine has 2 cores shared with other work: timings are noisy.

Usage:
    python benchmarks/bench_aum.py                 # train 10k and 100k, aum 100x1Mx10
    python benchmarks/bench_aum.py --quick         # train 10k, aum 10x100kx10
    python benchmarks/bench_aum.py --train 10000 --aum 20x200000x10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-data"


# ----------------------------------------------------------------------------- data


def train_data(n: int, d: int = 64, k: int = 10, seed: int = 0) -> Path:
    """Synthetic Parquet: label (string), true_label, features list<float32> of d."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = CACHE / f"train_{n}x{d}_k{k}.parquet"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    centers = rng.normal(scale=1.0, size=(k, d))
    x = (centers[true] + rng.normal(size=(n, d))).astype(np.float32)
    given = true.copy()
    flip = rng.random(n) < 0.1
    given[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    names = np.array([f"c{i}" for i in range(k)])
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    table = pa.table({"label": names[given], "true_label": names[true],
                      "features": pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)))})
    table = table.replace_schema_metadata({"labelqa.classes": json.dumps(names.tolist())})
    pq.write_table(table, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return path


def aum_data(e: int, n: int, k: int, seed: int = 0) -> tuple[Path, Path]:
    """An (E, N, K) float32 .npy of logits written epoch by epoch, and the labels."""
    sys.path.insert(0, str(ROOT))
    from labelqa.train.dynamics_writer import NpyEpochWriter

    path = CACHE / f"logits_{e}x{n}x{k}.npy"
    labels_path = CACHE / f"labels_{n}x{k}.npy"
    if path.exists() and labels_path.exists():
        return path, labels_path
    CACHE.mkdir(exist_ok=True)
    free = shutil.disk_usage(CACHE).free
    need = e * n * k * 4
    if free < need * 1.2:
        raise SystemExit(f"not enough disk for {path.name}: {need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free")
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    given = true.copy()
    flip = rng.random(n) < 0.1
    given[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    np.save(labels_path, given)
    writer = NpyEpochWriter(path.with_suffix(".tmp"), e, n, k)
    rows = np.arange(n)
    for t in range(e):
        z = rng.standard_normal((n, k), dtype=np.float32)
        z[rows, true] += np.float32(3.0 * (t + 1) / e)  # the true class is learned over time
        writer.write_epoch(z)
        print(f"  generating {path.name}: epoch {t + 1}/{e}", end="\r", file=sys.stderr)
    writer.close()
    print(file=sys.stderr)
    os.replace(path.with_suffix(".tmp"), path)
    return path, labels_path


# ----------------------------------------------------------------------------- children


def child_train(data: str, out: str, threads: int) -> dict:
    import typer
    from typer.testing import CliRunner

    import labelqa.train.crossval as cv
    import labelqa.train.torch_model as tm
    from labelqa.cli.train_cmd import train

    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phases[name] = time.perf_counter() - t0
        return wrapper

    cv.cross_val_probs = timed("cv", cv.cross_val_probs)
    tm.train_dynamics = timed("dynamics", tm.train_dynamics)
    app = typer.Typer()
    app.command()(train)
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, [data, "--out", out, "--threads", str(threads), "-q"])
    wall = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"train failed: {result.exception!r} {result.output}")
    return {"call_s": wall, **phases}


def child_aum(path: str, labels_path: str) -> dict:
    from labelqa.data.dynamics import load_dynamics
    from labelqa.detectors.aum import score_dynamics

    labels = np.load(labels_path)
    t0 = time.perf_counter()
    shape = np.load(path, mmap_mode="r").shape
    dyn = load_dynamics(path, shape[1], shape[2])
    res = score_dynamics(dyn, labels)
    wall = time.perf_counter() - t0
    true_flagged = int(res.flags.sum())
    return {"call_s": wall, "n_flagged": true_flagged, "epochs": shape[0]}


def run_child(args: list[str]) -> tuple[dict, float, float]:
    """(child's JSON, wall seconds, peak RSS MB) of `python bench_aum.py _child ...`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed with {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1]), wall, usage.ru_maxrss / 1024


# ----------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        sys.path.insert(0, str(ROOT))
        kind = sys.argv[2]
        res = child_train(sys.argv[3], sys.argv[4], int(sys.argv[5])) if kind == "train" else child_aum(*sys.argv[3:5])
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--train", default=None, help="comma-separated row counts for train (default 10000,100000)")
    ap.add_argument("--aum", default=None, help="ExNxK for AUM scoring (default 100x1000000x10)")
    ap.add_argument("--threads", type=int, default=2, help="--threads of labelqa train")
    args = ap.parse_args()
    train_sizes = [int(s) for s in (args.train or ("10000" if args.quick else "10000,100000")).split(",") if s]
    aum_shape = tuple(int(s) for s in (args.aum or ("10x100000x10" if args.quick else "100x1000000x10")).split("x"))

    rows = []
    for n in train_sizes:
        data = train_data(n)
        out = CACHE / f"train-out-{n}"
        shutil.rmtree(out, ignore_errors=True)
        res, wall, rss = run_child(["train", str(data), str(out), str(args.threads)])
        rows.append((f"`labelqa train` {n:,} x 64, K=10 (2 runs x 30 epochs, 5-fold CV), --threads {args.threads}",
                     wall, res["call_s"], f"CV {res['cv']:.1f} s, dynamics {res['dynamics']:.1f} s", rss))
        print(f"train {n}: done in {wall:.1f} s", file=sys.stderr)
    e, n, k = aum_shape
    path, labels = aum_data(e, n, k)
    size_gb = path.stat().st_size / 1e9
    res, wall, rss = run_child(["aum", str(path), str(labels)])
    rows.append((f"AUM scoring {e} epochs x {n:,} x {k} float32 .npy ({size_gb:.2f} GB, memory-mapped)", wall,
                 res["call_s"], f"{e * n / res['call_s'] / 1e6:.0f} M row-epochs/s", rss))

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
          f"numpy {np.__version__}\n")
    print("| case | process wall s | call s | detail | peak RSS MB |")
    print("| --- | ---: | ---: | --- | ---: |")
    for name, w, c, detail, r in rows:
        print(f"| {name} | {w:.1f} | {c:.1f} | {detail} | {r:.0f} |")
    if rss >= 1024:
        print(f"\nWARNING: AUM scoring peak RSS {rss:.0f} MB is not under 1 GB")


if __name__ == "__main__":
    main()
