"""Speed and memory of the Neural Relation Graph detector (labelqa.detectors.nrg).

Each measurement runs in a fresh subprocess that builds synthetic data
(clustered D-dim embeddings, K-class probabilities from a noisy linear
classifier, 10% of labels flipped uniformly; deterministic seed), then calls
``NeuralRelationGraph(nrg_mode=...).detect(data)``. Reported per size:

  time      wall time of ``detect`` only (validation + graph + refinement +
            outputs; data generation excluded): the best of --repeat runs,
            every run in brackets
  cpu       user + system CPU seconds of ``detect`` (all threads) in the best run
  peak RSS  the worker's high-water mark right after ``detect`` (getrusage
            RUSAGE_SELF): interpreter, generated inputs (the float32
            embeddings alone are 0.4 GB at 200k x 512, 2 GB at 1M) and the
            detector's working memory
  recall@k  kNN mode: the index's k neighbours against the exact k nearest,
            on 1,000 sampled rows (the index is run a second time for this)
  rho / flags same   with --compare: Spearman correlation of the NRG scores
            and the share of rows flagged alike, against the exact graph
            (``exact``) or the kNN graph on exact neighbours (``knn``), same data
  AUROC     of the NRG score against the injected flips (a sanity check)
  load avg  the 1-minute load average when the row was printed

Targets (issue 16): kNN 200k x 512 under 20 s and 1.2 GB, 1M x 512 under
2 minutes and 4 GB, on 2 cores; embeddings decoded as fast as probabilities
(--load). Timings are noisy when other processes share the cores: compare
the cpu column and the load average.

    python benchmarks/bench_nrg.py                                  # exact 10k, 50k; kNN 200k, 1M
    python benchmarks/bench_nrg.py --quick                          # exact 2k, kNN 20k
    python benchmarks/bench_nrg.py --sizes knn:200000 --repeat 3    # best of 3
    python benchmarks/bench_nrg.py --sizes knn:50000 --compare exact
    python benchmarks/bench_nrg.py --load 200000 --repeat 3         # labelqa.load with/without embeddings
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


def worker(mode: str, n: int, d: int, k: int, index: str, backend: str, k_neighbors: int | None,
           compare: str | None = None) -> None:
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
    if os.environ.get("BENCH_NRG_N_PROBE"):  # set by --n-probe
        kwargs["n_probe"] = int(os.environ["BENCH_NRG_N_PROBE"])
    det = NeuralRelationGraph(**kwargs)
    t0, c0 = time.perf_counter(), os.times()
    res = det.detect(data)
    wall, c1 = time.perf_counter() - t0, os.times()
    peak_detect = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    out = {
        "time": wall,
        "cpu": c1.user + c1.system - c0.user - c0.system,
        "peak_after_detect_mb": peak_detect,
        "auroc": float(roc_auc_score(flip, -res.scores)),
        "n_issues": res.n_issues,
        "n_flipped": int(flip.sum()),
        "index": res.summary.get("index", "-"),
        "backend": res.summary.get("backend", "-"),
        "k": res.summary.get("k_neighbors", "-"),
    }
    if mode == "knn" and index != "brute":
        out["recall"] = neighbour_recall(X, det, n_queries=1000)
    if compare:
        exact = NeuralRelationGraph(**{**kwargs, "nrg_mode": compare, "nrg_index": "brute"}).detect(data)
        from scipy.stats import spearmanr  # noqa: PLC0415

        out["rho"] = float(spearmanr(exact.scores, res.scores)[0])
        out["flag_agreement"] = float(np.mean(exact.issues == res.issues))
    print(json.dumps(out))


def neighbour_recall(X, det, n_queries: int) -> float:
    """Recall@k of the index's neighbours against exact ones, on n_queries sampled rows
    (exact: the queries' inner products with all rows, blocked)."""
    import numpy as np  # noqa: PLC0415

    from labelqa.detectors import nrg_backends as be  # noqa: PLC0415
    from labelqa.detectors.nrg import embedding_scales  # noqa: PLC0415

    n = len(X)
    F, scale = embedding_scales(X, n)
    nbrs, _, _ = be.knn_search(F, int(det.nrg_k), index=det.nrg_index, n_probe=int(det.n_probe),
                               seed=det.seed, row_scale=scale)
    q = np.random.default_rng(1).choice(n, min(n, n_queries), replace=False)
    Fq = F[q] * scale[q, None]
    k = nbrs.shape[1] - 1
    best_c = np.empty((q.size, 0), dtype=np.int64)
    best_v = np.empty((q.size, 0), dtype=np.float32)
    for r0 in range(0, n, 65536):  # running top-k over column blocks: memory of one block
        sims = Fq @ (F[r0 : r0 + 65536] * scale[r0 : r0 + 65536, None]).T
        own = (q >= r0) & (q < r0 + sims.shape[1])
        sims[np.flatnonzero(own), q[own] - r0] = -np.inf  # the row itself is not a neighbour
        cols = np.concatenate([best_c, np.broadcast_to(np.arange(r0, r0 + sims.shape[1]), sims.shape)], axis=1)
        vals = np.concatenate([best_v, sims], axis=1)
        part, best_v = be.topk_rows(vals, k)
        best_c = np.take_along_axis(cols, part, axis=1)
    exact = best_c
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nbrs[q, 1:].tolist(), exact.tolist())]))


def run_one(spec: str, d: int, k: int, index: str, backend: str, k_neighbors: int | None,
            compare: str | None = None) -> dict:
    mode, n = spec.split(":")
    cmd = [sys.executable, __file__, "_worker", mode, n, str(d), str(k), index, backend, str(k_neighbors or 0),
           compare or "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"mode": mode, "n": int(n), "error": proc.stderr.strip().splitlines()[-1:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(mode=mode, n=int(n))
    return out


def uptime() -> str:
    """The 1-minute load average, as ``uptime`` prints it."""
    return f"{os.getloadavg()[0]:.2f}"


def load_worker(path: str, with_embeddings: bool) -> None:
    """Time ``labelqa.load`` of ``path`` (fresh process) and print one JSON line."""
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    import labelqa  # noqa: PLC0415

    data = labelqa.load(path, embeddings_col="embedding") if with_embeddings else labelqa.load(path)
    wall = time.perf_counter() - t0
    values = data.pred_probs.size + (data.embeddings.size if data.embeddings is not None else 0)
    print(json.dumps({"time": wall, "values": int(values),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bench_load(n: int, d: int, k: int, repeat: int) -> None:
    """labelqa.load of a Parquet file (100k-row row groups, list<float32> columns) with and
    without its N x D embedding column: time per million decoded values."""
    import tempfile  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    X, P, y, _ = make_data(n, d, k)

    def lists(M):
        offsets = pa.array(np.arange(0, M.size + 1, M.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(M.reshape(-1)))

    with tempfile.TemporaryDirectory() as tmp:
        both, probs = os.path.join(tmp, "emb.parquet"), os.path.join(tmp, "probs.parquet")
        pq.write_table(pa.table({"label": y, "pred_probs": lists(P), "embedding": lists(X)}), both,
                       row_group_size=100_000)
        pq.write_table(pa.table({"label": y, "pred_probs": lists(P)}), probs, row_group_size=100_000)
        del X, P
        print(f"| labelqa.load | N | values decoded | best time (s) of {repeat} | s per 1e8 values | peak RSS (MB) | load avg |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, path, emb in (("probabilities only", probs, False), ("probabilities + embeddings", both, True)):
            runs = []
            for _ in range(repeat):
                proc = subprocess.run([sys.executable, __file__, "_load", path, str(int(emb))],
                                      capture_output=True, text=True, check=True)
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            best = min(runs, key=lambda r: r["time"])
            print(f"| {label} | {n:,} | {best['values']:,} | {best['time']:.2f} | "
                  f"{best['time'] / best['values'] * 1e8:.2f} | {max(r['peak_rss_mb'] for r in runs):.0f} | {uptime()} |",
                  flush=True)
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=FULL_SIZES, help="comma list of mode:N (mode exact or knn)")
    ap.add_argument("--quick", action="store_true", help=f"use {QUICK_SIZES}")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--index", default="auto", choices=["auto", "faiss", "sklearn", "brute"])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "torch", "auto"])
    ap.add_argument("--k-neighbors", type=int, default=None)
    ap.add_argument("--n-probe", type=int, default=None, help="n_probe of the sklearn index (default: the detector's)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size; the best time is shown")
    ap.add_argument("--compare", default=None, choices=["exact", "knn"],
                    help="also run the exact graph ('exact') or the kNN graph on exact neighbours ('knn', "
                         "index brute) on the same data: rank correlation of the scores and flag agreement")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="time labelqa.load of an N x D Parquet file with and without its embedding column")
    args = ap.parse_args()
    if args.n_probe:
        os.environ["BENCH_NRG_N_PROBE"] = str(args.n_probe)
    print(f"# NRG benchmark: D={args.dim}, K={args.classes}, index={args.index}, backend={args.backend}, "
          f"n_probe={args.n_probe or 'default'}")
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, load average {uptime()} at start")
    print()
    if args.load:
        bench_load(args.load, args.dim, args.classes, max(1, args.repeat))
        if not args.quick and args.sizes == FULL_SIZES:
            return
    sizes = QUICK_SIZES if args.quick else args.sizes
    print(f"| mode | N | index / backend | k | best detect time (s) of runs | detect CPU (s) | peak RSS (MB) "
          f"| recall@k | vs {args.compare or '-'}: rho / flags same | AUROC | flagged / flipped | load avg |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for spec in sizes.split(","):
        runs = []
        for i in range(max(1, args.repeat)):
            runs.append(run_one(spec.strip(), args.dim, args.classes, args.index, args.backend, args.k_neighbors,
                                args.compare if i == 0 else None))
        bad = [r for r in runs if "error" in r]
        if bad:
            print(f"| {bad[0]['mode']} | {bad[0]['n']} | error: {bad[0]['error']} | | | | | | | | | |", flush=True)
            continue
        r = min(runs, key=lambda x: x["time"])
        first = runs[0]
        eng = r["index"] if r["mode"] == "knn" else r["backend"]
        times = "/".join(f"{x['time']:.1f}" for x in runs)
        rec = f"{first['recall']:.3f}" if "recall" in first else "-"
        cmp = f"{first['rho']:.4f} / {first['flag_agreement']:.4f}" if "rho" in first else "-"
        print(
            f"| {r['mode']} | {r['n']:,} | {eng} | {r['k']} | {r['time']:.1f} ({times}) | {r['cpu']:.1f} "
            f"| {max(x['peak_after_detect_mb'] for x in runs):.0f} | {rec} | {cmp} | {r['auroc']:.3f} "
            f"| {r['n_issues']:,} / {r['n_flipped']:,} | {uptime()} |",
            flush=True,
        )
    print()
    print(f"# load average {uptime()} at end (other processes share the cores: timings are noisy)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        m, n, d, k, index, backend, kn, cmp = sys.argv[2:10]
        worker(m, int(n), int(d), int(k), index, backend, int(kn) or None, None if cmp == "-" else cmp)
    elif len(sys.argv) > 1 and sys.argv[1] == "_load":
        load_worker(sys.argv[2], sys.argv[3] == "1")
    else:
        main()
