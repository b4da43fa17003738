"""Decoded batches spilled to a temporary file (:class:`labelqa.run.kept.SpillFile`) come back exactly as written.

The runner-level behaviour (every report equal with batches kept, spilled or
read every pass) is in test_run_stream_kept.py.
"""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pyarrow as pa
import pytest

from labelqa.run import kept
from labelqa.run.kept import KeptBatch, SpilledBatch, SpillFile


def batches() -> list[KeptBatch]:
    """Batches of every form a stream scan keeps: float32/float64 probabilities, class codes or a multi-label
    bool matrix, row-position ids (``None``) or int64 ids, and extra columns of several Arrow types."""
    rng = np.random.default_rng(4)
    out = []
    for n, (offset, rows) in enumerate([(0, 5), (5, 1), (6, 17), (23, 3)]):
        probs = rng.random((rows, 4)).astype(np.float32 if n % 2 == 0 else np.float64)
        labels = rng.integers(0, 4, rows) if n != 2 else rng.random((rows, 4)) < 0.5
        ids = None if n % 2 == 0 else rng.integers(-2**62, 2**62, rows)
        columns = None
        if n >= 2:
            text = pa.array([None if i % 3 == 0 else f"row \"{i}\"\n<é>" for i in range(rows)])
            kind = pa.array(["a", "b"] * (rows // 2) + ["a"] * (rows % 2)).dictionary_encode()
            columns = pa.table({"text": text, "kind": kind, "w": pa.array(rng.random(rows))})
        out.append(KeptBatch(offset, labels, probs, ids, columns))
    return out


def assert_same(a: KeptBatch, b: KeptBatch) -> None:
    assert a.offset == b.offset
    for x, y in ((a.labels, b.labels), (a.probs, b.probs), (a.ids, b.ids)):
        if x is None:
            assert y is None
            continue
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    if a.columns is None:
        assert b.columns is None
    else:
        assert b.columns.schema.equals(a.columns.schema) and b.columns.equals(a.columns)


def test_batches_come_back_exactly_in_any_order_of_writing(tmp_path):
    given = batches()
    spill = SpillFile(tmp_path)
    assert os.listdir(tmp_path) == []  # the file has no name: nothing to leave behind
    order = [3, 0, 2, 1]
    threads = [threading.Thread(target=lambda n=n: spill.put(n, given[n])) for n in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spill) == 4 and spill.complete()
    assert spill.batches() == [SpilledBatch(n) for n in range(4)]
    for n in (2, 0, 3, 1, 2):  # read back in any order, as often as asked
        got = spill.get(n)
        assert_same(given[n], got)
        assert got.labels is not given[n].labels and got.labels.flags.writeable
    row_bytes = sum(b.labels.nbytes + b.probs.nbytes + (b.ids.nbytes if b.ids is not None else 0) for b in given)
    assert spill.nbytes > row_bytes  # the extra columns' bytes come after each batch's arrays
    spill.close()


def test_reads_and_writes_in_pieces_are_continued(tmp_path, monkeypatch):
    """A batch larger than one system call moves (Linux: 2 GiB) is written and read in pieces."""
    monkeypatch.setattr(kept, "_IO_CHUNK", 7)
    given = batches()
    spill = SpillFile(tmp_path)
    for n, b in enumerate(given):
        assert spill.put(n, b)
    for n, b in enumerate(given):
        assert_same(b, spill.get(n))
    spill.close()


def test_a_missing_batch_leaves_the_file_incomplete(tmp_path):
    spill = SpillFile(tmp_path)
    given = batches()
    spill.put(0, given[0])
    spill.put(2, given[2])  # batch 1 never written (a pass stopped early)
    assert not spill.complete()
    spill.close()


def test_object_ids_are_not_spilled(tmp_path):
    """String ids have no byte form here: the put fails and the whole file is given up."""
    b = batches()[1]
    strings = KeptBatch(b.offset, b.labels, b.probs, np.array(["x"] * b.labels.size, dtype=object))
    spill = SpillFile(tmp_path)
    assert spill.put(0, batches()[0])
    assert not spill.put(1, strings)
    assert spill.failed and not spill.complete()
    assert not spill.put(2, batches()[2])  # nothing more is written
    spill.close()


def test_a_failed_write_gives_the_file_up(tmp_path, monkeypatch):
    spill = SpillFile(tmp_path)
    given = batches()
    assert spill.put(0, given[0])

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(kept.os, "pwrite", full)
    assert not spill.put(1, given[1])
    assert spill.failed and not spill.complete()
    spill.close()


def test_created_only_where_there_is_room(tmp_path, monkeypatch):
    free = 10_000

    class Usage:
        def __init__(self, path):
            self.free = free

    monkeypatch.setattr(kept.shutil, "disk_usage", Usage)
    assert SpillFile.create(tmp_path, free // kept.SPILL_ROOM + 1) is None
    made = SpillFile.create(tmp_path, free // kept.SPILL_ROOM)
    assert made is not None
    made.close()
    assert SpillFile.create(tmp_path / "missing", 1) is None  # no such folder: no spill, no error
    monkeypatch.delattr(kept.os, "preadv")  # no positioned reads (Windows): every pass reads the input
    assert SpillFile.create(tmp_path, 1) is None


def test_closing_frees_the_file(tmp_path):
    spill = SpillFile(tmp_path)
    spill.put(0, batches()[0])
    spill.close()
    with pytest.raises(OSError):
        spill.get(0)
