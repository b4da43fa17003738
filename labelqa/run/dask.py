"""The Dask runner: a plan's passes over pieces of a Parquet file or dataset, on a Dask cluster.

The client splits the input into pieces (consecutive row groups of one file,
about ``batch_size`` rows or more each) and submits one task per piece and
pass. Each task reads its piece with pyarrow, decodes and validates it with
the source's own code (:mod:`labelqa.data.source`) and runs the very step
or per-block function the streaming runner runs; it returns a small partial
(class sums, a K x K joint, bounded selection buffers) or the piece's rows.
The client merges partials (exact, so in whatever order tasks finish) and
consumes per-piece results in input order.

What runs where: workers read, validate and compute every per-row output;
the client merges the partials, keeps the rank index (4-8 bytes a row) and
writes the report from the pieces sent back. The data must be readable under
the same path on the client and every worker.

Without ``scheduler`` a loopback ``distributed.LocalCluster`` (2 workers, 1
thread each; its scheduler's web server on a free port, so a dashboard already
on 8787, e.g. a notebook's cluster, costs no warning) is started and closed by
:meth:`DaskRunner.close`.
Needs the optional extra ``labelqa[dask]`` (``distributed``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from labelqa.detectors.base import Step
from labelqa.data.source import Source
from labelqa.errors import LabelqaError
from labelqa.run.stream import DEFAULT_BATCH_SIZE, block_of, info_of
from labelqa.runtime import forget_stop, on_stop

__all__ = ["CONNECT_TIMEOUT_S", "DaskRunner", "Piece", "connect", "parquet_pieces"]


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LabelqaError(
            f"--engine dask needs Dask ({exc.name} is not installed)",
            hint='pip install "labelqa[dask]"',
        ) from exc
    return distributed


#: Seconds to wait for a ``--scheduler`` to answer.
CONNECT_TIMEOUT_S = 10


def connect(distributed: Any, scheduler: str) -> Any:
    """A ``distributed.Client`` of the scheduler at ``scheduler``.

    Raises:
        LabelqaError: A malformed address, or no scheduler answering there within :data:`CONNECT_TIMEOUT_S`.
    """
    try:
        return distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise LabelqaError(
            f"cannot reach the Dask scheduler at --scheduler {scheduler!r}: {reason[:300]}",
            "pass a running scheduler's address (e.g. tcp://10.0.0.5:8786), or omit --scheduler for a local cluster",
        ) from None


_TRACKER_WARNING = "ignore:resource_tracker:UserWarning"


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker (a separate process sharing stderr) from printing "leaked
    semaphore" warnings after labelqa's error line when a command is stopped while the local cluster
    starts; the tracker still removes them. It takes its warning filters from ``sys.warnoptions``."""
    import sys

    if _TRACKER_WARNING not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_WARNING)


@dataclass(frozen=True)
class Piece:
    """Consecutive row groups of one Parquet file: rows ``offset .. offset + n_rows - 1`` of the dataset."""

    path: str
    filesystem: Any  # pyarrow filesystem of the path (picklable)
    partition: Any  # the fragment's partition expression (hive keys)
    row_groups: tuple[int, ...]
    offset: int
    n_rows: int


def parquet_pieces(src: Source, target_rows: int) -> list[Piece]:
    """The source's Parquet files cut into pieces of consecutive row groups of at least ``target_rows`` rows."""
    pieces: list[Piece] = []
    offset = 0
    for frag in src.dataset().get_fragments():
        frag.ensure_complete_metadata()
        groups: list[int] = []
        rows = 0
        for rg in frag.row_groups:
            groups.append(rg.id)
            rows += rg.num_rows
            if rows >= target_rows:
                pieces.append(Piece(frag.path, frag.filesystem, frag.partition_expression, tuple(groups), offset, rows))
                offset += rows
                groups, rows = [], 0
        if groups:
            pieces.append(Piece(frag.path, frag.filesystem, frag.partition_expression, tuple(groups), offset, rows))
            offset += rows
    return pieces


def _read(src: Source, piece: Piece, schema: pa.Schema, batch_size: int, validate: bool) -> Iterator[Any]:
    """The piece's rows, decoded batch by batch (global row numbers in messages)."""
    import pyarrow.dataset as ds

    fmt = ds.ParquetFileFormat()
    frag = fmt.make_fragment(piece.path, piece.filesystem, partition_expression=piece.partition, row_groups=list(piece.row_groups))
    table = frag.to_table(schema=schema, columns=src.read_columns)
    offset = piece.offset
    for rb in table.to_batches(max_chunksize=batch_size):
        if rb.num_rows:
            yield src.decode(pa.Table.from_batches([rb]), offset, validate=validate)
            offset += rb.num_rows


def _fold_piece(src: Source, piece: Piece, schema: pa.Schema, batch_size: int, validate: bool,
                steps: Sequence[Step]) -> tuple[list[Any], int]:
    partials = [s.start() for s in steps]
    renormalized = 0
    for batch in _read(src, piece, schema, batch_size, validate):
        renormalized += batch.renormalized_rows
        block = block_of(batch)
        for i, step in enumerate(steps):
            partials[i] = step.feed(partials[i], block)
    return partials, renormalized


def _map_piece(src: Source, piece: Piece, schema: pa.Schema, batch_size: int, fn: Callable[..., Any],
               args: tuple[Any, ...]) -> list[Any]:
    return [fn(block_of(batch), *args) for batch in _read(src, piece, schema, batch_size, False)]


class DaskRunner:
    """Runs steps and per-block functions over the pieces of a Parquet source on a Dask cluster.

    Args:
        src: The source (small and picklable: shipped to the workers).
        scheduler: Address of a running scheduler (``tcp://10.0.0.5:8786``);
            ``None`` starts a local loopback cluster, closed by :meth:`close`.
        batch_size: Rows per batch inside a piece; pieces hold at least this
            many rows (whole row groups).
        client: An existing ``distributed.Client`` to use (not closed).
    """

    engine = "dask"

    def __init__(self, src: Source, *, scheduler: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 client: Any = None) -> None:
        if src.fmt != "parquet":
            raise LabelqaError("--engine dask reads Parquet inputs",
                               hint="convert the data to Parquet, or use --engine stream")
        distributed = _import_distributed()
        self.src = src
        self.info = info_of(src)
        self.batch_size = int(batch_size)
        self.renormalized_rows = 0
        self.passes: list[str] = []
        self._validated = False
        self._stack = contextlib.ExitStack()
        if client is None:
            if scheduler:
                client = self._stack.enter_context(connect(distributed, scheduler))
            else:
                on_stop(self, self._stack.close)  # an interrupted command still shuts the cluster down
                quiet_resource_tracker()
                # the workers' own log lines ("Compute Failed" and a traceback) would precede labelqa's error line
                cluster = self._stack.enter_context(distributed.LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0",
                    silence_logs=logging.CRITICAL))
                client = self._stack.enter_context(distributed.Client(cluster))
        self.client = client
        self.schema = src.dataset().schema
        self.pieces = parquet_pieces(src, self.batch_size)
        if sum(p.n_rows for p in self.pieces) != src.n_rows:  # pragma: no cover - a changed dataset
            raise LabelqaError(f"{src.path}: row groups hold a different number of rows than the dataset",
                               hint="check the dataset files")

    @property
    def address(self) -> str:
        """Where the scheduler is."""
        return str(getattr(self.client.scheduler, "address", self.client))

    def fold(self, steps: Sequence[Step]) -> list[Any]:
        """One pass: a task per piece feeds every step; the partials are merged as tasks finish."""
        distributed = _import_distributed()
        validate = not self._validated
        futures = [self.client.submit(_fold_piece, self.src, piece, self.schema, self.batch_size, validate,
                                      list(steps), pure=False) for piece in self.pieces]
        merged: list[Any] | None = None
        try:
            for future in distributed.as_completed(futures):
                partials, renormalized = future.result()
                future.release()
                if validate:
                    self.renormalized_rows += renormalized
                merged = partials if merged is None else [s.merge(a, b) for s, a, b in zip(steps, merged, partials)]
        finally:
            for future in futures:
                future.release()
        self._validated = True
        self.passes.append(", ".join(s.name for s in steps))
        return merged if merged is not None else [s.start() for s in steps]

    def map(self, fn: Callable[..., Any], *args: Any, name: str = "rows") -> Iterator[Any]:
        """One pass: ``fn(block, *args)`` for every batch, on the workers; results in input order."""
        futures = [self.client.submit(_map_piece, self.src, piece, self.schema, self.batch_size, fn, args,
                                      pure=False) for piece in self.pieces]
        try:
            for future in futures:
                yield from future.result()
                future.release()
        finally:
            for future in futures:
                future.release()
        self.passes.append(name)

    def close(self) -> None:
        """Close the local cluster this runner started (an existing client or scheduler stays up)."""
        self._stack.close()
        forget_stop(self)
