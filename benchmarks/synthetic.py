"""Synthetic classifier outputs with known label noise, as Parquet, for benchmarks.

What it makes (seeded, vectorised, written in row-group chunks so 1M x 100
never needs more than one chunk of temporaries on top of the output):

- true labels ``y`` drawn from a mildly imbalanced class prior;
- logits ``z = noise + margin_i * onehot(y_i) + confusion_i * onehot(c_i)``
  where ``margin_i`` varies per row (easy and hard rows), ``c_i`` is a
  confusable neighbour class that gets a partial boost (so mistakes are
  structured, like a real model's), then softmax to float32 rows summing to 1;
- given labels: exactly ``round(noise_rate * N)`` rows flipped uniformly to
  another class (off-diagonal uniform noise).

Parquet columns: ``label`` (int64 class code 0..K-1, or string ``c000``...
with ``--label-type str``) and ``pred_probs`` (list<float32>, length K).
Ground truth goes to a sidecar ``.truth.npy`` (never in the file a detector
reads). Files are cached under ``<repo>/.bench-data/`` and reused when present.

Usage:
    python benchmarks/synthetic.py 1000000 100          # prints the cached path
    python benchmarks/synthetic.py 200000 100 --force   # regenerate
Library:
    from synthetic import ensure_dataset, load_arrays
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / ".bench-data"
FORMAT_VERSION = 1  # bump when the generator changes, so stale caches are not reused
CHUNK_ROWS = 100_000


def compile_labelqa(python: str = sys.executable) -> None:
    """Compile labelqa's bytecode, as a regular (non-editable) ``pip install`` does at install time.

    An editable install leaves that to the first import, and where
    ``PYTHONDONTWRITEBYTECODE`` is set (this project's sandbox sets it) every
    CLI start would recompile every module (~0.3 s): not what users of an
    installed tool pay, so the end-to-end timings run on compiled bytecode.
    """
    subprocess.run([python, "-m", "compileall", "-q", str(ROOT / "labelqa")], check=True,
                   stdout=subprocess.DEVNULL)


def dataset_path(
    n: int, k: int, *, noise_rate: float = 0.1, seed: int = 0, label_type: str = "int",
    cache_dir: Path = CACHE_DIR,
) -> Path:
    tag = f"synth_v{FORMAT_VERSION}_n{n}_k{k}_noise{noise_rate:g}_seed{seed}_{label_type}"
    return cache_dir / f"{tag}.parquet"


def class_names(k: int) -> list[str]:
    width = max(3, len(str(k - 1)))
    return [f"c{i:0{width}d}" for i in range(k)]


def _chunk_probs(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """float32 softmax probabilities for true labels y (one chunk)."""
    m = y.shape[0]
    rows = np.arange(m)
    z = rng.standard_normal((m, k), dtype=np.float32)
    # per-row difficulty: most rows easy, a tail of hard / ambiguous ones
    margin = rng.normal(3.0 + 0.5 * np.log(k), 1.6, size=m).astype(np.float32)
    z[rows, y] += margin
    # a confusable neighbour class shares part of the evidence
    neighbour = (y + rng.integers(1, 3, size=m)) % k
    z[rows, neighbour] += rng.uniform(0.0, 3.0, size=m).astype(np.float32)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True, dtype=np.float32)
    return z


def _list_array(matrix: np.ndarray) -> pa.Array:
    """(m, K) float32 -> list<float32> built from the flat buffer (no row loop)."""
    m, k = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, (m + 1) * k, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def generate(
    path: Path, n: int, k: int, *, noise_rate: float = 0.1, seed: int = 0, label_type: str = "int"
) -> Path:
    """Write the dataset to ``path`` (atomically) and its truth to ``.truth.npy``."""
    if n * k >= 2**31:
        raise ValueError("n * k must stay below 2**31 (int32 list offsets)")
    rng = np.random.default_rng([seed, n, k])
    prior = np.exp(rng.normal(0.0, 0.4, size=k))
    prior /= prior.sum()
    y_true = rng.choice(k, size=n, p=prior).astype(np.int64)

    n_flip = int(round(noise_rate * n))
    flip_rows = rng.choice(n, size=n_flip, replace=False)
    y_given = y_true.copy()
    y_given[flip_rows] = (y_true[flip_rows] + rng.integers(1, k, size=n_flip)) % k

    names = np.array(class_names(k), dtype=object)
    label_type_pa = pa.int64() if label_type == "int" else pa.string()
    schema = pa.schema([("label", label_type_pa), ("pred_probs", pa.list_(pa.float32()))])

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, n, CHUNK_ROWS):
            stop = min(n, start + CHUNK_ROWS)
            probs = _chunk_probs(y_true[start:stop], k, rng)
            given = y_given[start:stop]
            label = pa.array(given) if label_type == "int" else pa.array(names[given], pa.string())
            writer.write_table(pa.table([label, _list_array(probs)], schema=schema))
    np.save(truth_path(path), y_true)
    os.replace(tmp, path)
    return path


def truth_path(path: Path) -> Path:
    return path.with_suffix(".truth.npy")


def ensure_dataset(
    n: int, k: int, *, noise_rate: float = 0.1, seed: int = 0, label_type: str = "int",
    force: bool = False, verbose: bool = True,
) -> Path:
    """Path of the cached dataset, generating it first when missing."""
    path = dataset_path(n, k, noise_rate=noise_rate, seed=seed, label_type=label_type)
    if force or not (path.exists() and truth_path(path).exists()):
        t0 = time.perf_counter()
        generate(path, n, k, noise_rate=noise_rate, seed=seed, label_type=label_type)
        if verbose:
            mb = path.stat().st_size / 2**20
            print(f"generated {path.name} ({mb:.0f} MiB) in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
    return path


def load_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 codes (N,), pred_probs float32 (N, K)) read back from the file."""
    table = pq.read_table(path, columns=["label", "pred_probs"])
    col = table.column("pred_probs").combine_chunks()
    n = len(col)
    probs = col.flatten().to_numpy().reshape(n, -1)
    labels = table.column("label").to_numpy()
    if labels.dtype.kind not in "iu":  # string labels "c000"...: zero-padded, so sorted = code order
        names = np.array(class_names(probs.shape[1]))
        labels = np.searchsorted(names, labels.astype(str))
    return labels.astype(np.int64, copy=False), probs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate (or find cached) synthetic benchmark data.")
    parser.add_argument("n", type=int)
    parser.add_argument("k", type=int)
    parser.add_argument("--noise-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-type", choices=["int", "str"], default="int")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args(argv)
    path = ensure_dataset(args.n, args.k, noise_rate=args.noise_rate, seed=args.seed,
                          label_type=args.label_type, force=args.force)
    labels, probs = load_arrays(path)
    truth = np.load(truth_path(path))
    print(path)
    print(f"N={len(labels)} K={probs.shape[1]} noise rate={(labels != truth).mean():.4f} "
          f"argmax acc vs given={(probs.argmax(1) == labels).mean():.4f} "
          f"vs true={(probs.argmax(1) == truth).mean():.4f} "
          f"max |row sum - 1|={np.abs(probs.sum(1, dtype=np.float64) - 1).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
