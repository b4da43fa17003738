"""How well does each flagging method find label errors, and how well does it count them?

For every dataset below it prints the average precision (AP,
sklearn.metrics; lower score = more suspect) of the two rankings, the
``self_confidence`` score (the default ``score_method``: every method's
``label_quality``, whatever ``filter_by`` is) and the normalized margin (what
the ``low_*margin*`` methods flag by), then for every ``filter_by`` method
compared precision, recall and F1 of the flagged rows, the AP of the report's
order (flagged rows first, then by self-confidence: the ``rank`` column) and
the ratio of the number of rows flagged to the true number of errors
("count"). ``prune_by_noise_rate_plus`` is labelqa's default,
``prune_by_noise_rate`` cleanlab's.

Datasets (ground truth kept apart from what the detectors see):

- CIFAR-10N (real human noise, ``aggre`` and ``worst``) with each of three
  models' out-of-sample probabilities, and the models combined into one
  matrix by ``labelqa.models.combine_pred_probs`` with equal-weight
  ``geometric`` pooling: resnet18+swin and all three (each method's rule on
  a fixed combined matrix; the several-models default, ``log_linear`` with the
  count floor of the scan, is measured by quality_multimodel.py). Read from
  --data-dir; skipped when absent.
- Synthetic noise injected into the CIFAR-10N true labels (uniform and
  pair-flip ``k -> k+1``, 10/20/40%, seed 0), scored with the resnet18 and
  swin probabilities (also skipped when the data are absent).
- Synthetic noise injected into scikit-learn's bundled digits, wine and
  breast-cancer datasets, with 5-fold cross-validated logistic-regression
  probabilities (``labelqa.train.crossval.cross_val_probs``) fitted on the
  noisy labels.

Usage:
    python benchmarks/quality_methods.py [--data-dir ../shared/data/cifar10n] [--skip-sklearn]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labelqa.detectors.confident import find_label_issues, get_label_quality_scores  # noqa: E402
from labelqa.models import combine_pred_probs  # noqa: E402
from labelqa.train.crossval import cross_val_probs  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "cifar10n"
CLASSES = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
#: How the rows of several models are pooled here (fixed, so every method sees the same matrix).
COMBINE = "geometric"
MODELS = {"resnet18": "resnet18", "resnet50d": "resnet50d", "swin": "swin_base_patch4_window7_224"}
METHODS = ("prune_by_noise_rate", "prune_by_noise_rate_plus", "low_normalized_margin", "low_margin_midpoint")
RATES = (0.1, 0.2, 0.4)
KINDS = ("uniform", "pair")


def read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label codes, pred_probs (N, K), true label codes) -- truth returned apart from the inputs."""
    table = pq.read_table(path, columns=["label", "pred_probs", "true_label"])
    col = table.column("pred_probs").combine_chunks()
    probs = col.flatten().to_numpy().reshape(len(col), -1)
    codes = [np.searchsorted(CLASSES, table.column(c).to_numpy(zero_copy_only=False).astype(str))
             for c in ("label", "true_label")]
    return codes[0].astype(np.int64), probs, codes[1].astype(np.int64)


def inject(true: np.ndarray, k: int, rate: float, kind: str, seed: int = 0) -> np.ndarray:
    """Exactly ``round(rate * N)`` rows flipped: uniformly to another class, or ``k -> k+1 mod K``."""
    rng = np.random.default_rng(seed)
    n = true.size
    idx = rng.choice(n, int(round(rate * n)), replace=False)
    given = true.copy()
    given[idx] = (true[idx] + (rng.integers(1, k, idx.size) if kind == "uniform" else 1)) % k
    return given


def average_precisions(labels: np.ndarray, probs: np.ndarray, is_error: np.ndarray) -> tuple[float, float]:
    """AP of the self-confidence and of the normalized-margin ranking."""
    return tuple(average_precision_score(is_error, -get_label_quality_scores(labels, probs, method=m))
                 for m in ("self_confidence", "normalized_margin"))  # type: ignore[return-value]


def report_order_ap(flags: np.ndarray, self_conf: np.ndarray, is_error: np.ndarray) -> float:
    """AP of the report's order: flagged rows first, each group by self-confidence (lowest first)."""
    return float(average_precision_score(is_error, flags.astype(np.float64) * 2.0 - self_conf))


def measure(labels: np.ndarray, probs: np.ndarray, is_error: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Per method: (P, R, F1, AP of the report's order, count ratio)."""
    out = {}
    n_err = int(is_error.sum())
    self_conf = get_label_quality_scores(labels, probs, method="self_confidence")
    for method in METHODS:
        flags = find_label_issues(labels, probs, filter_by=method)
        tp = int(np.count_nonzero(flags & is_error))
        n_flag = int(flags.sum())
        p = tp / n_flag if n_flag else 0.0
        r = tp / n_err if n_err else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[method] = (p, r, f, report_order_ap(flags, self_conf, is_error), n_flag / n_err if n_err else float("nan"))
    return out


def cifar_datasets(data_dir: Path):
    for noise in ("aggre", "worst"):
        paths = {m: data_dir / f"cifar10n_{noise}_{stem}.parquet" for m, stem in MODELS.items()}
        if not all(p.is_file() for p in paths.values()):
            continue
        read_out = {m: read(p) for m, p in paths.items()}
        labels, _, true = read_out["resnet18"]
        for m in MODELS:
            if not np.array_equal(read_out[m][0], labels):
                raise SystemExit(f"{noise}: the models' files do not hold the same labels in the same order")
        is_error = labels != true
        for m in MODELS:
            yield f"CIFAR-10N {noise}, {m}", labels, read_out[m][1], is_error
        for combo in (("resnet18", "swin"), tuple(MODELS)):
            probs = combine_pred_probs([read_out[m][1] for m in combo], COMBINE, labels=labels)
            yield f"CIFAR-10N {noise}, {'+'.join(combo)} ({COMBINE})", labels, probs, is_error


def cifar_synthetic(data_dir: Path):
    paths = {m: data_dir / f"cifar10n_aggre_{MODELS[m]}.parquet" for m in ("resnet18", "swin")}
    if not all(p.is_file() for p in paths.values()):
        return
    for m, path in paths.items():
        _, probs, true = read(path)
        for kind in KINDS:
            for rate in RATES:
                given = inject(true, CLASSES.size, rate, kind)
                yield f"CIFAR-10 true labels + {kind} {rate:.0%}, {m}", given, probs, given != true


def sklearn_synthetic():
    from sklearn import datasets

    for name in ("digits", "wine", "breast_cancer"):
        x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        k = int(y.max()) + 1
        for kind in KINDS:
            if kind == "pair" and k == 2:
                continue  # pair-flip is uniform noise with two classes
            for rate in RATES:
                if k == 2 and rate >= 0.4:
                    continue  # 40% flips of two classes leave too little signal to learn from
                given = inject(y, k, rate, kind)
                probs = cross_val_probs(x, given, k, seed=0)
                yield f"{name} + {kind} {rate:.0%}, logreg", given, probs, given != y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--skip-sklearn", action="store_true", help="only the CIFAR-10N datasets")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    names = list(METHODS)
    print("| dataset | errors | AP self-conf. / margin | " + " | ".join(f"{m} P / R / F1 / AP / count" for m in names)
          + " |")
    print("|---|---|---|" + "---|" * len(names))
    sources = [cifar_datasets(args.data_dir), cifar_synthetic(args.data_dir)]
    if not args.skip_sklearn:
        sources.append(sklearn_synthetic())
    wins: dict[str, list[float]] = {m: [] for m in names}
    synthetic: dict[str, list[bool]] = {m: [] for m in names}
    seen = 0
    for source in sources:
        for title, labels, probs, is_error in source:
            seen += 1
            res = measure(labels, probs, is_error)
            cells = [" / ".join(f"{v:.3f}" if i < 4 else f"{v:.2f}x" for i, v in enumerate(res[m])) for m in names]
            ap = average_precisions(labels, probs, is_error)
            print(f"| {title} | {int(is_error.sum())} | {ap[0]:.3f} / {ap[1]:.3f} | " + " | ".join(cells) + " |",
                  flush=True)
            for m in names:
                wins[m].append(res[m][2] - res["prune_by_noise_rate"][2])
                synthetic[m].append(not title.startswith("CIFAR-10N"))
    if not seen:
        print("skipped: no dataset found")
        return 0
    print()
    for m in names[1:]:
        d = np.array(wins[m])
        syn = d[np.array(synthetic[m], dtype=bool)]
        line = (f"{m}: F1 minus prune_by_noise_rate's: mean {d.mean():+.3f}, min {d.min():+.3f}, "
                f"better on {int((d > 0).sum())} of {d.size} datasets")
        if syn.size:
            line += f"; synthetic noise: mean {syn.mean():+.3f}, min {syn.min():+.3f} over {syn.size}"
        print(line)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
