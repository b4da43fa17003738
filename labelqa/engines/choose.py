"""Which engine runs a scan: in memory, streaming or Dask.

``auto`` streams when the scan is confident learning alone on multiclass
Parquet/Arrow data (nothing that needs every row in memory: no embeddings,
no training dynamics, no multi-label sets) and the input is a folder or
holds at least :data:`STREAM_MIN_CELLS` probabilities (rows x classes, e.g.
5M rows x 10 classes, about 200 MB of float32); else it runs in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

from labelqa.errors import LabelqaError

ENGINES = ("auto", "memory", "stream", "dask")

#: rows x classes from which ``auto`` streams (the in-memory path then needs GBs).
STREAM_MIN_CELLS = 50_000_000


def choose_engine(
    engine: str,
    path: str | os.PathLike[str],
    *,
    memory_only: str | None = None,
    pred_probs_col: str = "pred_probs",
) -> str:
    """Resolve ``engine`` for a scan of ``path``.

    Args:
        engine: ``auto``, ``memory``, ``stream`` or ``dask``.
        path: The input file or folder.
        memory_only: Why this scan needs the in-memory engine (e.g. "embeddings
            for nrg"), or ``None`` when the streaming engines can run it.
        pred_probs_col: Probability column, to size the input.

    Raises:
        LabelqaError: For an unknown engine, or ``stream``/``dask`` asked for
            a scan only the in-memory engine can run.
    """
    if engine not in ENGINES:
        raise LabelqaError(f"unknown engine {engine!r}", f"choose one of {', '.join(ENGINES)}")
    if engine in ("stream", "dask"):
        if memory_only:
            raise LabelqaError(f"--engine {engine} runs confident learning on multiclass data only, and this scan "
                               f"needs {memory_only}", "use --engine memory (or auto)")
        return engine
    if engine == "memory" or memory_only:
        return "memory"
    p = Path(path)
    if p.is_dir():
        return "stream"
    if p.suffix.lower() not in (".parquet", ".pq", ".arrow", ".feather", ".ipc"):
        return "memory"
    return "stream" if _cells(p, pred_probs_col) >= STREAM_MIN_CELLS else "memory"


def _cells(path: Path, pred_probs_col: str) -> int:
    """rows x classes of a Parquet/Arrow file, from metadata and its first row (0 when unknown)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "ipc"
        dataset = ds.dataset(path, format=fmt)
        rows = dataset.count_rows()
        schema = dataset.schema
    except (OSError, pa.ArrowException):
        return 0  # unreadable here: let the in-memory loader give the clear error
    if pred_probs_col in schema.names:
        t = schema.field(pred_probs_col).type
        if pa.types.is_fixed_size_list(t):
            return rows * t.list_size
        first = dataset.head(1, columns=[pred_probs_col]).column(0)
        return rows * (len(first[0]) if len(first) and first[0].is_valid else 0)
    return rows * sum(1 for name in schema.names if name.startswith("prob_"))
