"""Predicted probabilities: an N x K float matrix, checked in one blocked pass.

Probability checks are vectorised: one blocked pass computes each row's sum,
minimum and maximum (no full-size temporaries), and the slow per-cell look-ups
only run for the few rows named in an error message.

Multiclass rows sum to 1 (or are renormalized); multi-label probabilities are
independent per class, each in [0, 1], and rows need not sum to 1.

Tolerance: a row must sum to 1 within ``tol = max(1e-3, 4 * K * eps)``, where
``eps`` is the machine epsilon of the probability dtype; that is ``1e-3`` for
float64 and for float32 up to K of about 2000 classes, wider beyond, where
float32 rounding of K terms can reach it. The same ``tol`` bounds values above 1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from labelqa.data.rows import MAX_ROWS_SHOWN, Rows, Where, count_rows, format_number
from labelqa.errors import LabelqaError
from labelqa.parallel import for_row_blocks
from labelqa.stats.confident import row_sum_argmax

#: Absolute tolerance on row sums for float64 probabilities (see module doc).
SUM_TOLERANCE = 1e-3
#: Elements per block of the row passes; ~4 MB of float32, cache sized.
BLOCK_ELEMENTS = 1 << 20


def sum_tolerance(dtype: np.dtype, n_classes: int) -> float:
    """Absolute tolerance on row sums (and on values above 1) for ``dtype``."""
    eps = float(np.finfo(dtype).eps)
    return max(SUM_TOLERANCE, 4.0 * n_classes * eps)


def as_prob_matrix(pred_probs: Any, where: str) -> np.ndarray:
    """Probabilities as a C-contiguous float32 (if given float32) or float64 numpy array."""
    if isinstance(pred_probs, np.ndarray):
        P = np.asarray(pred_probs)  # plain view of a memmap/subclass
    else:
        try:
            P = np.asarray(pred_probs)
        except (ValueError, TypeError) as exc:
            raise LabelqaError(
                f"{where}: predicted probabilities are not a numeric array ({exc})",
                hint="pass an N x K array of numbers, one row per example",
            ) from exc
    kind = P.dtype.kind
    if P.dtype.hasobject or kind not in "biuf":
        raise LabelqaError(
            f"{where}: predicted probabilities have dtype {P.dtype}; expected numbers",
            hint="pass an N x K float array (ragged lists or strings cannot be used)",
        )
    if P.ndim != 2:
        raise LabelqaError(
            f"{where}: predicted probabilities must be 2-D (rows x classes), got shape {P.shape}",
            hint="for a binary task with one probability per row, pass np.column_stack([1 - p, p])",
        )
    if P.dtype != np.float32 and P.dtype != np.float64:
        P = P.astype(np.float64)
    return np.ascontiguousarray(P)


# ------------------------------------------------------- probability checks


def row_stats(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row sum, min and max, in row blocks (no full-size temporaries; blocks on threads)."""
    n, k = P.shape
    sums = np.empty(n, dtype=P.dtype)
    mins = np.empty(n, dtype=P.dtype)
    maxs = np.empty(n, dtype=P.dtype)

    def block(a: int, b: int) -> None:
        with np.errstate(all="ignore"):
            part = P[a:b]
            np.add.reduce(part, axis=1, out=sums[a:b])
            np.minimum.reduce(part, axis=1, out=mins[a:b])
            np.maximum.reduce(part, axis=1, out=maxs[a:b])

    for_row_blocks(block, n, max(1, BLOCK_ELEMENTS // max(k, 1)), elements=n * k)
    return sums, mins, maxs


class RowFacts:
    """Each row's sum and top class, and the smallest and largest value, of an N x K probability matrix
    (:func:`labelqa.stats.confident.row_sum_argmax`), gathered block by block as the rows arrive (from any
    thread, in any order; e.g. while a Parquet column is decoded, with the rows still in cache): the
    probability checks and the class-order check read them instead of passing over the matrix again.

    Attributes:
        n_rows: Rows of the matrix.
        sums: ``(n,)`` row sums in the matrix's dtype (``np.add.reduce(P, axis=1)``, bit for bit); ``None``
            before the first block.
        top: ``(n,)`` int32 first column of each row's maximum (``P.argmax(axis=1)``), or ``None`` when not
            wanted.
    """

    def __init__(self, n_rows: int, *, top: bool = True) -> None:
        self.n_rows = int(n_rows)
        self.sums: np.ndarray | None = None
        self.top = np.empty(self.n_rows, dtype=np.int32) if top else None
        self._bounds: list[tuple[float, float]] = []
        self._filled = 0
        self._lock = threading.Lock()

    @classmethod
    def of(cls, P: np.ndarray, *, top: bool = True) -> RowFacts:
        """The facts of a whole C-contiguous matrix, in row blocks on threads."""
        n, k = P.shape
        facts = cls(n, top=top)
        for_row_blocks(lambda a, b: facts.add(a, P[a:b]), n, max(1, BLOCK_ELEMENTS // max(k, 1)), elements=n * k)
        if n == 0:
            facts.sums = np.empty(0, dtype=P.dtype)
        return facts

    def add(self, start: int, block: np.ndarray) -> None:
        """The facts of rows ``start .. start + len(block)`` (each row once)."""
        if self.sums is None:
            with self._lock:
                if self.sums is None:
                    self.sums = np.empty(self.n_rows, dtype=block.dtype)
        stop = start + block.shape[0]
        with np.errstate(all="ignore"):  # (per thread) NaN and inf are reported by the checks, not warned of
            bounds = row_sum_argmax(block, self.sums[start:stop], None if self.top is None else self.top[start:stop])
        with self._lock:
            self._bounds.append(bounds)
            self._filled += block.shape[0]

    def describes(self, P: np.ndarray) -> bool:
        """Whether every row was added, from a matrix of ``P``'s shape and dtype."""
        return self._filled == self.n_rows == P.shape[0] and self.sums is not None and self.sums.dtype == P.dtype

    @property
    def low(self) -> float:
        """The smallest value (NaN when some value is NaN)."""
        lows = [b[0] for b in self._bounds]
        return float("nan") if any(np.isnan(lows)) else min(lows, default=np.inf)

    @property
    def high(self) -> float:
        """The largest value (NaN when some value is NaN)."""
        highs = [b[1] for b in self._bounds]
        return float("nan") if any(np.isnan(highs)) else max(highs, default=-np.inf)


def prob_row_stats(P: np.ndarray, tol: float, facts: RowFacts | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`row_stats`, cheaper for valid probabilities.

    Per-row minima and maxima only matter when some value is negative or above
    ``1 + tol`` (or NaN): the matrix-wide min and max (a vectorised pass, much
    faster than per-row ones) tell, and otherwise stand in for them (read-only
    broadcasts, no memory). ``facts``: :class:`RowFacts` of ``P`` already gathered.
    """
    n, _ = P.shape
    if facts is None or not facts.describes(P):
        facts = RowFacts.of(P, top=False)
    low, high = facts.low, facts.high
    if not (low >= 0 and high <= 1 + tol):
        return row_stats(P)
    return (facts.sums, np.broadcast_to(np.asarray(low, dtype=P.dtype), (n,)),  # type: ignore[return-value]
            np.broadcast_to(np.asarray(high, dtype=P.dtype), (n,)))


def check_finite_rows(
    P: np.ndarray, sums: np.ndarray, loc: str, cell: Callable[[int], str], rows: Rows,
    what: str = "probabilities",
    hint: str = "probabilities must be finite numbers; check the model outputs (e.g. a softmax overflow)",
) -> None:
    """Raise naming the rows (and first cell) holding NaN or inf; ``sums`` are the rows' sums.

    A row holds NaN or inf iff its sum is not finite (barring overflow, which
    the look-up below filters out).
    """
    nonfinite = np.flatnonzero(~np.isfinite(sums))
    if len(nonfinite):
        bad_cells = []
        for i in nonfinite:
            js = np.flatnonzero(~np.isfinite(P[i]))
            if len(js):
                bad_cells.append((int(i), int(js[0])))
            if len(bad_cells) > MAX_ROWS_SHOWN:
                break
        if bad_cells:
            all_bad = nonfinite if len(bad_cells) > MAX_ROWS_SHOWN else np.array([r for r, _ in bad_cells])
            first = dict(bad_cells)
            raise LabelqaError(
                f"{loc}: {count_rows(len(all_bad))} with NaN or infinite {what}: "
                + rows.many(all_bad, lambda i: f"{cell(first[i])} = {format_number(P[i, first[i]])}"),
                hint=hint,
            )


def _cell_detail(P: np.ndarray, where: Where, pick: Callable[[np.ndarray], Any]) -> Callable[[int], str]:
    """``column 'prob_b' = 1.5``: the cell ``pick`` (argmin, argmax) chooses in a bad row, for messages."""

    def detail(i: int) -> str:
        j = int(pick(P[i]))
        return f"{where.cell(j)} = {format_number(P[i, j])}"

    return detail


def check_probabilities(
    P: np.ndarray, *, renormalize: bool, where: Where, rows: Rows, facts: RowFacts | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reject NaN/inf, negatives, values above 1 and rows not summing to 1; or renormalize.

    ``facts``: :class:`RowFacts` of ``P`` when already gathered (else one pass gathers them).
    Returns the (possibly renormalized) matrix and figures for ``meta``.
    """
    n, k = P.shape
    tol = sum_tolerance(P.dtype, k)
    sums, mins, maxs = prob_row_stats(P, tol, facts)
    loc = where.probs

    check_finite_rows(P, sums, loc, where.cell, rows)
    finite = np.isfinite(sums)

    neg = np.flatnonzero((mins < 0) & finite)
    if len(neg):
        raise LabelqaError(
            f"{loc}: {count_rows(len(neg))} with negative probabilities: {rows.many(neg, _cell_detail(P, where, np.argmin))}",
            hint="probabilities must be in [0, 1]; if these are logits apply a softmax first, "
            "or clip tiny negatives to 0",
        )

    if renormalize:
        zero = np.flatnonzero(sums <= 0)
        if len(zero):
            raise LabelqaError(
                f"{loc}: cannot renormalize, {count_rows(len(zero))} sum to 0: {rows.many(zero)}",
                hint="every row needs some probability mass; fix or drop those rows",
            )
        off = int(np.count_nonzero(np.abs(sums - 1) > tol))
        out = np.empty_like(P)
        step = max(1, BLOCK_ELEMENTS // max(k, 1))
        for a in range(0, n, step):
            np.divide(P[a : a + step], sums[a : a + step, None], out=out[a : a + step])
        return out, {"renormalized": True, "renormalized_rows": off, "sum_tolerance": tol}

    high = np.flatnonzero(maxs > 1 + tol)
    if len(high):
        raise LabelqaError(
            f"{loc}: {count_rows(len(high))} with probabilities above 1: {rows.many(high, _cell_detail(P, where, np.argmax))}",
            hint="probabilities must be in [0, 1]; if these are logits apply a softmax first, "
            "or pass --renormalize if they are non-negative scores",
        )

    off_rows = np.flatnonzero(np.abs(sums - 1) > tol)
    if len(off_rows):
        raise LabelqaError(
            f"{loc}: {count_rows(len(off_rows))} {'does' if len(off_rows) == 1 else 'do'} not sum to 1 "
            f"(tolerance {tol:.3g}): {rows.many(off_rows, lambda i: f'sum {format_number(sums[i])}')}",
            hint="pass --renormalize (renormalize=True) to divide each row by its sum, "
            "or check that every class has a probability column",
        )
    return P, {"renormalized": False, "sum_tolerance": tol}




def check_multilabel_probabilities(P: np.ndarray, *, where: Where, rows: Rows) -> dict[str, Any]:
    """Independent per-class probabilities: finite and within [0, 1] (rows need not sum to 1)."""
    sums, mins, maxs = row_stats(P)
    loc = where.probs
    check_finite_rows(P, sums, loc, where.cell, rows,
                       hint="probabilities must be finite numbers; check the model outputs (e.g. a sigmoid overflow)")
    finite = np.isfinite(sums)
    for bad_mask, what, pick in (
        ((mins < 0) & finite, "negative probabilities", np.argmin),
        ((maxs > 1) & finite, "probabilities above 1", np.argmax),
    ):
        bad = np.flatnonzero(bad_mask)
        if len(bad):
            raise LabelqaError(
                f"{loc}: {count_rows(len(bad))} with {what}: {rows.many(bad, _cell_detail(P, where, pick))}",
                hint="multi-label probabilities are independent per class, each in [0, 1]; "
                "if these are logits apply a sigmoid first",
            )
    return {"renormalized": False}


#: Bytes per K x K cell that a multiclass scan keeps at its peak (several float64 K x K matrices: the confident
#: joint, the noise matrices, their bootstrap and per-class work; measured ~55 bytes per cell at K = 20,000).
KK_BYTES_PER_CELL = 64


def available_memory() -> int | None:
    """Bytes of memory new allocations may take: the least of MemAvailable (Linux), the address-space limit
    (``ulimit -v``) and the cgroup limit left (containers); ``None`` when none is known."""
    limits: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            limits += [int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        try:
            limits.append(int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE")))
        except (AttributeError, ValueError, OSError):
            pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(int(soft))
    except (ImportError, OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            cap = fh.read().strip()
        if cap.isdigit():
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
                limits.append(int(cap) - int(fh.read().strip()))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def check_classes_fit(k: int, probs_where: str, available: int | None = None) -> None:
    """Refuse up front a K whose K x K matrices cannot fit in the memory available (instead of a late MemoryError).

    Args:
        k: The number of classes.
        probs_where: The probabilities, for the message.
        available: Bytes available (default: :func:`available_memory`).
    """
    needed = KK_BYTES_PER_CELL * k * k
    if needed < (1 << 30):  # under 1 GiB: every machine labelqa runs on
        return
    available = available_memory() if available is None else available
    if available is None or needed <= available:
        return
    fits = int((available / KK_BYTES_PER_CELL) ** 0.5)
    raise LabelqaError(
        f"{probs_where}: {k:,} classes need about {needed / 2**30:.1f} GiB for the K x K matrices of a multiclass "
        f"scan, but {available / 2**30:.1f} GiB of memory is available (at most about {fits:,} classes fit)",
        hint="merge rare classes into one, scan the classes in groups, or run on a machine with more memory",
    )


def check_min_classes(k: int, multilabel: bool, probs_where: str) -> None:
    """At least 2 probabilities per row (1 for multi-label data)."""
    if k < (1 if multilabel else 2):
        raise LabelqaError(
            f"{probs_where}: {k} probabilit{'y' if k == 1 else 'ies'} per row; at least "
            f"{'1 class is' if multilabel else '2 classes are'} needed",
            hint="give one probability per class; for a binary task pass both p and 1 - p",
        )


def check_batch_width(P: np.ndarray, k: int, probs_where: str, rows: Rows) -> None:
    """A batch's probability rows have the dataset's K entries."""
    if P.shape[1] != k:
        raise LabelqaError(
            f"{probs_where}: probability lists differ in length: {rows.one(0)} has {P.shape[1]} "
            f"but the dataset has {k} classes",
            hint="every row needs exactly one probability per class",
        )
