"""Detection quality on CIFAR-10N: real human label noise, out-of-sample probabilities.

For each file in --data-dir (cifar10n_*.parquet; see the README there) it
evaluates labelqa's confident learning against the ground truth
``label != true_label``:

- per filter method: precision, recall and F1 of the flagged set, the AP of
  the report's order (flagged rows first, then by self-confidence) and the
  ratio of the flagged count to the true number of errors
  (``prune_by_noise_rate_plus`` is labelqa's default, ``prune_by_noise_rate``
  cleanlab's);
- per label quality score method (lower = more suspect): AUROC and average
  precision (sklearn.metrics), and precision at the true number of errors
  (the T lowest-scoring rows, T = number of wrong labels).

``true_label`` is split off before any method is called: the detectors only
ever see ``label`` (as class codes) and ``pred_probs``. When cleanlab is
importable (the benchmark environment), its numbers are shown alongside.

The data files are read in place and never copied. When they are absent the
script prints "skipped: data not found" and exits 0.

Usage:
    .venv-bench/bin/python benchmarks/quality_cifar10n.py
    python benchmarks/quality_cifar10n.py --data-dir /path/to/cifar10n --no-cleanlab
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "cifar10n"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FILTERS_FALLBACK = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
# (method, adjust_pred_probs)
SCORE_VARIANTS = [
    ("self_confidence", False),
    ("normalized_margin", False),
    ("confidence_weighted_entropy", False),
    ("self_confidence", True),
    ("normalized_margin", True),
]


def load_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels codes, pred_probs (N, K) float32, is_error) -- truth kept apart from the inputs."""
    table = pq.read_table(path, columns=["id", "label", "pred_probs", "true_label"])
    truth = table.column("true_label").to_numpy(zero_copy_only=False).astype(str)
    table = table.drop_columns(["true_label"])  # ground truth never reaches a method
    col = table.column("pred_probs").combine_chunks()
    probs = col.flatten().to_numpy().reshape(len(col), -1)
    if probs.shape[1] != len(CLASSES):
        raise SystemExit(f"{path.name}: expected {len(CLASSES)} probability columns, got {probs.shape[1]}")
    names = np.array(CLASSES)
    order = np.argsort(names)
    given = table.column("label").to_numpy(zero_copy_only=False).astype(str)
    labels = order[np.searchsorted(names[order], given)]
    if not np.array_equal(names[labels], given):
        raise SystemExit(f"{path.name}: unknown class names in label column")
    is_error = given != truth
    return labels.astype(np.int64), probs, is_error


def prf(flags: np.ndarray, is_error: np.ndarray) -> tuple[float, float, float, int]:
    tp = int(np.count_nonzero(flags & is_error))
    n_flag = int(np.count_nonzero(flags))
    n_err = int(np.count_nonzero(is_error))
    p = tp / n_flag if n_flag else 0.0
    r = tp / n_err if n_err else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f, n_flag


def rank_metrics(scores: np.ndarray, is_error: np.ndarray) -> tuple[float, float, float]:
    suspicion = -np.asarray(scores, dtype=np.float64)  # lower score = more suspect
    auroc = roc_auc_score(is_error, suspicion)
    ap = average_precision_score(is_error, suspicion)
    t = int(np.count_nonzero(is_error))
    top = np.argsort(scores, kind="stable")[:t]
    p_at_t = float(np.count_nonzero(is_error[top]) / t) if t else 0.0
    return auroc, ap, p_at_t


def libraries(use_cleanlab: bool) -> dict:
    libs = {}
    try:
        from labelqa.detectors import confident as lq

        libs["labelqa"] = (lq.find_label_issues, lq.get_label_quality_scores, tuple(lq.CL_FILTER_METHODS))
    except Exception as exc:  # noqa: BLE001 - not landed yet / broken
        print(f"labelqa not importable ({exc!r}); ", end="", file=sys.stderr)
    if use_cleanlab:
        try:
            from cleanlab.filter import find_label_issues
            from cleanlab.rank import get_label_quality_scores

            libs["cleanlab"] = (
                lambda l, p, **kw: find_label_issues(l, p, n_jobs=1, **kw),
                get_label_quality_scores,
                FILTERS_FALLBACK,
            )
        except ImportError:
            pass
    return libs


def fmt(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def evaluate(path: Path, libs: dict) -> None:
    labels, probs, is_error = load_file(path)
    n, k = probs.shape
    n_err = int(is_error.sum())
    acc_given = float((probs.argmax(1) == labels).mean())
    print(f"\n### {path.name}\n")
    print(f"N={n}, K={k}, wrong labels {n_err} ({n_err / n:.2%}); argmax accuracy vs given labels {acc_given:.4f}\n")

    names = list(libs)
    filters = []
    for lib in names:
        filters += [f for f in libs[lib][2] if f not in filters]

    self_conf = probs[np.arange(n), labels].astype(np.float64)
    head = " | ".join(f"{lib} flagged | {lib} P | {lib} R | {lib} F1 | {lib} AP | {lib} count" for lib in names)
    print(f"| filter_by | {head} |")
    print("|---|" + "---|---|---|---|---|---|" * len(names))
    for fb in filters:
        cells = []
        for lib in names:
            find = libs[lib][0]
            if fb not in libs[lib][2]:
                cells.append("n/a | n/a | n/a | n/a | n/a | n/a")
                continue
            try:
                flags = np.asarray(find(labels, probs, filter_by=fb), dtype=bool)
            except Exception as exc:  # noqa: BLE001
                print(f"{lib} {fb} failed: {exc!r}", file=sys.stderr)
                cells.append("error | | | | |")
                continue
            p, r, f, nf = prf(flags, is_error)
            ap = average_precision_score(is_error, flags.astype(np.float64) * 2.0 - self_conf)  # report order
            cells.append(f"{nf} | {p:.3f} | {r:.3f} | {f:.3f} | {ap:.3f} | {nf / n_err:.2f}x")
        print(f"| {fb} | " + " | ".join(cells) + " |")

    print()
    head = " | ".join(f"{lib} AUROC | {lib} AP | {lib} P@T" for lib in names)
    print(f"| score method | {head} |")
    print("|---|" + "---|---|---|" * len(names))
    for method, adjust in SCORE_VARIANTS:
        cells = []
        for lib in names:
            score_fn = libs[lib][1]
            try:
                scores = score_fn(labels, probs, method=method, adjust_pred_probs=adjust)
            except Exception as exc:  # noqa: BLE001
                print(f"{lib} {method} adjust={adjust} failed: {exc!r}", file=sys.stderr)
                cells.append("error | |")
                continue
            auroc, ap, pat = rank_metrics(np.asarray(scores), is_error)
            cells.append(f"{auroc:.4f} | {ap:.4f} | {pat:.4f}")
        label = method + (" (adjusted)" if adjust else "")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n(P@T: precision among the T={n_err} lowest-scoring rows; filter AP: flagged rows first, then by "
          "self-confidence; count: flagged / true errors.)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--no-cleanlab", action="store_true", help="do not show cleanlab's numbers")
    args = parser.parse_args(argv)

    files = sorted(args.data_dir.glob("*.parquet")) if args.data_dir.is_dir() else []
    if not files:
        print(f"skipped: data not found ({args.data_dir})")
        return 0
    libs = libraries(not args.no_cleanlab)
    if "labelqa" not in libs:
        print("measuring cleanlab only" if libs else "nothing to measure", file=sys.stderr)
        if not libs:
            return 1
    print("## Label-error detection quality on CIFAR-10N\n")
    print("Ground truth: label != true_label. Libraries: " + ", ".join(libs)
          + " (cleanlab with n_jobs=1; results do not depend on it).")
    t0 = time.perf_counter()
    for path in files:
        evaluate(path, libs)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
