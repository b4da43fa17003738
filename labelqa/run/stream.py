"""The streaming runner: a plan's passes over the record batches of a Parquet/Arrow file, folder or hive dataset.

Every pass reads the data again, batch by batch (:mod:`labelqa.data.source`
decodes and validates them: the first pass checks every row, later passes
only decode), so memory is bounded by a batch plus the plans' partial
aggregates, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from labelqa.detectors.base import Block, DatasetInfo, Step
from labelqa.data.source import Source

__all__ = ["DEFAULT_BATCH_SIZE", "StreamRunner", "info_of"]

#: Rows per record batch of the streaming and Dask runners.
DEFAULT_BATCH_SIZE = 262_144


def info_of(src: Source) -> DatasetInfo:
    """What a plan knows of a source before the first pass."""
    return DatasetInfo(src.n_rows, tuple(src.classes), src.task, src.prob_dtype())


def block_of(batch: Any) -> Block:
    """A decoded batch of a source as a plan's block."""
    return Block(batch.labels, batch.probs, batch.ids, batch.offset)


class StreamRunner:
    """Runs steps and per-block functions over a source's record batches, in this process.

    Attributes:
        engine: ``"stream"``.
        info: The dataset's :class:`~labelqa.detectors.base.DatasetInfo`.
        renormalized_rows: Rows whose probabilities were divided by their sum
            (``renormalize``), counted on the first pass.
        passes: Names of the passes run so far.
    """

    engine = "stream"

    def __init__(self, src: Source, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.src = src
        self.batch_size = int(batch_size)
        self.info = info_of(src)
        self.renormalized_rows = 0
        self.passes: list[str] = []
        self._validated = False

    def _blocks(self) -> Iterator[Block]:
        validate = not self._validated
        for offset, table in self.src.tables(self.batch_size):
            batch = self.src.decode(table, offset, validate=validate)
            if validate:
                self.renormalized_rows += batch.renormalized_rows
            yield block_of(batch)
        self._validated = True

    def fold(self, steps: Sequence[Step]) -> list[Any]:
        """One pass: every step is fed every batch; returns the partials (in step order)."""
        partials = [s.start() for s in steps]
        for block in self._blocks():
            for i, step in enumerate(steps):
                partials[i] = step.feed(partials[i], block)
        self.passes.append(", ".join(s.name for s in steps))
        return partials

    def map(self, fn: Callable[..., Any], *args: Any, name: str = "rows") -> Iterator[Any]:
        """One pass: ``fn(block, *args)`` for every batch, in input order."""
        for block in self._blocks():
            yield fn(block, *args)
        self.passes.append(name)

    def close(self) -> None:
        """Nothing to release."""
