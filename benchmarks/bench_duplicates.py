"""Quality, speed and memory of the duplicates detector (labelqa.detectors.duplicates).

Each size runs in a fresh subprocess that builds a synthetic dataset of N
rows (deterministic seed): K = 10 classes, D-dim clustered embeddings, a
text column of distinct strings, probabilities of a noisy classifier and no
label noise. It then replaces ``inject`` rows by **exact copies** of other
rows (same text, same embedding, same probabilities) and ``inject`` rows by
**near copies** (other text, embedding plus noise so cosine ~0.995, same
probabilities), every copy with a flipped label. The table goes to Parquet;
``labelqa.load`` reads it, and ``DuplicateDetector(dup_cols=["text"]).detect``
is timed (hashing, neighbour search, groups, outputs).

Reported per size:

  groups found   injected pairs found as one conflicting group (recall of the groups)
  extra groups   conflicting groups that are not injected pairs (false alarms)
  row P / R      precision / recall of the flagged rows against the flipped copies. In each
                 pair the labels tie 1:1 and the model's probability decides which row is
                 flagged: row recall equals the share of pairs where the model gives the
                 source's label at least the copy's label's probability ("model backs source")
  time           wall time of ``detect`` (load excluded, shown apart)
  peak RSS       the subprocess's high-water mark (inputs included)

    python benchmarks/bench_duplicates.py                   # 100k and 1M rows x 128 dims
    python benchmarks/bench_duplicates.py --quick           # 20k rows
    python benchmarks/bench_duplicates.py --sizes 200000 --dim 64 --index faiss

``--exact-engines memory,stream`` measures exact duplicates only (the file
without its embedding column, only the text copies injected) through
``labelqa.scan(..., detectors="cl,dup", engine=...)`` plus one pass over the
issues table, so the in-memory and the streaming engine are compared on the
same file (the streaming engine's peak RSS stays bounded by its batches and
the per-hash partial of the repeated hashes):

    python benchmarks/bench_duplicates.py --sizes 1000000 --exact-engines memory,stream
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_table(n: int, d: int, k: int, inject: int, seed: int = 0):
    """The dataset as an Arrow table, and the positions of the flipped copies and their sources."""
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, 8, d)).astype(np.float32)
    true = rng.integers(0, k, n)
    emb = centers[true, rng.integers(0, 8, n)]
    emb += rng.standard_normal((n, d), dtype=np.float32) * np.float32(1.0)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    logits[np.arange(n), true] += 2.5
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = true.copy()
    text = np.array([f"example number {i} of the synthetic set" for i in range(n)], dtype=object)
    picked = rng.choice(n, 4 * inject, replace=False)
    exact_src, exact_dst = picked[:inject], picked[inject:2 * inject]
    near_src, near_dst = picked[2 * inject:3 * inject], picked[3 * inject:]
    for src, dst in ((exact_src, exact_dst), (near_src, near_dst)):
        emb[dst] = emb[src]
        probs[dst] = probs[src]
        labels[dst] = (true[src] + rng.integers(1, k, src.size)) % k
    text[exact_dst] = text[exact_src]
    scale = np.linalg.norm(emb[near_src], axis=1, keepdims=True) / np.sqrt(d)
    emb[near_dst] += rng.standard_normal((inject, d), dtype=np.float32) * np.float32(0.1) * scale
    flat = pa.array(emb.reshape(-1))
    table = pa.table({
        "label": pa.array(labels),
        "text": pa.array(text.tolist(), pa.string()),
        "pred_probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), k),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, d),
    })
    return table, np.concatenate([exact_src, near_src]), np.concatenate([exact_dst, near_dst])


def child(n: int, d: int, inject: int, index: str, threshold: float, n_probe: int) -> dict:
    import numpy as np  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    sys.path.insert(0, str(ROOT))
    from labelqa.data import load  # noqa: PLC0415
    from labelqa.detectors.duplicates import DuplicateDetector  # noqa: PLC0415

    table, sources, copies = make_table(n, d, 10, inject)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dups.parquet"
        pq.write_table(table, path)
        del table
        t0 = time.perf_counter()
        data = load(path)
        t_load = time.perf_counter() - t0
        det = DuplicateDetector(dup_cols=["text"], dup_threshold=threshold, dup_index=index, n_probe=n_probe)
        t0, c0 = time.perf_counter(), time.process_time()
        res = det.detect(data)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    group = res.extra["dup_group"]
    paired = (group[sources] >= 0) & (group[sources] == group[copies])
    injected_groups = set(group[sources][paired].tolist())
    conflicting = set(group[res.issues].tolist())
    flagged = np.flatnonzero(res.issues)
    hits = np.isin(flagged, copies).sum()
    return {
        "n": n, "d": d, "inject": 2 * inject, "index": index, "threshold": threshold, "n_probe": n_probe,
        "groups_found": int(paired.sum()), "extra_groups": len(conflicting - injected_groups),
        "precision": hits / max(1, flagged.size), "recall": hits / copies.size,
        "model_backs_source": float(np.mean(data.pred_probs[sources, data.labels[sources]]
                                            >= data.pred_probs[sources, data.labels[copies]])),
        "load_s": t_load, "time_s": wall, "cpu_s": cpu, "summary": {k: v for k, v in res.summary.items()
                                                                      if k != "groups"},
    }


def make_exact_file(n: int, inject: int, folder: str) -> None:
    """Write the exact-duplicates file (no embeddings) and what the measurement needs beside it."""
    import numpy as np  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    table, sources, copies = make_table(n, 8, 10, inject)
    table = table.drop_columns(["embedding"])
    src, dst = sources[:inject], copies[:inject]
    labels = table.column("label").to_numpy()
    probs = np.asarray(table.column("pred_probs").combine_chunks().flatten()).reshape(n, 10)
    pq.write_table(table, Path(folder) / "dups.parquet", row_group_size=min(n, 131_072))
    backs = float(np.mean(probs[src, labels[src]] >= probs[src, labels[dst]]))
    np.savez(Path(folder) / "truth.npz", src=src, dst=dst, backs=backs)


def child_exact(folder: str, engine: str, batch_size: int) -> dict:
    """Exact duplicates only, through the whole scan on ``engine`` (this process reads the file only)."""
    import numpy as np  # noqa: PLC0415

    sys.path.insert(0, str(ROOT))
    import labelqa  # noqa: PLC0415

    truth = np.load(Path(folder) / "truth.npz")
    src, dst = truth["src"], truth["dst"]
    t0, c0 = time.perf_counter(), time.process_time()
    flagged, groups = [], []
    with labelqa.scan(str(Path(folder) / "dups.parquet"), engine=engine, detectors="cl,dup", dup_cols=["text"],
                      batch_size=batch_size) as result:
        at = 0
        for batch in result.iter_issue_batches():
            g = batch.column("dup_group").to_numpy()
            groups.append(g)
            flagged.append(np.flatnonzero(batch.column("dup_issue").to_numpy(zero_copy_only=False)) + at)
            at += g.size
        summary = result.summary()["detectors"]["dup"]["summary"]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    group, flagged = np.concatenate(groups), np.concatenate(flagged)
    paired = (group[src] >= 0) & (group[src] == group[dst])
    hits = np.isin(flagged, dst).sum()
    return {
        "n": int(group.size), "inject": int(src.size), "engine": engine, "groups_found": int(paired.sum()),
        "extra_groups": int(summary["n_conflicting_groups"] - paired.sum()),
        "precision": hits / max(1, flagged.size), "recall": hits / src.size,
        "model_backs_source": float(truth["backs"]), "time_s": wall, "cpu_s": cpu,
    }


def exact_engines(args: argparse.Namespace, sizes: list[int]) -> None:
    """The table of --exact-engines: the file made once per size, each engine then in a fresh subprocess."""
    print(f"# bench_duplicates exact duplicates on {platform.node()} ({os.cpu_count()} cpus), "
          f"scan with cl,dup + one pass over the issues, batch size {args.batch_size:,}")
    print("| rows | engine | injected exact | groups found | extra groups | row P | row R | model backs source "
          "| scan + issues s | cpu s | peak RSS MB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            inject = args.inject or max(10, n // 1000)
            subprocess.run([sys.executable, __file__, "--make-exact", str(n), "--inject", str(inject),
                            "--folder", folder], check=True, env=env)
            for engine in args.exact_engines.split(","):
                cmd = [sys.executable, __file__, "--child-exact", folder, "--engine", engine,
                       "--batch-size", str(args.batch_size)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode:
                    print(f"| {n:,} | {engine} | failed: {proc.stderr.strip().splitlines()[-1]} |")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-2])
                rss = float(proc.stdout.strip().splitlines()[-1])
                print(f"| {n:,} | {engine} | {r['inject']:,} | {r['groups_found']:,} / {r['inject']:,} | "
                      f"{r['extra_groups']} | {r['precision']:.3f} | {r['recall']:.3f} | "
                      f"{r['model_backs_source']:.3f} | {r['time_s']:.1f} | {r['cpu_s']:.1f} | {rss:,.0f} |",
                      flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--quick", action="store_true", help="20k rows")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--inject", type=int, default=None, help="exact and near copies each (default N/1000)")
    ap.add_argument("--index", default="auto", choices=("auto", "sklearn", "faiss", "brute"))
    ap.add_argument("--threshold", type=float, default=0.98)
    ap.add_argument("--n-probe", type=int, default=32, help="cells searched per cell by the sklearn index")
    ap.add_argument("--exact-engines", default=None, help="e.g. memory,stream: exact duplicates through the scan")
    ap.add_argument("--batch-size", type=int, default=262_144, help="rows per batch of the stream engine")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-exact", help=argparse.SUPPRESS)
    ap.add_argument("--make-exact", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="memory", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_exact:
        make_exact_file(args.make_exact, args.inject, args.folder)
        return
    if args.child_exact:
        print(json.dumps(child_exact(args.child_exact, args.engine, args.batch_size)))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    if args.child:
        inject = args.inject or max(10, args.child // 1000)
        print(json.dumps(child(args.child, args.dim, inject, args.index, args.threshold, args.n_probe)))
        return
    sizes = [20000] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.exact_engines:
        exact_engines(args, sizes)
        return
    print(f"# bench_duplicates on {platform.node()} ({os.cpu_count()} cpus), D={args.dim}, index={args.index}, "
          f"threshold={args.threshold}, n_probe={args.n_probe}")
    print("| rows | injected | groups found | extra groups | row P | row R | model backs source | load s "
          "| detect s | cpu s | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--dim", str(args.dim), "--index", args.index,
               "--threshold", str(args.threshold), "--n-probe", str(args.n_probe)] + (["--inject", str(args.inject)] if args.inject else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode:
            print(f"| {n:,} | failed: {proc.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"| {n:,} | {r['inject']:,} | {r['groups_found']:,} / {r['inject']:,} | {r['extra_groups']} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {r['model_backs_source']:.3f} | {r['load_s']:.1f} | "
              f"{r['time_s']:.1f} | {r['cpu_s']:.1f} | {rss:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
