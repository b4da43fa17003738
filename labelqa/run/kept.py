"""Decoded batches kept between the passes of a stream scan: in memory, or spilled to a temporary file.

The first pass of :class:`~labelqa.run.stream.StreamRunner` reads, decodes
and validates every batch; the later passes need the same batches again. A
dataset whose decoded batches fit in memory keeps them there
(:class:`KeptBatch`). A larger one writes them, raw, to one unnamed
temporary file (:class:`SpillFile`), and the later passes read them back
with one ``preadv`` each: at 16M x 10 float32 that is ~0.15 s of system time
a pass instead of ~1.5 s of CPU to read and decode the Parquet file again,
and the process's memory stays what one batch takes (the file's pages live
in the system's page cache, not in the process).

The file has no name (``O_TMPFILE`` on Linux, else unlinked at once): the
system frees it when the scan closes it or the process ends, even when it
is killed. It is only made when its folder has :data:`SPILL_ROOM` times the
bytes it needs free, and a write that fails (a disk filling up meanwhile)
drops it: the scan then reads the input every pass, with the same result.
Nothing is ever written next to the input.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from labelqa.detectors.base import Block, DatasetInfo
from labelqa.data.source import Batch

__all__ = ["SPILL_ROOM", "KeptBatch", "SpillFile", "SpilledBatch", "kept_bytes_estimate"]

#: A spill file is made only in a folder with this many times its bytes free.
SPILL_ROOM = 2

#: Bytes one ``preadv``/``pwritev`` call moves at most (Linux stops a single call at 2 GiB).
_IO_CHUNK = 1 << 30


@dataclass(frozen=True)
class KeptBatch:
    """A decoded, validated batch kept by the first pass for the later ones (ids ``None``: the row positions)."""

    offset: int
    labels: np.ndarray
    probs: np.ndarray
    ids: np.ndarray | None
    columns: Any = None

    @classmethod
    def of(cls, batch: Batch, positions_as_ids: bool) -> KeptBatch:
        """``batch`` to keep; ``positions_as_ids``: its ids are its row positions (made again when asked for)."""
        return cls(batch.offset, batch.labels, batch.probs, None if positions_as_ids else batch.ids, batch.columns)

    @property
    def nbytes(self) -> int:
        """Bytes held by the batch's arrays (object ids count their pointers only)."""
        held = self.labels.nbytes + self.probs.nbytes + (self.ids.nbytes if self.ids is not None else 0)
        return held + (int(self.columns.nbytes) if self.columns is not None else 0)

    def block(self) -> Block:
        """A fresh block of the batch (blocks memoize per-pass row state: never shared between passes)."""
        return Block(self.labels, self.probs, self.ids, self.offset, columns=self.columns)


def kept_bytes_estimate(info: DatasetInfo) -> int:
    """The bytes every decoded batch of a dataset would take: probabilities, int64 labels (multi-label: a bool
    matrix) and int64 ids."""
    k = info.n_classes
    per_row = k * np.dtype(info.prob_dtype).itemsize + (k if info.task == "multilabel" else 8) + 8
    return info.n_rows * per_row


class SpilledBatch(NamedTuple):
    """A handle on the ``n``-th batch of a :class:`SpillFile` (read when a pass's thread takes it)."""

    n: int


class _Entry(NamedTuple):
    """Where one batch lies in the spill file, and the form of its arrays."""

    offset: int  # the batch's first row in the dataset
    at: int  # its first byte in the file
    arrays: tuple[tuple[str, tuple[int, ...]] | None, ...]  # (dtype, shape) of labels, probs, ids (None: no ids)
    columns_bytes: int  # bytes of its extra columns as an Arrow IPC stream (0: none)


class SpillFile:
    """Decoded batches written raw to one unnamed temporary file, read back by batch number.

    :meth:`put` may be called from several threads at once, in any order of
    batches; :meth:`get` from any thread once they are written. After a
    failed write (:attr:`failed`) every later :meth:`put` does nothing; the
    owner closes the file once no thread uses it (closing it under a writer
    would let its descriptor number name another file).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="labelqa-spill-", dir=folder)
        self._fd = self._file.fileno()
        self._lock = threading.Lock()
        self._end = 0
        self._entries: dict[int, _Entry] = {}
        self.failed = False

    @classmethod
    def create(cls, folder: str | os.PathLike[str] | None, need: int) -> SpillFile | None:
        """A spill file in ``folder`` (``None``: the system's temporary folder) if it has :data:`SPILL_ROOM` x
        ``need`` bytes free and a file can be made there; else ``None`` (also where the system has no
        positioned reads and writes, e.g. Windows)."""
        if not (hasattr(os, "preadv") and hasattr(os, "pwrite")):
            return None
        where = folder if folder is not None else tempfile.gettempdir()
        try:
            if shutil.disk_usage(where).free < SPILL_ROOM * need:
                return None
            return cls(folder)
        except OSError:
            return None

    @staticmethod
    def spillable(batch: KeptBatch) -> bool:
        """Whether a batch has a byte form here: every array numeric (object ids, e.g. strings, have none)."""
        return all(a is None or a.dtype.kind in "biuf" for a in (batch.labels, batch.probs, batch.ids))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes written to the file so far."""
        return self._end

    def put(self, n: int, batch: KeptBatch) -> bool:
        """Write batch ``n``; returns whether it is in the file (``False``: not spillable, or the file failed)."""
        if self.failed or not self.spillable(batch):
            self.failed = True
            return False
        arrays = [np.ascontiguousarray(a) for a in (batch.labels, batch.probs, batch.ids) if a is not None]
        columns = memoryview(_ipc_buffer(batch.columns) if batch.columns is not None else b"")
        size = sum(a.nbytes for a in arrays) + columns.nbytes
        with self._lock:
            at, self._end = self._end, self._end + size
        try:
            _write_all(self._fd, [memoryview(a).cast("B") for a in arrays if a.nbytes] + [columns], at)
        except OSError:  # e.g. the disk filled up since the file was made: read the input again instead
            self.failed = True
            return False
        forms = tuple((a.dtype.str, a.shape) if a is not None else None for a in (batch.labels, batch.probs,
                                                                                  batch.ids))
        with self._lock:
            self._entries[n] = _Entry(batch.offset, at, forms, columns.nbytes)
        return True

    def get(self, n: int) -> KeptBatch:
        """Batch ``n`` read back, in fresh arrays."""
        entry = self._entries[n]
        labels, probs, ids = (np.empty(form[1], dtype=np.dtype(form[0])) if form is not None else None
                              for form in entry.arrays)
        columns = bytearray(entry.columns_bytes)
        views = [memoryview(a).cast("B") for a in (labels, probs, ids) if a is not None and a.nbytes]
        _read_all(self._fd, views + [memoryview(columns)], entry.at)
        table = pa.ipc.open_stream(pa.py_buffer(columns)).read_all() if entry.columns_bytes else None
        return KeptBatch(entry.offset, labels, probs, ids, table)

    def batches(self) -> list[SpilledBatch]:
        """A handle on every batch, in input order (numbers ``0 .. len - 1``)."""
        return [SpilledBatch(n) for n in range(len(self._entries))]

    def complete(self) -> bool:
        """Whether no write failed and the file holds batches ``0 .. len - 1`` (a whole pass wrote them)."""
        return not self.failed and all(n in self._entries for n in range(len(self._entries)))

    def close(self) -> None:
        """Close (and so free) the file; only once no thread reads or writes it."""
        self._file.close()


def _ipc_buffer(table: pa.Table) -> pa.Buffer:
    """``table`` as an Arrow IPC stream (its exact values and types), in Arrow's buffer (no copy to bytes)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _write_all(fd: int, views: list[memoryview], at: int) -> None:
    """Write ``views`` one after another from byte ``at`` (short writes continued)."""
    for view in views:
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done : done + _IO_CHUNK], at + done)
        at += len(view)


def _read_all(fd: int, views: list[memoryview], at: int) -> None:
    """Fill ``views`` one after another from byte ``at`` (short reads continued)."""
    for view in views:
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done : done + _IO_CHUNK]], at + done)
            if got == 0:
                raise OSError(f"the spill file ends at byte {at + done}, before the batch does")
            done += got
        at += len(view)
