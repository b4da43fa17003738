"""Embeddings (optional, any task; for the NRG detector): an N x D matrix of finite numbers,
no all-zero row, stored as float32."""

from __future__ import annotations

from typing import Any

import numpy as np

from labelqa.data.probabilities import BLOCK_ELEMENTS
from labelqa.data.rows import Rows, Where, count_rows, format_number
from labelqa.errors import LabelqaError


def check_embeddings(embeddings: Any, n_rows: int, where: Where, rows: Rows) -> np.ndarray:
    """Embeddings as a C-contiguous float32 N x D matrix of finite numbers with no all-zero row.

    float32 C-contiguous input is not copied; anything else is converted once.
    """
    loc = where.embeddings
    hint = "embeddings must be an N x D array of finite numbers"
    try:
        E = np.asarray(embeddings)
    except ValueError as exc:  # ragged nested sequences
        E = None
        err: Exception | None = exc
    else:
        err = None
    if E is None or (E.dtype == object and E.ndim == 1):
        seq = list(embeddings)
        lengths = np.array([np.size(r) if r is not None else -1 for r in seq], dtype=np.int64)
        if len(lengths) and (lengths != lengths[0]).any():
            first = int(np.flatnonzero(lengths != lengths[0])[0])
            raise LabelqaError(
                f"{loc}: embeddings are ragged: {rows.one(0)} has {int(lengths[0])} values but "
                f"{rows.one(first)} has {int(lengths[first])}",
                hint="every row needs an embedding of the same length D",
            ) from err
        try:
            E = np.asarray(seq, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise LabelqaError(f"{loc}: embeddings are not numeric ({exc})", hint=hint) from exc
    if E.dtype.hasobject or E.dtype.kind not in "biuf":
        raise LabelqaError(f"{loc}: embeddings have dtype {E.dtype}; expected numbers", hint=hint)
    if E.ndim != 2:
        raise LabelqaError(f"{loc}: embeddings must be 2-D (rows x dimensions), got shape {E.shape}", hint=hint)
    if E.shape[0] != n_rows:
        raise LabelqaError(
            f"{loc}: {E.shape[0]} rows of embeddings but the data has {n_rows} rows",
            hint="embeddings must have one row per labelled example, in the same order",
        )
    if E.shape[1] == 0:
        raise LabelqaError(f"{loc}: embeddings have 0 dimensions", hint=hint)
    if E.dtype != np.float32 or not E.flags.c_contiguous:
        with np.errstate(over="ignore"):
            E = np.ascontiguousarray(E, dtype=np.float32)
    n, d = E.shape
    # One blocked pass: a row's max |x| is NaN/inf iff the row holds NaN/inf, 0 iff it is all zeros.
    peak = np.empty(n, dtype=np.float32)
    step = max(1, BLOCK_ELEMENTS // d)
    buf = np.empty((min(step, n), d), dtype=np.float32)
    for a in range(0, n, step):
        block = E[a : a + step]
        tmp = buf[: len(block)]
        np.abs(block, out=tmp)
        np.maximum.reduce(tmp, axis=1, out=peak[a : a + step])
    nonfinite = np.flatnonzero(~np.isfinite(peak))
    if len(nonfinite):

        def detail(i: int) -> str:
            j = int(np.flatnonzero(~np.isfinite(E[i]))[0])
            return f"dimension {j} = {format_number(E[i, j])}"

        raise LabelqaError(
            f"{loc}: {count_rows(len(nonfinite))} with NaN or infinite embedding values: {rows.many(nonfinite, detail)}",
            hint="embeddings must be finite numbers (float32); check the model that produced them",
        )
    zero = np.flatnonzero(peak == 0)
    if len(zero):
        raise LabelqaError(
            f"{loc}: {count_rows(len(zero))} with an all-zero embedding, which cannot L2-normalise: {rows.many(zero)}",
            hint="drop those rows or give them a non-zero embedding",
        )
    return E
