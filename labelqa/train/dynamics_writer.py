"""Write training dynamics in labelqa's on-disk format (the folder ``labelqa scan --logits-by-epoch`` reads).

Only training and recording write dynamics (:func:`labelqa.train.torch_model.train_dynamics`,
:class:`labelqa.train.recorder.AUMRecorder`, or your own code through
:func:`save_dynamics`), so the writers live here, beside them; the reader and
the format constants (:data:`~labelqa.data.dynamics.MANIFEST`, ...) are in
:mod:`labelqa.data.dynamics`. The format is described in ``docs/aum.md``.

* :class:`NpyEpochWriter`: one ``(E, N, K)`` ``.npy`` file, epoch by epoch
  (memory: one epoch).
* :class:`DynamicsWriter`: a whole dynamics folder (runs, threshold marks,
  labels, manifest), written beside its destination and moved into place.
* :func:`save_dynamics`: in-memory arrays to a dynamics folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.data.dynamics import FORMAT, FORMAT_VERSION, MANIFEST, ArraySource, as_numpy
from labelqa.data.rows import py_scalar
from labelqa.errors import LabelqaError

__all__ = ["DynamicsWriter", "NpyEpochWriter", "current_umask", "save_dynamics"]


def _npy_header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
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
        z = np.ascontiguousarray(as_numpy(logits), dtype=self.dtype)
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
        self.classes = None if classes is None else [py_scalar(c) for c in classes]
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
        os.chmod(self.tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; give it a normal folder's mode
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


def current_umask() -> int:
    """The process's file-mode creation mask (os.umask can only be read by setting it: it is set back at once).

    Files and folders made private by :mod:`tempfile` get ``0o666 & ~mask``
    (``0o777`` for folders) before they are moved into place, the mode a
    plain ``open``/``mkdir`` would have given them.
    """
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
