"""`labelqa train`: from features to everything the detectors need.

Trains a small torch model with threshold samples (two runs, disjoint
threshold sets) recording per-epoch logits for AUM, and computes out-of-sample
predicted probabilities by K-fold cross-validation. Writes into ``--out``:

* ``data.parquet``: a copy of DATA with a ``pred_probs`` column (and the
  class order in the ``labelqa.classes`` schema metadata);
* ``dynamics/``: the training dynamics (see docs/aum.md) that
  ``labelqa scan --logits-by-epoch`` reads.

DATA itself is never modified; every output appears atomically.

"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from labelqa.cli import options as o
from labelqa.cli.console import progress_logger
from labelqa.errors import LabelqaError

TRAIN = "Training"
FEATURES = "Features"

#: Feature columns picked automatically when no feature option is given.
AUTO_FEATURE_COLS = ("embedding", "embeddings", "features")


class CvModel(str, Enum):
    """Model of the cross-validated probabilities."""

    logreg = "logreg"
    torch = "torch"


def train(
    data: o.DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (data.parquet and dynamics/).",
                                      rich_help_panel=o.OUT)] = Path("labelqa-train"),
    label_col: o.LabelCol = "label",
    features_col: Annotated[
        Optional[str],
        typer.Option("--features-col", help="list<float> column of features or embeddings. Default: the first "
                     f"of the columns {', '.join(AUTO_FEATURE_COLS)} that exists.", rich_help_panel=FEATURES,
                     show_default=False),
    ] = None,
    features: Annotated[
        Optional[Path],
        typer.Option("--features", help="N x D .npy file of features (row order = data order).",
                     rich_help_panel=FEATURES, show_default=False),
    ] = None,
    feature_cols: Annotated[
        Optional[str],
        typer.Option("--feature-cols", help="Comma-separated numeric columns to use as features.",
                     rich_help_panel=FEATURES, show_default=False),
    ] = None,
    classes: o.Classes = None,
    input_format: o.InputFormat = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs (logits recorded after each).",
                                        rich_help_panel=TRAIN)] = 30,
    hidden: Annotated[int, typer.Option("--hidden", min=0, help="Hidden units of the MLP; 0 = linear model.",
                                        rich_help_panel=TRAIN)] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Minibatch size.", rich_help_panel=TRAIN)] = 128,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="SGD learning rate (constant, momentum 0.9).",
                                      rich_help_panel=TRAIN)] = 0.02,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Training runs, each with its own disjoint set of "
                                      "threshold samples.", rich_help_panel=TRAIN)] = 2,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds for pred_probs.",
                                       rich_help_panel=TRAIN)] = 5,
    cv_model: Annotated[CvModel, typer.Option("--cv-model", help="Model of the cross-validated pred_probs.",
                                              rich_help_panel=TRAIN)] = CvModel.logreg,
    pred_probs_col: Annotated[str, typer.Option("--pred-probs-col", help="Name of the written probability column.",
                                                rich_help_panel=o.OUT)] = "pred_probs",
    seed: Annotated[int, typer.Option("--seed", help="Seed of everything random (threshold samples, weights, "
                                      "batches, folds).", rich_help_panel=TRAIN)] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="BLAS threads of the logistic-regression "
                                         "cross-validation (results are reproducible for a given value). The torch "
                                         "model always trains on one thread: at this model size more threads are "
                                         "slower.", rich_help_panel=TRAIN)] = 1,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> int:
    """Train a small model on features: AUM training dynamics and out-of-sample pred_probs for DATA."""
    from labelqa.train.torch_model import TrainConfig, require_torch

    # one torch thread: a 64->128->K MLP step is ~0.5 ms; with 2 intra-op threads on a busy 2-core machine it
    # measured 10-25x slower (OpenMP barriers), and one thread keeps results independent of the core count
    config = TrainConfig(epochs=epochs, hidden=hidden, batch_size=batch_size, lr=lr, seed=seed, threads=1)
    config.validate()
    if threads < 1:
        raise LabelqaError(f"--threads must be at least 1, got {threads}")
    require_torch()  # before reading anything: say what to install
    log = progress_logger(quiet, verbose)

    log(f"loading {data}")
    table = _read(data, input_format)
    y, class_list = _labels(table, label_col, classes, data)
    x, feat_desc = _features(table, data, features_col, features, feature_cols, log)
    n, k = y.shape[0], len(class_list)
    log(f"{n:,} rows, {k} classes, {x.shape[1]} features ({feat_desc})")
    result = run_training(x, y, class_list, out, config=config, runs=runs, folds=folds, cv_model=cv_model.value,
                          threads=threads,
                          table=table, pred_probs_col=pred_probs_col, quiet=quiet, log=log,
                          provenance={"data": str(data), "features": feat_desc})
    if not quiet:
        typer.echo(f"Wrote {result['data']} ({pred_probs_col} column: {folds}-fold {cv_model.value}, "
                   f"accuracy vs given labels {result['cv_accuracy']:.3f})")
        typer.echo(f"Wrote {result['dynamics']} ({runs} run(s) x {epochs} epochs, "
                   f"threshold samples per run: {', '.join(str(r['n_threshold']) for r in result['runs'])})")
        typer.echo(f"Next: labelqa scan {result['data']} --logits-by-epoch {result['dynamics']}")
    return 0


def run_training(
    x: np.ndarray, y: np.ndarray, class_list: list[Any], out: Path, *, config: Any, runs: int, folds: int,
    cv_model: str, threads: int, table: Any, pred_probs_col: str, quiet: bool, log: Any, provenance: dict[str, Any],
) -> dict[str, Any]:
    """Cross-validated probabilities, dynamics and the data copy; returns what was written."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from labelqa.train.crossval import cross_val_probs
    from labelqa.train.torch_model import train_dynamics

    k = len(class_list)
    err = Console(stderr=True)
    bar = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                   TimeElapsedColumn(), console=err, disable=quiet or not err.is_terminal, transient=False)
    tasks: dict[str, Any] = {}

    def step(label: str, done: int, total: int) -> None:
        if label not in tasks:
            unit = "folds" if label == "cross-validation" else "epochs"
            tasks[label] = bar.add_task(label, total=total, unit=unit)
        bar.update(tasks[label], completed=done)

    out = Path(out)
    with bar:
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


def _labels(table: Any, label_col: str, classes: str | None, source: Path) -> tuple[np.ndarray, list[Any]]:
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
        class_list: list[Any] = [c.strip() for c in classes.split(",")]
        if any(not c for c in class_list):
            raise LabelqaError(f"--classes {classes!r} has an empty class name", "write it as --classes a,b,c")
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
              feature_cols: str | None, log: Any) -> tuple[np.ndarray, str]:
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
        names = [c.strip() for c in feature_cols.split(",") if c.strip()]
        if not names:
            raise LabelqaError(f"--feature-cols {feature_cols!r} names no column")
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
        from labelqa.data.dynamics import is_list_type, list_column_matrix

        if not is_list_type(table.schema.field(name).type):
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
    meta[b"labelqa.classes"] = json.dumps([c.item() if isinstance(c, np.generic) else c for c in class_list]).encode()
    table = table.replace_schema_metadata(meta)
    written = write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    from labelqa.train.dynamics_writer import current_umask

    written.chmod(0o666 & ~current_umask())  # the temporary file was private
    return written
