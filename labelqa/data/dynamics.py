"""Training dynamics, the input side: per-epoch logits for AUM, read lazily and validated.

AUM (:mod:`labelqa.detectors.aum`) needs the raw logits a model produced for
every row at several points of training (typically once per epoch). This
module opens them without reading the logits yet, checks their shapes against
the data, and hands the detector one epoch at a time:

* epoch sources (:class:`EpochSource`): an in-memory ``(E, N, K)`` array
  (:class:`ArraySource`), a ``.npy`` file memory-mapped one epoch at a time
  (:class:`NpyFileSource`), a folder of per-epoch ``.npy``/Parquet files
  (:class:`EpochFilesSource`), a ``list<list<float>>`` column
  (:class:`ColumnSource`);
* :class:`DynamicsRun`, :class:`Dynamics`: one or more runs with their
  threshold-sample marks, validated against the data's N, K, classes and
  labels;
* :func:`load_dynamics`: any of the above, or a labelqa dynamics folder (its
  ``dynamics.json`` manifest, :data:`MANIFEST`), to a :class:`Dynamics`;
* :func:`as_numpy`, :func:`check_labels`, :func:`check_finite`: the checks
  the AUM math and the recorder apply to logits and labels.

Who writes the format: only training and recording, so the writers live in
:mod:`labelqa.train.dynamics_writer` (``DynamicsWriter``, ``NpyEpochWriter``,
``save_dynamics``) and the recorder in :mod:`labelqa.train.recorder`
(``AUMRecorder``); they share the format constants defined here. The on-disk
format is described in ``docs/aum.md``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.data.arrays import is_list_type
from labelqa.data.readers import npy_header
from labelqa.errors import LabelqaError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ArraySource",
    "ColumnSource",
    "Dynamics",
    "DynamicsRun",
    "EpochFilesSource",
    "EpochSource",
    "NpyFileSource",
    "as_numpy",
    "check_finite",
    "check_labels",
    "list_column_matrix",
    "load_dynamics",
]

#: ``format`` value of the manifest of a labelqa dynamics directory.
FORMAT = "labelqa-dynamics"
#: Current version of the on-disk format.
FORMAT_VERSION = 1
#: File name of the manifest inside a dynamics directory.
MANIFEST = "dynamics.json"


# ----------------------------------------------------------------------------- checks of logits and labels


def as_numpy(x: Any) -> np.ndarray:
    """numpy view of a numpy array, a torch tensor (any device) or a sequence.

    torch is never imported: a tensor is recognised by its ``detach`` method,
    detached, moved to the CPU and viewed (bfloat16 is widened to float32).
    """
    if hasattr(x, "detach") and callable(x.detach):  # torch tensor, without importing torch
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        if hasattr(x, "numpy"):
            try:
                return x.numpy()
            except (TypeError, RuntimeError):  # e.g. bfloat16
                return x.float().numpy()
    return np.asarray(x)


def check_labels(y: np.ndarray, n_rows: int, n_outputs: int, what: str) -> np.ndarray:
    """Labels as int64 class codes, shape ``(n_rows,)``, each in ``0..n_outputs-1``.

    Integral floats are accepted; a scalar is one row. ``what`` names the
    labels in messages.

    Raises:
        LabelqaError: Wrong shape, non-integer values, a label outside the
            logits' outputs (naming the first such row).
    """
    y = np.asarray(y)
    if y.ndim == 0:
        y = y.reshape(1)
    if y.shape != (n_rows,):
        raise LabelqaError(f"{what} must have shape ({n_rows},), got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise LabelqaError(f"{what} must be integer class codes, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.size and (y.min() < 0 or y.max() >= n_outputs):
        bad = int(np.flatnonzero((y < 0) | (y >= n_outputs))[0])
        raise LabelqaError(f"{what}: row {bad} has label {int(y[bad])}, outside 0..{n_outputs - 1} "
                           f"(the logits have {n_outputs} outputs)")
    return y


def check_finite(z: np.ndarray, where: str, row_offset: int = 0) -> None:
    """Raise naming the first non-finite logit of block ``z``.

    ``where`` locates the block (file, epoch); ``row_offset`` is the block's
    first row in the data, so the message names the data row.
    """
    finite = np.isfinite(z)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise LabelqaError(f"{where}: row {row_offset + int(r)}, output {int(c)} is {z[r, c]} "
                           "(logits must be finite)", "check the training run that recorded them")


# ----------------------------------------------------------------------------- sources


class EpochSource:
    """Per-epoch logits of one training run: ``n_epochs`` arrays of shape ``(n_rows, n_outputs)``.

    Subclasses read lazily; :meth:`iter_epochs` yields one epoch at a time so
    that consumers keep ``O(N*K)`` memory.
    """

    description: str = "logits"
    n_epochs: int = 0
    n_rows: int = 0
    n_outputs: int = 0

    def iter_epochs(self) -> Iterator[np.ndarray]:  # pragma: no cover - interface
        """Yield each epoch's logits, shape ``(n_rows, n_outputs)``."""
        raise NotImplementedError

    def where(self, epoch: int) -> str:
        """Human-readable location of one epoch, for messages."""
        return f"{self.description}, epoch {epoch}"


class ArraySource(EpochSource):
    """An in-memory ``(E, N, K)`` array (or np.memmap / sequence of ``(N, K)`` arrays)."""

    def __init__(self, array: Any, description: str = "logits array") -> None:
        if isinstance(array, (list, tuple)):
            epochs = [as_numpy(a) for a in array]
            if not epochs:
                raise LabelqaError(f"{description}: no epochs", "record at least one epoch")
            shapes = {e.shape for e in epochs}
            if len(shapes) != 1 or epochs[0].ndim != 2:
                raise LabelqaError(f"{description}: every epoch must be an (N, K) array of one shape, got "
                                   f"{sorted(shapes)}")
            self._epochs: Sequence[np.ndarray] = epochs
            shape = (len(epochs), *epochs[0].shape)
        else:
            arr = as_numpy(array)
            if arr.ndim != 3:
                raise LabelqaError(f"{description}: logits by epoch must have shape (epochs, N, K), got {arr.shape}")
            self._epochs = arr
            shape = arr.shape
        _check_numeric(np.asarray(self._epochs[0]).dtype, description)
        self.description = description
        self.n_epochs, self.n_rows, self.n_outputs = (int(s) for s in shape)

    def iter_epochs(self) -> Iterator[np.ndarray]:
        for e in range(self.n_epochs):
            yield np.asarray(self._epochs[e])


def _check_numeric(dtype: np.dtype, where: str) -> None:
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise LabelqaError(f"{where}: logits must be numbers, got dtype {dtype}")


class NpyFileSource(EpochSource):
    """A ``.npy`` file of shape ``(E, N, K)``, memory-mapped one epoch at a time.

    Each epoch is mapped, read in row blocks and unmapped again, so the
    resident memory stays at one epoch (``N*K`` values) however large the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        shape, fortran, dtype, offset = npy_header(self.path)
        self.description = str(self.path)
        if len(shape) != 3:
            raise LabelqaError(f"{self.path}: logits by epoch must have shape (epochs, N, K), got {shape}",
                               "save one array of shape (epochs, N, K), or one (N, K) file per epoch in a folder")
        if fortran:
            raise LabelqaError(f"{self.path}: Fortran-ordered arrays cannot be streamed by epoch",
                               "save it with numpy.save(np.ascontiguousarray(a))")
        _check_numeric(dtype, self.description)
        self.dtype, self.offset = dtype, offset
        self.n_epochs, self.n_rows, self.n_outputs = shape
        expected = offset + dtype.itemsize * math.prod(shape)
        size = self.path.stat().st_size
        if size < expected:
            raise LabelqaError(f"{self.path}: file is truncated ({size} bytes, the header promises {expected})")

    def iter_epochs(self) -> Iterator[np.ndarray]:
        epoch_bytes = self.dtype.itemsize * self.n_rows * self.n_outputs
        for e in range(self.n_epochs):
            if self.n_rows == 0:
                yield np.empty((0, self.n_outputs), dtype=self.dtype)
                continue
            mm = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset + e * epoch_bytes,
                           shape=(self.n_rows, self.n_outputs))
            try:
                yield mm
            finally:
                # unmap: the pages of this epoch stop counting towards our memory
                mmap_obj = getattr(mm, "_mmap", None)
                del mm
                if mmap_obj is not None:
                    try:
                        mmap_obj.close()
                    except (BufferError, ValueError):  # a view is still alive elsewhere
                        pass


_EPOCH_SUFFIXES = (".npy", ".parquet", ".pq")


class EpochFilesSource(EpochSource):
    """A directory of per-epoch files, ``(N, K)`` each, read in name order.

    ``.npy`` files hold an ``(N, K)`` array; Parquet files hold a column
    ``logits`` of ``list<float>`` (or exactly one list column, or exactly K
    numeric columns).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        files = sorted(p for p in self.directory.iterdir() if p.is_file() and p.suffix.lower() in _EPOCH_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise LabelqaError(f"{self.directory}: no per-epoch .npy or .parquet files and no {MANIFEST}",
                               "pass a folder of epoch_000.npy, epoch_001.npy, ... (or Parquet) files, "
                               "a (epochs, N, K) .npy file, or the dynamics folder written by `labelqa train`")
        kinds = {p.suffix.lower() in (".parquet", ".pq") for p in files}
        if len(kinds) > 1:
            raise LabelqaError(f"{self.directory}: mixes .npy and Parquet epoch files", "use one kind of file")
        self.files = files
        self.description = str(self.directory)
        self.n_epochs = len(files)
        first = files[0]
        if first.suffix.lower() == ".npy":
            shape, _, dtype, _ = npy_header(first)
            if len(shape) != 2:
                raise LabelqaError(f"{first}: an epoch file must hold an (N, K) array, got shape {shape}")
            _check_numeric(dtype, str(first))
            self.n_rows, self.n_outputs = shape
        else:
            arr = self._read(first)
            self.n_rows, self.n_outputs = arr.shape

    def where(self, epoch: int) -> str:
        return str(self.files[epoch])

    def _read(self, path: Path) -> np.ndarray:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.ndim != 2:
                raise LabelqaError(f"{path}: an epoch file must hold an (N, K) array, got shape {arr.shape}")
            _check_numeric(arr.dtype, str(path))
            return arr
        return _parquet_epoch(path)

    def iter_epochs(self) -> Iterator[np.ndarray]:
        for path in self.files:
            arr = self._read(path)
            if arr.shape != (self.n_rows, self.n_outputs):
                raise LabelqaError(
                    f"{path}: shape {arr.shape} differs from the first epoch file {self.files[0].name} "
                    f"{(self.n_rows, self.n_outputs)} ({_which_axis(arr.shape, (self.n_rows, self.n_outputs))})")
            yield arr
            del arr


def _which_axis(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    if got[0] != want[0]:
        return f"axis 0 = rows: {got[0]} vs {want[0]}"
    return f"axis 1 = outputs: {got[1]} vs {want[1]}"


def _parquet_epoch(path: Path) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise LabelqaError(f"cannot read {path} as Parquet: {exc}") from exc
    lists = [n for n in table.column_names if is_list_type(table.schema.field(n).type)]
    if "logits" in table.column_names:
        col = table.column("logits")
    elif len(lists) == 1:
        col = table.column(lists[0])
    elif not lists and table.num_columns >= 2 and all(
            pa.types.is_floating(t) or pa.types.is_integer(t) for t in table.schema.types):
        try:
            return np.column_stack([table.column(n).to_numpy() for n in table.column_names]).astype(np.float64)
        except (pa.ArrowException, ValueError) as exc:
            raise LabelqaError(f"{path}: numeric columns with nulls cannot be logits") from exc
    else:
        raise LabelqaError(f"{path}: cannot tell which column holds the logits (columns: "
                           f"{', '.join(table.column_names)})", "name the list<float> column 'logits'")
    return list_column_matrix(col, str(path))


def _list_values(arr: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, flat values) of a list array without nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr.null_count:
        row = int(np.flatnonzero(np.asarray(arr.is_null()))[0])
        raise LabelqaError(f"{where}: row {row} is null", "every row needs its logits")
    lengths = np.asarray(pc.list_value_length(arr).fill_null(0), dtype=np.int64)
    flat = pc.list_flatten(arr)
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks()
    return lengths, flat


def list_column_matrix(col: Any, where: str) -> np.ndarray:
    """An (N, K) float64 matrix from a list<float> column (every row K values, no nulls).

    ``where`` names the column in messages.
    """
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths, flat = _list_values(arr, where)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise LabelqaError(f"{where}: row {row} has {lengths[row]} logits, row 0 has {lengths[0]}")
    if flat.null_count:
        raise LabelqaError(f"{where}: logits contain nulls")
    k = int(lengths[0]) if len(lengths) else 0
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(len(lengths), k)


class ColumnSource(EpochSource):
    """A ``list<list<float>>`` column: row ``i`` holds E lists of K logits (one per epoch)."""

    def __init__(self, column: Any, description: str = "logits column") -> None:
        import pyarrow as pa

        self.description = description
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if not isinstance(arr, pa.Array):
            arr = pa.array(arr)
        if not (is_list_type(arr.type) and is_list_type(arr.type.value_type)):
            raise LabelqaError(f"{description}: expected list<list<float>> (per row: one list of K logits per "
                               f"epoch), got {arr.type}")
        outer, inner = _list_values(arr, description)
        n = len(outer)
        if n and (outer != outer[0]).any():
            row = int(np.flatnonzero(outer != outer[0])[0])
            raise LabelqaError(f"{description}: row {row} has {outer[row]} epochs, row 0 has {outer[0]}",
                               "every row needs the same number of epochs")
        inner_len, values = _list_values(inner, description)
        if len(inner_len) and (inner_len != inner_len[0]).any():
            i = int(np.flatnonzero(inner_len != inner_len[0])[0])
            e0 = int(outer[0]) if n else 1
            raise LabelqaError(f"{description}: row {i // e0}, epoch {i % e0} has {inner_len[i]} logits, "
                               f"expected {inner_len[0]}")
        if values.null_count:
            raise LabelqaError(f"{description}: logits contain nulls")
        self.n_rows = n
        self.n_epochs = int(outer[0]) if n else 0
        self.n_outputs = int(inner_len[0]) if len(inner_len) else 0
        flat = np.asarray(values.to_numpy(zero_copy_only=False))
        _check_numeric(flat.dtype, description)
        self._data = flat.reshape(self.n_rows, self.n_epochs, self.n_outputs)

    def iter_epochs(self) -> Iterator[np.ndarray]:
        for e in range(self.n_epochs):
            yield self._data[:, e, :]


# ----------------------------------------------------------------------------- dynamics


@dataclass
class DynamicsRun:
    """One training run: its per-epoch logits and (optionally) threshold-sample marks.

    Attributes:
        logits: The per-epoch logits, ``(E, N, K)`` or ``(E, N, K+1)`` with
            threshold samples.
        threshold: Bool ``(N,)``: rows trained as the fake extra class K, or
            ``None`` when the run had no threshold samples.
        labels: Labels the run was trained with as recorded (threshold rows
            = K), or ``None``; when present they are checked against the data.
        name: Name for messages (``run0``...).
    """

    logits: EpochSource
    threshold: np.ndarray | None = None
    labels: np.ndarray | None = None
    name: str = "run0"

    @property
    def n_threshold(self) -> int:
        """Number of threshold samples (0 without marks)."""
        return 0 if self.threshold is None else int(np.count_nonzero(self.threshold))


@dataclass
class Dynamics:
    """Recorded training dynamics of one or more runs, validated against the data.

    Build it with :func:`load_dynamics`. Nothing is read from the logits until
    :func:`labelqa.detectors.aum.score_dynamics` streams them.
    """

    runs: list[DynamicsRun]
    n_rows: int
    n_classes: int
    classes: list[Any] | None = None
    source: str = "logits"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_threshold_samples(self) -> bool:
        """Whether the runs carry threshold-sample marks."""
        return any(r.threshold is not None for r in self.runs)

    @property
    def epochs(self) -> list[int]:
        """Number of recorded epochs of each run."""
        return [r.logits.n_epochs for r in self.runs]


def _is_pathlike(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _table_column(table: Any, name: str) -> Any | None:
    if table is None:
        return None
    names = getattr(table, "column_names", None) or []
    return table.column(name) if name in names else None


def _open_source(source: Any, table: Any) -> tuple[list[DynamicsRun], dict[str, Any], str]:
    """Runs (without threshold marks unless from a manifest), manifest, description."""
    import pyarrow as pa

    if _is_pathlike(source):
        path = Path(source)
        if path.is_dir():
            if (path / MANIFEST).is_file():
                runs, manifest = _read_manifest_dir(path)
                return runs, manifest, str(path)
            return [DynamicsRun(EpochFilesSource(path))], {}, str(path)
        if path.is_file():
            if path.suffix.lower() == ".npy":
                return [DynamicsRun(NpyFileSource(path))], {}, str(path)
            if path.name == MANIFEST:
                runs, manifest = _read_manifest_dir(path.parent)
                return runs, manifest, str(path.parent)
            raise LabelqaError(f"{path}: logits by epoch must be a .npy file, a folder of per-epoch files, "
                               "or a list<list<float>> column", "see docs/aum.md for the formats")
        col = _table_column(table, str(source))
        if col is not None:
            return [DynamicsRun(ColumnSource(col, f"column {source!r}"))], {}, f"column {source!r}"
        raise LabelqaError(f"logits by epoch: {source} is neither a file, a folder nor a column of the data",
                           "check the path (or column name)")
    if isinstance(source, (pa.Array, pa.ChunkedArray)):
        return [DynamicsRun(ColumnSource(source))], {}, "logits column"
    if isinstance(source, EpochSource):
        return [DynamicsRun(source)], {}, source.description
    if isinstance(source, DynamicsRun):
        return [source], {}, source.logits.description
    return [DynamicsRun(ArraySource(source))], {}, "logits array"


def _read_manifest_dir(path: Path) -> tuple[list[DynamicsRun], dict[str, Any]]:
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabelqaError(f"cannot read {mpath}: {exc}", "re-create the folder with `labelqa train`") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise LabelqaError(f"{mpath}: not a labelqa dynamics manifest (format must be {FORMAT!r})")
    if int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise LabelqaError(f"{mpath}: format version {manifest.get('version')} is newer than this labelqa "
                           f"understands ({FORMAT_VERSION})", "upgrade labelqa")
    runs = []
    for i, spec in enumerate(manifest.get("runs") or []):
        name = spec.get("name", f"run{i}")
        logits = NpyFileSource(path / spec["logits"])
        thr = _load_marks(path / spec["threshold"], f"{name} threshold marks") if spec.get("threshold") else None
        labels = None
        if spec.get("labels"):
            labels = np.load(path / spec["labels"], allow_pickle=False)
        runs.append(DynamicsRun(logits, thr, labels, name))
    if not runs:
        raise LabelqaError(f"{mpath}: lists no runs")
    return runs, manifest


def _load_marks(source: Any, what: str, table: Any = None) -> np.ndarray:
    """Bool marks from a .npy / .txt file, a column of ``table``, or an array."""
    if _is_pathlike(source):
        path = Path(source)
        if path.is_file():
            if path.suffix.lower() == ".npy":
                arr = np.load(path, allow_pickle=False)
            elif path.suffix.lower() in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                t = pq.read_table(path)
                if t.num_columns != 1:
                    raise LabelqaError(f"{path}: a threshold-marks file must have one bool column, "
                                       f"has {t.column_names}")
                arr = t.column(0).to_numpy(zero_copy_only=False)
            else:  # one 0/1 (or true/false) per line
                text = path.read_text(encoding="utf-8").split()
                mapping = {"0": False, "1": True, "false": False, "true": True}
                try:
                    arr = np.array([mapping[w.lower()] for w in text], dtype=bool)
                except KeyError as exc:
                    raise LabelqaError(f"{path}: threshold marks must be 0/1 or true/false, got {exc.args[0]!r}")
            return _as_bool(arr, f"{what} ({path})")
        col = _table_column(table, str(source))
        if col is not None:
            if col.null_count:
                raise LabelqaError(f"{what}: column {source!r} has nulls", "mark every row true or false")
            return _as_bool(col.to_numpy(zero_copy_only=False), f"{what} (column {source!r})")
        raise LabelqaError(f"{what}: {source} is neither a file nor a column of the data", "check the path")
    return _as_bool(as_numpy(source), what)


def _as_bool(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise LabelqaError(f"{what}: marks must be bool (or 0/1), got dtype {arr.dtype}")
    if not np.isin(arr, (0, 1)).all():
        raise LabelqaError(f"{what}: marks must be bool (or 0/1), found other values")
    return arr.astype(bool)


def load_dynamics(
    source: Any,
    n_rows: int,
    n_classes: int,
    *,
    threshold: Any = None,
    table: Any = None,
    classes: Sequence[Any] | None = None,
    labels: Any = None,
) -> Dynamics:
    """Open and validate recorded training dynamics (reads headers, not the logits).

    Args:
        source: One of

            * a labelqa dynamics folder (with ``dynamics.json``, as written by
              ``labelqa train`` and :class:`labelqa.train.recorder.AUMRecorder`), one or more runs
              with their threshold marks;
            * a ``.npy`` file of shape ``(epochs, N, K)`` (memory-mapped);
            * a folder of per-epoch ``(N, K)`` files, ``.npy`` or Parquet
              (column ``logits`` of list<float>), read in name order;
            * a column name of ``table`` holding ``list<list<float>>`` (per
              row: one list of K logits per epoch), or such a pyarrow array;
            * an in-memory ``(epochs, N, K)`` array or list of ``(N, K)``
              arrays;
            * a :class:`Dynamics` (validated again and returned).
        n_rows: N of the data.
        n_classes: K of the data (real classes).
        threshold: Threshold-sample marks for a single-run source: bool
            ``(N,)``, a ``.npy``/``.txt``/``.parquet`` file of them, or a
            column name of ``table``. With marks the logits must have K+1
            outputs (the fake class is the last one). Not allowed with a
            dynamics folder, which carries its own marks.
        table: The data as a pyarrow Table, to resolve column names.
        classes: The data's classes, checked against the manifest's.
        labels: The data's labels (int codes), checked against the labels a
            run recorded, when it recorded them.

    Raises:
        LabelqaError: Unreadable input, N or K mismatch (naming the file and
            axis), threshold marks inconsistent with the number of outputs.
    """
    if isinstance(source, Dynamics):
        runs, manifest, desc = source.runs, dict(source.meta), source.source
        if source.classes is not None and classes is None:
            classes = source.classes
    else:
        runs, manifest, desc = _open_source(source, table)
    if threshold is not None:
        if manifest.get("format") == FORMAT:
            raise LabelqaError(f"{desc} carries its own threshold-sample marks; do not pass them separately")
        marks = _load_marks(threshold, "threshold-sample marks", table)
        if marks.ndim == 2 and marks.shape[0] == 1:
            marks = marks[0]
        if marks.ndim != 1:
            raise LabelqaError(f"threshold-sample marks must have shape ({n_rows},) for one run, got {marks.shape}",
                               "several runs need the dynamics folder format (see docs/aum.md)")
        if len(runs) != 1:
            raise LabelqaError("threshold-sample marks given for several runs at once")
        runs = [DynamicsRun(runs[0].logits, marks, runs[0].labels, runs[0].name)]
    if manifest:
        m_classes = manifest.get("classes")
        if classes is not None and m_classes is not None and [str(c) for c in m_classes] != [str(c) for c in classes]:
            raise LabelqaError(f"{desc}: recorded classes {m_classes} differ from the data's classes "
                               f"{list(classes)} (order matters: output k is class k)",
                               "scan the data file `labelqa train` wrote, or pass the classes in training order")
        m_k = manifest.get("n_classes")
        if m_k is not None and int(m_k) != n_classes:
            raise LabelqaError(f"{desc}: recorded for {m_k} classes, the data has {n_classes}")
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    for run in runs:
        _validate_run(run, n_rows, n_classes, desc if len(runs) == 1 else f"{desc} ({run.name})", y)
    with_marks = [r.threshold is not None for r in runs]
    if any(with_marks) and not all(with_marks):
        raise LabelqaError(f"{desc}: some runs have threshold-sample marks and some do not",
                           "record every run with threshold samples, or none")
    if isinstance(source, Dynamics):
        source.classes = list(classes) if classes is not None else source.classes
        return source
    return Dynamics(runs=list(runs), n_rows=n_rows, n_classes=n_classes,
                    classes=list(classes) if classes is not None else manifest.get("classes"),
                    source=desc, meta=manifest)


def _validate_run(run: DynamicsRun, n_rows: int, n_classes: int, desc: str, labels: np.ndarray | None) -> None:
    src = run.logits
    where = getattr(src, "path", None) or src.description
    if src.n_epochs < 1:
        raise LabelqaError(f"{where}: no epochs recorded", "record at least one epoch")
    if src.n_rows != n_rows:
        axis = 0 if isinstance(src, ColumnSource) else 1
        raise LabelqaError(f"{where}: {src.n_rows} rows on axis {axis} (rows) but the data has {n_rows} rows",
                           "record logits for every row of the data, in data order")
    if run.threshold is not None:
        if run.threshold.shape != (n_rows,):
            raise LabelqaError(f"{desc}: threshold-sample marks have shape {run.threshold.shape}, "
                               f"expected ({n_rows},)")
        if not run.threshold.any():
            raise LabelqaError(f"{desc}: threshold-sample marks mark no row", "mark about N/(K+1) rows")
        if src.n_outputs != n_classes + 1:
            raise LabelqaError(
                f"{where}: {src.n_outputs} outputs on the last axis; with threshold samples the model needs "
                f"K+1 = {n_classes + 1} (the {n_classes} classes plus the fake class {n_classes})",
                "record logits of the model trained with the extra class")
    elif src.n_outputs != n_classes:
        hint = ("K+1 outputs look like a threshold-sample run: pass the threshold-sample marks"
                if src.n_outputs == n_classes + 1 else "record one logit per class, in class order")
        raise LabelqaError(f"{where}: {src.n_outputs} outputs on the last axis but the data has "
                           f"{n_classes} classes", hint)
    if run.labels is not None and labels is not None:
        recorded = np.asarray(run.labels, dtype=np.int64)
        if recorded.shape != (n_rows,):
            raise LabelqaError(f"{desc}: recorded labels have shape {recorded.shape}, expected ({n_rows},)")
        ordinary = np.ones(n_rows, bool) if run.threshold is None else ~run.threshold
        bad = np.flatnonzero(ordinary & (recorded != labels))
        if bad.size:
            i = int(bad[0])
            raise LabelqaError(f"{desc}: the run was trained with label {recorded[i]} for row {i} but the data "
                               f"says {labels[i]} ({bad.size} rows differ)",
                               "the row order or class order of the data differs from training")

