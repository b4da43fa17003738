"""Training dynamics for Area Under the Margin (AUM): margins, reading, writing, recording.

AUM (Pleiss et al., NeurIPS 2020) needs the raw logits a model produced for
every row at several points of training (typically once per epoch). The
margin of row ``i`` at a recorded step ``t`` is::

    M_t(i) = z[i, s_i] - max_{k != s_i} z[i, k]

on raw logits ``z`` with ``s_i`` the label the model was trained with, and
``AUM(i)`` is the mean of ``M_t(i)`` over the recorded steps. Low or negative
AUM = likely mislabeled.

This module holds everything but the detector itself
(:class:`labelqa.detectors.aum.AreaUnderMargin`):

* :func:`margins`, :func:`aum`: the formulas on in-memory arrays.
* :func:`load_dynamics`: open recorded dynamics (a ``.npy`` of shape
  ``(epochs, N, K)``, a directory of per-epoch files, a labelqa dynamics
  directory written by ``labelqa train`` or :class:`AUMRecorder`, or a
  ``list<list<float>>`` column) as a :class:`Dynamics` without reading the
  logits yet.
* :func:`score_dynamics`: AUM per row, streamed epoch by epoch (memory
  ``O(N*K)`` however many epochs), threshold-sample cutoffs and the two-run
  flag combination (:func:`combine_run_flags`).
* :class:`DynamicsWriter`, :func:`save_dynamics`: write the on-disk format.
* :class:`AUMRecorder`: record logits from your own training loop (numpy
  arrays or torch tensors; torch is never imported here).

The on-disk format is described in ``docs/aum.md``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError

__all__ = [
    "AUMRecorder",
    "AUMScores",
    "Dynamics",
    "DynamicsRun",
    "DynamicsWriter",
    "EpochSource",
    "aum",
    "combine_run_flags",
    "load_dynamics",
    "margins",
    "save_dynamics",
    "score_dynamics",
    "threshold_cutoff",
]

#: ``format`` value of the manifest of a labelqa dynamics directory.
FORMAT = "labelqa-dynamics"
#: Current version of the on-disk format.
FORMAT_VERSION = 1
#: File name of the manifest inside a dynamics directory.
MANIFEST = "dynamics.json"
#: Rows processed at once when streaming an epoch (bounds temporary memory).
BLOCK_ROWS = 1 << 16

Progress = Callable[[str], None]


# ----------------------------------------------------------------------------- formulas


def _as_numpy(x: Any) -> np.ndarray:
    """numpy view of a numpy array, a torch tensor (any device) or a sequence."""
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


def _block_margins(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Margins of a float64 block ``z`` (modified in place: label logits set to -inf)."""
    rows = np.arange(z.shape[0])
    assigned = z[rows, labels].copy()
    z[rows, labels] = -np.inf
    return assigned - z.max(axis=1)


def margins(logits: Any, labels: Any) -> np.ndarray:
    """Margin of every row: its label's logit minus the largest other logit.

    Args:
        logits: Raw logits (not probabilities), shape ``(N, K)``, K >= 2.
        labels: Integer labels the model was trained with, shape ``(N,)``,
            each in ``0..K-1``.

    Returns:
        float64 margins, shape ``(N,)``. A tie between the label's logit and
        the largest other logit gives 0; negative = another class is ahead.

    Raises:
        LabelqaError: Wrong shapes, labels out of range, non-finite logits.
    """
    z = np.array(_as_numpy(logits), dtype=np.float64)  # a copy: modified below
    y = _as_numpy(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise LabelqaError(f"logits must have shape (N, K) with K >= 2, got {z.shape}")
    y = _check_labels(y, z.shape[0], z.shape[1], "labels")
    _check_finite(z, "logits")
    return _block_margins(z, y)


def aum(logits_by_epoch: Any, labels: Any) -> np.ndarray:
    """AUM of every row: the mean margin over epochs.

    Args:
        logits_by_epoch: Shape ``(E, N, K)`` array (or memmap), or a sequence
            of E arrays of shape ``(N, K)``. Consumed epoch by epoch.
        labels: Integer labels the model was trained with, shape ``(N,)``.

    Returns:
        float64 AUM, shape ``(N,)``.
    """
    total: np.ndarray | None = None
    n_epochs = 0
    for epoch in logits_by_epoch:
        m = margins(epoch, labels)
        total = m if total is None else total + m
        n_epochs += 1
    if total is None:
        raise LabelqaError("no epochs of logits given", "record at least one epoch")
    return total / n_epochs


def threshold_cutoff(aum_values: Any, threshold: Any, percentile: float = 99.0) -> float:
    """The AUM cutoff learned from threshold samples.

    Args:
        aum_values: AUM of every row of one run, shape ``(N,)``.
        threshold: Bool mask of that run's threshold samples, shape ``(N,)``.
        percentile: Percentile of the threshold samples' AUM (99 in the
            paper), with linear interpolation.

    Returns:
        The cutoff; an ordinary row with AUM strictly below it is flagged.
    """
    a = np.asarray(aum_values, dtype=np.float64)
    t = np.asarray(threshold, dtype=bool)
    if not 0.0 <= percentile <= 100.0:
        raise LabelqaError(f"threshold percentile {percentile} is not in [0, 100]")
    if not t.any():
        raise LabelqaError("no threshold samples in this run", "mark about N/(K+1) rows as threshold samples")
    return float(np.percentile(a[t], percentile))


def combine_run_flags(flags: Any, ordinary: Any) -> np.ndarray:
    """Combine per-run flags: a row is flagged only if flagged in every run where it was ordinary.

    Args:
        flags: Bool, shape ``(R, N)``: run ``r`` flags row ``i``.
        ordinary: Bool, shape ``(R, N)``: row ``i`` was an ordinary (not a
            threshold) row in run ``r``. Flags of non-ordinary entries are
            ignored.

    Returns:
        Bool, shape ``(N,)``. A row that was ordinary in no run is not flagged.
    """
    f = np.atleast_2d(np.asarray(flags, dtype=bool))
    o = np.atleast_2d(np.asarray(ordinary, dtype=bool))
    if f.shape != o.shape:
        raise LabelqaError(f"flags {f.shape} and ordinary {o.shape} must have the same shape (R, N)")
    return np.all(f | ~o, axis=0) & np.any(o, axis=0)


def _check_labels(y: np.ndarray, n_rows: int, n_outputs: int, what: str) -> np.ndarray:
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


def _check_finite(z: np.ndarray, where: str, row_offset: int = 0) -> None:
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
            epochs = [_as_numpy(a) for a in array]
            if not epochs:
                raise LabelqaError(f"{description}: no epochs", "record at least one epoch")
            shapes = {e.shape for e in epochs}
            if len(shapes) != 1 or epochs[0].ndim != 2:
                raise LabelqaError(f"{description}: every epoch must be an (N, K) array of one shape, got "
                                   f"{sorted(shapes)}")
            self._epochs: Sequence[np.ndarray] = epochs
            shape = (len(epochs), *epochs[0].shape)
        else:
            arr = _as_numpy(array)
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


def _npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a .npy file, reading its header only."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(fh, version)  # type: ignore[attr-defined]
            offset = fh.tell()
    except (ValueError, OSError) as exc:
        raise LabelqaError(f"cannot read {path} as .npy: {exc}", "write it with numpy.save") from exc
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype), offset


class NpyFileSource(EpochSource):
    """A ``.npy`` file of shape ``(E, N, K)``, memory-mapped one epoch at a time.

    Each epoch is mapped, read in row blocks and unmapped again, so the
    resident memory stays at one epoch (``N*K`` values) however large the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        shape, fortran, dtype, offset = _npy_header(self.path)
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
            shape, _, dtype, _ = _npy_header(first)
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
    lists = [n for n in table.column_names if _is_list(table.schema.field(n).type)]
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
    return _list_column_matrix(col, str(path))


def _is_list(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


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


def _list_column_matrix(col: Any, where: str) -> np.ndarray:
    """An (N, K) float matrix from a list<float> column."""
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
        if not (_is_list(arr.type) and _is_list(arr.type.value_type)):
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
    :func:`score_dynamics` streams them.
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
    return _as_bool(_as_numpy(source), what)


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
              ``labelqa train`` and :class:`AUMRecorder`), one or more runs
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


# ----------------------------------------------------------------------------- scoring


@dataclass
class RunResult:
    """Streaming result of one run: AUM of every row and the mean logits."""

    aum: np.ndarray
    mean_logits: np.ndarray
    assigned: np.ndarray
    threshold: np.ndarray | None
    n_epochs: int


def run_aum(run: DynamicsRun, labels: np.ndarray, n_classes: int,
            progress: Callable[[int, int], None] | None = None) -> RunResult:
    """AUM of one run, streamed epoch by epoch in row blocks.

    Args:
        run: The run.
        labels: Given labels (int codes ``0..K-1``), shape ``(N,)``.
        n_classes: K. Threshold rows are scored against label K.
        progress: Called as ``progress(epoch_done, n_epochs)``.
    """
    src = run.logits
    n, k_out = src.n_rows, src.n_outputs
    assigned = np.asarray(labels, dtype=np.int64)
    if run.threshold is not None:
        assigned = np.where(run.threshold, n_classes, assigned)
    total_margin = np.zeros(n, dtype=np.float64)
    total_logits = np.zeros((n, k_out), dtype=np.float64)
    n_epochs = 0
    for e, epoch in enumerate(src.iter_epochs()):
        if epoch.shape != (n, k_out):
            raise LabelqaError(f"{src.where(e)}: shape {epoch.shape}, expected {(n, k_out)}")
        for a in range(0, n, BLOCK_ROWS):
            b = min(n, a + BLOCK_ROWS)
            z = np.array(epoch[a:b], dtype=np.float64)
            _check_finite(z, src.where(e), a)
            total_logits[a:b] += z
            total_margin[a:b] += _block_margins(z, assigned[a:b])
        n_epochs += 1
        del epoch
        if progress:
            progress(n_epochs, src.n_epochs)
    if n_epochs == 0:
        raise LabelqaError(f"{src.description}: no epochs recorded")
    return RunResult(total_margin / n_epochs, total_logits / n_epochs, assigned, run.threshold, n_epochs)


@dataclass
class AUMScores:
    """AUM of every row, the flags and the rule that produced them.

    Attributes:
        aum: AUM per row (mean margin), averaged over the runs where the row
            was ordinary (over all runs when it never was), shape ``(N,)``.
        flags: Flagged rows, bool ``(N,)``.
        suggested: Class (``0..K-1``) with the highest mean logit among the
            real classes, shape ``(N,)``.
        rule: ``"threshold_samples"``, ``"cutoff"``, ``"percentile"`` or
            ``"default_negative"``.
        cutoffs: The AUM cutoff of each run (threshold rule) or the single
            cutoff used.
        per_run_aum: AUM of each run, shape ``(R, N)``.
        threshold: Threshold marks ``(R, N)`` or ``None``.
        epochs: Epochs of each run.
    """

    aum: np.ndarray
    flags: np.ndarray
    suggested: np.ndarray
    rule: str
    cutoffs: list[float]
    per_run_aum: np.ndarray
    threshold: np.ndarray | None
    epochs: list[int]
    mean_logits: np.ndarray
    threshold_percentile: float = 99.0

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable figures: rule, cutoffs, runs, epochs, threshold samples."""
        descriptions = {
            "threshold_samples": f"flag rows whose AUM is below the {self.threshold_percentile:g}th percentile of "
                                 "the threshold samples' AUM in every run where they were ordinary rows",
            "cutoff": "flag rows with AUM below the given cutoff",
            "percentile": "flag rows with AUM below the given percentile of all rows' AUM",
            "default_negative": "no threshold samples and no cutoff given: rows ranked by AUM, flagged when "
                                "AUM < 0 (another class ahead on average)",
        }
        out: dict[str, Any] = {
            "rule": self.rule,
            "rule_description": descriptions[self.rule],
            "cutoffs": [float(c) for c in self.cutoffs],
            "n_runs": int(self.per_run_aum.shape[0]),
            "epochs": [int(e) for e in self.epochs],
            "n_threshold_samples": [] if self.threshold is None else [int(t.sum()) for t in self.threshold],
            "n_flagged": int(self.flags.sum()),
            "aum_mean": float(np.mean(self.aum)) if self.aum.size else None,
            "aum_min": float(np.min(self.aum)) if self.aum.size else None,
            "aum_max": float(np.max(self.aum)) if self.aum.size else None,
        }
        return out


def score_dynamics(
    dynamics: Dynamics,
    labels: Any,
    *,
    cutoff: float | None = None,
    percentile: float | None = None,
    threshold_percentile: float = 99.0,
    progress: Callable[[str], None] | None = None,
) -> AUMScores:
    """AUM, flags and suggestions from recorded dynamics.

    Rule (first that applies): ``cutoff`` given -> flag AUM < cutoff;
    ``percentile`` given -> flag AUM below that percentile of all rows' AUM;
    threshold samples present -> per run, flag ordinary rows with AUM below
    the ``threshold_percentile`` percentile of that run's threshold samples'
    AUM, and keep a row flagged only if every run where it was ordinary flags
    it; otherwise flag AUM < 0.

    Args:
        dynamics: From :func:`load_dynamics`.
        labels: Given labels, int codes ``0..K-1``, shape ``(N,)``.
        cutoff: Fixed AUM cutoff.
        percentile: Percentile of all rows' AUM, in [0, 100].
        threshold_percentile: Percentile of the threshold samples' AUM.
        progress: Optional message callback (one message per run and a few
            per run's epochs).
    """
    k = dynamics.n_classes
    y = _check_labels(np.asarray(labels), dynamics.n_rows, k, "labels")
    if cutoff is not None and percentile is not None:
        raise LabelqaError("an AUM cutoff and an AUM percentile both given", "pass only one of them")
    if cutoff is not None and not math.isfinite(cutoff):
        raise LabelqaError(f"AUM cutoff {cutoff} is not a finite number")
    if percentile is not None and not 0.0 <= percentile <= 100.0:
        raise LabelqaError(f"AUM percentile {percentile} is not in [0, 100]")
    if not 0.0 <= threshold_percentile <= 100.0:
        raise LabelqaError(f"threshold percentile {threshold_percentile} is not in [0, 100]")

    n, r_count = dynamics.n_rows, len(dynamics.runs)
    per_run = np.zeros((r_count, n), dtype=np.float64)
    ordinary = np.ones((r_count, n), dtype=bool)
    for r, run in enumerate(dynamics.runs):
        if run.threshold is not None:
            ordinary[r] = ~run.threshold
    any_ord = ordinary.any(axis=0)
    # rows are averaged over the runs where they were ordinary (over all runs if never)
    weight = np.where(any_ord, ordinary, True)
    n_weight = weight.sum(axis=0)
    logit_sum = np.zeros((n, k), dtype=np.float64)
    for r, run in enumerate(dynamics.runs):
        def tick(done: int, total: int, name: str = run.name) -> None:
            if progress and (done == total or done % max(1, total // 4) == 0):
                progress(f"AUM {name}: epoch {done}/{total}")

        res = run_aum(run, y, k, tick)
        per_run[r] = res.aum
        if weight[r].all():
            logit_sum += res.mean_logits[:, :k]
        else:
            logit_sum += res.mean_logits[:, :k] * weight[r][:, None]
        del res

    aum_rows = (per_run * weight).sum(axis=0) / n_weight
    mean_logits = logit_sum
    mean_logits /= n_weight[:, None]
    suggested = np.argmax(mean_logits, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    thr = (np.stack([run.threshold for run in dynamics.runs]) if dynamics.has_threshold_samples else None)

    if cutoff is not None:
        rule, cutoffs = "cutoff", [float(cutoff)]
        flags = aum_rows < cutoff
    elif percentile is not None:
        c = float(np.percentile(aum_rows, percentile)) if n else float("nan")
        rule, cutoffs = "percentile", [c]
        flags = aum_rows < c
    elif thr is not None:
        rule = "threshold_samples"
        cutoffs = [threshold_cutoff(per_run[r], thr[r], threshold_percentile) for r in range(r_count)]
        run_flags = per_run < np.asarray(cutoffs)[:, None]
        flags = combine_run_flags(run_flags, ordinary)
    else:
        rule, cutoffs = "default_negative", [0.0]
        flags = aum_rows < 0.0
    return AUMScores(aum=aum_rows, flags=np.asarray(flags, dtype=bool), suggested=suggested, rule=rule,
                     cutoffs=cutoffs, per_run_aum=per_run, threshold=thr, epochs=dynamics.epochs,
                     mean_logits=mean_logits, threshold_percentile=float(threshold_percentile))


# ----------------------------------------------------------------------------- writing


def _npy_header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    import io

    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # header too long for version 1.0
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    magic = buf.getvalue()
    return magic


class NpyEpochWriter:
    """Write an ``(E, N, K)`` ``.npy`` file one epoch at a time (memory: one epoch).

    The header is written first with the promised shape; :meth:`close` checks
    that exactly ``n_epochs`` epochs arrived.
    """

    def __init__(self, path: str | os.PathLike[str], n_epochs: int, n_rows: int, n_outputs: int,
                 dtype: Any = np.float32) -> None:
        self.path = Path(path)
        self.shape = (int(n_epochs), int(n_rows), int(n_outputs))
        self.dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).byteorder == ">" else np.dtype(dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "wb")
        self._fh.write(_npy_header_bytes(self.shape, self.dtype))
        self.written = 0

    def write_epoch(self, logits: Any) -> None:
        """Append one epoch of logits, shape ``(N, K)``."""
        z = np.ascontiguousarray(_as_numpy(logits), dtype=self.dtype)
        if z.shape != self.shape[1:]:
            raise LabelqaError(f"{self.path}: epoch {self.written} has shape {z.shape}, expected {self.shape[1:]}")
        if self.written >= self.shape[0]:
            raise LabelqaError(f"{self.path}: more than the {self.shape[0]} epochs promised")
        self._fh.write(z.tobytes())
        self.written += 1

    def close(self) -> None:
        """Close the file; raise if fewer epochs than promised were written."""
        if self._fh.closed:
            return
        self._fh.close()
        if self.written != self.shape[0]:
            raise LabelqaError(f"{self.path}: {self.written} epochs written, {self.shape[0]} promised")


def _write_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


class DynamicsWriter:
    """Write a labelqa dynamics folder atomically (see ``docs/aum.md``).

    Everything is written to a temporary folder beside ``path``, which
    replaces ``path`` on :meth:`commit` (``path`` appears complete or not at
    all; an existing folder is replaced). Use it as a context manager::

        with DynamicsWriter(out, n_rows=N, n_classes=K, classes=names) as w:
            run = w.add_run(n_epochs=E, n_outputs=K + 1, threshold=marks, labels=assigned)
            for epoch in range(E):
                run.write_epoch(logits)       # (N, K+1)
        # committed here; removed again if the block raised
    """

    def __init__(self, path: str | os.PathLike[str], *, n_rows: int, n_classes: int,
                 classes: Sequence[Any] | None = None, producer: dict[str, Any] | None = None,
                 keep_runs: Sequence[dict[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.n_rows, self.n_classes = int(n_rows), int(n_classes)
        self.classes = None if classes is None else [_jsonable(c) for c in classes]
        self.producer = dict(producer or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self.runs: list[dict[str, Any]] = [dict(r) for r in keep_runs]
        self._writers: list[NpyEpochWriter] = []
        self._done = False
        for spec in self.runs:  # copy kept runs (from an existing folder) into the new one
            for key in ("logits", "threshold", "labels"):
                if spec.get(key):
                    dst = self.tmp / spec[key]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.path / spec[key], dst)

    def add_run(self, n_epochs: int, n_outputs: int, *, threshold: Any = None, labels: Any = None,
                name: str | None = None, info: dict[str, Any] | None = None) -> NpyEpochWriter:
        """Start a run; returns the writer to feed epoch by epoch."""
        name = name or f"run{len(self.runs)}"
        if any(r["name"] == name for r in self.runs):
            raise LabelqaError(f"run {name!r} added twice")
        spec: dict[str, Any] = {"name": name, "logits": f"{name}/logits.npy", "threshold": None, "labels": None,
                                "epochs": int(n_epochs), "n_outputs": int(n_outputs)}
        if threshold is not None:
            marks = np.asarray(threshold, dtype=bool)
            if marks.shape != (self.n_rows,):
                raise LabelqaError(f"threshold marks of {name} have shape {marks.shape}, expected ({self.n_rows},)")
            _write_npy(self.tmp / name / "threshold.npy", marks)
            spec["threshold"] = f"{name}/threshold.npy"
            spec["n_threshold"] = int(marks.sum())
        if labels is not None:
            y = np.asarray(labels, dtype=np.int64)
            if y.shape != (self.n_rows,):
                raise LabelqaError(f"labels of {name} have shape {y.shape}, expected ({self.n_rows},)")
            _write_npy(self.tmp / name / "labels.npy", y)
            spec["labels"] = f"{name}/labels.npy"
        if info:
            spec["info"] = info
        self.runs.append(spec)
        writer = NpyEpochWriter(self.tmp / spec["logits"], n_epochs, self.n_rows, n_outputs)
        self._writers.append(writer)
        return writer

    def manifest(self) -> dict[str, Any]:
        """The ``dynamics.json`` content."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "n_rows": self.n_rows, "n_classes": self.n_classes,
                "classes": self.classes, "n_runs": len(self.runs), "runs": self.runs, "producer": self.producer}

    def commit(self) -> Path:
        """Close the runs, write the manifest and move the folder into place."""
        for w in self._writers:
            w.close()
        (self.tmp / MANIFEST).write_text(json.dumps(self.manifest(), indent=2) + "\n", encoding="utf-8")
        os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp makes it private; give it a normal folder's mode
        old = None
        if self.path.exists():
            if not (self.path / MANIFEST).is_file() and any(self.path.iterdir()):
                self.abort()
                raise LabelqaError(f"{self.path} exists and is not a labelqa dynamics folder; not replacing it",
                                   "choose another output folder")
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return self.path

    def abort(self) -> None:
        """Discard everything written."""
        for w in self._writers:
            if not w._fh.closed:
                w._fh.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True

    def __enter__(self) -> DynamicsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_dynamics(
    path: str | os.PathLike[str],
    logits_by_run: Sequence[Any],
    *,
    n_classes: int,
    thresholds: Sequence[Any] | None = None,
    labels: Sequence[Any] | None = None,
    classes: Sequence[Any] | None = None,
    producer: dict[str, Any] | None = None,
) -> Path:
    """Write in-memory dynamics as a labelqa dynamics folder.

    Args:
        path: Output folder (replaced atomically).
        logits_by_run: Per run, an ``(E, N, K)`` (or ``(E, N, K+1)`` with
            threshold samples) array or list of ``(N, K)`` arrays.
        n_classes: K, the number of real classes.
        thresholds: Per run, bool ``(N,)`` threshold marks or ``None``.
        labels: Per run, the labels it was trained with, or ``None``.
        classes: Class values in output order.
        producer: Free-form provenance written to the manifest.
    """
    sources = [ArraySource(a, f"run{i} logits") for i, a in enumerate(logits_by_run)]
    if not sources:
        raise LabelqaError("no runs to save")
    n_rows = sources[0].n_rows
    with DynamicsWriter(path, n_rows=n_rows, n_classes=n_classes, classes=classes, producer=producer) as w:
        for i, src in enumerate(sources):
            thr = thresholds[i] if thresholds is not None else None
            lab = labels[i] if labels is not None else None
            writer = w.add_run(src.n_epochs, src.n_outputs, threshold=thr, labels=lab)
            for epoch in src.iter_epochs():
                writer.write_epoch(epoch)
    return Path(path)


# ----------------------------------------------------------------------------- recorder


class AUMRecorder:
    """Record per-epoch logits from your own training loop, for AUM.

    Framework-light: logits, labels and ids may be numpy arrays, torch tensors
    (on any device; detached and copied to CPU) or Python sequences. torch is
    never imported. Memory: one epoch of logits (``N x K`` float32) plus a
    temporary file holding the finished epochs.

    Call :meth:`update` for every batch (in any order; a batch of one row may
    pass logits of shape ``(K,)`` and scalar label and id) and :meth:`end_epoch`
    after each epoch (an epoch also ends by itself when a complete epoch is
    followed by a batch with an id seen again). Every row must be recorded
    exactly once per epoch. Then :meth:`save` writes a dynamics folder that
    ``labelqa scan --logits-by-epoch`` reads.

    Example::

        rec = AUMRecorder(n_samples=len(train_set))
        for epoch in range(epochs):
            for x, y, idx in loader:          # idx = row positions in the data file
                logits = model(x)
                ...
                rec.update(logits, y, idx)
            rec.end_epoch()
        rec.save("dynamics/")

    Args:
        n_samples: N, the number of rows; sample ids are row positions
            ``0..N-1`` in the data file that will be scanned.
        threshold_class: With threshold samples, the fake class's output
            index (must be the last output, K); rows trained with that label
            are saved as threshold samples.
        dtype: Storage dtype of the logits (float32).
    """

    def __init__(self, n_samples: int, *, threshold_class: int | None = None, dtype: Any = np.float32) -> None:
        if int(n_samples) < 1:
            raise LabelqaError(f"n_samples must be at least 1, got {n_samples}")
        self.n_samples = int(n_samples)
        self.threshold_class = threshold_class
        self.dtype = np.dtype(dtype)
        self.n_outputs: int | None = None
        self.labels = np.full(self.n_samples, -1, dtype=np.int64)
        self._epoch: np.ndarray | None = None
        self._seen = np.zeros(self.n_samples, dtype=bool)
        self._margin_sum = np.zeros(self.n_samples, dtype=np.float64)
        self._spill: Any = None
        self.epochs = 0

    def update(self, logits: Any, labels: Any, sample_ids: Any) -> np.ndarray:
        """Record one batch; returns the batch's margins.

        Args:
            logits: Raw logits, shape ``(B, K)`` (or ``(K,)`` for one row).
            labels: Labels the model was trained with, shape ``(B,)``.
            sample_ids: Row positions ``0..N-1``, shape ``(B,)``.
        """
        z = np.asarray(_as_numpy(logits))
        if z.ndim == 1:
            z = z.reshape(1, -1)
        ids = np.asarray(_as_numpy(sample_ids)).reshape(-1)
        y = np.asarray(_as_numpy(labels)).reshape(-1)
        if z.ndim != 2:
            raise LabelqaError(f"logits must have shape (batch, K), got {z.shape}")
        b, k = z.shape
        if ids.shape != (b,) or y.shape != (b,):
            raise LabelqaError(f"batch of {b} logits rows but {y.shape[0]} labels and {ids.shape[0]} sample ids")
        if self.n_outputs is None:
            if k < 2:
                raise LabelqaError(f"logits need at least 2 outputs, got {k}")
            if self.threshold_class is not None and self.threshold_class != k - 1:
                raise LabelqaError(f"threshold_class {self.threshold_class} must be the last output ({k - 1})")
            self.n_outputs = k
            self._epoch = np.zeros((self.n_samples, k), dtype=self.dtype)
        elif k != self.n_outputs:
            raise LabelqaError(f"logits have {k} outputs, earlier batches had {self.n_outputs}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise LabelqaError(f"sample ids must be integer row positions, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        if b and (ids.min() < 0 or ids.max() >= self.n_samples):
            raise LabelqaError(f"sample id {int(ids[(ids < 0) | (ids >= self.n_samples)][0])} is outside "
                               f"0..{self.n_samples - 1}")
        if len(np.unique(ids)) != b:
            raise LabelqaError("a batch repeats a sample id", "record each row once per epoch")
        y = _check_labels(y, b, k, "labels")
        z64 = z.astype(np.float64)
        _check_finite(z64, "recorded logits")
        if self._seen[ids].any():
            if self._seen.all():
                self.end_epoch()
            else:
                dup = int(ids[self._seen[ids]][0])
                raise LabelqaError(f"sample id {dup} recorded twice in epoch {self.epochs} before every row was "
                                   f"seen ({int(self._seen.sum())} of {self.n_samples})",
                                   "call end_epoch() after each epoch; record every row exactly once per epoch")
        known = self.labels[ids]
        changed = (known >= 0) & (known != y)
        if changed.any():
            i = int(np.flatnonzero(changed)[0])
            raise LabelqaError(f"sample {int(ids[i])} was recorded with label {int(known[i])}, now {int(y[i])}",
                               "labels must stay the same across epochs")
        self.labels[ids] = y
        assert self._epoch is not None
        self._epoch[ids] = z
        self._seen[ids] = True
        return _block_margins(z64, y)

    def end_epoch(self) -> None:
        """Close the current epoch (every row must have been recorded)."""
        if self._epoch is None or not self._seen.any():
            raise LabelqaError("end_epoch() called with nothing recorded in this epoch")
        if not self._seen.all():
            missing = int(np.flatnonzero(~self._seen)[0])
            raise LabelqaError(f"epoch {self.epochs} is incomplete: {int((~self._seen).sum())} of "
                               f"{self.n_samples} rows not recorded (first: row {missing})",
                               "record every row once per epoch (an eval pass over the whole data works)")
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="labelqa-aum-")
        self._spill.write(np.ascontiguousarray(self._epoch).tobytes())
        self._margin_sum += _block_margins(self._epoch.astype(np.float64), self.labels)
        self._seen[:] = False
        self.epochs += 1

    def _close_pending(self) -> None:
        if self._seen.any():
            self.end_epoch()

    def aum(self) -> np.ndarray:
        """AUM of every row over the finished epochs (a complete pending epoch is closed first)."""
        self._close_pending()
        if self.epochs == 0:
            raise LabelqaError("no epoch recorded yet")
        return self._margin_sum / self.epochs

    def save(self, path: str | os.PathLike[str], *, classes: Sequence[Any] | None = None,
             run: int | None = None) -> Path:
        """Write the recorded epochs as a labelqa dynamics folder.

        Args:
            path: Output folder.
            classes: Class values in output order (checked by ``scan``).
            run: ``None`` writes a new single-run folder (replacing ``path``);
                an index ``i`` adds or replaces run ``run{i}`` of an existing
                folder, e.g. for the two runs with disjoint threshold samples.
        """
        self._close_pending()
        if self.epochs == 0 or self.n_outputs is None:
            raise LabelqaError("nothing to save: no epoch recorded")
        n_classes = self.n_outputs - 1 if self.threshold_class is not None else self.n_outputs
        threshold = self.labels == self.threshold_class if self.threshold_class is not None else None
        keep: list[dict[str, Any]] = []
        path = Path(path)
        name = "run0" if run is None else f"run{int(run)}"
        if run is not None and (path / MANIFEST).is_file():
            old = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            if old.get("n_rows") != self.n_samples or old.get("n_classes") != n_classes:
                raise LabelqaError(f"{path} holds runs for {old.get('n_rows')} rows x {old.get('n_classes')} "
                                   f"classes, this recorder has {self.n_samples} x {n_classes}")
            if classes is None:
                classes = old.get("classes")
            keep = [r for r in old.get("runs", []) if r.get("name") != name]
        with DynamicsWriter(path, n_rows=self.n_samples, n_classes=n_classes, classes=classes,
                            producer={"by": "labelqa.aum.AUMRecorder"}, keep_runs=keep) as w:
            writer = w.add_run(self.epochs, self.n_outputs, threshold=threshold, labels=self.labels, name=name)
            self._spill.seek(0)
            epoch_bytes = self.n_samples * self.n_outputs * self.dtype.itemsize
            for _ in range(self.epochs):
                chunk = self._spill.read(epoch_bytes)
                writer.write_epoch(np.frombuffer(chunk, dtype=self.dtype).reshape(self.n_samples, self.n_outputs))
            self._spill.seek(0, os.SEEK_END)
        return path
