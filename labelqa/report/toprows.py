"""The best-ranked flagged rows of an issues table (the "top issues" every report shows)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from labelqa.data.arrays import from_numpy

__all__ = ["TopRows", "top_issue_rows"]


def top_issue_rows(issues: pa.Table, max_rows: int) -> pa.Table:
    """The ``max_rows`` best-ranked flagged rows of ``issues``, in rank order."""
    if max_rows <= 0 or issues.num_rows == 0 or "is_label_issue" not in issues.column_names:
        return issues.slice(0, 0)
    flags = issues.column("is_label_issue").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    idx = np.flatnonzero(flags)
    if "rank" in issues.column_names and idx.size:
        ranks = issues.column("rank").to_numpy(zero_copy_only=False)[idx]
        if idx.size > max_rows:
            part = np.argpartition(ranks, max_rows - 1)[:max_rows]
            idx, ranks = idx[part], ranks[part]
        idx = idx[np.argsort(ranks, kind="stable")]
    return issues.take(from_numpy(idx[:max_rows].astype(np.int64, copy=False)))


class TopRows:
    """:func:`top_issue_rows` over an issues table seen batch by batch (memory: ``max_rows`` rows)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = int(max_rows)
        self._kept: pa.Table | None = None

    def add(self, batch: pa.Table) -> None:
        """Fold one batch of the issues table in."""
        top = top_issue_rows(batch, self.max_rows)
        if self._kept is not None and self._kept.num_rows:
            top = top_issue_rows(pa.concat_tables([self._kept, top]), self.max_rows)
        self._kept = top

    def table(self) -> pa.Table:
        """The best-ranked flagged rows seen, in rank order (an empty table before any batch)."""
        if self._kept is None:
            return pa.table({})
        return self._kept
