"""Engines that run a scan: in memory (``labelqa.scan``), streaming, Dask.

* :func:`labelqa.engines.stream.scan_stream`: record batches of a Parquet/Arrow
  file or dataset, bounded memory, same results as the in-memory path.
* :func:`labelqa.engines.dask_engine.scan_dask`: the same per-batch functions
  over Dask partitions (optional extra ``labelqa[dask]``).

See docs/scale.md. The names below are imported on first use: an in-memory
scan only needs :mod:`labelqa.engines.choose`, and the streaming engine pulls
in ``pyarrow.dataset`` (which imports pandas, ~0.3 s).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_BATCH_SIZE", "StreamSummary", "scan_stream"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from labelqa.engines import stream

        return getattr(stream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
