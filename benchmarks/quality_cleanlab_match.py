"""Does labelqa's "cleanlab's default" flag exactly cleanlab 2.9's rows? Needs the benchmark venv.

Compares ``labelqa.detectors.confident.find_label_issues`` with
``cleanlab.filter.find_label_issues`` (n_jobs=1) on the same labels and
probabilities:

- random problems (K = 3 to 200, 20-40% noise), for prune_by_noise_rate,
  prune_by_class and both, frac_noise 1 / 0.7 / 0.3 / 0.5, and
  min_examples_per_class 0 / 1 / 5 / 30 / 90 (90 is close to the class
  sizes of K=30 and K=4: there labelqa keeps min_examples rows of each class
  unflagged, cleanlab does not for the union of a class's cells -- the one
  expected difference, docs/detection.md);
- digits with 10% uniform noise and 5-fold logistic-regression probabilities;
- one large problem, N x K = --large (default 200000 x 1000), float32.

Prints, per case that differs, the rows that differ and the Jaccard index of
the two flag sets, then a summary line per group.

Usage:
    bash benchmarks/setup_env.sh && .venv-bench/bin/python benchmarks/quality_cleanlab_match.py
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labelqa.detectors.confident import find_label_issues as labelqa_find  # noqa: E402


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def problem(n: int, k: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += rng.uniform(0, 4, n)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    s = y.copy()
    flip = rng.random(n) < noise
    s[flip] = rng.integers(0, k, int(flip.sum()))
    return s, p


def compare(s, p, cleanlab_find, **kw) -> tuple[int, float, int, int]:
    a = np.asarray(cleanlab_find(s, p, n_jobs=1, **kw), dtype=bool)
    b = labelqa_find(s, p, **kw)
    return int((a != b).sum()), jaccard(a, b), int(a.sum()), int(b.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", default="200000x1000", help="N x K of the large problem ('0x0' to skip)")
    args = parser.parse_args(argv)
    try:
        from cleanlab.filter import find_label_issues as cleanlab_find
    except ImportError:
        print("skipped: cleanlab is not installed (bash benchmarks/setup_env.sh)")
        return 0
    warnings.filterwarnings("ignore")
    print("| case | differing rows | Jaccard | cleanlab flagged | labelqa flagged |")
    print("|---|---:|---:|---:|---:|")
    cases = differing = expected = 0
    for n, k, noise in [(300, 3, 0.2), (400, 4, 0.4), (2000, 10, 0.2), (3000, 30, 0.4), (5000, 50, 0.2),
                        (20000, 200, 0.2)]:
        for seed in range(3):
            s, p = problem(n, k, seed, noise)
            for fb in ("prune_by_noise_rate", "prune_by_class", "both"):
                for frac in (1.0, 0.7, 0.5, 0.3):
                    for mn in (0, 1, 5, 30, 90):
                        if k >= 50 and (fb != "prune_by_noise_rate" or mn in (0, 30, 90) or frac in (0.7, 0.3)):
                            continue  # keep the run short on the larger problems
                        cases += 1
                        d, j, na, nb = compare(s, p, cleanlab_find, filter_by=fb, frac_noise=frac,
                                               min_examples_per_class=mn)
                        if d:
                            differing += 1
                            expected += mn >= 90
                            print(f"| {n} x {k} seed {seed}, {fb}, frac {frac}, min {mn} | {d} | {j:.4f} | {na} | "
                                  f"{nb} |")
    print(f"\nrandom problems: {differing} of {cases} cases differ, {expected} of them with "
          "min_examples_per_class near the class sizes")
    from sklearn import datasets

    from labelqa.train.crossval import cross_val_probs

    x, y = datasets.load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    s = y.copy()
    flip = rng.random(y.size) < 0.1
    s[flip] = (y[flip] + rng.integers(1, 10, int(flip.sum()))) % 10
    d, j, na, nb = compare(s, cross_val_probs(x, s, 10, seed=0), cleanlab_find)
    print(f"digits, 10% noise, logistic regression: {d} rows differ (Jaccard {j:.4f}; {na} vs {nb} flagged)")
    n, k = (int(v) for v in args.large.lower().split("x"))
    if n and k:
        t0 = time.perf_counter()
        s, p = problem(n, k, 0, 0.2)
        d, j, na, nb = compare(s, p.astype(np.float32), cleanlab_find)
        print(f"{n} x {k} float32: {d} rows differ (Jaccard {j:.4f}; {na} vs {nb} flagged; "
              f"{time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
