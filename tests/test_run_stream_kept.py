"""The streaming runner keeps the decoded batches of a dataset that fits ``KEEP_BYTES``: same reports, one read.

A dataset whose decoded batches fit :data:`labelqa.run.stream.KEEP_BYTES` is
read and decoded by the first pass only; the later passes (statistics, the
issues pass of the report) take the kept batches. Every report must equal
the in-memory engine's and the one of a runner that reads every pass
(``KEEP_BYTES = 0``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import labelqa
from labelqa.data.source import Source, open_source
from labelqa.run import kept, stream
from labelqa.run.stream import StreamRunner, kept_bytes_estimate
from tests.conftest import noisy_dataset, write_parquet
from tests.test_run_stream import BATCH, N, assert_same_report, ml_data, report, write_ml


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the offset of every batch :meth:`Source.decode` decodes from now on."""
    seen: list[int] = []
    decode = Source.decode

    def counted(self: Source, table: pa.Table, offset: int, validate: bool = True) -> Any:
        seen.append(offset)
        return decode(self, table, offset, validate=validate)

    monkeypatch.setattr(Source, "decode", counted)
    return seen


def three_ways(path: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[list[str], int]:
    """Reports of ``path`` in memory, streamed with kept batches, streamed with spilled batches and streamed
    reading every pass: all equal. Returns the kept scan's passes and how many fewer batches it decoded than the
    scan reading every pass (the spilled scan decodes as few as the kept one)."""
    report(path, tmp / "mem", "memory", **options)
    decoded = count_decodes(monkeypatch)
    kept = report(path, tmp / "kept", "stream", **options)
    n_kept = len(decoded)
    monkeypatch.setattr(stream, "KEEP_BYTES", 0)
    spilled = report(path, tmp / "spilled", "stream", spill_dir=str(tmp), **options)
    n_spilled = len(decoded) - n_kept
    read = report(path, tmp / "read", "stream", spill_dir="off", **options)
    n_read = len(decoded) - n_kept - n_spilled
    monkeypatch.undo()
    for way in ("kept", "spilled", "read"):
        assert_same_report(tmp / "mem", tmp / way, "stream")
    assert kept.passes == read.passes == spilled.passes
    assert n_spilled == n_kept
    return kept.passes, n_read - n_kept


@pytest.mark.parametrize("options", [{}, {"filter_by": "prune_by_noise_rate"},
                                     {"filter_by": "both", "min_examples_per_class": 500},
                                     {"filter_by": "low_normalized_margin", "frac_noise": 0.5},
                                     {"detectors": "cl,dup", "dup_cols": ["text"]}],
                         ids=["defaults", "pbnr", "both", "low_nm", "cl_and_dup"])
def test_kept_batches_give_the_report_of_reading_every_pass(tmp_path, monkeypatch, options):
    """Also with two detectors, whose extra column (the dup detector's text) is kept with the batches."""
    given, _t, probs, _ = noisy_dataset(n=N, k=5, noise=0.15, seed=7)
    text = pa.array([f"text {i % 900}" for i in range(N)])  # repeats: duplicate groups
    path = write_parquet(tmp_path / "d.parquet", given, probs, extra={"text": text})
    passes, saved = three_ways(path, tmp_path, monkeypatch, **options)
    assert len(passes) >= 3  # statistics passes and the issues pass, at least
    assert saved == (len(passes) - 1) * -(-N // BATCH)  # only the first pass decoded the batches


def test_multilabel_batches_are_kept_too(tmp_path, monkeypatch):
    given, p = ml_data(n=N, k=5, seed=2)
    path = write_ml(tmp_path / "m.parquet", given, p)
    passes, saved = three_ways(path, tmp_path, monkeypatch)
    assert len(passes) >= 3 and saved == (len(passes) - 1) * -(-N // BATCH)


def test_renormalized_rows_are_kept_renormalized_and_counted_once(tmp_path, monkeypatch):
    """``renormalize``: the kept batches hold the first pass's renormalized rows; the count is that pass's."""
    given, _t, probs, _ = noisy_dataset(n=N, k=4, noise=0.1, seed=3)
    probs = probs.copy()
    off = np.arange(0, N, 97)
    probs[off] *= 1.25  # sums of 1.25: renormalized
    path = write_parquet(tmp_path / "r.parquet", given, probs)
    three_ways(path, tmp_path, monkeypatch, renormalize=True)
    summary = (tmp_path / "kept" / "summary.json").read_text()
    assert f'"renormalized_rows": {off.size}' in summary


def test_string_ids_are_not_kept_and_read_every_pass(tmp_path, monkeypatch):
    """Object ids have no honest byte count: such a dataset is read every pass, with the same report."""
    given, _t, probs, _ = noisy_dataset(n=N, k=4, noise=0.1, seed=5)
    keys = pa.array([f"row-{i}" for i in range(N)])
    path = write_parquet(tmp_path / "s.parquet", given, probs, extra={"key": keys})
    runner = StreamRunner(open_source(str(path), id_col="key"), batch_size=BATCH)
    assert kept_bytes_estimate(runner.info) <= stream.KEEP_BYTES  # it would fit, counting 8 bytes an id
    list(runner.map(lambda block: block.n))
    assert runner.kept is None
    passes, saved = three_ways(path, tmp_path, monkeypatch, id_col="key")
    assert saved == 0


def test_dataset_over_the_budget_is_read_every_pass(tmp_path, monkeypatch):
    given, _t, probs, _ = noisy_dataset(n=N, k=4, noise=0.1, seed=6)
    path = write_parquet(tmp_path / "b.parquet", given, probs)
    src = open_source(str(path))
    runner = StreamRunner(src, batch_size=BATCH)
    need = kept_bytes_estimate(runner.info)
    assert need == N * (4 * 4 + 8 + 8)  # float32 probabilities, int64 labels and ids
    monkeypatch.setattr(stream, "KEEP_BYTES", need - 1)
    over = StreamRunner(src, batch_size=BATCH)
    list(over.map(lambda block: block.n))
    assert over.kept is None
    monkeypatch.setattr(stream, "KEEP_BYTES", need)
    fits = StreamRunner(src, batch_size=BATCH)
    first = list(fits.map(lambda block: (block.offset, block.labels.copy(), np.array(block.pred_probs))))
    assert fits.kept is not None and [b.offset for b in fits.kept] == list(range(0, N, BATCH))
    again = list(fits.map(lambda block: (block.offset, block.labels, block.pred_probs, block.ids)))
    for (o1, y1, p1), (o2, y2, p2, ids) in zip(first, again, strict=True):
        assert o1 == o2
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(ids, np.arange(o2, o2 + y2.size))  # ids (the file's row index) made again


def test_abandoned_first_pass_keeps_nothing(tmp_path):
    """A pass stopped early keeps no batch: the next pass reads the file from the first batch."""
    given, _t, probs, _ = noisy_dataset(n=N, k=3, noise=0.1, seed=8)
    runner = StreamRunner(open_source(str(write_parquet(tmp_path / "a.parquet", given, probs))), batch_size=BATCH)
    for i, _ in enumerate(runner.map(lambda block: block.offset)):
        if i == 2:
            break
    assert runner.kept is None
    assert list(runner.map(lambda block: block.offset)) == list(range(0, N, BATCH))
    assert runner.kept is not None and len(runner.kept) == -(-N // BATCH)


def test_kept_scan_writes_its_report_without_the_file(tmp_path):
    """Kept batches serve the issues pass: the report is written whole even once the file is gone."""
    given, _t, probs, _ = noisy_dataset(n=N, k=4, noise=0.1, seed=1)
    path = write_parquet(tmp_path / "d.parquet", given, probs)
    report(path, tmp_path / "before", "stream")
    with labelqa.scan(str(path), engine="stream", batch_size=BATCH) as result:
        path.rename(tmp_path / "moved.parquet")
        labelqa.write_report(result, tmp_path / "after", csv=True)
    a, b = (tmp_path / "before" / "issues.parquet").read_bytes(), (tmp_path / "after" / "issues.parquet").read_bytes()
    assert a == b


def test_closing_the_runner_drops_the_kept_batches(tmp_path, monkeypatch):
    """Closing a scan frees its kept batches; a runner used after that reads the file again, with the same rows."""
    given, _t, probs, _ = noisy_dataset(n=N, k=3, noise=0.1, seed=9)
    runner = StreamRunner(open_source(str(write_parquet(tmp_path / "c.parquet", given, probs))), batch_size=BATCH)
    first = [block.labels.copy() for block in runner.map(lambda block: block)]
    assert runner.kept is not None
    runner.close()
    assert runner.kept is None
    again = [block.labels.copy() for block in runner.map(lambda block: block)]
    assert runner.kept is None  # not kept again once closed
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    closed: list[StreamRunner] = []
    close = StreamRunner.close

    def recorded(self: StreamRunner) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(StreamRunner, "close", recorded)
    with labelqa.scan(str(tmp_path / "c.parquet"), engine="stream", batch_size=BATCH) as result:
        labelqa.write_report(result, tmp_path / "r")
    assert len(closed) == 1 and closed[0].kept is None and closed[0].passes[-1] == "issues"


def test_spilled_scan_writes_its_report_without_the_file(tmp_path, monkeypatch):
    """A dataset too large to keep spills its decoded batches: they serve the issues pass once the file is gone."""
    given, _t, probs, _ = noisy_dataset(n=N, k=4, noise=0.1, seed=1)
    path = write_parquet(tmp_path / "d.parquet", given, probs)
    report(path, tmp_path / "before", "stream")
    monkeypatch.setattr(stream, "KEEP_BYTES", 0)
    spill = tmp_path / "spill"
    spill.mkdir()
    with labelqa.scan(str(path), engine="stream", batch_size=BATCH, spill_dir=str(spill)) as result:
        path.rename(tmp_path / "moved.parquet")
        labelqa.write_report(result, tmp_path / "after", csv=True)
        assert list(spill.iterdir()) == []  # the spill file has no name
    a, b = (tmp_path / "before" / "issues.parquet").read_bytes(), (tmp_path / "after" / "issues.parquet").read_bytes()
    assert a == b


def test_a_disk_filling_up_while_spilling_reads_the_input_instead(tmp_path, monkeypatch):
    """The spill file's writes fail from the third batch on: the scan gives the file up and reads every pass."""
    given, _t, probs, _ = noisy_dataset(n=N, k=4, noise=0.1, seed=2)
    path = write_parquet(tmp_path / "d.parquet", given, probs)
    report(path, tmp_path / "mem", "memory")
    monkeypatch.setattr(stream, "KEEP_BYTES", 0)
    writes = []
    pwrite = os.pwrite

    def filling(fd: int, data: Any, at: int) -> int:
        writes.append(at)
        if len(writes) > 4:  # labels and probabilities of two batches
            raise OSError(errno.ENOSPC, "No space left on device")
        return pwrite(fd, data, at)

    monkeypatch.setattr(kept.os, "pwrite", filling)
    runner = StreamRunner(open_source(str(path)), batch_size=BATCH, spill_dir=str(tmp_path))
    decoded = count_decodes(monkeypatch)
    first = list(runner.map(lambda block: block.n))
    assert runner.spilled is None and len(writes) > 4
    assert list(runner.map(lambda block: block.n)) == first  # read from the input again
    assert len(decoded) == 2 * len(first)
    before = len(decoded)
    scanned = report(path, tmp_path / "full", "stream", spill_dir=str(tmp_path))
    assert_same_report(tmp_path / "mem", tmp_path / "full", "stream")
    assert len(decoded) - before >= len(scanned.passes) * len(first)  # every pass decoded every batch


def test_closing_the_runner_frees_the_spill_file(tmp_path, monkeypatch):
    given, _t, probs, _ = noisy_dataset(n=N, k=3, noise=0.1, seed=8)
    monkeypatch.setattr(stream, "KEEP_BYTES", 0)
    runner = StreamRunner(open_source(str(write_parquet(tmp_path / "a.parquet", given, probs))), batch_size=BATCH)
    offsets = list(runner.map(lambda block: block.offset))
    spilled = runner.spilled
    assert spilled is not None and len(spilled) == len(offsets)
    assert list(runner.map(lambda block: block.offset)) == offsets
    runner.close()
    assert runner.spilled is None
    with pytest.raises(OSError):
        spilled.get(0)


def test_cli_refuses_a_spill_folder_that_does_not_exist(tmp_path, capsys):
    from labelqa.cli.app import main

    given, _t, probs, _ = noisy_dataset(n=N, k=3, noise=0.1, seed=8)
    path = write_parquet(tmp_path / "a.parquet", given, probs)
    code = main(["scan", str(path), "--engine", "stream", "--spill-dir", str(tmp_path / "nope"), "-o",
                 str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err
    assert not (tmp_path / "out").exists()
