"""Run row-block work on a few threads.

numpy's reductions, comparisons and copies and pyarrow's Parquet decoding
release the GIL, so independent row blocks of a large matrix can be worked on
side by side by plain threads (no processes, no pickling, shared memory).
Small inputs run inline: a pool costs more than it saves below a few MB.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Below this many matrix elements work runs on the calling thread.
MIN_PARALLEL_ELEMENTS = 1 << 22


def worker_count() -> int:
    """Threads to use: ``LABELQA_THREADS`` if set, else the CPUs this process may run on (at most 8)."""
    env = os.environ.get("LABELQA_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def row_ranges(n: int, step: int) -> list[tuple[int, int]]:
    """``[(0, step), (step, 2 * step), ...]`` covering ``range(n)``."""
    step = max(1, int(step))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


#: Worker threads of this process, by size; made on first use and reused (starting threads costs ~0.1 ms each).
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_WORKER = threading.local()


def run_nested_maps_inline() -> None:
    """Mark the calling thread as a worker, so :func:`thread_map` calls made on it run inline.

    Pass it as ``initializer`` to any other pool whose threads call labelqa kernels: the cores are
    already busy with that pool's own threads, and nested maps would only oversubscribe them.
    """
    _WORKER.active = True


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool of ``workers`` threads (a new one after a fork: the parent's threads are not in the child)."""
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labelqa",
                                                    initializer=run_nested_maps_inline)
        return pool


def thread_map(fn: Callable[[T], R], items: Iterable[T], *, parallel: bool = True) -> Iterator[R]:
    """``map(fn, items)`` on :func:`worker_count` threads, results in input order.

    Runs inline when ``parallel`` is false, only one worker is available, or
    the caller is itself one of the pool's threads (nested work never waits
    for the pool it occupies). The first exception raised by ``fn``
    propagates once every item has finished.
    """
    items = list(items)
    workers = worker_count()
    if not parallel or min(workers, len(items)) <= 1 or getattr(_WORKER, "active", False):
        yield from map(fn, items)
        return
    futures = [_pool(workers).submit(fn, item) for item in items]
    try:
        for future in futures:
            yield future.result()
    finally:
        wait(futures)  # on an error or an abandoned iteration, nothing keeps running behind the caller


def for_row_blocks(fn: Callable[[int, int], None], n: int, step: int, *, elements: int) -> None:
    """Call ``fn(a, b)`` for every row block ``[a, b)`` of ``range(n)``, on threads when ``elements`` is large.

    ``fn`` must only write to rows ``a:b`` of shared outputs.
    """
    for _ in thread_map(lambda ab: fn(*ab), row_ranges(n, step), parallel=elements >= MIN_PARALLEL_ELEMENTS):
        pass


def beside(fn: Callable[..., R], *args: Any, name: str = "labelqa-beside", **kwargs: Any) -> Future[R]:
    """Start ``fn(*args, **kwargs)`` now on a thread of its own; its result (or exception) comes from the future.

    For one GIL-releasing job (a sort, random draws) run beside the caller's next steps. The thread ends
    with the job; the shared pool of :func:`thread_map` stays free for the caller's own maps.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return pool.submit(fn, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one job


_DONE = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced on a reader thread, at most ``depth`` ahead of the consumer, in order.

    The reader overlaps producing the next items (e.g. Parquet decoding, which releases the GIL) with the
    caller's work on the current one; the bounded queue keeps memory at ``depth`` items. An exception raised
    while producing is raised here, after the items before it, as it was raised. Closing the generator
    early (``break``, an error in the consumer) stops the reader without a hang. ``depth < 1`` iterates
    inline, on the calling thread.
    """
    if depth < 1:
        yield from items
        return
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ahead.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            ahead.put(_Failed(exc))

    reader = threading.Thread(target=read, name="labelqa-reader", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                ahead.get_nowait()
            except queue.Empty:
                reader.join(0.05)


class _Failed:
    """An exception raised by :func:`prefetch`'s reader (an item may itself be an exception object)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
