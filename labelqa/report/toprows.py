"""The best-ranked flagged rows of an issues table (the "top issues" every report shows)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["top_issue_rows"]


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
    return issues.take(pa.array(idx[:max_rows], type=pa.int64()))
