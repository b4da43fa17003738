"""Which engine runs a scan: in memory, streaming or Dask.

``auto`` streams when the scan is confident learning alone (multiclass or
multi-label) on Parquet/Arrow data (nothing that needs every row in memory:
no embeddings, no training dynamics) and the input is a folder or
is large enough to hold :data:`STREAM_MIN_CELLS` float32 probabilities
(1 GB on disk, e.g. 25M rows x 10 classes); else it runs in memory, which is
faster while the data fits comfortably.
"""

from __future__ import annotations

import os
from pathlib import Path

from labelqa.errors import LabelqaError

ENGINES = ("auto", "memory", "stream", "dask")

#: rows x classes from which ``auto`` streams (the in-memory path then needs GBs).
STREAM_MIN_CELLS = 250_000_000


def choose_engine(
    engine: str,
    path: str | os.PathLike[str],
    *,
    memory_only: str | None = None,
) -> str:
    """Resolve ``engine`` for a scan of ``path``.

    Args:
        engine: ``auto``, ``memory``, ``stream`` or ``dask``.
        path: The input file or folder.
        memory_only: Why this scan needs the in-memory engine (e.g. "embeddings
            for nrg"), or ``None`` when the streaming engines can run it.

    Raises:
        LabelqaError: For an unknown engine, or ``stream``/``dask`` asked for
            a scan only the in-memory engine can run.
    """
    if engine not in ENGINES:
        raise LabelqaError(f"unknown engine {engine!r}", f"choose one of {', '.join(ENGINES)}")
    if engine in ("stream", "dask"):
        if memory_only:
            raise LabelqaError(f"--engine {engine} runs confident learning only, and this scan needs {memory_only}",
                               "use --engine memory (or auto)")
        return engine
    if engine == "memory" or memory_only:
        return "memory"
    p = Path(path)
    if p.is_dir():
        return "stream"
    if p.suffix.lower() not in (".parquet", ".pq", ".arrow", ".feather", ".ipc"):
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
