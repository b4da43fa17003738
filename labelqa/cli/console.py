"""Consoles: results to stdout, progress and logs to stderr."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console


def stdout_console() -> Console:
    """Console for results (stdout)."""
    return Console(highlight=False, soft_wrap=False)


def progress_logger(quiet: bool) -> Callable[[str], None]:
    """A callback that logs timed steps to stderr (silent when ``quiet``)."""
    err = Console(stderr=True, highlight=False)
    start = time.perf_counter()

    def log(message: str) -> None:
        if not quiet:
            err.print(f"[dim]labelqa [{time.perf_counter() - start:6.1f}s][/dim] {message}", markup=True,
                      highlight=False)

    return log
