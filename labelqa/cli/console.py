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


#: An error line longer than this is cut (a message must never dump a file or a huge value).
MAX_ERROR_CHARS = 2000


def error_text(message: str) -> str:
    """The text of an error line: one line (breaks become spaces), control characters shown, not run
    (:func:`labelqa.report.escape.terminal_text`), labelqa's temporary names replaced by the names they stand
    for, at most :data:`MAX_ERROR_CHARS` characters."""
    from labelqa.atomic import public_text
    from labelqa.report.escape import terminal_text

    text = terminal_text(" ".join(str(message).splitlines()))
    text = public_text(text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "\u2026"
    return text


def error_line(message: str) -> None:
    """Print one error line to stderr: ``labelqa: error: ...`` (see :func:`error_text`)."""
    import typer

    typer.echo(f"labelqa: error: {error_text(message)}", err=True)


#: What an operating-system error number means for the user, and how to fix it.
_OS_ERRORS: dict[str, tuple[str, str]] = {
    "EACCES": ("permission denied", "choose a path you may write to (e.g. another --out) or fix its permissions"),
    "EPERM": ("operation not permitted", "choose a path you may write to (e.g. another --out) or fix its permissions"),
    "EROFS": ("read-only file system", "choose an --out on a writable disk"),
    "ENOSPC": ("no space left on the device", "free some space or choose an --out on another disk; "
               "nothing was published"),
    "EDQUOT": ("disk quota exceeded", "free some space or choose an --out on another disk; nothing was published"),
    "EFBIG": ("file too large for this file system or limit", "choose an --out on another disk"),
    "ENOTDIR": ("a part of the path is a file, not a folder", "choose a path whose parent folders are folders"),
    "EISDIR": ("is a folder, not a file", "pass a file path"),
    "ENAMETOOLONG": ("file name too long", "choose a shorter path"),
    "ELOOP": ("too many levels of symbolic links", "remove the symlink loop"),
    "ENOENT": ("no such file or folder", "check the path (a dangling symlink points nowhere)"),
    "EEXIST": ("already exists", "choose another path"),
    "EXDEV": ("cannot move between file systems", "point --out at a folder on one file system"),
    "EMFILE": ("too many open files", "raise the limit (ulimit -n) or scan fewer files at once"),
    "EIO": ("input/output error", "check the disk (dmesg) and try again"),
    "EBUSY": ("device or resource busy", "choose another --out"),
    "ETXTBSY": ("file busy", "choose another path"),
}


def os_error_text(exc: OSError) -> str:
    """One error line for an operating-system failure: where, what, how to fix.

    Understands Python's errors (``errno``, ``filename``) and pyarrow's (``[errno 28]`` and the path
    quoted in the message).
    """
    import errno as errnos
    import re

    from labelqa.atomic import public_text

    code = exc.errno
    detail = str(exc)
    if code is None:
        found = re.search(r"\[errno (\d+)\]", detail, flags=re.IGNORECASE)
        code = int(found.group(1)) if found else None
    where = exc.filename
    if where is None:
        quoted = re.search(r"'(/[^']*)'", detail)
        where = quoted.group(1) if quoted else None
    name = errnos.errorcode.get(code, "") if code is not None else ""
    what, hint = _OS_ERRORS.get(name, ((exc.strerror or detail or type(exc).__name__).strip(),
                                       "check the path, its permissions and the disk"))
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    place = f"{public_text(str(where))}: " if where is not None else ""
    return f"{place}{what} ({name or type(exc).__name__}) -- {hint}"


def stdout_console() -> Console:
    """Console for results (stdout)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, emoji=False)


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

            self._stderr = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        return self._stderr

    def __call__(self, message: str) -> None:
        if self._mode == "off":
            return
        from rich.text import Text

        from labelqa.report.escape import terminal_text

        message = Text(terminal_text(message))  # file names: no markup, no escape sequences
        if self._mode == "lines":
            self._console.print(Text(f"labelqa [{time.perf_counter() - self._start:6.1f}s] ") + message)
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
