"""Atomic output: a file or a report folder appears complete or not at all.

The one place where labelqa's outputs are staged and published:

* **A file** (``fix``'s output, a rebuilt report.html, evaluation.json,
  train's data.parquet): :func:`write_atomic` writes it under a temporary
  name beside the destination, then :func:`os.replace` moves it into place.
* **A report folder** (``scan`` / ``evaluate --out``): :func:`staging_dir`
  gives a sibling folder on the same filesystem; :func:`publish` swaps it with
  the destination in one step (``renameat2(RENAME_EXCHANGE)`` on Linux; two
  renames elsewhere) and removes the previous report. So a re-used ``--out``
  holds only the new run's files, never a mix of two runs.
* **Never another's files.** :func:`check_report_folder` refuses (before
  any work) an ``--out`` folder that holds files labelqa does not write
  (:data:`REPORT_NAMES`): its whole content would be replaced.
* **Symlinks.** An ``--out`` symlink is followed: the staging folder is
  created beside the real target (same filesystem, no "Invalid cross-device
  link") and the link itself is kept. A dangling one is refused.
* **Interrupted runs.** Temporary names are recognisable:
  ``.labelqa-<kind>.<pid>.<random>.<name>``. Every live one is registered;
  SIGINT/SIGTERM (see :mod:`labelqa.runtime`) unwind through the ``finally``
  blocks that remove them, and :func:`remove_live` removes whatever is still
  registered. Leftovers of a killed run (SIGKILL, power loss) are removed by
  the next run writing beside them, once their process is gone
  (:func:`remove_leftovers`).
* **Permissions.** Files and folders are created with plain ``open``/``mkdir``
  modes, so they honour the umask (no 0600 files from :mod:`tempfile`); a
  replaced report folder keeps the previous folder's mode.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from labelqa.errors import LabelqaError

__all__ = ["LEFTOVER_PATTERN", "REPORT_NAMES", "check_report_folder", "live_paths", "located", "make_folder", "public_text", "publish",
           "remove_leftovers", "remove_live", "resolve_output", "staging_dir", "temp_path", "write_atomic"]

#: Every file labelqa writes into a report folder (scan, evaluate, report).
REPORT_NAMES = frozenset({"issues.parquet", "issues.csv", "summary.json", "matrices.npy", "summary.md", "report.html",
                          "evaluation.json", "shown.parquet"})

#: Default names of ``labelqa export``'s review files: kept out of a new report's folder, since a
#: reviewer may be working in them (the scan refuses the folder and says what they are).
REVIEW_EXPORT_PATTERN = re.compile(r"^review(-argilla)?(\.settings)?\.(json|xml|csv|jsonl)$")

#: Names of labelqa's temporary files and folders: ``.labelqa-<kind>.<pid>.<hex>.<destination name>``.
LEFTOVER_PATTERN = re.compile(r"^\.labelqa-(stage|old|tmp)\.(\d+)\.([0-9a-f]{8})\.(.*)$", re.DOTALL)

#: Temporary names of labelqa before 0.x: ``.<name>.<8 random chars>.tmp`` (from :mod:`tempfile`).
_LEGACY_PATTERN = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$", re.DOTALL)
#: A legacy leftover is removed only when nothing in it changed for this long (no pid to ask).
_LEGACY_AGE_S = 3600.0
#: Room kept for labelqa's prefix within a file-name limit of 255 bytes.
_NAME_ROOM = 200

# temporary path -> the destination it stands for (for cleanup and for messages)
_LIVE: dict[Path, Path] = {}


def temp_path(dest: Path, kind: str) -> Path:
    """A fresh recognisable temporary name beside ``dest`` (``kind``: stage, old or tmp); nothing is created."""
    name = dest.name.encode("utf-8", "surrogateescape")[:_NAME_ROOM].decode("utf-8", "ignore")
    return dest.parent / f".labelqa-{kind}.{os.getpid()}.{secrets.token_hex(4)}.{name}"


def live_paths() -> list[Path]:
    """The temporary files and folders this process has not removed yet."""
    return list(_LIVE)


def remove_live() -> list[Path]:
    """Remove every registered temporary file or folder (after an interruption); returns those removed."""
    removed = []
    for tmp in list(_LIVE):
        _remove(tmp)
        _LIVE.pop(tmp, None)
        removed.append(tmp)
    return removed


def public_text(text: str) -> str:
    """``text`` with labelqa's temporary names replaced by the names they stand for (for messages):
    ``/data/.labelqa-stage.41.0a1b2c3d.rep/issues.csv`` -> ``/data/rep/issues.csv``."""
    return _TEMP_IN_TEXT.sub("", text)


_TEMP_IN_TEXT = re.compile(r"\.labelqa-(?:stage|old|tmp)\.\d+\.[0-9a-f]{8}\.")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def remove_leftovers(folder: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed labelqa runs left in ``folder``.

    A ``.labelqa-<kind>.<pid>...`` entry is removed when its process is gone
    (a live process's entries are never touched). Older labelqa versions'
    ``.<name>.<random>.tmp`` entries are removed only for ``names`` (the
    destinations being written now) and when untouched for an hour.
    Failures to remove are ignored (another run may be removing them too).

    Returns:
        The entries removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    wanted = set(names or ())
    now = time.time()
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        match = LEFTOVER_PATTERN.match(entry.name)
        path = Path(entry.path)
        try:
            if match:
                if _pid_alive(int(match.group(2))):
                    continue
            else:
                legacy = _LEGACY_PATTERN.match(entry.name)
                if not legacy or legacy.group(1) not in wanted or now - _newest_mtime(path) < _LEGACY_AGE_S:
                    continue
            _remove(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def resolve_output(path: str | os.PathLike[str], what: str = "output path") -> Path:
    """The real path to write ``path`` at: symlinks followed (so temporaries sit on the target's filesystem).

    Raises:
        LabelqaError: ``path`` is a dangling symlink, or a symlink loop.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LabelqaError(f"{what} {path} is a symlink loop", "point the link at a real place, or remove it") \
                    from None
        try:
            target = os.readlink(path)
        except OSError:  # pragma: no cover - raced away
            target = "?"
        raise LabelqaError(f"{what} {path} is a symlink to {target}, which does not exist",
                           f"create {target} first, or remove the link or point it at an existing place")
    try:
        return Path(os.path.realpath(path, strict=False))
    except OSError as exc:  # symlink loops on Python < 3.13
        raise LabelqaError(f"{what} {path} cannot be resolved: {exc.strerror or exc}",
                           "remove the symlink loop or choose another path") from None


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents (mode by the umask).

    Raises:
        NotADirectoryError: A part of the path is a file (naming that file).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        for part in (folder, *folder.parents):
            if part.exists() and not part.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(part)) from None
        raise


def check_report_folder(out_dir: str | os.PathLike[str]) -> Path:
    """Check that ``out_dir`` can take a report, before any work; returns its real path.

    It may be missing (created), empty, or hold only labelqa's report files
    (:data:`REPORT_NAMES`) and leftovers of earlier runs: the new report
    replaces them all.

    Raises:
        LabelqaError: It is a file, a dangling symlink, or a folder holding
            other files (which labelqa never deletes).
    """
    given = Path(out_dir)
    real = resolve_output(given, "output folder")
    if real.exists() and not real.is_dir():
        raise LabelqaError(f"output path {given} exists and is not a folder", "pass --out with a folder path")
    if real.is_dir():
        try:
            names = sorted(os.listdir(real))
        except OSError as exc:
            raise LabelqaError(f"cannot list the output folder {given}: {exc.strerror or exc}",
                               "choose a readable and writable --out folder") from None
        foreign = [n for n in names if n not in REPORT_NAMES and not LEFTOVER_PATTERN.match(n)]
        if foreign and all(REVIEW_EXPORT_PATTERN.match(n) for n in foreign):
            raise LabelqaError(
                f"output folder {given} holds review files from labelqa export ({', '.join(map(repr, foreign))}), "
                "which a new report would make stale and may hold reviewers' work",
                "move them out of the folder or choose a new --out folder")
        if foreign:
            shown = ", ".join(repr(n) for n in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise LabelqaError(
                f"output folder {given} holds files labelqa did not write ({shown}); a report replaces the "
                "whole folder",
                "choose a new or empty folder for --out (labelqa never deletes files it did not write)")
    return real


_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


@contextlib.contextmanager
def located(path: str | os.PathLike[str]) -> Iterator[None]:
    """Name ``path`` in an operating-system error raised without a file name (pyarrow's writers)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        code = exc.errno
        if code is None:
            found = _ERRNO_IN_TEXT.search(str(exc))
            code = int(found.group(1)) if found else None
        if code is None:
            raise
        raise OSError(code, os.strerror(code), os.fspath(path)) from exc


@contextlib.contextmanager
def staging_dir(dest_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A new folder beside ``dest_dir`` (on its filesystem), removed afterwards unless published.

    Leftovers of killed runs beside ``dest_dir`` are removed first. Publish
    the staged files with :func:`publish`.
    """
    real = resolve_output(dest_dir)
    make_folder(real.parent)
    remove_leftovers(real.parent, [real.name])
    tmp = temp_path(real, "stage")
    os.mkdir(tmp)  # mode 0o777 & ~umask, like any folder the user creates
    _LIVE[tmp] = Path(dest_dir)
    try:
        yield tmp
    finally:
        _remove(tmp)
        _LIVE.pop(tmp, None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` when not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # filesystem or kernel without exchange
    raise OSError(code, os.strerror(code), str(b))


def publish(staged: Path, dest_dir: str | os.PathLike[str]) -> list[Path]:
    """Make the staged folder ``dest_dir``, as a whole; returns the paths of its files.

    ``dest_dir`` missing: the staged folder is renamed to it. ``dest_dir``
    holding a previous report (see :func:`check_report_folder`, checked
    again here): the two are swapped in one step and the previous report is
    removed. The current directory or a mount point cannot be renamed: there
    labelqa's report files are replaced one by one and stale ones removed.

    Raises:
        LabelqaError: ``dest_dir`` holds files labelqa did not write.
    """
    given = Path(dest_dir)
    real = check_report_folder(given)
    names = sorted(p.name for p in staged.iterdir())
    if not real.exists():
        os.rename(staged, real)
        _LIVE.pop(staged, None)
        return [given / n for n in names]
    with contextlib.suppress(OSError):
        os.chmod(staged, stat.S_IMODE(real.stat().st_mode))
    if real == Path.cwd().resolve() or os.path.ismount(real):
        _publish_files(staged, real, names)
        return [given / n for n in names]
    if _exchange(staged, real):
        old = staged  # now holds the previous report
    else:
        old = temp_path(real, "old")
        _LIVE[old] = given
        os.rename(real, old)
        try:
            os.rename(staged, real)
        except BaseException:
            os.rename(old, real)
            raise
    _LIVE.pop(staged, None)
    _LIVE[old] = given
    _remove(old)
    _LIVE.pop(old, None)
    return [given / n for n in names]


def _publish_files(staged: Path, real: Path, names: list[str]) -> None:
    for name in names:
        os.replace(staged / name, real / name)
    for stale in REPORT_NAMES.difference(names):
        (real / stale).unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically.

    A symlink at ``path`` is followed (its target is replaced, the link kept).
    The temporary file is removed on any failure or interruption.

    Args:
        path: Final destination.
        writer: Writes the complete file to the path it is given (it creates the file).
    """
    given = Path(path)
    real = resolve_output(given)
    make_folder(real.parent)
    remove_leftovers(real.parent, [real.name])
    tmp = temp_path(real, "tmp")
    _LIVE[tmp] = given
    try:
        with located(given):
            writer(tmp)
        os.replace(tmp, real)
    finally:
        _remove(tmp)
        _LIVE.pop(tmp, None)
    return given
