"""Speed, memory and agreement of labelqa's confident learning vs cleanlab.

For each size (N x K float32 probabilities, 10% of labels flipped; see
synthetic.py) it measures, each in a fresh subprocess:

  (a) labelqa API   ``labelqa.detectors.confident.find_label_issues(labels, pred_probs)``, and the same
                    call with ``filter_by="prune_by_noise_rate_plus"`` (the scan's default), in
                    its own process
  (b) cleanlab      ``cleanlab.filter.find_label_issues(labels, pred_probs)``,
                    default settings (n_jobs=None: physical cores with psutil,
                    else logical cores; multiprocessing pool)
  (c) labelqa CLI   ``labelqa scan FILE.parquet --out DIR -q``, end to end
                    (process start, imports, reading Parquet, writing reports),
                    with labelqa's bytecode compiled as after a regular install
  (d) I/O floor     ``benchmarks/io_floor.py``: the same file read and a 1M-row
                    issues.parquet + issues.csv written, no detection (a lower
                    bound for any pyarrow-based CLI on this machine)

Times of (a) and (b) cover the call only (data already in memory as int64
labels and a float32 (N, K) array; imports done). Peak RSS is the process's
high-water mark as reported by os.wait4 for that subprocess (so it includes
the interpreter, imports and the loaded inputs; for cleanlab, pool workers
are reported separately). "call +MB" is the resident-memory high-water mark
during the call minus resident memory just before it (VmHWM reset through
/proc/self/clear_refs).

Then, per filter method, it runs both libraries on the same data and reports
how many rows each flags and the Jaccard index of the flagged sets, plus the
largest difference of the label quality scores; and it checks the small toy
problem for identical results.

Run it in the benchmark environment (see benchmarks/README.md):
    .venv-bench/bin/python benchmarks/bench_confident.py            # full sizes
    .venv-bench/bin/python benchmarks/bench_confident.py --quick    # small sizes
    .venv-bench/bin/python benchmarks/bench_confident.py --sizes 1000000x100 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import CACHE_DIR, ROOT, compile_labelqa, ensure_dataset, load_arrays, truth_path  # noqa: E402

FULL_SIZES = "1000000x10,200000x100,1000000x100"
QUICK_SIZES = "20000x10,10000x100"
CLEANLAB_FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
SCORE_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")

TOY_PROBS = np.array(
    [[0.9, 0.1, 0.0], [0.6, 0.2, 0.2], [0.1, 0.0, 0.9]] + [[0.1, 0.8, 0.1]] * 6 + [[0.1, 0.1, 0.8]]
)
TOY_LABELS = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 2])

TARGET_API_SPEEDUP = 5.0  # at 1M x 100
TARGET_CLI_SPEEDUP = 3.0
TARGET_JACCARD = 0.99


# --------------------------------------------------------------------------- helpers
def cleanlab_default_n_jobs() -> int:
    """What cleanlab's find_label_issues picks for n_jobs=None on this machine."""
    try:
        import psutil  # noqa: PLC0415

        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return n or multiprocessing.cpu_count()


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_measured(cmd: list[str], timeout: float | None = None) -> dict:
    """Run cmd; return rc, wall seconds, peak RSS (MB, via wait4), stdout, stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "rc": proc.returncode,
            "wall": wall,
            "peak_mb": usage.ru_maxrss / 1024,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def labelqa_exe() -> str | None:
    here = Path(sys.executable).parent / "labelqa"
    if here.exists():
        return str(here)
    return shutil.which("labelqa")


def labelqa_filters() -> tuple[str, ...] | None:
    try:
        from labelqa.detectors.confident import FILTER_METHODS  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - not landed yet
        return None
    return tuple(FILTER_METHODS)


# --------------------------------------------------------------------------- worker side
def _lib_functions(lib: str):
    if lib == "labelqa":
        from labelqa.detectors.confident import find_label_issues, get_label_quality_scores
    elif lib == "cleanlab":
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    else:
        raise ValueError(lib)
    return find_label_issues, get_label_quality_scores


def worker(argv: list[str]) -> int:
    mode, lib, path = argv[0], argv[1], Path(argv[2])
    find, scores_fn = _lib_functions(lib)
    labels, probs = load_arrays(path)
    import resource  # noqa: PLC0415

    if mode == "time":
        options = {"filter_by": argv[3]} if len(argv) > 3 else {}
        rss_before = _status_kb("VmRSS")
        hwm_ok = _reset_hwm()
        t0 = time.perf_counter()
        mask = find(labels, probs, **options)
        seconds = time.perf_counter() - t0
        call_peak = _status_kb("VmHWM") if hwm_ok else 0
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps({
            "seconds": seconds,
            "n_flagged": int(np.count_nonzero(mask)),
            "rss_before_mb": rss_before / 1024,
            "call_extra_mb": (call_peak - rss_before) / 1024 if hwm_ok else None,
            "children_peak_mb": children / 1024,
        }))
        return 0

    if mode == "masks":
        out = Path(argv[3])
        filters = argv[4].split(",")
        arrays, seconds = {}, {}
        for fb in filters:
            t0 = time.perf_counter()
            try:
                mask = np.asarray(find(labels, probs, filter_by=fb), dtype=bool)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                print(f"{lib} filter_by={fb} failed: {exc!r}", file=sys.stderr)
                continue
            seconds[fb] = time.perf_counter() - t0
            arrays[f"mask_{fb}"] = mask
        for method in SCORE_METHODS:
            try:
                arrays[f"score_{method}"] = np.asarray(scores_fn(labels, probs, method=method), np.float64)
            except Exception as exc:  # noqa: BLE001
                print(f"{lib} score {method} failed: {exc!r}", file=sys.stderr)
        np.savez(out, **arrays)
        print(json.dumps({"seconds": seconds}))
        return 0
    raise ValueError(mode)


def call_worker(mode: str, lib: str, path: Path, *extra: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", mode, lib, str(path), *extra]
    res = run_measured(cmd)
    if res["rc"] != 0:
        tail = "\n".join(res["stderr"].strip().splitlines()[-5:])
        raise RuntimeError(f"{lib} {mode} failed (rc={res['rc']}):\n{tail}")
    last = res["stdout"].strip().splitlines()[-1]
    info = json.loads(last)
    info["peak_mb"] = res["peak_mb"]
    info["wall"] = res["wall"]
    return info


# --------------------------------------------------------------------------- harness side
def best_of(runs: list[dict], key: str) -> dict:
    return min(runs, key=lambda r: r[key])


def measure_size(n: int, k: int, args, filters: tuple[str, ...], have_labelqa: bool) -> dict:
    path = ensure_dataset(n, k, label_type=args.label_type)
    row: dict = {"n": n, "k": k, "path": path}
    log = lambda msg: print(f"[{n}x{k}] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    if not args.no_cleanlab:
        runs = [call_worker("time", "cleanlab", path) for _ in range(args.repeat)]
        row["cleanlab"] = best_of(runs, "seconds")
        log(f"cleanlab {row['cleanlab']['seconds']:.2f} s")
    if have_labelqa:
        try:
            runs, plus_runs = [], []
            for _ in range(args.repeat):  # interleaved: the machine's load hits both alike
                runs.append(call_worker("time", "labelqa", path))
                plus_runs.append(call_worker("time", "labelqa", path, "prune_by_noise_rate_plus"))
            row["api"] = best_of(runs, "seconds")
            row["api_plus"] = best_of(plus_runs, "seconds")
            log(f"labelqa API {row['api']['seconds']:.3f} s, plus rule {row['api_plus']['seconds']:.3f} s")
        except RuntimeError as exc:
            row["api_error"] = str(exc)
            log(str(exc))
    exe = labelqa_exe()
    if not args.no_cli and exe:
        compile_labelqa()  # bytecode as after a regular install (see synthetic.compile_labelqa)
        runs = []
        for _ in range(args.repeat):
            outdir = Path(tempfile.mkdtemp(prefix="cli-", dir=CACHE_DIR))
            res = run_measured([exe, "scan", str(path), "--out", str(outdir), "-q"])
            if res["rc"] != 0:
                row["cli_error"] = f"rc={res['rc']}: " + res["stderr"].strip()[-500:]
                shutil.rmtree(outdir, ignore_errors=True)
                break
            res["outdir"] = outdir
            runs.append(res)
        if runs:
            best = best_of(runs, "wall")
            row["cli"] = best
            row["cli_flags"] = read_cli_flags(best["outdir"], n)
            log(f"labelqa CLI {best['wall']:.2f} s")
        for r in runs:
            shutil.rmtree(r["outdir"], ignore_errors=True)
    elif not args.no_cli:
        row["cli_error"] = "labelqa executable not found"

    if not args.no_cli:
        floors = []
        for _ in range(args.repeat):
            outdir = Path(tempfile.mkdtemp(prefix="floor-", dir=CACHE_DIR))
            res = run_measured([sys.executable, str(Path(__file__).with_name("io_floor.py")), str(path), str(outdir)])
            shutil.rmtree(outdir, ignore_errors=True)
            if res["rc"] == 0:
                floors.append(res)
        if floors:
            row["floor"] = best_of(floors, "wall")
            log(f"I/O floor {row['floor']['wall']:.2f} s")

    if not args.no_jaccard and have_labelqa and not args.no_cleanlab:
        tmp = Path(tempfile.mkdtemp(prefix="masks-", dir=CACHE_DIR))
        try:
            joined = ",".join(filters)
            lq = call_worker("masks", "labelqa", path, str(tmp / "lq.npz"), joined)
            cl = call_worker("masks", "cleanlab", path, str(tmp / "cl.npz"), joined)
            labels, _ = load_arrays(path)
            true_errors = labels != np.load(truth_path(path))
            with np.load(tmp / "lq.npz") as a, np.load(tmp / "cl.npz") as b:
                a, b = dict(a), dict(b)
            row["agree"] = compare_outputs(a, b, lq["seconds"], cl["seconds"], true_errors)
            row["default_mask_lq"] = a.get("mask_prune_by_noise_rate")
            log("agreement done")
        except RuntimeError as exc:
            row["agree_error"] = str(exc)
            log(str(exc))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return row


def read_cli_flags(outdir: Path, n: int) -> np.ndarray | None:
    """is_label_issue from the CLI's issues.parquet as a row-ordered mask (None if unreadable)."""
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415

        t = pq.read_table(outdir / "issues.parquet", columns=["id", "is_label_issue"])
        ids = t.column("id").to_numpy()
        flags = t.column("is_label_issue").to_numpy(zero_copy_only=False).astype(bool)
        mask = np.zeros(n, dtype=bool)
        mask[ids[flags].astype(np.int64)] = True
        return mask
    except Exception:  # noqa: BLE001
        return None


def _precision(mask: np.ndarray | None, true_errors: np.ndarray) -> float | None:
    if mask is None or not mask.any():
        return None
    return float(np.count_nonzero(mask & true_errors) / np.count_nonzero(mask))


def compare_outputs(a: dict, b: dict, sec_a: dict, sec_b: dict, true_errors: np.ndarray) -> dict:
    out = {"filters": {}, "scores": {}}
    for key in dict.fromkeys([*a, *b]):  # filter order as run
        kind, name = key.split("_", 1)
        if kind == "mask":
            ma, mb = a.get(key), b.get(key)
            out["filters"][name] = {
                "lq_n": None if ma is None else int(ma.sum()),
                "cl_n": None if mb is None else int(mb.sum()),
                "jaccard": None if ma is None or mb is None else jaccard(ma, mb),
                "only_lq": None if ma is None or mb is None else int((ma & ~mb).sum()),
                "only_cl": None if ma is None or mb is None else int((mb & ~ma).sum()),
                "lq_s": sec_a.get(name),
                "cl_s": sec_b.get(name),
                "lq_prec": _precision(ma, true_errors),
                "cl_prec": _precision(mb, true_errors),
            }
        elif kind == "score":
            sa, sb = a.get(key), b.get(key)
            out["scores"][name] = None if sa is None or sb is None else float(np.abs(sa - sb).max())
    return out


def toy_check(filters: tuple[str, ...], have_labelqa: bool) -> list[tuple]:
    from cleanlab.filter import find_label_issues as cl_find  # noqa: PLC0415

    rows = []
    lq_find = None
    if have_labelqa:
        from labelqa.detectors.confident import find_label_issues as lq_find  # noqa: PLC0415
    for fb in filters:
        cl = np.flatnonzero(cl_find(TOY_LABELS, TOY_PROBS, filter_by=fb, n_jobs=1))
        if lq_find is None:
            rows.append((fb, None, cl.tolist(), None))
            continue
        try:
            lq = np.flatnonzero(lq_find(TOY_LABELS, TOY_PROBS, filter_by=fb)).tolist()
        except Exception as exc:  # noqa: BLE001
            lq = f"error: {exc!r}"
        rows.append((fb, lq, cl.tolist(), lq == cl.tolist()))
    return rows


def fmt(x, spec=".2f", none="n/a") -> str:
    return none if x is None else format(x, spec)


def print_report(rows: list[dict], toy: list[tuple], args, n_jobs: int) -> None:
    import cleanlab  # noqa: PLC0415

    try:
        from labelqa import __version__ as lq_version  # noqa: PLC0415
    except Exception:  # noqa: BLE001
        lq_version = "?"
    print("\n## labelqa vs cleanlab: confident learning\n")
    print(
        f"Machine: {platform.platform()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}; "
        f"numpy {np.__version__}; cleanlab {cleanlab.__version__} (default n_jobs -> {n_jobs}); "
        f"labelqa {lq_version}. Data: synthetic float32 probabilities, 10% labels flipped "
        f"(benchmarks/synthetic.py). Best of {args.repeat} run(s), each in a fresh process.\n"
    )
    print("### Speed and memory (default filter, prune_by_noise_rate)\n")
    print("| N x K | labelqa API s | labelqa API s, scan default (plus rule) | cleanlab s | labelqa CLI s (end to end) "
          "| I/O floor s | API speedup "
          "| CLI speedup | peak RSS MB API / cleanlab / CLI | call +MB API / cleanlab | flagged API / cleanlab / CLI |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        api, cl, cli = r.get("api"), r.get("cleanlab"), r.get("cli")
        t_floor = r.get("floor", {}).get("wall")
        t_api = api and api["seconds"]
        t_cl = cl and cl["seconds"]
        t_cli = cli and cli["wall"]
        sp_api = t_cl / t_api if t_api and t_cl else None
        sp_cli = t_cl / t_cli if t_cli and t_cl else None
        cli_n = None if r.get("cli_flags") is None else int(r["cli_flags"].sum())
        print(
            f"| {r['n']:,} x {r['k']} | {fmt(t_api, '.3f')} | {fmt(r.get('api_plus', {}).get('seconds'), '.3f')} "
            f"| {fmt(t_cl, '.3f')} | {fmt(t_cli, '.3f')} "
            f"| {fmt(t_floor, '.3f')} | {fmt(sp_api, '.1f')}{'x' if sp_api else ''} | {fmt(sp_cli, '.1f')}{'x' if sp_cli else ''} "
            f"| {fmt(api and api['peak_mb'], '.0f')} / {fmt(cl and cl['peak_mb'], '.0f')} / {fmt(cli and cli['peak_mb'], '.0f')} "
            f"| {fmt(api and api['call_extra_mb'], '.0f')} / {fmt(cl and cl['call_extra_mb'], '.0f')} "
            f"| {fmt(api and api['n_flagged'], 'd')} / {fmt(cl and cl['n_flagged'], 'd')} / {fmt(cli_n, 'd')} |"
        )
    notes = []
    for r in rows:
        for key in ("api_error", "cli_error", "agree_error"):
            if key in r:
                notes.append(f"- {r['n']}x{r['k']} {key}: {r[key]}")
        cl = r.get("cleanlab")
        if cl and cl.get("children_peak_mb"):
            notes.append(f"- {r['n']:,} x {r['k']}: cleanlab pool workers' peak RSS {cl['children_peak_mb']:.0f} MB "
                         f"each (forked; pages shared copy-on-write with the parent).")
        if r.get("cli_flags") is not None and r.get("default_mask_lq") is not None:
            j = jaccard(r["cli_flags"], r["default_mask_lq"])
            notes.append(f"- {r['n']:,} x {r['k']}: CLI is_label_issue vs API prune_by_noise_rate mask: Jaccard {j:.4f}.")
    if notes:
        print("\nNotes:\n" + "\n".join(notes))

    big = [r for r in rows if (r["n"], r["k"]) == (1_000_000, 100)] or rows[-1:]
    if big:
        r = big[0]
        t_api = r.get("api", {}).get("seconds")
        t_cl = r.get("cleanlab", {}).get("seconds")
        t_cli = r.get("cli", {}).get("wall")
        print(f"\nTargets (at {r['n']:,} x {r['k']}):")
        if not (t_cl and (t_api or t_cli)):
            print("- n/a: labelqa and cleanlab were not both measured")
        if t_api and t_cl:
            sp = t_cl / t_api
            print(f"- API >= {TARGET_API_SPEEDUP:g}x faster than cleanlab: {sp:.1f}x "
                  f"{'MET' if sp >= TARGET_API_SPEEDUP else 'NOT MET'}")
        if t_cli and t_cl:
            sp = t_cl / t_cli
            print(f"- CLI >= {TARGET_CLI_SPEEDUP:g}x faster than cleanlab's call alone: {sp:.1f}x "
                  f"{'MET' if sp >= TARGET_CLI_SPEEDUP else 'NOT MET'}")
            t_floor = r.get("floor", {}).get("wall")
            if t_floor:
                budget = t_cl / TARGET_CLI_SPEEDUP
                print(f"  (the target allows {budget:.2f} s end to end; reading the file and writing issues.parquet "
                      f"+ issues.csv alone, with no detection, takes {t_floor:.2f} s here = "
                      f"{t_cl / t_floor:.1f}x cleanlab: benchmarks/io_floor.py"
                      + ("; the target is below this machine's I/O floor)" if t_floor > budget else ")"))
                if t_api:
                    need = t_floor + t_api
                    print(f"  (I/O floor + labelqa's detector call = {need:.2f} s, "
                          f"{'above' if need > budget else 'within'} that budget; the CLI spends "
                          f"{t_cli - need:.2f} s more: interpreter and CLI imports beyond numpy/pyarrow, input "
                          f"checks, the summary, summary.md and report.html)")

    if any("agree" in r for r in rows):
        print("\n### Agreement per filter method (flagged sets)\n")
        print("| N x K | filter_by | labelqa flags | cleanlab flags | Jaccard | only labelqa | only cleanlab "
              "| labelqa s | cleanlab s | precision vs truth labelqa / cleanlab |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        worst = 1.0
        for r in rows:
            ag = r.get("agree")
            if not ag:
                continue
            for fb, f in ag["filters"].items():
                if f["jaccard"] is not None:
                    worst = min(worst, f["jaccard"])
                print(
                    f"| {r['n']:,} x {r['k']} | {fb} | {fmt(f['lq_n'], 'd')} | {fmt(f['cl_n'], 'd')} "
                    f"| {fmt(f['jaccard'], '.4f')} | {fmt(f['only_lq'], 'd')} | {fmt(f['only_cl'], 'd')} "
                    f"| {fmt(f['lq_s'], '.3f')} | {fmt(f['cl_s'], '.3f')} | {fmt(f['lq_prec'], '.3f')} / {fmt(f['cl_prec'], '.3f')} |"
                )
        print(f"\nWorst Jaccard: {worst:.4f} (target >= {TARGET_JACCARD}: "
              f"{'MET' if worst >= TARGET_JACCARD else 'NOT MET'})")
        print("\n### Label quality scores: max |labelqa - cleanlab|\n")
        print("| N x K | " + " | ".join(SCORE_METHODS) + " |")
        print("|---|" + "---|" * len(SCORE_METHODS))
        for r in rows:
            ag = r.get("agree")
            if ag:
                print(f"| {r['n']:,} x {r['k']} | " + " | ".join(fmt(ag["scores"].get(m), '.2e') for m in SCORE_METHODS) + " |")

    print("\n### Toy problem (10 rows, 3 classes): flagged row indices\n")
    print("| filter_by | labelqa | cleanlab | identical |")
    print("|---|---|---|---|")
    for fb, lq, cl, same in toy:
        print(f"| {fb} | {lq if lq is not None else 'n/a'} | {cl} | {'n/a' if same is None else ('yes' if same else 'NO')} |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        return worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help=f"comma-separated NxK (default {FULL_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"small sizes ({QUICK_SIZES})")
    parser.add_argument("--repeat", type=int, default=1, help="runs per timing; the best is reported")
    parser.add_argument("--label-type", choices=["int", "str"], default="int")
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--no-cleanlab", action="store_true")
    parser.add_argument("--no-jaccard", action="store_true", help="skip the per-filter agreement runs")
    parser.add_argument("--json", type=Path, default=None, help="also write raw numbers here")
    args = parser.parse_args(argv)

    sizes_arg = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in sizes_arg.split(",") if s]
    lq_filters = labelqa_filters()
    have_labelqa = lq_filters is not None
    if not have_labelqa:
        print("labelqa.detectors.confident not importable: measuring cleanlab only", file=sys.stderr)
    filters = tuple(f for f in (lq_filters or CLEANLAB_FILTERS) if f in CLEANLAB_FILTERS)
    missing = [f for f in CLEANLAB_FILTERS if f not in filters]
    if missing:
        print(f"filters cleanlab has but labelqa lacks: {missing}", file=sys.stderr)

    rows = [measure_size(n, k, args, filters, have_labelqa) for n, k in sizes]
    toy = [] if args.no_cleanlab else toy_check(filters, have_labelqa)
    print_report(rows, toy, args, cleanlab_default_n_jobs())
    if args.json:
        keep = ("seconds", "peak_mb", "call_extra_mb", "n_flagged", "wall", "children_peak_mb")
        raw = [
            {
                "n": r["n"], "k": r["k"],
                **{name: {k: v for k, v in r[name].items() if k in keep}
                   for name in ("api", "cleanlab", "cli") if name in r},
                "agree": r.get("agree"),
            }
            for r in rows
        ]
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
