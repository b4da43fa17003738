"""Engines that run a scan: in memory (``labelqa.scan``), streaming, Dask.

* :func:`labelqa.engines.stream.scan_stream`: record batches of a Parquet/Arrow
  file or dataset, bounded memory, same results as the in-memory path.
* :func:`labelqa.engines.dask_engine.scan_dask`: the same per-batch functions
  over Dask partitions (optional extra ``labelqa[dask]``).

See docs/scale.md.
"""

from labelqa.engines.stream import DEFAULT_BATCH_SIZE, StreamSummary, scan_stream

__all__ = ["DEFAULT_BATCH_SIZE", "StreamSummary", "scan_stream"]
