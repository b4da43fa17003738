"""The streaming runner: a plan's passes over the record batches of a Parquet/Arrow file, folder or hive dataset.

Every pass reads the data again, batch by batch (:mod:`labelqa.data.source`
decodes and validates them: the first pass checks every row, later passes
only decode), so memory is bounded by a few batches plus the plans' partial
aggregates, whatever the number of rows; only a dataset small enough to keep
(:data:`KEEP_BYTES`, below) is read once.

Both cores work: a reader thread reads the next record batches from the
file (:func:`labelqa.parallel.prefetch`; Parquet decoding releases the GIL),
:data:`MAX_READERS` row groups at once, while the threads that compute on them first decode and validate them
(:meth:`~labelqa.data.source.Source.decode`, numpy and pyarrow, also off the
GIL): :meth:`StreamRunner.fold` runs :data:`MAX_LANES` lanes, each taking
the next batch when it is free (:class:`SharedBatches`), decoding it and
folding it into its own partials on its own thread (merged at the end:
partials are exact), and :meth:`StreamRunner.map` runs decoding and
its per-batch function on :func:`~labelqa.parallel.worker_count` threads,
yielding results in input order. At most :data:`PREFETCH` read batches wait
in the queue and one per thread is in work, so memory stays bounded.
``LABELQA_THREADS=1`` runs every pass on the calling thread (same results).

Freed memory goes back to the system as the passes go, so the peak RSS is
what the engine holds, not what the allocators kept: glibc is told to map
blocks above :data:`MMAP_THRESHOLD` on their own and to trim its heap (by
default it raises that threshold as arrays are freed, then keeps every
freed batch-sized array in its heap), and Arrow's pool releases its unused
pages after each batch of a rows pass. At 16M x 10 this took the peak from
~650 MB to under 500 MB. Statistics passes of up to :data:`REUSE_HEAP_MAX_ROWS`
rows let glibc keep batch-sized blocks for the next batch instead
(:func:`reused_heap`: fewer page faults, little more memory at that size), and so
do the rows passes (Arrow's pool is then released every :data:`TRIM_EVERY` batches).

A dataset whose decoded batches fit in :data:`KEEP_BYTES` is read and decoded
once: the first pass keeps every decoded, validated batch (:class:`KeptBatch`)
and the later passes take them from memory instead of reading and decoding
the file again (at 4M x 10 each read cost ~0.5 s of CPU). A larger one
writes them to an unnamed temporary file instead (:class:`~labelqa.run.kept.SpillFile`,
``spill_dir``), which the later passes read back in one system call a batch;
memory stays bounded by a few batches. With ``spill_dir="off"``, or when no
folder has room, every pass reads the input.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from labelqa.detectors.base import Block, DatasetInfo, Step
from labelqa.data.source import Batch, Source
from labelqa.run.kept import KeptBatch, SpilledBatch, SpillFile, kept_bytes_estimate
from labelqa.parallel import prefetch, run_nested_maps_inline, worker_count
from labelqa.runtime import set_malloc_thresholds, trim_heap

__all__ = ["DEFAULT_BATCH_SIZE", "KEEP_BYTES", "KeptBatch", "SharedBatches", "StreamRunner", "info_of",
           "kept_bytes_estimate"]

#: Rows per record batch of the streaming and Dask runners.
DEFAULT_BATCH_SIZE = 262_144

#: Decoded batches the reader thread may hold ahead of the consumer.
PREFETCH = 2

#: Row groups of a Parquet file read at once, on as many threads (:func:`labelqa.data.source.scan_batches`), for
#: datasets of up to :data:`REUSE_HEAP_MAX_ROWS` rows (larger ones read one at a time: their peak is the bound).
MAX_READERS = 2

#: Blocks at least this large are mapped and unmapped on their own by glibc (``M_MMAP_THRESHOLD``; also its
#: ``M_TRIM_THRESHOLD``): a freed batch array goes back to the system instead of staying in the heap.
MMAP_THRESHOLD = 4 << 20

_heap_bounded = False

#: At most this many lanes (threads, each with its own partials) fold a statistics pass.
MAX_LANES = 2

#: A dataset whose decoded batches (probabilities, labels, ids) take at most this many bytes is decoded once: the
#: first pass keeps the batches for the later ones (4M x 10 float32: 192 MB; 16M x 10 is read every pass).
KEEP_BYTES = 256 << 20


def bound_freed_memory() -> bool:
    """Have glibc give large freed blocks back to the system from now on (Linux; once per process).

    Sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to :data:`MMAP_THRESHOLD`, which also stops glibc from
    raising the mmap threshold as large arrays are freed. Returns whether the setting is in effect (``False``
    off glibc).
    """
    global _heap_bounded
    if not _heap_bounded:
        _heap_bounded = set_malloc_thresholds(MMAP_THRESHOLD, MMAP_THRESHOLD)
    return _heap_bounded


def release_arrow_memory() -> None:
    """Hand the Arrow memory pool's unused pages, and glibc's free heap pages (:func:`trim_heap`), back to the
    system (mimalloc and jemalloc keep them)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


#: A pass hands the heap's free pages back every this many batches (each trim makes the next allocations
#: fault their pages in again: after every batch that cost ~0.5 s of CPU at 4M x 10).
TRIM_EVERY = 4

#: While a statistics pass of a dataset of at most :data:`REUSE_HEAP_MAX_ROWS` rows runs, blocks up to this size
#: come from the heap, and up to this much free memory stays at the top of a thread's heap, so the next batch
#: reuses the pages the last one freed (:func:`reused_heap`).
FOLD_MMAP_THRESHOLD = 32 << 20
#: Rows up to which the statistics passes keep freed blocks for reuse (:func:`reused_heap`); larger datasets keep
#: the tight setting, which holds their peak.
REUSE_HEAP_MAX_ROWS = 8_000_000


@contextlib.contextmanager
def reused_heap(reuse: bool = True) -> Iterator[None]:
    """Within (when ``reuse``): glibc keeps blocks up to :data:`FOLD_MMAP_THRESHOLD` in its heap for reuse; after:
    back to :data:`MMAP_THRESHOLD`, and a trim either way.

    The selection passes free a few MB of temporaries per batch (per-row arrays of 1 MB at 131,072 rows, some
    (n, K) ones): with :data:`MMAP_THRESHOLD` each was mapped afresh, or trimmed from the top of a thread's heap,
    and page-faulted again by the next batch (4M x 10: ~200,000 faults in the cuts pass, 130,000 with reuse).
    The heap kept between trims costs ~25 MB at 4M x 10; at 16M x 10 the selections' growing arrays then
    fragment it (cuts-pass peak 470 -> 590-660 MB), so above :data:`REUSE_HEAP_MAX_ROWS` rows the setting stays.
    """
    if not (reuse and bound_freed_memory()):
        try:
            yield
        finally:
            trim_heap()
        return
    set_malloc_thresholds(FOLD_MMAP_THRESHOLD, FOLD_MMAP_THRESHOLD)
    try:
        yield
    finally:
        set_malloc_thresholds(MMAP_THRESHOLD, MMAP_THRESHOLD)
        trim_heap()


def info_of(src: Source) -> DatasetInfo:
    """What a plan knows of a source before the first pass."""
    return DatasetInfo(src.n_rows, tuple(src.classes), src.task, src.prob_dtype())


def block_of(batch: Any) -> Block:
    """A decoded batch of a source as a plan's block."""
    return Block(batch.labels, batch.probs, batch.ids, batch.offset, columns=batch.columns)


class SharedBatches:
    """An iterator of batches shared by threads: each :meth:`take` hands out the next batch and its index.

    A failure (:meth:`fail`, or the iterator's own error) stops handing out batches; :meth:`raise_failure`
    then raises the error of the earliest failing batch. Every batch before it was taken before it, so once
    the takers have finished their batches, the first error in input order is known.
    """

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._lock = threading.Lock()
        self._next = 0
        self._stopped = False
        self._failure: tuple[int, BaseException] | None = None

    def take(self) -> tuple[int, Any] | None:
        """``(index, batch)`` of the next batch, or ``None`` when there is none (or a failure stopped them)."""
        with self._lock:
            if self._stopped:
                return None
            try:
                item = next(self._items)
            except StopIteration:
                self._stopped = True
                return None
            except BaseException as exc:  # noqa: BLE001 - the reader's error, raised by raise_failure
                self._record(self._next, exc)
                return None
            self._next += 1
            return self._next - 1, item

    def fail(self, index: int, exc: BaseException) -> None:
        """Batch ``index`` failed with ``exc``: hand out no more batches."""
        with self._lock:
            self._record(index, exc)

    def _record(self, index: int, exc: BaseException) -> None:
        self._stopped = True
        if self._failure is None or index < self._failure[0]:
            self._failure = (index, exc)

    def stop(self) -> None:
        """Hand out no more batches."""
        with self._lock:
            self._stopped = True

    def close(self) -> None:
        """Close the underlying iterator (stops a reader thread); call once no thread takes batches."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def raise_failure(self) -> None:
        """Raise the earliest failing batch's error, if any."""
        if self._failure is not None:
            raise self._failure[1]


class StreamRunner:
    """Runs steps and per-block functions over a source's record batches, in this process.

    Attributes:
        engine: ``"stream"``.
        info: The dataset's :class:`~labelqa.detectors.base.DatasetInfo`.
        renormalized_rows: Rows whose probabilities were divided by their sum
            (``renormalize``), counted on the first pass.
        passes: Names of the passes run so far.
    """

    engine = "stream"

    def __init__(self, src: Source, batch_size: int = DEFAULT_BATCH_SIZE,
                 spill_dir: str | os.PathLike[str] | None = "auto") -> None:
        self.src = src
        self.batch_size = int(batch_size)
        self.info = info_of(src)
        self.renormalized_rows = 0
        self.passes: list[str] = []
        self._validated = False
        #: every decoded batch, in input order, once a pass kept them all (see KEEP_BYTES)
        self.kept: list[KeptBatch] | None = None
        self._keeping: dict[int, KeptBatch] | None = None
        self._kept_bytes = 0
        self._keep = kept_bytes_estimate(self.info) <= KEEP_BYTES
        #: every decoded batch in a temporary file, once a pass wrote them all (a dataset too large to keep)
        self.spilled: SpillFile | None = None
        self._spilling: SpillFile | None = None
        self._spill = spill_dir not in (None, "off")  # (tried once keeping in memory is out)
        self._spill_dir = None if spill_dir in (None, "off", "auto") else spill_dir  # None: the system's folder
        bound_freed_memory()

    def _tables(self) -> Iterator[Any]:
        """Every batch: the kept ones, handles on the spilled ones, else ``(offset, Arrow table)`` read ahead on
        a thread unless ``LABELQA_THREADS=1``."""
        if self.kept is not None:
            return iter(self.kept)
        if self.spilled is not None:
            return iter(self.spilled.batches())
        if self._keep:
            self._keeping = {}
            self._kept_bytes = 0
        elif self._spill:
            self._drop_spilling()  # a pass abandoned before its end wrote part of one
            self._spilling = SpillFile.create(self._spill_dir, kept_bytes_estimate(self.info))
            self._spill = self._spilling is not None
        workers = worker_count()
        # two row groups in work at once only while memory is not the bound (16M x 10: +70-100 MB of peak)
        readers = min(workers, MAX_READERS) if self.info.n_rows <= REUSE_HEAP_MAX_ROWS else 1
        return prefetch(self.src.tables(self.batch_size, readers=readers), PREFETCH if workers > 1 else 0)

    def _decode(self, n: int, item: Any, validate: bool) -> tuple[Block, int]:
        """Batch ``n`` (a kept one, or one read and now decoded and, on the first pass, validated) as a block, and
        its renormalized rows. While the pass keeps batches, the decoded one is kept."""
        if isinstance(item, KeptBatch):
            return item.block(), 0
        if isinstance(item, SpilledBatch):
            assert self.spilled is not None, "spilled batches come from the spill file"
            return self.spilled.get(item.n).block(), 0
        offset, table = item
        batch = self.src.decode(table, offset, validate=validate)
        self._keep_batch(n, batch)
        spilling = self._spilling
        if spilling is not None:
            spilling.put(n, KeptBatch.of(batch, positions_as_ids=self.src.id_col is None))
        return block_of(batch), batch.renormalized_rows

    def _keep_batch(self, n: int, batch: Batch) -> None:
        """Keep batch ``n`` for the later passes, unless the kept ones outgrow :data:`KEEP_BYTES` (string ids,
        extra columns): then none is kept and every pass reads the file."""
        keeping = self._keeping
        if keeping is None:
            return
        kept = KeptBatch.of(batch, positions_as_ids=self.src.id_col is None)
        self._kept_bytes += kept.nbytes  # (a race between lanes only misjudges the total by one batch)
        if self._kept_bytes > KEEP_BYTES or (kept.ids is not None and kept.ids.dtype == object):
            self._keep = False
            self._keeping = None
            return
        keeping[n] = kept

    def _pass_done(self, validate: bool, renormalized: int) -> None:
        """A whole pass ran: the first one validated every row and counted the renormalized ones, and the batches
        it kept serve the later passes."""
        if validate:
            self.renormalized_rows += renormalized
            self._validated = True
        keeping, self._keeping = self._keeping, None
        if keeping is not None and self._keep:
            self.kept = [keeping[n] for n in range(len(keeping))]
        spilling, self._spilling = self._spilling, None
        if spilling is not None:
            if spilling.complete():
                self.spilled = spilling
            else:  # a write failed (disk full, a batch with string ids): every pass reads the input
                spilling.close()
                self._spill = False

    def _drop_spilling(self) -> None:
        """Close the spill file a pass was writing (it did not finish: no thread writes any more)."""
        spilling, self._spilling = self._spilling, None
        if spilling is not None:
            spilling.close()

    def _reuses_heap(self) -> bool:
        """Whether a pass keeps freed memory for the next batches (:func:`reused_heap`): up to
        :data:`REUSE_HEAP_MAX_ROWS` rows, and whenever the batches come from the spill file (no Arrow decoding
        buffers then: 16M x 10, peak ~520-545 MB with it, page faults 3.7M -> 0.9M)."""
        return self.info.n_rows <= REUSE_HEAP_MAX_ROWS or self.spilled is not None

    def fold(self, steps: Sequence[Step]) -> list[Any]:
        """One pass: every step is fed every batch; returns the partials (in step order).

        With several threads, :data:`MAX_LANES` lanes each take the next batch as soon as they are free and fold
        it into their own partials on their own thread; the lanes' partials are merged at the end (partials are
        exact, so the result is that of one lane whatever batches each lane took; the Dask runner merges in any
        order too). Taking batches as they come keeps both lanes busy when batches differ in size or cost (a
        Parquet row group of 419,430 rows is read as batches of 131,072, 131,072, 131,072 and 26,214 rows: with
        batch ``i`` on lane ``i % 2`` one lane got 62% of the rows and the other waited).
        """
        lanes = min(worker_count(), MAX_LANES)
        partials = [[s.start() for s in steps] for _ in range(lanes)]
        validate = not self._validated

        def feed(lane: list[Any], n: int, item: Any) -> int:
            block, renormalized_rows = self._decode(n, item, validate)
            for i, step in enumerate(steps):
                lane[i] = step.feed(lane[i], block)
            return renormalized_rows

        with reused_heap(self._reuses_heap()):
            if lanes == 1:
                renormalized = 0
                for n, item in enumerate(self._tables()):
                    renormalized += feed(partials[0], n, item)
            else:
                renormalized = self._fold_on_lanes(feed, partials)
            self._pass_done(validate, renormalized)
            merged = partials[0]
            for lane in partials[1:]:
                merged = [step.merge(a, b) for step, a, b in zip(steps, merged, lane)]
        self.passes.append(", ".join(s.name for s in steps))
        return merged

    def _fold_on_lanes(self, feed: Callable[[list[Any], int, Any], int], partials: list[list[Any]]) -> int:
        """Feed every batch to one of the lanes (one thread each, taking batches in input order as they are
        free); returns the renormalized rows. The error of the earliest failing batch is raised, after every
        batch before it was fed, as one thread would."""
        batches = SharedBatches(self._tables())

        def lane(partial: list[Any]) -> int:
            renormalized = 0
            while (taken := batches.take()) is not None:
                n, item = taken
                try:
                    renormalized += feed(partial, n, item)
                except BaseException as exc:  # noqa: BLE001 - raised by the caller, earliest batch first
                    batches.fail(n, exc)
                    break
                del item, taken
                if n % TRIM_EVERY == TRIM_EVERY - 1:
                    trim_heap()
            return renormalized

        pool = ThreadPoolExecutor(max_workers=len(partials), thread_name_prefix="labelqa-fold",
                                  initializer=run_nested_maps_inline)
        try:
            futures = [pool.submit(lane, partial) for partial in partials]
            renormalized = sum(future.result() for future in futures)
        finally:
            batches.stop()
            pool.shutdown(wait=True)
            batches.close()
        batches.raise_failure()
        return renormalized

    def map(self, fn: Callable[..., Any], *args: Any, name: str = "rows") -> Iterator[Any]:
        """One pass: ``fn(block, *args)`` for every batch on :func:`~labelqa.parallel.worker_count` threads
        (inline with one), results in input order."""
        workers = worker_count()
        validate = not self._validated
        renormalized = 0

        def run(n: int, item: Any) -> tuple[Any, int]:
            block, renormalized_rows = self._decode(n, item, validate)
            return fn(block, *args), renormalized_rows

        if workers == 1:
            for n, item in enumerate(self._tables()):
                out, rows = run(n, item)
                renormalized += rows
                yield out
                release_arrow_memory()
            self._pass_done(validate, renormalized)
            self.passes.append(name)
            return
        pending: deque[Future[tuple[Any, int]]] = deque()
        # Up to REUSE_HEAP_MAX_ROWS rows, or from the spill file, the freed memory of a batch serves the next ones
        # (glibc's heap kept, Arrow's pool released every TRIM_EVERY batches: 4M x 10, ~100,000 page faults and
        # ~0.3 s of system time less); larger datasets read from the input hand it back after every batch, which
        # holds their peak.
        reuse = self._reuses_heap()
        with reused_heap(reuse), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labelqa-map",
                                                    initializer=run_nested_maps_inline) as pool:
            try:
                for n, item in enumerate(self._tables()):
                    pending.append(pool.submit(run, n, item))
                    del item
                    if len(pending) > workers:
                        out, rows = pending.popleft().result()
                        renormalized += rows
                        yield out
                        if not reuse or n % TRIM_EVERY == 0:
                            release_arrow_memory()  # the consumer is done with the batch it was handed
                        if not reuse and n % TRIM_EVERY == 0:
                            trim_heap()
                while pending:
                    out, rows = pending.popleft().result()
                    renormalized += rows
                    yield out
                    release_arrow_memory()
            finally:
                for future in pending:
                    future.cancel()
        self._pass_done(validate, renormalized)
        self.passes.append(name)

    def close(self) -> None:
        """Drop the kept batches and the spill file (a later pass reads the input)."""
        self.kept = None
        self._keeping = None
        self._keep = False
        self._drop_spilling()
        spilled, self.spilled = self.spilled, None
        if spilled is not None:
            spilled.close()
        self._spill = False
