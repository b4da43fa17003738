"""Consoles: results to stdout, progress, logs and errors to stderr; the exit codes.

Progress is a transient spinner when stderr is a terminal and silent
otherwise (CI logs keep only results and errors); ``--verbose`` prints timed
log lines instead.

Exit codes: 0 passed, 1 quality gate failed, 2 usage or input error.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

#: Exit codes of every command.
EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2

if TYPE_CHECKING:  # rich is imported when something is shown (~30 ms saved on quiet runs)
    from rich.console import Console
    from rich.status import Status


def error_line(message: str) -> None:
    """Print one error line to stderr: ``labelqa: error: ...``."""
    import typer

    typer.echo(f"labelqa: error: {message}", err=True)


def stdout_console() -> Console:
    """Console for results (stdout)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


class ProgressLog:
    """Callable progress reporter for the library's ``progress`` callbacks.

    Use as a context manager so a spinner is always cleared::

        with ProgressLog(quiet=False, verbose=False) as log:
            log("loading data")
    """

    def __init__(self, *, quiet: bool = False, verbose: bool = False) -> None:
        self._stderr: Console | None = None
        self._start = time.perf_counter()
        self._mode = "off" if quiet else "lines" if verbose else "spinner" if sys.stderr.isatty() else "off"
        self._status: Status | None = None

    @property
    def _console(self) -> Console:
        if self._stderr is None:
            from rich.console import Console

            self._stderr = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._stderr

    def __call__(self, message: str) -> None:
        if self._mode == "lines":
            self._console.print(f"labelqa [{time.perf_counter() - self._start:6.1f}s] {message}", markup=False)
        elif self._mode == "spinner":
            if self._status is None:
                self._status = self._console.status(message)
                self._status.start()
            else:
                self._status.update(message)

    def __enter__(self) -> ProgressLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def progress_logger(quiet: bool, verbose: bool = False) -> ProgressLog:
    """A progress reporter without a spinner: timed lines with ``verbose``, else silent.

    For commands that report their own progress bars; those that want the
    spinner use :class:`ProgressLog` as a context manager.
    """
    log = ProgressLog(quiet=quiet or not verbose, verbose=verbose)
    return log
