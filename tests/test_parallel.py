"""Row-block threads: same results as a plain loop, order kept, errors surface."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from labelqa import parallel
from labelqa.parallel import beside, for_row_blocks, prefetch, row_ranges, thread_map, worker_count


def test_row_ranges_cover_range_exactly():
    assert row_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert row_ranges(0, 4) == []
    assert row_ranges(3, 0) == [(0, 1), (1, 2), (2, 3)]  # a zero step still advances


def test_worker_count_env(monkeypatch):
    monkeypatch.setenv("LABELQA_THREADS", "3")
    assert worker_count() == 3
    monkeypatch.setenv("LABELQA_THREADS", "0")
    assert worker_count() == 1
    monkeypatch.setenv("LABELQA_THREADS", "lots")
    assert 1 <= worker_count() <= 8


def test_thread_map_keeps_order_and_uses_threads(monkeypatch):
    monkeypatch.setenv("LABELQA_THREADS", "2")
    seen: set[int] = set()
    barrier = threading.Barrier(2, timeout=10)

    def work(i: int) -> int:
        seen.add(threading.get_ident())
        if i < 2:
            barrier.wait()  # only returns if two items run at the same time
        return i * i

    assert list(thread_map(work, range(6))) == [i * i for i in range(6)]
    assert len(seen) == 2


def test_thread_map_inline_when_not_parallel(monkeypatch):
    monkeypatch.setenv("LABELQA_THREADS", "4")
    main = threading.get_ident()
    assert list(thread_map(lambda i: threading.get_ident() == main, range(3), parallel=False)) == [True] * 3


def test_thread_map_raises_first_error(monkeypatch):
    monkeypatch.setenv("LABELQA_THREADS", "2")

    def work(i: int) -> int:
        if i in (3, 5):
            raise ValueError(f"bad {i}")
        return i

    with pytest.raises(ValueError, match="bad 3"):
        list(thread_map(work, range(8)))


@pytest.mark.parametrize("threads", ["1", "2"])
def test_for_row_blocks_matches_a_full_reduction(monkeypatch, threads):
    monkeypatch.setenv("LABELQA_THREADS", threads)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_ELEMENTS", 0)
    x = np.random.default_rng(0).random((1003, 7))
    out = np.empty(len(x))

    def block(a: int, b: int) -> None:
        out[a:b] = x[a:b].sum(axis=1)

    for_row_blocks(block, len(x), 100, elements=x.size)
    np.testing.assert_allclose(out, x.sum(axis=1))


def test_thread_map_reuses_its_threads_and_runs_nested_work_inline(monkeypatch):
    monkeypatch.setenv("LABELQA_THREADS", "2")
    first: set[int] = set()
    again: set[int] = set()
    barrier = threading.Barrier(2, timeout=10)

    def work(seen: set[int]) -> None:
        seen.add(threading.get_ident())
        barrier.wait()

    list(thread_map(lambda _: work(first), range(2)))
    barrier.reset()
    list(thread_map(lambda _: work(again), range(2)))
    assert first == again and len(first) == 2  # the same two threads
    inner = list(thread_map(lambda i: list(thread_map(lambda j: (threading.get_ident(), j), range(3))), range(2)))
    for outer in inner:  # each nested map ran on the thread that called it
        assert len({ident for ident, _ in outer}) == 1 and [j for _, j in outer] == [0, 1, 2]


def test_thread_map_lets_every_item_finish_before_raising(monkeypatch):
    monkeypatch.setenv("LABELQA_THREADS", "2")
    done: list[int] = []

    def work(i: int) -> int:
        if i == 0:
            raise ValueError("bad 0")
        done.append(i)
        return i

    with pytest.raises(ValueError, match="bad 0"):
        list(thread_map(work, range(6)))
    assert sorted(done) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_prefetch_yields_every_item_in_order(depth):
    main = threading.get_ident()
    producers: set[int] = set()

    def items():
        for i in range(50):
            producers.add(threading.get_ident())
            yield i

    assert list(prefetch(items(), depth)) == list(range(50))
    assert (main in producers) == (depth == 0)  # depth 0 reads inline, else on the reader thread


def test_prefetch_raises_the_readers_error_after_the_items_before_it():
    before = threading.active_count()

    def items():
        yield from range(3)
        raise ValueError("bad batch 3")

    got = []
    with pytest.raises(ValueError, match="^bad batch 3$"):
        for item in prefetch(items(), 2):
            got.append(item)
    assert got == [0, 1, 2]
    assert threading.active_count() == before  # the reader is gone, nothing hangs


def test_prefetch_stops_its_reader_when_the_consumer_stops_early():
    before = threading.active_count()
    produced: list[int] = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    for _ in range(3):
        for item in prefetch(items(), 1):
            if item == 2:
                break
    assert threading.active_count() == before
    assert len(produced) < 30  # bounded read-ahead: the reader stopped instead of reading everything


def test_beside_runs_the_job_on_a_thread_of_its_own():
    caller = threading.get_ident()
    future = beside(lambda a, b=0: (threading.get_ident(), a + b), 2, b=3)
    ident, total = future.result(timeout=10)
    assert total == 5 and ident != caller


def test_beside_hands_the_jobs_error_to_the_future():
    def fail():
        raise ValueError("boom")

    future = beside(fail)
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout=10)
