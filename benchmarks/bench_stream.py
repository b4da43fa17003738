"""Time and peak memory of the streaming engine as N grows (labelqa.scan with engine="stream").

Cases (N x K, float32 probabilities, 10% of labels flipped): 1M, 5M, 20M x 10
and 1M x 100. Data is generated into ``.bench-data/`` (gitignored) in chunks
of at most ~64 MB, never all in memory, and reused when present; row groups
hold ~16 MB of probabilities (a row group is the unit Parquet decodes, so it
bounds the reader's memory together with the batch size). Each case
runs ``scan_stream`` (default ``prune_by_noise_rate``, batch 262,144,
issues.parquet + summary.json/.md; issues.csv off to spare the disk) in a
fresh subprocess; its wall time and peak RSS come from ``os.wait4`` on that
child (interpreter, imports and everything else included).

    python benchmarks/bench_stream.py                 # all cases
    python benchmarks/bench_stream.py --cases 1000000x10 5000000x10
    python benchmarks/bench_stream.py --memory        # also the in-memory scan, for contrast
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".bench-data"
CASES = ["1000000x10", "5000000x10", "20000000x10", "1000000x100"]


def generate(n: int, k: int, seed: int = 0) -> Path:
    path = DATA / f"stream_{n}x{k}.parquet"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    chunk = max(10_000, (16 << 20) // k)  # ~64 MB of float32 per chunk
    rg_rows = max(1_000, (1 << 22) // k)  # row groups of ~16 MB of probabilities (the unit Parquet decodes)
    schema = pa.schema([("label", pa.int64()), ("pred_probs", pa.list_(pa.float32(), k))])
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for i, a in enumerate(range(0, n, chunk)):
            m = min(chunk, n - a)
            rng = np.random.default_rng([seed, i])
            true = rng.integers(0, k, m)
            logits = rng.normal(0.0, 1.0, (m, k)).astype(np.float32)
            logits[np.arange(m), true] += rng.normal(3.0, 1.5, m).astype(np.float32)
            logits -= logits.max(axis=1, keepdims=True)
            np.exp(logits, out=logits)
            logits /= logits.sum(axis=1, keepdims=True)
            flip = rng.random(m) < 0.1
            given = true.copy()
            given[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
            probs = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), k)
            w.write_table(pa.table({"label": given, "pred_probs": probs}, schema=schema), row_group_size=rg_rows)
    os.replace(tmp, path)
    return path


def child(path: str, out: str, engine: str, batch_size: int) -> None:
    t = time.perf_counter()
    import labelqa

    with labelqa.scan(path, engine=engine, batch_size=batch_size) as result:
        labelqa.write_report(result, out, csv=False)
        info = {"issues": result.n_issues, "passes": max(len(result.passes), 1)}
    info["seconds_in_scan"] = time.perf_counter() - t
    print(json.dumps(info))


def run_case(path: Path, engine: str, batch_size: int) -> dict:
    out = DATA / f"out-{engine}"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(path), str(out), engine, str(batch_size)],
                            stdout=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    text = proc.stdout.read().decode() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"case {path.name} ({engine}) failed with status {status}")
    info = json.loads(text.strip().splitlines()[-1])
    info.update(wall=wall, peak_mb=usage.ru_maxrss / 1024)
    shutil.rmtree(out, ignore_errors=True)
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=CASES)
    ap.add_argument("--batch-size", type=int, default=262_144)
    ap.add_argument("--memory", action="store_true", help="also run the in-memory scan (large N needs RAM)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        path, out, engine, bs = args.child
        child(path, out, engine, int(bs))
        return
    rows = []
    for case in args.cases:
        n, k = (int(x) for x in case.split("x"))
        print(f"generating {case} ...", file=sys.stderr, flush=True)
        path = generate(n, k)
        engines = ["stream"] + (["memory"] if args.memory else [])
        for engine in engines:
            print(f"running {case} {engine} ...", file=sys.stderr, flush=True)
            info = run_case(path, engine, args.batch_size)
            rows.append((n, k, engine, path.stat().st_size / 2**20, info))
            print(f"  {info}", file=sys.stderr, flush=True)
    print("| N | K | engine | input MB | wall s | peak RSS MB | rows/s | issues | passes |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for n, k, engine, mb, info in rows:
        print(f"| {n:,} | {k} | {engine} | {mb:,.0f} | {info['wall']:.1f} | {info['peak_mb']:,.0f} "
              f"| {n / info['wall']:,.0f} | {info['issues']:,} | {info['passes']} |")


if __name__ == "__main__":
    main()
