"""Build examples/digits/digits_noisy.parquet: a small, real, noisy-label dataset.

scikit-learn's bundled handwritten digits (1797 images, 8x8 pixels, 10 classes;
no download) with about 10% of the labels flipped uniformly at random to another
class, plus out-of-sample predicted probabilities from 5-fold cross-validation
of a StandardScaler + LogisticRegression pipeline trained on the NOISY labels
(as a user would have them).

Deterministic: the same seed gives a byte-identical file (single-threaded BLAS,
fixed folds, fixed noise draws).

With ``--images`` the table also holds each digit as an image: ``pixels``, the
8x8 grey levels (0..16) as a list of 8 rows, which ``labelqa scan --show-cols
pixels`` shows as thumbnails beside the flagged rows.

Usage:
    python examples/make_digits.py                      # writes the shipped file
    python examples/make_digits.py --out /tmp/d.parquet # somewhere else
    python examples/make_digits.py --images --out /tmp/digits_images.parquet
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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DEFAULT_OUT = Path(__file__).resolve().parent / "digits" / "digits_noisy.parquet"
METADATA_KEY = b"labelqa.classes"


def inject_uniform_noise(
    labels: np.ndarray, n_classes: int, noise_rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Flip exactly round(noise_rate * N) labels, each to one of the other K-1
    classes chosen uniformly (off-diagonal uniform noise)."""
    n = labels.shape[0]
    n_flip = int(round(noise_rate * n))
    flip_rows = np.sort(rng.choice(n, size=n_flip, replace=False))
    # offset in 1..K-1 guarantees the new label differs from the old one
    offsets = rng.integers(1, n_classes, size=n_flip)
    noisy = labels.copy()
    noisy[flip_rows] = (labels[flip_rows] + offsets) % n_classes
    return noisy


def out_of_sample_probs(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """5-fold cross-validated predict_proba of StandardScaler + LogisticRegression."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    # one BLAS thread: results must not depend on the machine's core count
    with threadpool_limits(limits=1):
        probs = cross_val_predict(model, x, y, cv=folds, method="predict_proba", n_jobs=1)
    return probs


def float32_rows(probs: np.ndarray) -> np.ndarray:
    """Cast to float32 and renormalise so rows sum to 1 within float32 rounding."""
    p32 = probs.astype(np.float32)
    p32 /= p32.sum(axis=1, keepdims=True, dtype=np.float32)
    return p32


def list_column(matrix: np.ndarray) -> pa.ListArray:
    """An (N, D) float32 matrix as a list<float32> column, built from the flat buffer."""
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix).ravel()))


def build_table(seed: int = 0, noise_rate: float = 0.1, images: bool = False) -> tuple[pa.Table, dict]:
    digits = load_digits()
    x = digits.data.astype(np.float64)  # pixel intensities 0..16
    true = digits.target.astype(np.int64)
    k = len(CLASSES)
    rng = np.random.default_rng(seed)
    noisy = inject_uniform_noise(true, k, noise_rate, rng)

    probs = float32_rows(out_of_sample_probs(x, noisy, seed))
    features = (x / 16.0).astype(np.float32)

    names = np.array(CLASSES, dtype=object)
    table = pa.table(
        {
            "id": pa.array(np.arange(x.shape[0], dtype=np.int64)),
            "label": pa.array(names[noisy], type=pa.string()),
            "true_label": pa.array(names[true], type=pa.string()),
            "pred_probs": list_column(probs),
            "features": list_column(features),
        }
    )
    if images:  # each digit's 8x8 grey levels as a list of rows: an image column for --show-cols
        flat = pa.array(digits.images.astype(np.uint8).ravel())
        n_img, side = digits.images.shape[0], digits.images.shape[1]
        pixel_rows = pa.ListArray.from_arrays(pa.array(np.arange(0, n_img * side * side + 1, side, dtype=np.int32)), flat)
        images_col = pa.ListArray.from_arrays(pa.array(np.arange(0, n_img * side + 1, side, dtype=np.int32)), pixel_rows)
        table = table.append_column("pixels", images_col)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(CLASSES).encode()})

    pred = probs.argmax(axis=1)
    stats = {
        "n": int(x.shape[0]),
        "k": k,
        "n_flipped": int((noisy != true).sum()),
        "noise_rate": float((noisy != true).mean()),
        "cv_acc_vs_noisy": float((pred == noisy).mean()),
        "cv_acc_vs_true": float((pred == true).mean()),
    }
    return table, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output Parquet path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-rate", type=float, default=0.1)
    parser.add_argument("--images", action="store_true", help="add a pixels column (8x8 grey levels per digit)")
    args = parser.parse_args(argv)

    table, s = build_table(seed=args.seed, noise_rate=args.noise_rate, images=args.images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out, compression="zstd")
    print(f"wrote {args.out}")
    print(f"N={s['n']}  K={s['k']}  flipped={s['n_flipped']}  noise rate={s['noise_rate']:.4f}")
    print(
        f"5-fold CV accuracy of argmax(pred_probs): vs noisy labels {s['cv_acc_vs_noisy']:.4f}, "
        f"vs true labels {s['cv_acc_vs_true']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
