"""Run row-block work on a few threads.

numpy's reductions, comparisons and copies and pyarrow's Parquet decoding
release the GIL, so independent row blocks of a large matrix can be worked on
side by side by plain threads (no processes, no pickling, shared memory).
Small inputs run inline: a pool costs more than it saves below a few MB.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

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


def _mark_worker() -> None:
    _WORKER.active = True


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool of ``workers`` threads (a new one after a fork: the parent's threads are not in the child)."""
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labelqa",
                                                    initializer=_mark_worker)
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
