"""`labelqa train` as a library function: from features to everything the detectors need.

Trains a small torch model with threshold samples (two runs, disjoint
threshold sets) recording per-epoch logits for AUM, and computes out-of-sample
predicted probabilities by K-fold cross-validation. Writes into ``out``:

* ``data.parquet``: a copy of DATA with a ``pred_probs`` column (and the
  class order in the ``labelqa.classes`` schema metadata);
* ``dynamics/``: the training dynamics (see docs/aum.md) that
  ``labelqa scan --logits-by-epoch`` reads.

DATA itself is never modified; every output appears atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.data.rows import py_scalar
from labelqa.errors import LabelqaError

__all__ = ["AUTO_FEATURE_COLS", "TrainOutput", "train_from_file"]

#: Feature columns picked automatically when no feature option is given.
AUTO_FEATURE_COLS = ("embedding", "embeddings", "features")

#: ``step(label, done, total)``: progress of the cross-validation folds and the training epochs.
Step = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainOutput:
    """What :func:`train_from_file` wrote.

    Attributes:
        data: The copy of DATA with the probability column.
        dynamics: The training-dynamics folder (for ``--logits-by-epoch``).
        cv_accuracy: Accuracy of the cross-validated probabilities against the given labels.
        runs: Per training run, e.g. ``n_threshold`` (threshold samples).
        settings: The options the training ran with.
    """

    data: Path
    dynamics: Path
    cv_accuracy: float
    runs: list[dict[str, Any]]
    settings: dict[str, Any]


def train_from_file(
    data: str | os.PathLike[str],
    *,
    progress: Callable[[str], None] | None = None,
    step: Step | None = None,
    **options: Any,
) -> TrainOutput:
    """Train on DATA's features: AUM training dynamics and out-of-sample pred_probs, written into ``out``.

    Args:
        data: Dataset file with labels and features.
        progress: Optional callback receiving a short message before each step.
        step: Optional callback ``step(label, done, total)`` for the folds and epochs.
        **options: The options of ``labelqa train`` (:mod:`labelqa.options`): ``out``, ``label_col``,
            ``features_col``/``features``/``feature_cols``, ``classes``, ``input_format``, ``epochs``,
            ``hidden``, ``train_batch_size``, ``lr``, ``runs``, ``folds``, ``cv_model``,
            ``pred_probs_col``, ``seed``, ``threads``.

    Raises:
        LabelqaError: Bad options or input, or torch missing (nothing is written).
        TypeError: An unknown keyword argument.
    """
    import labelqa.options as opts
    from labelqa.train.torch_model import TrainConfig, require_torch

    s = opts.resolve("train", given=options, function="train_from_file")
    from labelqa.paths import option_inputs, refuse_overwriting_inputs

    refuse_overwriting_inputs(option_inputs({"data": data, **s}), out_dir=s["out"])
    # one torch thread: a 64->128->K MLP step is ~0.5 ms; with 2 intra-op threads on a busy 2-core machine it
    # measured 10-25x slower (OpenMP barriers), and one thread keeps results independent of the core count
    config = TrainConfig(epochs=s["epochs"], hidden=s["hidden"], batch_size=s["train_batch_size"], lr=s["lr"],
                         seed=s["seed"], threads=1)
    config.validate()
    require_torch()  # before reading anything: say what to install
    log = progress or (lambda message: None)
    log(f"loading {data}")
    source = Path(data)
    table = _read(source, s["input_format"])
    y, class_list = _labels(table, s["label_col"], s["classes"], source)
    x, feat_desc = _features(table, source, s["features_col"], s["features"], s["feature_cols"], log)
    n, k = y.shape[0], len(class_list)
    log(f"{n:,} rows, {k} classes, {x.shape[1]} features ({feat_desc})")
    written = run_training(x, y, class_list, s["out"], config=config, runs=s["runs"], folds=s["folds"],
                           cv_model=s["cv_model"], threads=s["threads"], table=table,
                           pred_probs_col=s["pred_probs_col"], log=log, step=step,
                           provenance={"data": str(data), "features": feat_desc})
    return TrainOutput(settings=dict(s), **written)


def run_training(
    x: np.ndarray, y: np.ndarray, class_list: list[Any], out: Path, *, config: Any, runs: int, folds: int,
    cv_model: str, threads: int, table: Any, pred_probs_col: str, log: Callable[[str], None],
    step: Step | None, provenance: dict[str, Any],
) -> dict[str, Any]:
    """Cross-validated probabilities, dynamics and the data copy; returns what was written."""
    from labelqa.train.crossval import cross_val_probs
    from labelqa.train.torch_model import train_dynamics

    k = len(class_list)
    out = Path(out)
    log(f"cross-validated pred_probs: {folds} folds, {cv_model}")
    probs = cross_val_probs(x, y, k, folds=folds, seed=config.seed, model=cv_model, threads=threads,
                            torch_config=config, progress=step)
    log(f"training {runs} run(s) x {config.epochs} epochs with threshold samples")
    info = train_dynamics(x, y, k, out / "dynamics", config=config, runs=runs, classes=class_list, progress=step,
                          producer=provenance)
    cv_acc = float(np.mean(np.argmax(probs, axis=1) == y)) if len(y) else 0.0
    data_path = _write_data(table, probs, class_list, out / "data.parquet", pred_probs_col, log)
    return {"data": data_path, "dynamics": out / "dynamics", "cv_accuracy": cv_acc, "runs": info["runs"]}


# --------------------------------------------------------------------------- inputs


def _read(path: Path, input_format: str | None) -> Any:
    from labelqa.data.readers import read_table

    return read_table(path, input_format=input_format)


def _labels(table: Any, label_col: str, classes: list[Any] | None, source: Path) -> tuple[np.ndarray, list[Any]]:
    """Int codes and class values (order: --classes, else schema metadata, else sorted)."""
    if label_col not in table.column_names:
        raise LabelqaError(f"{source}: no label column {label_col!r} (columns: {', '.join(table.column_names)})",
                           "pass --label-col")
    col = table.column(label_col)
    if col.null_count:
        import pyarrow.compute as pc

        row = int(pc.index(pc.is_null(col), True).as_py())
        raise LabelqaError(f"{source}: column {label_col!r} row {row} has no label",
                           "fill or drop rows without a label")
    values = col.to_pylist()
    if classes is not None:
        class_list: list[Any] = list(classes)
    else:
        meta = (table.schema.metadata or {}).get(b"labelqa.classes")
        if meta is not None:
            try:
                class_list = list(json.loads(meta))
            except ValueError as exc:
                raise LabelqaError(f"{source}: schema metadata 'labelqa.classes' is not a JSON list") from exc
        else:
            class_list = sorted(set(values))
    index = {str(c): i for i, c in enumerate(class_list)}
    if len(index) != len(class_list):
        raise LabelqaError(f"{source}: duplicate class names in {class_list}")
    try:
        y = np.fromiter((index[str(v)] for v in values), dtype=np.int64, count=len(values))
    except KeyError as exc:
        raise LabelqaError(f"{source}: label {exc.args[0]!r} in column {label_col!r} is not one of the classes "
                           f"{class_list}", "pass --classes with every class") from None
    if len(class_list) < 2:
        raise LabelqaError(f"{source}: {len(class_list)} class; training needs at least 2")
    return y, class_list


def _features(table: Any, source: Path, features_col: str | None, features: Path | None,
              feature_cols: list[str] | None, log: Any) -> tuple[np.ndarray, str]:
    given = [g for g in (features_col, features, feature_cols) if g is not None]
    if len(given) > 1:
        raise LabelqaError("give only one of --features-col, --features and --feature-cols")
    n = table.num_rows
    if features is not None:
        try:
            x = np.load(features, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LabelqaError(f"cannot read --features {features}: {exc}", "pass an N x D .npy file") from exc
        if x.ndim != 2 or x.shape[0] != n:
            raise LabelqaError(f"--features {features}: shape {x.shape}, expected ({n}, D) for the {n} rows of "
                               f"{source}", "save one feature row per data row")
        desc = f"file {features}"
    elif feature_cols is not None:
        names = list(feature_cols)
        cols = []
        for name in names:
            if name not in table.column_names:
                raise LabelqaError(f"{source}: no column {name!r} for --feature-cols",
                                   f"columns: {', '.join(table.column_names)}")
            col = table.column(name)
            import pyarrow as pa

            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
                raise LabelqaError(f"{source}: --feature-cols column {name!r} is {col.type}, not numeric")
            if col.null_count:
                raise LabelqaError(f"{source}: --feature-cols column {name!r} has {col.null_count} missing values",
                                   "impute them first")
            cols.append(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64))
        x = np.column_stack(cols)
        desc = f"columns {','.join(names)}"
    else:
        name = features_col
        if name is None:
            name = next((c for c in AUTO_FEATURE_COLS if c in table.column_names), None)
            if name is None:
                raise LabelqaError(f"{source}: no features given and no column named "
                                   f"{' / '.join(AUTO_FEATURE_COLS)}",
                                   "pass --features-col COL, --features FILE.npy or --feature-cols a,b,c")
            log(f"using features column {name!r}")
        if name not in table.column_names:
            raise LabelqaError(f"{source}: no features column {name!r} (columns: {', '.join(table.column_names)})",
                               "check --features-col")
        import pyarrow as pa

        from labelqa.data.dynamics import list_column_matrix

        kind = table.schema.field(name).type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
            raise LabelqaError(f"{source}: --features-col {name!r} is {table.schema.field(name).type}, "
                               "not a list<float> column", "use --feature-cols for scalar columns")
        x = list_column_matrix(table.column(name), f"{source}: features column {name!r}")
        desc = f"column {name}"
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise LabelqaError(f"features ({desc}) are not numeric: dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise LabelqaError(f"features ({desc}): row {int(r)}, feature {int(c)} is {x[r, c]}",
                           "features must be finite numbers")
    if x.shape[1] == 0:
        raise LabelqaError(f"features ({desc}) have no dimensions")
    return x, desc


def _write_data(table: Any, probs: np.ndarray, class_list: list[Any], path: Path, col: str, log: Any) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelqa.atomic import write_atomic

    p32 = probs.astype(np.float32)
    sums = p32.sum(axis=1, keepdims=True, dtype=np.float32)
    p32 = p32 / np.where(sums > 0, sums, 1)
    n, k = p32.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(p32).reshape(-1)))
    if col in table.column_names:
        log(f"replacing the existing {col!r} column in the copy")
        table = table.set_column(table.column_names.index(col), col, column)
    else:
        table = table.append_column(col, column)
    meta = dict(table.schema.metadata or {})
    meta[b"labelqa.classes"] = json.dumps([py_scalar(c) for c in class_list]).encode()
    table = table.replace_schema_metadata(meta)
    written = write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    mask = os.umask(0)
    os.umask(mask)
    written.chmod(0o666 & ~mask)  # the temporary file was private
    return written
