"""The command-line tool's start-up and memory tricks: the one place that explains and measures them.

Each trick stays only while it pays for itself: it saves at least ~0.1 s or
a clear amount of memory on a large scan, or a sizable share (>= 10%) of a
small one. They are for the CLI's own process: the library never applies
them on import (they would change numpy or pyarrow for the host program).
The one exception is scoped: :func:`small_pages` applies trick 2 for the
duration of a library call (``labelqa.load``, ``labelqa.scan``) and restores
numpy's setting after it: ``labelqa.load`` of 1M x 100 took 0.75-1.1 s
from Python with numpy's default and takes 0.53-0.69 s with it (the CLI:
0.38-0.45 s). The rest is trick 1, which the library cannot scope (pyarrow
remembers its probe for the whole process): a process that has imported
pandas already, as a notebook usually has, loads as fast as the CLI
(0.39-0.59 s).

Measured with ``python benchmarks/startup.py --typer-python /tmp/tv/bin/python``
(the typer venv as that script's docstring says): each trick switched off
alone, fresh processes, interleaved, best of 7-15, ranges over three runs
(the large scan varies by ~0.1 s from run to run); a 2-core Linux VM with
transparent huge pages ``enabled`` and ``defrag`` = ``madvise``, Python 3.11,
numpy 2.4, pyarrow 26. "small" is ``labelqa scan
examples/digits/digits_noisy.parquet`` (0.25-0.27 s, 110 MB with every trick),
"1M x 100" the in-memory scan of ``benchmarks/synthetic.py 1000000 100``
(float32, 400 MB of Parquet; 1.7-1.9 s, 0.96 GB).

1. **pyarrow's pandas probe** (:func:`skip_pyarrow_pandas_probe`; ``scan``,
   ``fix`` and ``evaluate`` call it). pyarrow imports pandas the first time it
   builds or converts an array, only to check whether the input is a pandas
   object; a CLI command never passes one. Hiding pandas for that one call
   makes the probe remember "no pandas" and stop looking; calls that need
   pandas (``Table.to_pandas``, ``from_pandas``) and ``import pandas`` work
   as usual. Saves 0.13-0.23 s and 27-31 MB of the small scan (half of it),
   0.08-0.16 s of 1M x 100.

2. **No transparent huge pages for numpy** (:func:`prefer_small_pages`;
   :func:`labelqa.cli.app.main` calls it). numpy calls ``madvise(MADV_HUGEPAGE)``
   on every allocation of 4 MB or more; where the kernel's THP ``defrag``
   setting is ``madvise`` (a common default) the first touch of such an array
   may compact memory synchronously. labelqa walks its large arrays block by
   block and gains nothing from fewer TLB misses. Saves 0.26-0.43 s of
   1M x 100 (nothing on small inputs). An explicit ``NUMPY_MADVISE_HUGEPAGE``
   (numpy's own switch) is respected: ``=1`` keeps numpy's default.

3. **No interpreter teardown** (:func:`exit_now`; ``main`` calls it when run
   as the console script, ``main(argv)`` from Python returns the code).
   Freeing the ~400 imported modules' objects at exit costs 0.05 s
   (0.04-0.12 s): a fifth or more of the small scan and of ``labelqa
   --help``; within the noise on 1M x 100 (the kernel returns the arrays'
   memory either way). Safe because every report file is written and closed,
   and a Dask cluster shut down, before ``main`` returns; stdout and stderr
   are flushed here; labelqa registers no ``atexit`` handlers.

4. **typer < 0.29** (the pin in ``pyproject.toml``). typer 0.29 imports
   pydantic and builds a ``TypeAdapter`` for every option of the invoked
   command at each start: with 0.29.2, +0.09-0.10 s and +10-12 MB for every
   ``labelqa scan`` (35-40% of the small scan), nothing measurable for
   ``labelqa --help``. Lift the pin once ``--typer-python`` with a newer
   typer shows no such cost.

5. **Freed memory kept for reuse** (:func:`keep_freed_memory`; ``main``
   calls it). glibc's malloc serves every block above its mmap threshold
   (at most 32 MB) with a fresh ``mmap`` and returns it on ``free``, so each
   N x K temporary of a large scan is page-faulted (and zeroed by the
   kernel) afresh: at 1M x 50 multi-label a third of the run was system
   time. Raising the mmap threshold to 1 GiB and the trim threshold to
   2 GiB lets freed blocks be reused from the heap: ``labelqa scan`` of
   1M x 50 multi-label 3.07-3.66 -> 2.68-2.82 s (system time 1.0-1.4 ->
   0.5 s), for +130 MB of peak RSS (0.96 -> 1.09 GB). glibc's own
   ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` variables, when
   set, are respected; other C libraries are left alone.

6. **One malloc arena for every thread** (:func:`one_malloc_arena`; ``main``
   calls it). glibc gives each new thread its own arena, a heap of at most
   64 MB: the worker threads' large blocks (decoding, the detectors' chunk
   passes, the rank sort) then came from mappings of their own, unmapped on
   ``free`` and never reused by another thread, so trick 5 held for the
   main thread only. With one arena every thread reuses what any freed;
   labelqa's threads allocate few, large blocks, so its lock is not
   contended. ``labelqa scan``, three interleaved runs each: 200k x 1,000
   2.33-3.26 -> 1.90-1.94 s (system time 1.2-2.3 -> 0.75 s), multi-label
   1M x 50 2.23-2.51 -> 1.81-2.01 s (system time 1.0-1.5 -> 0.45 s, peak
   RSS 0.89 -> 0.81 GB), 1M x 100 1.23-1.35 -> 1.12-1.34 s; 1M x 10, fifteen
   runs each: best 0.616 -> 0.577 s, median 0.658 -> 0.645 s. glibc's
   ``MALLOC_ARENA_MAX``, when set, is respected.

Not a trick but process set-up too: :func:`signals_unwind` makes SIGTERM
(and SIGHUP) unwind the stack like Ctrl-C does, so the ``finally`` blocks of
:mod:`labelqa.atomic` remove staging folders and temporary files.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def prefer_small_pages() -> bool:
    """Stop numpy from advising transparent huge pages (trick 2 above), unless ``NUMPY_MADVISE_HUGEPAGE`` is set.

    Returns:
        Whether the setting was changed.
    """
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is not None:
        return False
    setter = _hugepage_setter()
    if setter is None:  # pragma: no cover - a numpy without the switch
        return False
    setter(False)
    return True


#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: Blocks up to this size come from the heap, freed ones reused (trick 5).
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap kept, not returned to the system, up to this size (trick 5).
TRIM_THRESHOLD = (1 << 31) - 1


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc malloc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (``mallopt``); the one place labelqa does.

    Setting ``M_MMAP_THRESHOLD`` also stops glibc from raising it by itself as large blocks are freed.

    Returns:
        Whether both were set (``False`` under another C library).
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) & bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def one_malloc_arena() -> bool:
    """Let every thread allocate from glibc's main arena (trick 6 above), unless ``MALLOC_ARENA_MAX`` is set.

    Call it before threads start: a thread keeps the arena it got.

    Returns:
        Whether the setting was changed (``False`` under another C library).
    """
    if os.environ.get("MALLOC_ARENA_MAX") is not None:
        return False
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, 1))


def trim_heap() -> None:
    """Hand glibc's free heap pages back to the system (``malloc_trim(0)``; nothing off glibc).

    The streaming engine calls it between batches: the many small arrays a batch leaves (a selection's
    candidates, a rank index's parts) are freed into the heap, whose free pages between live blocks glibc
    keeps (at 16M x 10 that held ~100 MB more at the peak).
    """
    import ctypes

    malloc_trim = _glibc("malloc_trim", ctypes.c_size_t)
    if malloc_trim is not None:
        malloc_trim(0)


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` through ctypes, or ``None`` under another C library."""
    import ctypes

    return _glibc("mallopt", ctypes.c_int, ctypes.c_int)


@functools.cache
def _glibc(name: str, *argtypes: Any) -> Callable[..., int] | None:
    """glibc's function ``name`` (taking ``argtypes``, giving an ``int``) through ctypes, once; ``None`` under
    another C library."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # pragma: no cover - a glibc without it
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed large blocks instead of unmapping them (trick 5 above).

    Does nothing under another C library, or when ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_`` is set (the user's own setting wins).

    Returns:
        Whether the thresholds were changed.
    """
    if any(os.environ.get(name) is not None for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    return set_malloc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)


def _hugepage_setter() -> Callable[[bool], bool] | None:
    import numpy as np

    core = getattr(np, "_core", None) or getattr(np, "core", None)
    return getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)


def small_pages(fn: F) -> F:
    """Decorator: run ``fn`` with trick 2 on, restoring numpy's page advice after (unless ``NUMPY_MADVISE_HUGEPAGE`` is set)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setter = None if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is not None else _hugepage_setter()
        if setter is None:
            return fn(*args, **kwargs)
        previous = setter(False)
        try:
            return fn(*args, **kwargs)
        finally:
            setter(previous)

    return wrapper  # type: ignore[return-value]


def skip_pyarrow_pandas_probe() -> bool:
    """Let pyarrow's one-time pandas probe find no pandas (trick 1 above); nothing if pandas is imported already.

    Returns:
        Whether the probe was skipped.
    """
    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    finder = _HidePandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow's probe runs here, finds no pandas and remembers
    finally:
        sys.meta_path.remove(finder)
    return "pandas" not in sys.modules


class _HidePandas:
    """A meta path finder under which pandas cannot be imported."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def exit_now(code: int) -> NoReturn:
    """Flush stdout and stderr and end the process with ``code``, skipping interpreter teardown (trick 3 above)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGINT, SIGTERM or SIGHUP while :func:`signals_unwind` is active.

    A :class:`KeyboardInterrupt`, so ``except Exception`` never swallows it
    and every ``finally`` block runs.

    Attributes:
        signum: The signal received.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: The signals that stop a command cleanly.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass
class StopState:
    """What :func:`signals_unwind` saw: the first stop signal received, or ``None``."""

    signum: int | None = None


@contextlib.contextmanager
def signals_unwind() -> Iterator[StopState]:
    """While active, SIGINT/SIGTERM/SIGHUP (unless ignored already) raise :class:`Terminated` in the main thread (once: later ones are
    ignored so the clean-up they started is not cut short); the previous handlers are restored afterwards.

    Outside the main thread (where Python cannot set handlers) it does nothing.
    Yields a :class:`StopState` naming the signal received (a command
    framework may turn the exception into an exit code: this still says why).
    """
    previous: dict[int, Any] = {}
    state = StopState()

    def stop(signum: int, frame: Any) -> None:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        state.signum = signum
        raise Terminated(signum)

    try:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup and friends: keep ignoring
                previous[sig] = signal.signal(sig, stop)
    except ValueError:  # not the main thread
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous.clear()
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


# clean-up callbacks of resources an interrupted command must release (a local Dask cluster)
_ON_STOP: dict[int, Any] = {}


def on_stop(key: object, callback: Any) -> None:
    """Call ``callback()`` if the command is interrupted before :func:`forget_stop` ``(key)``."""
    _ON_STOP[id(key)] = callback


def forget_stop(key: object) -> None:
    """Drop the callback registered for ``key`` (its resource was released normally)."""
    _ON_STOP.pop(id(key), None)


def run_stop_callbacks() -> None:
    """Call (and drop) every registered clean-up callback, newest first; their failures are ignored."""
    while _ON_STOP:
        _key, callback = _ON_STOP.popitem()
        try:
            callback()
        except BaseException:  # noqa: BLE001 - best effort while stopping
            pass
