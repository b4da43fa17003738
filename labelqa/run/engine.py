"""Which engine runs a scan: in memory, streaming or Dask.

``auto`` streams when every detector of the scan can run batch by batch
(confident learning, multiclass or multi-label, and exact duplicates: nothing
that needs every row in memory, such as embeddings for NRG or near
duplicates, or training dynamics for AUM), the
input is Parquet/Arrow and it is a folder or large enough to hold
:data:`STREAM_MIN_CELLS` float32 probabilities (1 GB on disk, e.g. 25M rows
x 10 classes); else it runs in memory, which is faster while the data fits
comfortably.
"""

from __future__ import annotations

import os
from pathlib import Path

from labelqa.errors import LabelqaError

__all__ = ["ENGINES", "STREAM_MIN_CELLS", "choose_engine"]

ENGINES = ("auto", "memory", "stream", "dask")

#: rows x classes from which ``auto`` streams (the in-memory path then needs GBs).
STREAM_MIN_CELLS = 250_000_000

_STREAM_SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc")


def choose_engine(engine: str, path: str | os.PathLike[str] | None, *, memory_only: str | None = None) -> str:
    """Resolve ``engine`` for a scan of ``path``.

    Args:
        engine: ``auto``, ``memory``, ``stream`` or ``dask``.
        path: The input file or folder (``None``: data already in memory).
        memory_only: Why this scan needs the in-memory engine (e.g. "the
            neighbour graph over all embeddings (nrg)"), or ``None`` when
            the streaming engines can run it.

    Raises:
        LabelqaError: For an unknown engine, or ``stream``/``dask`` asked for
            a scan only the in-memory engine can run.
    """
    if engine not in ENGINES:
        raise LabelqaError(f"unknown engine {engine!r}", f"choose one of {', '.join(ENGINES)}")
    if engine in ("stream", "dask"):
        if path is None:
            raise LabelqaError(f"--engine {engine} reads files; this data is already in memory",
                               "use --engine memory (or auto)")
        if memory_only:
            raise LabelqaError(f"--engine {engine} runs confident learning and exact duplicates only, and this scan "
                               f"needs {memory_only}",
                               "use --engine memory (or auto)")
        return engine
    if engine == "memory" or memory_only or path is None:
        return "memory"
    p = Path(path)
    if p.is_dir():
        return "stream"
    if p.suffix.lower() not in _STREAM_SUFFIXES:
        return "memory"
    return "stream" if _cells(p) >= STREAM_MIN_CELLS else "memory"


def _cells(path: Path) -> int:
    """Approximate rows x classes of a Parquet/Arrow file from its size (float32 probabilities).

    Reading metadata or a first row costs up to a second on a large file;
    the size on disk is free and close enough for this decision.
    """
    try:
        return path.stat().st_size // 4
    except OSError:
        return 0  # unreadable here: let the in-memory loader give the clear error
