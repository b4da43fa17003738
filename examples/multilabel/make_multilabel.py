"""Build examples/multilabel/digits_attributes_noisy.parquet: a small, real,
multi-label dataset with injected label noise.

scikit-learn's bundled handwritten digits (1797 8x8 images; no download),
turned multi-label: each image is tagged with the attributes of its digit
(even, prime, large, loop, square, fibonacci). Then 8% of the rows get one
label change: half of them lose a label they should have ("should add"), half
get a label they should not have ("should remove"). Out-of-sample per-class
probabilities come from 5-fold cross-validation of a one-vs-rest logistic
regression (on Nystroem RBF features) trained on the NOISY label sets, as a
user would have them.

Deterministic: the same seed gives a byte-identical file (single-threaded
BLAS, fixed folds, fixed noise draws).

Usage:
    python examples/multilabel/make_multilabel.py                      # writes the shipped file
    python examples/multilabel/make_multilabel.py --out /tmp/m.parquet --seed 1 --noise-rate 0.15
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_digits
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

#: Attribute -> the digits that have it. Column order of pred_probs.
ATTRIBUTES = {
    "even": (0, 2, 4, 6, 8),
    "prime": (2, 3, 5, 7),
    "large": (5, 6, 7, 8, 9),
    "loop": (0, 6, 8, 9),
    "square": (0, 1, 4, 9),
    "fibonacci": (0, 1, 2, 3, 5, 8),
}
CLASSES = list(ATTRIBUTES)
DEFAULT_OUT = Path(__file__).resolve().parent / "digits_attributes_noisy.parquet"
METADATA_KEY = b"labelqa.classes"


def attribute_sets(digits: np.ndarray) -> np.ndarray:
    """(N, K) bool: the attributes of each digit."""
    return np.stack([np.isin(digits, list(v)) for v in ATTRIBUTES.values()], axis=1)


def inject_noise(true: np.ndarray, noise_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Change one label in exactly round(noise_rate * N) rows: the first half
    (in draw order) lose a present label, the rest gain an absent one; the
    class is drawn uniformly among the candidates of the row."""
    n = true.shape[0]
    rows = rng.choice(n, size=int(round(noise_rate * n)), replace=False)
    n_remove = rows.size // 2
    noisy = true.copy()
    for j, i in enumerate(rows):
        pool = np.flatnonzero(true[i] if j < n_remove else ~true[i])
        noisy[i, rng.choice(pool)] = not (j < n_remove)
    return noisy


def out_of_sample_probs(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """5-fold cross-validated per-class probabilities of a one-vs-rest logistic regression."""
    model = make_pipeline(
        Nystroem(gamma=0.05, n_components=400, random_state=seed),
        OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=5000)),
    )
    folds = KFold(n_splits=5, shuffle=True, random_state=seed)
    # one BLAS thread: results must not depend on the machine's core count
    with threadpool_limits(limits=1):
        return cross_val_predict(model, x, y, cv=folds, method="predict_proba", n_jobs=1)


def _string_lists(y: np.ndarray) -> pa.ListArray:
    names = np.array(CLASSES, dtype=object)
    counts = y.sum(axis=1)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    values = pa.array(names[np.nonzero(y)[1]].tolist(), type=pa.string())
    return pa.ListArray.from_arrays(offsets, values)


def _float_lists(matrix: np.ndarray) -> pa.ListArray:
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix, dtype=np.float32).ravel()))


def build_table(seed: int = 0, noise_rate: float = 0.08) -> tuple[pa.Table, dict]:
    digits = load_digits()
    x = digits.data / 16.0
    true = attribute_sets(digits.target)
    rng = np.random.default_rng(seed)
    noisy = inject_noise(true, noise_rate, rng)
    probs = np.clip(out_of_sample_probs(x, noisy, seed), 0.0, 1.0).astype(np.float32)

    table = pa.table(
        {
            "id": pa.array(np.arange(x.shape[0], dtype=np.int64)),
            "labels": _string_lists(noisy),
            "true_labels": _string_lists(true),
            "pred_probs": _float_lists(probs),
        }
    )
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(CLASSES).encode()})
    pred = probs > 0.5
    stats = {
        "n": int(x.shape[0]),
        "k": len(CLASSES),
        "noisy_rows": int((noisy != true).any(axis=1).sum()),
        "removed": int((noisy < true).sum()),
        "added": int((noisy > true).sum()),
        "labels_per_row": float(noisy.sum(axis=1).mean()),
        "acc_vs_noisy": float((pred == noisy).mean()),
        "acc_vs_true": float((pred == true).mean()),
    }
    return table, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output Parquet path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-rate", type=float, default=0.08, help="share of rows with one label changed")
    args = parser.parse_args(argv)

    table, s = build_table(seed=args.seed, noise_rate=args.noise_rate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out, compression="zstd")
    print(f"wrote {args.out}")
    print(
        f"N={s['n']}  K={s['k']}  noisy rows={s['noisy_rows']} ({s['noisy_rows'] / s['n']:.4f}): "
        f"{s['removed']} labels removed, {s['added']} added; {s['labels_per_row']:.2f} labels per row"
    )
    print(
        f"5-fold CV per-class accuracy of pred_probs > 0.5: vs noisy labels {s['acc_vs_noisy']:.4f}, "
        f"vs true labels {s['acc_vs_true']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
