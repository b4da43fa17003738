"""Probabilities from any model: which `labelqa train --model` finds injected label errors best, and how fast?

scikit-learn's bundled digits (1,797 x 64, 10 classes), wine (178 x 13, 3) and
breast-cancer (569 x 30, 2) datasets; 10% of the labels flipped uniformly to
another class (seeded; nothing downloaded). For each model, the out-of-sample
probabilities of ``labelqa train`` (``labelqa.train.crossval.cross_val_probs``,
5 stratified folds, fitted on the noisy labels) go to a default ``labelqa.scan``
(confident learning). Printed per dataset and model:

* F1 (and precision, recall) of the flagged rows against the injected errors;
* AP: average precision of the label-quality ranking (lower = more suspect);
* seconds to make the probabilities (best of the repeats) -- the scan itself
  takes milliseconds.

Models: ``logreg`` (C chosen by an inner cross-validation), ``hgb``, ``knn``,
``mlp`` (scikit-learn, no torch) and ``torch`` (the small torch model that
``labelqa train --cv-model torch`` used before this comparison; 30 epochs, 128
hidden units); ``logreg-c1``, the fixed ``C=1`` logistic regression ``logreg``
was before it chose C, on request (``--models logreg,logreg-c1``). Quality is the mean over
``--seeds`` noise seeds; time the best over them. Threads: ``--threads``
(default 1, as ``labelqa train``).

Usage:
    python benchmarks/quality_sklearn.py [--seeds 8] [--models logreg,hgb,knn,mlp,torch,logreg-c1] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import labelqa  # noqa: E402
from labelqa.train.crossval import cross_val_probs  # noqa: E402
from labelqa.train.sklearn_cv import cross_val_proba  # noqa: E402

DATASETS = ("digits", "wine", "breast_cancer")
MODELS = ("logreg", "hgb", "knn", "mlp", "torch")
#: Baselines run only when named in --models: the fixed C=1 logistic regression `logreg` was before it tuned C.
BASELINES = ("logreg-c1",)
NOISE = 0.10


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and true labels (int codes) of a scikit-learn bundled dataset."""
    from sklearn import datasets

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)


def inject(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Flip exactly round(10%) of the labels, each to a uniformly drawn other class."""
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    rows = rng.choice(len(y), int(round(NOISE * len(y))), replace=False)
    noisy[rows] = (y[rows] + rng.integers(1, k, rows.size)) % k
    return noisy


def probabilities(model: str, x: np.ndarray, noisy: np.ndarray, k: int, *, folds: int, seed: int,
                  threads: int) -> np.ndarray:
    """Out-of-sample probabilities of ``model`` (a ``labelqa train`` model or a baseline) on the noisy labels."""
    if model == "logreg-c1":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        c1 = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))
        return cross_val_proba(c1, x, noisy, k, folds=folds, seed=seed, threads=threads)
    return cross_val_probs(x, noisy, k, folds=folds, seed=seed, model=model, threads=threads)


def score(noisy: np.ndarray, truth: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """F1/precision/recall of the flagged rows and AP of the ranking, against the injected errors."""
    res = labelqa.scan(labels=noisy, pred_probs=probs)
    flagged = np.asarray(res.is_label_issue, dtype=bool)
    wrong = noisy != truth
    tp = int(np.sum(flagged & wrong))
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(wrong.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    quality = np.asarray(res.label_quality, dtype=np.float64)
    return {"f1": f1, "precision": precision, "recall": recall,
            "ap": float(average_precision_score(wrong, -quality)), "flagged": int(flagged.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=8, help="noise seeds 0..N-1 (quality: mean, time: best)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"of {', '.join(MODELS + BASELINES)}")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",")]
    print(f"load: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} CPUs; threads {args.threads}; "
          f"{args.folds} folds; {int(NOISE * 100)}% uniform noise; seeds 0..{args.seeds - 1}\n")
    print("| dataset | model | F1 | precision | recall | AP | seconds (best) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.datasets.split(","):
        x, truth = load(name)
        k = int(truth.max()) + 1
        for model in models:
            rows, times = [], []
            for seed in range(args.seeds):
                noisy = inject(truth, k, seed)
                t0 = time.perf_counter()
                probs = probabilities(model, x, noisy, k, folds=args.folds, seed=seed, threads=args.threads)
                times.append(time.perf_counter() - t0)
                rows.append(score(noisy, truth, probs))
                print(f"{name} {model} seed {seed}: {rows[-1]} {times[-1]:.2f}s", file=sys.stderr, flush=True)
            mean = {key: float(np.mean([r[key] for r in rows])) for key in ("f1", "precision", "recall", "ap")}
            print(f"| {name} | {model} | {mean['f1']:.3f} | {mean['precision']:.3f} | {mean['recall']:.3f} | "
                  f"{mean['ap']:.3f} | {min(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
