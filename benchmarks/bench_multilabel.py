"""Speed, memory, agreement and quality of labelqa's multi-label confident
learning vs cleanlab 2.9's ``cleanlab.multilabel_classification``.

Data (generated, seeded, cached as .npy under ``<repo>/.bench-data/``):
true label sets with per-class priors between about 1% and 40%, per-class
probabilities ``sigmoid(+-margin + noise)`` from the TRUE sets (a model that
generalised; some rows are hard: small margins), float32; then about 10% of
the rows get 1-3 label changes, each a removal of a present label or an
addition of a missing one (half and half). The row is "noisy" when its given
set differs from its true set.

For each size, each measurement in a fresh subprocess (inputs loaded first,
imports done; the call alone is timed):

  labelqa        ``find_multilabel_issues(Y, P)`` (bool (N, K) indicator)
  cleanlab n=1   ``find_label_issues(labels, P, n_jobs=1)`` (list of lists)
  cleanlab def.  ``find_label_issues(labels, P)`` (n_jobs=None: its default pool)

Peak RSS is the subprocess's high-water mark (os.wait4: interpreter, imports,
inputs and the call). Then, per filter method, flags of both libraries on
the same data (Jaccard of the flagged row sets, counts, precision/recall vs
the injected noise; cleanlab n_jobs=1), the row scores (EMA 0.8, softmin 0.1)
of both with AUROC / average precision against the noisy rows, and the toy
problem of the issue (identical flags expected for every method).

Usage (cleanlab lives only in a separate venv, never a labelqa dependency):
    .venv-bench/bin/python benchmarks/bench_multilabel.py --quick
    .venv-bench/bin/python benchmarks/bench_multilabel.py            # 100k x 20, 1M x 50
    python benchmarks/bench_multilabel.py --no-cleanlab                         # labelqa only
Options: --sizes 100000x20, --repeat 3, --jaccard-methods all|default|none,
--no-jaccard-above N (skip per-method flags above N*K elements; default 2e7).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
CACHE_DIR = ROOT / ".bench-data"
FORMAT_VERSION = 1
CHUNK_ROWS = 100_000

FULL_SIZES = "100000x20,1000000x50"
QUICK_SIZES = "20000x10,100000x20"
METHODS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_self_confidence",
    "low_normalized_margin",
)
TOY_PROBS = np.array(
    [[0.9, 0.1, 0.0, 0.4], [0.7, 0.8, 0.2, 0.3], [0.9, 0.8, 0.4, 0.2], [0.1, 0.1, 0.8, 0.3], [0.4, 0.5, 0.1, 0.1]]
)
TOY_LABELS = [[0], [0, 1], [0, 1], [2], [0, 2, 3]]
TARGET_SPEEDUP = 10.0  # at 100k x 20
TARGET_JACCARD = 0.99


# --------------------------------------------------------------------------- data
def make_synthetic(
    n: int, k: int, *, noise_rows: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(given (N, K) bool, true (N, K) bool, pred_probs (N, K) float32).

    Vectorised, in row chunks; deterministic for (n, k, seed).
    """
    rng = np.random.default_rng([seed, n, k, 7])
    prior = np.clip(np.exp(rng.normal(np.log(0.08), 0.9, size=k)), 0.01, 0.4)
    # per-class model quality: some classes are harder than others
    class_margin = rng.uniform(3.0, 5.0, size=k)
    true = np.empty((n, k), dtype=bool)
    probs = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(n, start + CHUNK_ROWS)
        m = stop - start
        t = rng.random((m, k), dtype=np.float32) < prior
        difficulty = rng.gamma(4.0, 0.25, size=(m, 1)).astype(np.float32)  # mean 1, some hard rows
        margin = class_margin.astype(np.float32) * difficulty
        z = np.where(t, margin, -margin) + rng.normal(0.0, 1.2, size=(m, k)).astype(np.float32)
        probs[start:stop] = 1.0 / (1.0 + np.exp(-z))
        true[start:stop] = t
    given = true.copy()
    n_noisy = int(round(noise_rows * n))
    rows = np.sort(rng.choice(n, size=n_noisy, replace=False))
    n_changes = rng.choice([1, 2, 3], size=n_noisy, p=[0.7, 0.25, 0.05])
    touched = np.zeros((n_noisy, k), dtype=bool)
    for step in range(3):
        act = np.flatnonzero(n_changes > step)
        cur = given[rows[act]]
        free = ~touched[act]
        remove = rng.random(act.size) < 0.5
        can_remove = (cur & free).any(axis=1)
        remove = np.where(can_remove, remove, False)
        pool = np.where(remove[:, None], cur & free, ~cur & free)
        # a random class from the pool: argmax of uniform noise on the pool
        pick = np.argmax(rng.random(pool.shape) * pool, axis=1)
        ok = pool[np.arange(act.size), pick]
        act, pick = act[ok], pick[ok]
        given[rows[act], pick] = ~given[rows[act], pick]
        touched[act, pick] = True
    return given, true, probs


def dataset_paths(n: int, k: int, seed: int = 0) -> dict[str, Path]:
    tag = f"ml_v{FORMAT_VERSION}_n{n}_k{k}_seed{seed}"
    return {name: CACHE_DIR / f"{tag}_{name}.npy" for name in ("given", "true", "probs")}


def ensure_dataset(n: int, k: int, seed: int = 0) -> dict[str, Path]:
    paths = dataset_paths(n, k, seed)
    if not all(p.exists() for p in paths.values()):
        t0 = time.perf_counter()
        given, true, probs = make_synthetic(n, k, seed=seed)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        for name, arr in (("given", given), ("true", true), ("probs", probs)):
            tmp = paths[name].with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, paths[name])
        print(f"generated {n}x{k} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return paths


def to_lists(y: np.ndarray) -> list[list[int]]:
    """Indicator matrix -> list of label lists (cleanlab's input format)."""
    r, c = np.nonzero(y)
    splits = np.cumsum(np.count_nonzero(y, axis=1))[:-1]
    return [a.tolist() for a in np.split(c, splits)]


# --------------------------------------------------------------------------- measuring
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def run_measured(cmd: list[str]) -> dict:
    """Run cmd; rc, wall seconds, peak RSS MB (os.wait4), stdout, stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {
            "rc": os.waitstatus_to_exitcode(status),
            "wall": wall,
            "peak_mb": usage.ru_maxrss / 1024,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def worker(argv: list[str]) -> int:
    """``_worker MODE LIB N K [OUT METHODS]`` in a fresh process."""
    import warnings

    warnings.simplefilter("ignore")
    mode, lib, n, k = argv[0], argv[1], int(argv[2]), int(argv[3])
    paths = dataset_paths(n, k)
    given = np.load(paths["given"])
    probs = np.load(paths["probs"])
    if lib.startswith("cleanlab"):
        from cleanlab.multilabel_classification.filter import find_label_issues as cl_find
        from cleanlab.multilabel_classification.rank import get_label_quality_scores as cl_scores

        labels = to_lists(given)
        n_jobs = 1 if lib == "cleanlab1" else None

        def find(method: str) -> np.ndarray:
            return np.asarray(cl_find(labels, probs, filter_by=method, n_jobs=n_jobs), dtype=bool)

        def scores(agg: str) -> np.ndarray:
            kw = {"method": "exponential_moving_average", "alpha": 0.8} if agg == "ema" else {
                "method": "softmin", "temperature": 0.1}
            return np.asarray(cl_scores(labels, probs, aggregator_kwargs=kw), dtype=np.float64)
    else:
        from labelqa.detectors.multilabel import find_multilabel_issues, get_multilabel_quality_scores

        def find(method: str) -> np.ndarray:
            return find_multilabel_issues(given, probs, filter_by=method).issues

        def scores(agg: str) -> np.ndarray:
            return get_multilabel_quality_scores(given, probs, aggregation=agg)

    if mode == "time":
        rss_before = _status_kb("VmRSS")
        t0 = time.perf_counter()
        mask = find("prune_by_noise_rate")
        seconds = time.perf_counter() - t0
        import resource

        print(json.dumps({
            "seconds": seconds,
            "n_flagged": int(mask.sum()),
            "rss_before_mb": rss_before / 1024,
            "children_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }))
        return 0
    if mode == "outputs":
        out, methods = Path(argv[4]), [m for m in argv[5].split(",") if m]
        arrays, seconds = {}, {}
        for method in methods:
            t0 = time.perf_counter()
            try:
                arrays[f"mask_{method}"] = find(method)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                print(f"{lib} {method} failed: {exc!r}", file=sys.stderr)
                continue
            seconds[method] = time.perf_counter() - t0
        for agg in ("ema", "softmin"):
            t0 = time.perf_counter()
            arrays[f"score_{agg}"] = scores(agg)
            seconds[f"score_{agg}"] = time.perf_counter() - t0
        np.savez(out, **arrays)
        print(json.dumps({"seconds": seconds}))
        return 0
    raise ValueError(mode)


def call_worker(python: str, *args: str) -> dict:
    res = run_measured([python, str(Path(__file__).resolve()), "_worker", *args])
    if res["rc"] != 0:
        tail = "\n".join(res["stderr"].strip().splitlines()[-6:])
        raise RuntimeError(f"worker {args[:2]} failed (rc={res['rc']}):\n{tail}")
    info = json.loads(res["stdout"].strip().splitlines()[-1])
    info["peak_mb"] = res["peak_mb"]
    return info


# --------------------------------------------------------------------------- metrics
def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def auroc_ap(score: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    """AUROC and average precision of ``-score`` (low score = suspect) for the noisy rows."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(roc_auc_score(noisy, -score)), float(average_precision_score(noisy, -score))


def prec_rec(mask: np.ndarray, noisy: np.ndarray) -> tuple[float | None, float]:
    hit = np.count_nonzero(mask & noisy)
    prec = hit / np.count_nonzero(mask) if mask.any() else None
    return prec, hit / max(1, np.count_nonzero(noisy))


def fmt(x, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


# --------------------------------------------------------------------------- harness
def cleanlab_python(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [sys.executable, "/work/.venv-cleanlab/bin/python",
                                              str(ROOT / ".venv-bench" / "bin" / "python")]
    for py in candidates:
        if py and Path(py).exists():
            rc = subprocess.run([py, "-c", "import cleanlab"], capture_output=True).returncode
            if rc == 0:
                return py
    return None


def toy_check(py: str) -> list[tuple]:
    code = (
        "import json, warnings, numpy as np; warnings.simplefilter('ignore');"
        "from cleanlab.multilabel_classification.filter import find_label_issues as f;"
        f"P=np.array({TOY_PROBS.tolist()}); L={TOY_LABELS};"
        f"print(json.dumps({{m: np.flatnonzero(f(L, P, filter_by=m, n_jobs=1)).tolist() for m in {list(METHODS)}}}))"
    )
    cl = json.loads(subprocess.run([py, "-c", code], capture_output=True, text=True, check=True).stdout)
    from labelqa.detectors.multilabel import find_multilabel_issues

    rows = []
    for m in METHODS:
        lq = np.flatnonzero(find_multilabel_issues(TOY_LABELS, TOY_PROBS, filter_by=m).issues).tolist()
        rows.append((m, lq, cl[m], lq == cl[m]))
    return rows


def measure(n: int, k: int, args, py_cl: str | None) -> dict:
    log = lambda msg: print(f"[{n}x{k}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    ensure_dataset(n, k)
    row: dict = {"n": n, "k": k}
    libs = [("labelqa", sys.executable)]
    if py_cl:
        libs += [("cleanlab1", py_cl), ("cleanlab", py_cl)]
    for lib, py in libs:
        runs = []
        for _ in range(args.repeat):
            try:
                runs.append(call_worker(py, "time", lib, str(n), str(k)))
            except RuntimeError as exc:
                row[f"{lib}_error"] = str(exc)
                log(str(exc))
                break
        if runs:
            row[lib] = min(runs, key=lambda r: r["seconds"])
            log(f"{lib}: {row[lib]['seconds']:.2f} s, peak {row[lib]['peak_mb']:.0f} MB")

    methods = {"all": list(METHODS), "default": ["prune_by_noise_rate"], "none": []}[args.jaccard_methods]
    if n * k > args.no_jaccard_above:
        methods = methods[:1]
    tmp = Path(tempfile.mkdtemp(prefix="ml-", dir=CACHE_DIR))
    try:
        outs = {}
        for lib, py in [("labelqa", sys.executable)] + ([("cleanlab1", py_cl)] if py_cl else []):
            info = call_worker(py, "outputs", lib, str(n), str(k), str(tmp / f"{lib}.npz"), ",".join(methods))
            with np.load(tmp / f"{lib}.npz") as z:
                outs[lib] = (dict(z), info["seconds"])
            log(f"{lib} outputs done")
    finally:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
    paths = dataset_paths(n, k)
    given, true = np.load(paths["given"]), np.load(paths["true"])
    noisy = (given != true).any(axis=1)
    row["noise"] = {
        "noisy_rows": int(noisy.sum()),
        "removals": int((given < true).sum()),
        "additions": int((given > true).sum()),
        "mean_labels": float(given.sum(axis=1).mean()),
    }
    row["outputs"] = outs
    row["noisy"] = noisy
    row["methods"] = methods
    return row


def report(rows: list[dict], toy: list[tuple] | None, args, py_cl: str | None) -> None:
    cl_version = "not available"
    if py_cl:
        cl_version = subprocess.run([py_cl, "-c", "import cleanlab; print(cleanlab.__version__)"],
                                    capture_output=True, text=True).stdout.strip()
    print("\n## labelqa vs cleanlab: multi-label confident learning\n")
    print(f"Machine: {platform.platform()}, {os.cpu_count()} logical CPUs (shared), Python "
          f"{platform.python_version()}, numpy {np.__version__}; cleanlab {cl_version}. Synthetic data "
          "(benchmarks/bench_multilabel.py: float32 sigmoid probabilities from the true sets, 10% of rows "
          f"with 1-3 injected removals/additions). Best of {args.repeat} run(s), each in a fresh process; "
          "times are the call alone (prune_by_noise_rate).\n")
    print("### Speed and memory\n")
    print("| N x K | labelqa s | cleanlab n_jobs=1 s | cleanlab default s | speedup vs n_jobs=1 | speedup vs default "
          "| peak RSS MB labelqa / cl n_jobs=1 / cl default | rows flagged labelqa / cleanlab |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lq, c1, cd = r.get("labelqa"), r.get("cleanlab1"), r.get("cleanlab")
        t = lambda x: x and x["seconds"]  # noqa: E731
        sp1 = t(c1) / t(lq) if lq and c1 else None
        spd = t(cd) / t(lq) if lq and cd else None
        print(f"| {r['n']:,} x {r['k']} | {fmt(t(lq))} | {fmt(t(c1))} | {fmt(t(cd))} "
              f"| {fmt(sp1, '.1f')}x | {fmt(spd, '.1f')}x "
              f"| {fmt(lq and lq['peak_mb'], '.0f')} / {fmt(c1 and c1['peak_mb'], '.0f')} / {fmt(cd and cd['peak_mb'], '.0f')} "
              f"| {fmt(lq and lq['n_flagged'], 'd')} / {fmt(c1 and c1['n_flagged'], 'd')} |")
    for r in rows:
        for key in [k for k in r if k.endswith("_error")]:
            print(f"\n- {r['n']}x{r['k']} {key}: {r[key]}")
        cd = r.get("cleanlab")
        if cd and cd.get("children_peak_mb"):
            print(f"\n- {r['n']:,} x {r['k']}: cleanlab default pool workers' peak RSS "
                  f"{cd['children_peak_mb']:.0f} MB (largest worker).")

    for r in rows:
        noisy = r["noisy"]
        nz = r["noise"]
        print(f"\n### {r['n']:,} x {r['k']}: flags per method (vs cleanlab n_jobs=1) and against the injected noise\n")
        print(f"{nz['noisy_rows']:,} noisy rows ({nz['noisy_rows'] / r['n']:.1%}): {nz['removals']:,} labels removed, "
              f"{nz['additions']:,} added; {nz['mean_labels']:.2f} given labels per row.\n")
        lq, lq_s = r["outputs"]["labelqa"]
        cl, cl_s = r["outputs"].get("cleanlab1", ({}, {}))
        print("| method | rows labelqa | rows cleanlab | Jaccard | only labelqa | only cleanlab "
              "| precision / recall labelqa | precision / recall cleanlab | s labelqa / cleanlab |")
        print("|---|---|---|---|---|---|---|---|---|")
        for m in r["methods"]:
            a, b = lq.get(f"mask_{m}"), cl.get(f"mask_{m}")
            pa, ra = prec_rec(a, noisy) if a is not None else (None, None)
            pb, rb = prec_rec(b, noisy) if b is not None else (None, None)
            both = a is not None and b is not None
            print(f"| {m} | {fmt(a is not None and int(a.sum()), 'd')} | {fmt(b is not None and int(b.sum()) if b is not None else None, 'd')} "
                  f"| {fmt(jaccard(a, b) if both else None, '.4f')} | {fmt(int((a & ~b).sum()) if both else None, 'd')} "
                  f"| {fmt(int((b & ~a).sum()) if both else None, 'd')} | {fmt(pa)} / {fmt(ra)} | {fmt(pb)} / {fmt(rb)} "
                  f"| {fmt(lq_s.get(m), '.2f')} / {fmt(cl_s.get(m), '.2f')} |")
        print("\n| row score | AUROC labelqa | AP labelqa | AUROC cleanlab | AP cleanlab | max abs diff | s labelqa / cleanlab |")
        print("|---|---|---|---|---|---|---|")
        for agg, label in (("ema", "EMA alpha 0.8"), ("softmin", "softmin T 0.1")):
            sa, sb = lq[f"score_{agg}"], cl.get(f"score_{agg}")
            a_auc, a_ap = auroc_ap(sa, noisy)
            b_auc, b_ap = auroc_ap(sb, noisy) if sb is not None else (None, None)
            diff = float(np.abs(sa - sb).max()) if sb is not None else None
            print(f"| {label} | {a_auc:.4f} | {a_ap:.4f} | {fmt(b_auc, '.4f')} | {fmt(b_ap, '.4f')} | {fmt(diff, '.2e')} "
                  f"| {fmt(lq_s.get('score_' + agg), '.2f')} / {fmt(cl_s.get('score_' + agg), '.2f')} |")

    if toy is not None:
        print("\n### Toy problem of the issue (5 rows, 4 classes; flagged rows)\n")
        print("| method | labelqa | cleanlab | identical |")
        print("|---|---|---|---|")
        for m, a, b, same in toy:
            print(f"| {m} | {a} | {b} | {'yes' if same else '**no**'} |")

    print("\n### Targets\n")
    for r in rows:
        lq, c1 = r.get("labelqa"), r.get("cleanlab1")
        if (r["n"], r["k"]) == (100_000, 20) and lq and c1:
            sp = c1["seconds"] / lq["seconds"]
            print(f"- speed at 100k x 20: {sp:.1f}x vs cleanlab n_jobs=1 (target >= {TARGET_SPEEDUP:.0f}x): "
                  f"{'met' if sp >= TARGET_SPEEDUP else 'NOT met'}")
        lqo, clo = r["outputs"]["labelqa"][0], r["outputs"].get("cleanlab1", ({}, {}))[0]
        js = [jaccard(lqo[f"mask_{m}"], clo[f"mask_{m}"]) for m in r["methods"]
              if f"mask_{m}" in lqo and f"mask_{m}" in clo]
        if js:
            print(f"- Jaccard at {r['n']:,} x {r['k']}: min {min(js):.4f} over {len(js)} method(s) "
                  f"(target >= {TARGET_JACCARD}): {'met' if min(js) >= TARGET_JACCARD else 'NOT met'}")
    if toy is not None:
        print(f"- toy: identical for {sum(t[3] for t in toy)}/{len(toy)} methods")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        return worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help=f"comma-separated NxK (default {FULL_SIZES})")
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--no-cleanlab", action="store_true")
    p.add_argument("--cleanlab-python", default=None, help="interpreter with cleanlab installed")
    p.add_argument("--jaccard-methods", choices=["all", "default", "none"], default="all")
    p.add_argument("--no-jaccard-above", type=float, default=2e7,
                   help="above this many N*K elements compare only the default method")
    args = p.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    py_cl = None if args.no_cleanlab else cleanlab_python(args.cleanlab_python)
    if not args.no_cleanlab and py_cl is None:
        print("cleanlab not found: labelqa only (see benchmarks/README.md)", file=sys.stderr)
    rows = []
    for spec in sizes.split(","):
        n, k = (int(float(x)) for x in spec.lower().split("x"))
        rows.append(measure(n, k, args, py_cl))
    toy = toy_check(py_cl) if py_cl else None
    report(rows, toy, args, py_cl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
