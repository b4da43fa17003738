"""Naming rows, values and places in error messages.

Every message names the file and column, the 0-based row (``row 17``) plus
its id when there is an id column, and at most :data:`MAX_ROWS_SHOWN` rows
before ``and N more``. :class:`Where` turns the provenance in ``meta``
(``pred_probs_source``, ``embeddings_source``...) into those place names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

#: How many bad rows an error message names before "and N more".
MAX_ROWS_SHOWN = 5


def py_scalar(value: Any) -> Any:
    """A pyarrow or numpy scalar as the Python value (anything else unchanged)."""
    if isinstance(value, pa.Scalar):
        return value.as_py()
    return value.item() if isinstance(value, np.generic) else value


def count_rows(n: int) -> str:
    """``1 row`` / ``12 rows``."""
    return f"{n} row" if n == 1 else f"{n} rows"


def format_number(x: float) -> str:
    """A number for a message: 6 significant digits (``0.8``, ``-0.2``, ``nan``)."""
    return f"{float(x):.6g}"


def format_values(values: Sequence[Any], limit: int = 10) -> str:
    """``'a', 'b', 'c'`` for a message, truncated after ``limit``."""
    vals = list(values)
    text = ", ".join(repr(py_scalar(v)) for v in vals[:limit])
    if len(vals) > limit:
        text += f", ... ({len(vals) - limit} more)"
    return text


class Rows:
    """Names rows in messages: ``row 17`` (0-based), plus the id when there is an id column.

    ``offset`` is added to the row numbers: a batch or slice starting at row
    ``offset`` of the dataset names its local row ``i`` as ``row offset + i``
    (its ``ids``, when given, are the slice's own).
    """

    def __init__(self, ids: Any = None, id_col: str | None = None, offset: int = 0) -> None:
        """``ids``: a numpy or pyarrow array, only indexed for the rows named."""
        self.ids = ids if id_col is not None else None
        self.id_col = id_col
        self.offset = int(offset)

    def one(self, i: int) -> str:
        """``row 17`` or ``row 17 (id 'a7')``."""
        text = f"row {self.offset + int(i)}"
        if self.ids is not None and 0 <= i < len(self.ids):
            text += f" (id {py_scalar(self.ids[i])!r})"
        return text

    def many(
        self,
        idx: Sequence[int] | np.ndarray,
        detail: Callable[[int], str] | None = None,
        limit: int = MAX_ROWS_SHOWN,
    ) -> str:
        """``row 3: sum 0.5; row 7: sum 1.2; and 12 more`` for the first ``limit`` of ``idx``."""
        idx = np.asarray(idx)
        parts = []
        for i in idx[:limit]:
            text = self.one(int(i))
            if detail is not None:
                text += f": {detail(int(i))}"
            parts.append(text)
        if len(idx) > limit:
            parts.append(f"and {len(idx) - limit} more")
        return "; ".join(parts)

    def slice(self, start: int, length: int) -> Rows:
        """The rows ``start .. start + length - 1`` of these, named as here."""
        ids = self.ids
        if ids is not None:
            ids = ids.slice(start, length) if isinstance(ids, (pa.Array, pa.ChunkedArray)) else ids[start : start + length]
        return Rows(ids, self.id_col, self.offset + start)


class Where:
    """Place names for messages (``d.parquet, column 'pred_probs'``), from the source and ``meta``."""

    def __init__(self, source: str | None, label_col: str, id_col: str | None, meta: dict[str, Any]):
        self.source = source
        self.label_col = label_col
        self.id_col = id_col
        self.probs_source = meta.get("pred_probs_source")
        self.prob_columns = meta.get("pred_probs_columns")
        self.classes_source = meta.get("classes_source", "classes argument")
        self.embeddings_source = meta.get("embeddings_source")

    def _prefix(self, part: str | None) -> str:
        if self.source and part:
            return f"{self.source}, {part}"
        return self.source or part or "input"

    def _named(self, source: str | None, default: str) -> str:
        if source is None or source == "array":
            return self._prefix(default)
        if source.startswith("file "):
            return source[len("file ") :]
        if source.startswith("column "):
            return self._prefix(f"column {source[len('column '):]!r}")
        return self._prefix(source)

    @property
    def labels(self) -> str:
        """Where the labels are."""
        return self._prefix(f"column {self.label_col!r}" if self.source else "labels")

    @property
    def ids(self) -> str:
        """Where the ids are."""
        return self._prefix(f"column {self.id_col!r}" if self.id_col else "ids")

    @property
    def probs(self) -> str:
        """Where the probabilities are (a file is named alone)."""
        return self._named(self.probs_source, "pred_probs")

    @property
    def embeddings(self) -> str:
        """Where the embeddings are (a file is named alone)."""
        return self._named(self.embeddings_source, "embeddings")

    def cell(self, j: int) -> str:
        """Name probability column ``j``."""
        if self.prob_columns is not None and 0 <= j < len(self.prob_columns):
            return f"column {self.prob_columns[j]!r}"
        if self.probs_source and self.probs_source.startswith("column "):
            return f"item {j}"
        return f"column {j}"
