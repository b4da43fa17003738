"""Speed and memory of the Neural Relation Graph detector (labelqa.detectors.nrg).

Each measurement runs in a fresh subprocess that builds synthetic data
(clustered D-dim embeddings, K-class probabilities from a noisy linear
classifier, 10% of labels flipped uniformly; deterministic seed), then calls
``NeuralRelationGraph(nrg_mode=...).detect(data)``. Reported per run:

  time      wall time of ``detect`` only (validation + L2 normalisation +
            graph + refinement + outputs); data generation excluded
  cpu       user + system CPU seconds of ``detect`` (all threads)
  peak RSS  the subprocess's high-water mark (resource.getrusage
            RUSAGE_CHILDREN ru_maxrss, read by the parent after the child
            exits): includes the interpreter, the generated inputs and the
            detector's working memory
  AUROC     of the NRG score against the injected flips (a sanity check)

Targets (issue): exact 50k x 512 under 60 s and under 2 GB peak RSS; kNN
1M x 512 under 30 minutes, on 2 cores. Timings are noisy when other
processes share the cores; the cpu column helps to tell.

    python benchmarks/bench_nrg.py                      # exact 10k, 50k; kNN 200k, 1M
    python benchmarks/bench_nrg.py --quick              # exact 2k, kNN 20k
    python benchmarks/bench_nrg.py --sizes exact:50000,knn:200000 --index sklearn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_SIZES = "exact:10000,exact:50000,knn:200000,knn:1000000"
QUICK_SIZES = "exact:2000,knn:20000"


def make_data(n: int, d: int, k: int, noise: float = 0.1, seed: int = 0):
    """Synthetic embeddings (float32, generated in row chunks), probabilities and labels."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    n_sub = 5
    centers = rng.normal(size=(k, d)).astype(np.float32)
    subs = centers[:, None, :] + 0.6 * rng.normal(size=(k, n_sub, d)).astype(np.float32)
    true = rng.integers(0, k, n)
    which = rng.integers(0, n_sub, n)
    X = np.empty((n, d), dtype=np.float32)
    P = np.empty((n, k), dtype=np.float32)
    step = 65536
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        x = subs[true[r0:r1], which[r0:r1]]
        x += rng.standard_normal((r1 - r0, d), dtype=np.float32) * np.float32(15.0 / np.sqrt(d))
        X[r0:r1] = x
        logits = x @ centers.T * np.float32(0.5 / np.sqrt(d)) + rng.standard_normal((r1 - r0, k), dtype=np.float32)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        P[r0:r1] = e / e.sum(axis=1, keepdims=True)
    flip = rng.random(n) < noise
    y = true.copy()
    y[flip] = (true[flip] + rng.integers(1, k, int(flip.sum()))) % k
    return X, P, y, flip


def worker(mode: str, n: int, d: int, k: int, index: str, backend: str, k_neighbors: int | None) -> None:
    """Run one measurement in this (fresh) process and print one JSON line."""
    import dataclasses  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    sys.path.insert(0, str(ROOT))
    from labelqa.data.model import LabelData  # noqa: PLC0415
    from labelqa.detectors.nrg import NeuralRelationGraph  # noqa: PLC0415

    X, P, y, flip = make_data(n, d, k)
    data = LabelData.from_arrays(y, P, renormalize=True)
    data = dataclasses.replace(data, embeddings=X)
    kwargs = {"nrg_mode": mode, "nrg_index": index, "nrg_backend": backend}
    if k_neighbors:
        kwargs["nrg_k"] = k_neighbors
    det = NeuralRelationGraph(**kwargs)
    t0, c0 = time.perf_counter(), os.times()
    res = det.detect(data)
    wall, c1 = time.perf_counter() - t0, os.times()
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    print(
        json.dumps(
            {
                "time": wall,
                "cpu": c1.user + c1.system - c0.user - c0.system,
                "auroc": float(roc_auc_score(flip, -res.scores)),
                "n_issues": res.n_issues,
                "n_flipped": int(flip.sum()),
                "index": res.summary.get("index", "-"),
                "backend": res.summary.get("backend", "-"),
                "k": res.summary.get("k_neighbors", "-"),
            }
        )
    )


def run_one(spec: str, d: int, k: int, index: str, backend: str, k_neighbors: int | None) -> dict:
    mode, n = spec.split(":")
    cmd = [sys.executable, __file__, "_worker", mode, n, str(d), str(k), index, backend, str(k_neighbors or 0)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    total = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        return {"mode": mode, "n": int(n), "error": proc.stderr.strip().splitlines()[-1:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # ru_maxrss of RUSAGE_CHILDREN is the max over all waited-for children so
    # far; sizes run in increasing order, so a smaller later child could be
    # masked: flag it.
    out.update(
        mode=mode, n=int(n), process_time=total, peak_rss_mb=peak_kb / 1024,
        rss_masked=peak_kb == before and before > 0,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=FULL_SIZES, help="comma list of mode:N (mode exact or knn)")
    ap.add_argument("--quick", action="store_true", help=f"use {QUICK_SIZES}")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--index", default="auto", choices=["auto", "faiss", "sklearn", "brute"])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "torch", "auto"])
    ap.add_argument("--k-neighbors", type=int, default=None)
    args = ap.parse_args()
    sizes = QUICK_SIZES if args.quick else args.sizes
    print(f"# NRG benchmark: D={args.dim}, K={args.classes}, index={args.index}, backend={args.backend}")
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print()
    print("| mode | N | index / backend | k | detect time (s) | detect CPU (s) | peak RSS (MB) | AUROC | flagged / flipped |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for spec in sizes.split(","):
        r = run_one(spec.strip(), args.dim, args.classes, args.index, args.backend, args.k_neighbors)
        if "error" in r:
            print(f"| {r['mode']} | {r['n']} | error: {r['error']} | | | | | | |", flush=True)
            continue
        eng = r["index"] if r["mode"] == "knn" else r["backend"]
        rss = f"{r['peak_rss_mb']:.0f}" + (" (masked)" if r["rss_masked"] else "")
        print(
            f"| {r['mode']} | {r['n']:,} | {eng} | {r['k']} | {r['time']:.1f} | {r['cpu']:.1f} | {rss} "
            f"| {r['auroc']:.3f} | {r['n_issues']:,} / {r['n_flipped']:,} |",
            flush=True,
        )
    print()
    print(f"# load average {os.getloadavg()[0]:.1f} at end (other processes share the cores: timings are noisy)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        m, n, d, k, index, backend, kn = sys.argv[2:9]
        worker(m, int(n), int(d), int(k), index, backend, int(kn) or None)
    else:
        main()
