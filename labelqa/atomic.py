"""Atomic output: files appear complete or not at all.

Every output is first written to a temporary name in the destination folder
and then moved into place with :func:`os.replace` (atomic on POSIX when source
and destination are on one filesystem). A failure leaves no partial file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def staging_dir(dest_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``dest_dir`` that is removed afterwards.

    Files written there can be published with :func:`publish`.
    """
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".tmp", dir=dest_dir.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: Path, dest_dir: Path) -> list[Path]:
    """Move every file of ``staged`` into ``dest_dir`` (created if needed).

    Each file is replaced atomically; files of ``dest_dir`` that are not in
    ``staged`` are left alone.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(staged.iterdir()):
        target = dest_dir / src.name
        os.replace(src, target)
        written.append(target)
    return written


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically.

    Args:
        path: Final destination.
        writer: Writes the complete file to the path it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
