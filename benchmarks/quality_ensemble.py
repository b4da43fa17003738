"""Do several detectors together find label errors better than the best one alone? Measured on digits.

For each (seed, noise rate) it builds scikit-learn's digits with that share
of labels flipped uniformly (``examples/make_digits.py``), runs ``labelqa
train`` on it (5-fold logistic-regression probabilities, two torch runs of
training dynamics with threshold samples), then scans with ``cl`` and ``aum``
(and ``nrg`` on the pixel features as embeddings) and prints, for every
detector alone and for every ``issue_rule`` of the combination, precision,
recall and F1 of the flagged rows and the average precision (AP,
sklearn.metrics; lower score = more suspect) of the score, against
``label != true_label`` (the truth column never reaches labelqa).

Everything is written to a temporary folder; the shipped example is not
touched. Needs torch (the ``train`` extra); without it the script prints
"skipped: torch not installed" and exits 0.

Usage:
    python benchmarks/quality_ensemble.py [--runs 0:0.1,1:0.1,2:0.1,3:0.2,4:0.3] [--with-nrg]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import labelqa  # noqa: E402
from labelqa.data.dynamics import load_dynamics  # noqa: E402
from labelqa.detectors.ensemble import ISSUE_RULES, combined_flags, combined_score  # noqa: E402

RULES = ("relative_rank", "primary_or_2", "majority")


def build(folder: Path, seed: int, rate: float) -> tuple[labelqa.LabelData, np.ndarray]:
    """Noisy digits, trained by `labelqa train`; returns the data with dynamics and the truth mask."""
    src = folder / "src.parquet"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_digits.py"), "--out", str(src), "--seed", str(seed),
                    "--noise-rate", str(rate)], check=True, capture_output=True, env=env)
    subprocess.run([sys.executable, "-m", "labelqa", "train", str(src), "--out", str(folder / "train"),
                    "--features-col", "features", "--seed", "0"], check=True, capture_output=True, env=env)
    data = labelqa.load(folder / "train" / "data.parquet", embeddings_col="features")
    dyn = load_dynamics(folder / "train" / "dynamics", data.n_rows, data.n_classes, classes=data.classes,
                        labels=data.labels)
    data = dataclasses.replace(data, logits_by_epoch=dyn)
    table = pq.read_table(src, columns=["true_label"])
    index = {c: i for i, c in enumerate(data.classes)}
    true = np.array([index[v] for v in table.column("true_label").to_pylist()])
    return data, data.labels != true


def metrics(flags: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    tp = int(np.count_nonzero(flags & truth))
    p = tp / max(int(flags.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f, float(average_precision_score(truth, -scores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="0:0.1,1:0.1,2:0.1,3:0.2,4:0.3", help="seed:noise_rate,...")
    parser.add_argument("--with-nrg", action="store_true", help="also run nrg (pixel features as embeddings)")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: torch not installed")
        return 0
    t0 = time.perf_counter()
    detectors = ["cl", "aum"] + (["nrg"] if args.with_nrg else [])
    print(f"Detectors: {' + '.join(detectors)}. Cells: precision / recall / F1 / AP.\n")
    print("| digits | errors | " + " | ".join(detectors) + " | " + " | ".join(f"ensemble {r}" for r in RULES) + " |")
    print("|---|---|" + "---|" * (len(detectors) + len(RULES)))
    f1s: dict[str, list[float]] = {name: [] for name in detectors + [f"ensemble {r}" for r in RULES]}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.runs.split(","):
            seed, rate = spec.split(":")
            folder = Path(tmp) / spec.replace(":", "_")
            folder.mkdir()
            data, truth = build(folder, int(seed), float(rate))
            result = labelqa.scan(data, detectors=detectors)
            outs = [result.results[d] for d in detectors]
            cells = []
            for d, res in zip(detectors, outs):
                m = metrics(np.asarray(res.issues), np.asarray(res.scores), truth)
                f1s[d].append(m[2])
                cells.append(" / ".join(f"{v:.3f}" for v in m))
            score = combined_score(outs)
            for rule in RULES:
                assert rule in ISSUE_RULES
                m = metrics(combined_flags(outs, "cl", rule), score, truth)
                f1s[f"ensemble {rule}"].append(m[2])
                cells.append(" / ".join(f"{v:.3f}" for v in m))
            print(f"| seed {seed}, uniform {float(rate):.0%} | {int(truth.sum())} | " + " | ".join(cells) + " |",
                  flush=True)
    print()
    for name, values in f1s.items():
        print(f"{name}: mean F1 {np.mean(values):.3f}")
    print(f"\n(total {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
