"""`labelqa train` as a library function: from features to everything the detectors need.

Computes out-of-sample predicted probabilities by K-fold cross-validation with
a scikit-learn model (``--model logreg|hgb|knn|mlp``, no torch) or the small
torch model (``--model torch``); multi-label data (a list column, or
delimited strings with ``label_sep``) trains one-vs-rest. With torch (and
``dynamics`` not ``off``), also trains the small torch model with threshold
samples (two runs, disjoint threshold sets) recording per-epoch logits for
AUM. Writes into ``out``:

* ``data.parquet``: a copy of DATA with a ``pred_probs`` column (and the
  class order in the ``labelqa.classes`` schema metadata);
* ``dynamics/``: the training dynamics (see docs/aum.md) that
  ``labelqa scan --logits-by-epoch`` reads, when recorded.

DATA itself is never modified; every output appears atomically. torch is
imported only for ``--model torch`` and the dynamics.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.data.rows import py_scalar
from labelqa.errors import LabelqaError

__all__ = ["AUTO_FEATURE_COLS", "TrainOutput", "scan_command", "train_from_file"]

#: Feature columns picked automatically when no feature option is given.
AUTO_FEATURE_COLS = ("embedding", "embeddings", "features")

#: ``step(label, done, total)``: progress of the cross-validation folds and the training epochs.
Step = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainOutput:
    """What :func:`train_from_file` wrote.

    Attributes:
        data: The copy of DATA with the probability column.
        dynamics: The training-dynamics folder (for ``--logits-by-epoch``), or ``None`` when not recorded.
        cv_accuracy: Accuracy of the cross-validated probabilities against the given labels (multi-label:
            the share of (row, class) cells where ``p >= 0.5`` agrees with the label set).
        runs: Per training run, e.g. ``n_threshold`` (threshold samples); empty without dynamics.
        settings: The options the training ran with.
        task: ``multiclass`` or ``multilabel``.
        next_command: The ``labelqa scan`` command (argv) that scans the copy with these options.
        note: Why no dynamics were recorded (``None`` when they were, or were turned off).
    """

    data: Path
    dynamics: Path | None
    cv_accuracy: float
    runs: list[dict[str, Any]]
    settings: dict[str, Any]
    task: str = "multiclass"
    next_command: tuple[str, ...] = ()
    note: str | None = None

    @property
    def next_command_line(self) -> str:
        """:attr:`next_command` as one shell line (paths quoted with :func:`shlex.join`)."""
        return shlex.join(self.next_command)


def train_from_file(
    data: str | os.PathLike[str],
    *,
    progress: Callable[[str], None] | None = None,
    step: Step | None = None,
    **options: Any,
) -> TrainOutput:
    """Train on DATA's features: out-of-sample pred_probs (and AUM training dynamics), written into ``out``.

    Args:
        data: Dataset file with labels and features.
        progress: Optional callback receiving a short message before each step.
        step: Optional callback ``step(label, done, total)`` for the folds and epochs.
        **options: The options of ``labelqa train`` (:mod:`labelqa.options`): ``out``, ``label_col``,
            ``id_col``, ``task``, ``label_sep``, ``features_col``/``features``/``feature_cols`` (globs),
            ``text_cols``, ``group_col``, ``classes``, ``input_format``, ``model``, ``dynamics``, ``epochs``,
            ``hidden``, ``train_batch_size``, ``lr``, ``runs``, ``folds``, ``pred_probs_col``, ``seed``,
            ``threads``.

    Raises:
        LabelqaError: Bad options or input, or torch missing when needed (nothing is written).
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
    if s["model"] == "torch" or s["dynamics"] == "on":
        require_torch()  # before reading anything: say what to install
    log = progress or (lambda message: None)
    log(f"loading {data}")
    source = Path(data)
    table = _read(source, s["input_format"])
    for option, col in (("--id-col", s["id_col"]), ("--group-col", s["group_col"])):
        if col is not None and col not in table.column_names:
            raise LabelqaError(f"{source}: no column {col!r} for {option} (columns: {', '.join(table.column_names)})",
                               f"check {option}")
    task = _task(table, s, source)
    if task == "multilabel":
        y, class_list = _label_sets(table, s["label_col"], s["label_sep"], s["classes"], source)
    else:
        y, class_list = _labels(table, s["label_col"], s["classes"], source)
    skip = [c for c in (s["label_col"], s["id_col"], s["group_col"]) if c is not None]
    x, feat_desc = _features(table, source, s["features_col"], s["features"], s["feature_cols"], log,
                             text_cols=s["text_cols"], skip=skip)
    groups = _groups(table, s["group_col"], source)
    dynamics, note = _want_dynamics(s["dynamics"], task, log)
    n, k = y.shape[0], len(class_list)
    log(f"{n:,} rows, {k} classes{' (multi-label)' if task == 'multilabel' else ''}, {x.shape[1]:,} features "
        f"({feat_desc})")
    written = run_training(x, y, class_list, s["out"], config=config, runs=s["runs"] if dynamics else 0,
                           folds=s["folds"], cv_model=s["model"], threads=s["threads"], table=table,
                           pred_probs_col=s["pred_probs_col"], log=log, step=step, groups=groups,
                           provenance={"data": str(data), "features": feat_desc})
    command = scan_command(written["data"], label_col=s["label_col"], id_col=s["id_col"],
                           label_sep=s["label_sep"] if task == "multilabel" else None,
                           pred_probs_col=s["pred_probs_col"], dynamics=written["dynamics"])
    return TrainOutput(settings=dict(s), task=task, next_command=tuple(command), note=note, **written)


def scan_command(data: Path, *, label_col: str = "label", id_col: str | None = None, label_sep: str | None = None,
                 pred_probs_col: str = "pred_probs", dynamics: Path | None = None) -> list[str]:
    """The ``labelqa scan`` argv that scans what ``labelqa train`` wrote with the options it was given."""
    path = str(data)
    argv = ["labelqa", "scan", f".{os.sep}{path}" if path.startswith("-") else path]  # never read as an option
    if label_col != "label":
        argv += ["--label-col", label_col]
    if id_col is not None:
        argv += ["--id-col", id_col]
    if label_sep is not None:
        argv += ["--label-sep", label_sep]
    if pred_probs_col != "pred_probs":
        argv += ["--pred-probs-col", pred_probs_col]
    if dynamics is not None:
        argv += ["--logits-by-epoch", str(dynamics)]
    return argv


def _want_dynamics(mode: str, task: str, log: Callable[[str], None]) -> tuple[bool, str | None]:
    """Whether to record AUM dynamics, and why not (for ``auto``)."""
    if mode == "off":
        return False, None
    if task == "multilabel":
        if mode == "on":
            raise LabelqaError("--dynamics on: AUM training dynamics are for multiclass data only",
                               "drop --dynamics on (the multi-label probabilities are still written)")
        return False, None
    if mode == "on":
        return True, None
    from labelqa.train.torch_model import TORCH_HINT

    try:
        import torch  # noqa: F401
    except ImportError:
        note = f"no AUM training dynamics: torch is not installed ({TORCH_HINT})"
        log(note)
        return False, note
    return True, None


def run_training(
    x: Any, y: np.ndarray, class_list: list[Any], out: Path, *, config: Any, runs: int, folds: int,
    cv_model: str, threads: int | None, table: Any, pred_probs_col: str, log: Callable[[str], None],
    step: Step | None, provenance: dict[str, Any], groups: Any = None,
) -> dict[str, Any]:
    """Cross-validated probabilities, dynamics (``runs`` > 0) and the data copy; returns what was written."""
    from labelqa.train.crossval import cross_val_probs, dense_features

    k = len(class_list)
    out = Path(out)
    multilabel = y.ndim == 2
    log(f"cross-validated pred_probs: {folds} folds{' by group' if groups is not None else ''}, {cv_model}"
        f"{' one-vs-rest' if multilabel else ''}")
    if cv_model == "hgb":
        x = dense_features(x, "--model hgb")
    probs = cross_val_probs(x, y, k, folds=folds, seed=config.seed, model=cv_model, threads=threads,
                            groups=groups, torch_config=config, progress=step)
    info: dict[str, Any] = {"runs": []}
    if runs:
        from labelqa.train.torch_model import train_dynamics

        log(f"training {runs} run(s) x {config.epochs} epochs with threshold samples")
        info = train_dynamics(dense_features(x, "the AUM dynamics"), y, k, out / "dynamics", config=config,
                              runs=runs, classes=class_list, progress=step, producer=provenance)
    if multilabel:
        cv_acc = float(np.mean((probs >= 0.5) == y)) if y.size else 0.0
    else:
        cv_acc = float(np.mean(np.argmax(probs, axis=1) == y)) if len(y) else 0.0
    data_path = _write_data(table, probs, class_list, out / "data.parquet", pred_probs_col, log,
                            normalize=not multilabel)
    return {"data": data_path, "dynamics": out / "dynamics" if runs else None, "cv_accuracy": cv_acc,
            "runs": info["runs"]}


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


def _task(table: Any, s: Any, source: Path) -> str:
    """multiclass or multilabel, from ``task``, ``label_sep`` and the label column's type (as scan decides)."""
    from labelqa.data.schema import resolve_task

    if s["label_col"] not in table.column_names:
        raise LabelqaError(f"{source}: no label column {s['label_col']!r} (columns: {', '.join(table.column_names)})",
                           "pass --label-col")
    return resolve_task(s["task"], s["label_sep"], table.schema.field(s["label_col"]).type,
                        f"{source}, column {s['label_col']!r}")


def _label_sets(table: Any, label_col: str, label_sep: str | None, classes: list[Any] | None,
                source: Path) -> tuple[np.ndarray, list[Any]]:
    """The ``(N, K)`` 0/1 matrix of multi-label label sets and the classes (--classes, schema metadata, or the
    sorted items). An empty or null delimited cell is the empty set."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from labelqa.data.labelsets import label_set_items, label_sets_from_column, scatter_label_sets
    from labelqa.data.rows import Rows, Where

    where = f"{source}, column {label_col!r}"
    sets = label_sets_from_column(table.column(label_col), label_sep, where)
    rows = Rows()
    items, parent = label_set_items(sets, where, rows)
    if classes is None:
        meta = (table.schema.metadata or {}).get(b"labelqa.classes")
        classes = list(json.loads(meta)) if meta is not None else sorted(pc.unique(items).to_pylist())
    class_list = list(classes)
    if len({str(c) for c in class_list}) != len(class_list):
        raise LabelqaError(f"{source}: duplicate class names in {class_list}")
    codes = pc.index_in(pc.cast(items, pa.string()), value_set=pa.array([str(c) for c in class_list]))
    if codes.null_count:
        bad = int(np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))[0])
        raise LabelqaError(f"{where}: label {items[bad].as_py()!r} in row {int(parent[bad])} is not one of the "
                           f"classes {class_list}", "pass --classes with every class")
    if len(class_list) < 1:
        raise LabelqaError(f"{where}: no class in any label set; training needs labels")
    y = scatter_label_sets(codes.to_numpy(zero_copy_only=False).astype(np.int64), parent, table.num_rows,
                           tuple(class_list), Where(str(source), label_col, None, {}), rows)
    return y.astype(np.int8), class_list


def _groups(table: Any, group_col: str | None, source: Path) -> np.ndarray | None:
    """Group codes of ``group_col`` (a missing group is an error: every row needs one)."""
    if group_col is None:
        return None
    import pyarrow.compute as pc

    col = table.column(group_col)
    if col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise LabelqaError(f"{source}: --group-col {group_col!r} row {row} has no group", "give every row a group")
    return pc.dictionary_encode(col.combine_chunks()).indices.to_numpy(zero_copy_only=False)


def select_names(names: Sequence[str], patterns: Sequence[str], option: str, source: Path,
                 skip: Sequence[str] = ()) -> list[str]:
    """Columns matching ``patterns`` (exact names, or globs like ``'px_*'`` that skip the ``skip`` columns), in
    table order."""
    chosen: set[str] = set()
    for pat in patterns:
        if pat in names:
            chosen.add(pat)
            continue
        hits = [c for c in names if fnmatch.fnmatchcase(c, pat) and c not in skip]
        if not hits:
            raise LabelqaError(f"{source}: no column {'matches' if any(ch in pat for ch in '*?[') else 'named'} "
                               f"{pat!r} for {option}", f"columns: {', '.join(names)}")
        chosen.update(hits)
    return [c for c in names if c in chosen]


def _text_features(table: Any, cols: list[str], source: Path) -> Any:
    """TF-IDF features of the text columns (one vectorizer per column), a sparse ``(N, D)`` matrix.

    The vectorizers see the text of every row but no label, so the out-of-sample probabilities stay
    out-of-sample with respect to the labels.
    """
    import pyarrow as pa
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    blocks = []
    for name in cols:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                or pa.types.is_dictionary(col.type)):
            raise LabelqaError(f"{source}: --text-cols column {name!r} is {col.type}, not text")
        texts = ["" if t is None else str(t) for t in col.to_pylist()]
        try:
            blocks.append(TfidfVectorizer(sublinear_tf=True, max_features=50_000, dtype=np.float64)
                          .fit_transform(texts))
        except ValueError as exc:  # "empty vocabulary"
            raise LabelqaError(f"{source}: --text-cols column {name!r} has no words ({exc})") from exc
    return sp.hstack(blocks, format="csr")


def _features(table: Any, source: Path, features_col: str | None, features: Path | None,
              feature_cols: list[str] | None, log: Any, *, text_cols: list[str] | None = None,
              skip: Sequence[str] = ()) -> tuple[Any, str]:
    given = [g for g in (features_col, features, feature_cols) if g is not None]
    if len(given) > 1:
        raise LabelqaError("give only one of --features-col, --features and --feature-cols")
    text = select_names(table.column_names, text_cols, "--text-cols", source, skip) if text_cols else []
    if not given and text:
        return _text_features(table, text, source), f"TF-IDF of {','.join(text)}"
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
        import pyarrow as pa

        names = select_names(table.column_names, feature_cols, "--feature-cols", source, [*skip, *text])
        cols = []
        for name in names:
            col = table.column(name)
            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
                raise LabelqaError(f"{source}: --feature-cols column {name!r} is {col.type}, not numeric",
                                   "pass text columns with --text-cols")
            if col.null_count:
                raise LabelqaError(f"{source}: --feature-cols column {name!r} has {col.null_count} missing values",
                                   "impute them first")
            cols.append(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64))
        x = np.column_stack(cols)
        desc = f"columns {','.join(names)}" if len(names) <= 6 else f"{len(names)} columns {names[0]}..{names[-1]}"
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
    if text:
        import scipy.sparse as sp

        return sp.hstack([sp.csr_matrix(x), _text_features(table, text, source)], format="csr"), \
            f"{desc} + TF-IDF of {','.join(text)}"
    return x, desc


def _write_data(table: Any, probs: np.ndarray, class_list: list[Any], path: Path, col: str, log: Any, *,
                normalize: bool = True) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelqa.atomic import write_atomic

    p32 = probs.astype(np.float32)
    if normalize:  # multiclass rows sum to 1 in float32 too; multi-label probabilities are independent per class
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
