"""Validation shared by :func:`labelqa.data.load` and :meth:`LabelData.from_arrays`.

:func:`build_label_data` turns labels, probabilities, classes and ids into a
:class:`LabelData`, or raises one :class:`LabelqaError` that says what is
wrong, where (file, column, 0-based row, id) and how to fix it.

Probability checks are vectorised: one blocked pass computes each row's sum,
minimum and maximum (no full-size temporaries), and the slow per-cell look-ups
only run for the few rows named in an error message.

Multi-label data (``task="multilabel"``): labels are label sets (a list per
row, or an N x K 0/1 matrix) stored as an N x K bool matrix; probabilities are
independent per class, each in [0, 1], and rows need not sum to 1.

Embeddings (optional, any task): an N x D matrix of finite numbers, no
all-zero row, stored as float32.

Tolerance: a row must sum to 1 within ``tol = max(1e-3, 4 * K * eps)``, where
``eps`` is the machine epsilon of the probability dtype; that is ``1e-3`` for
float64 and for float32 up to K of about 2000 classes, wider beyond, where
float32 rounding of K terms can reach it. The same ``tol`` bounds values above 1.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.model import LabelData
from labelqa.errors import LabelqaError
from labelqa.parallel import for_row_blocks

#: Absolute tolerance on row sums for float64 probabilities (see module doc).
SUM_TOLERANCE = 1e-3
#: How many bad rows an error message names before "and N more".
MAX_ROWS_SHOWN = 5

_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
# Elements per block of the row-statistics pass; ~4 MB of float32, cache sized.
_BLOCK_ELEMENTS = 1 << 20


def sum_tolerance(dtype: np.dtype, n_classes: int) -> float:
    """Absolute tolerance on row sums (and on values above 1) for ``dtype``."""
    eps = float(np.finfo(dtype).eps)
    return max(SUM_TOLERANCE, 4.0 * n_classes * eps)


# ----------------------------------------------------------------- row naming


def _py(value: Any) -> Any:
    if isinstance(value, pa.Scalar):
        return value.as_py()
    return value.item() if isinstance(value, np.generic) else value


class Rows:
    """Names rows in messages: ``row 17`` (0-based), plus the id when there is an id column."""

    def __init__(self, ids: Any = None, id_col: str | None = None) -> None:
        """``ids``: a numpy or pyarrow array, only indexed for the rows named."""
        self.ids = ids if id_col is not None else None
        self.id_col = id_col

    def one(self, i: int) -> str:
        text = f"row {int(i)}"
        if self.ids is not None and 0 <= i < len(self.ids):
            text += f" (id {_py(self.ids[i])!r})"
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


def count_rows(n: int) -> str:
    """``1 row`` / ``12 rows``."""
    return f"{n} row" if n == 1 else f"{n} rows"


def _fmt_num(x: float) -> str:
    return f"{float(x):.6g}"


def format_values(values: Sequence[Any], limit: int = 10) -> str:
    """``'a', 'b', 'c'`` for a message, truncated after ``limit``."""
    vals = list(values)
    text = ", ".join(repr(_py(v)) for v in vals[:limit])
    if len(vals) > limit:
        text += f", ... ({len(vals) - limit} more)"
    return text


class _Where:
    """Location strings for messages, from the source and meta."""

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

    @property
    def labels(self) -> str:
        return self._prefix(f"column {self.label_col!r}" if self.source else "labels")

    @property
    def ids(self) -> str:
        return self._prefix(f"column {self.id_col!r}" if self.id_col else "ids")

    @property
    def probs(self) -> str:
        ps = self.probs_source
        if ps is None or ps == "array":
            return self._prefix("pred_probs")
        if ps.startswith("file "):
            return ps[len("file ") :]
        if ps.startswith("column "):
            return self._prefix(f"column {ps[len('column '):]!r}")
        return self._prefix(ps)

    @property
    def embeddings(self) -> str:
        es = self.embeddings_source
        if es is None or es == "array":
            return self._prefix("embeddings")
        if es.startswith("file "):
            return es[len("file ") :]
        if es.startswith("column "):
            return self._prefix(f"column {es[len('column '):]!r}")
        return self._prefix(es)

    def cell(self, j: int) -> str:
        """Name probability column ``j``."""
        if self.prob_columns is not None and 0 <= j < len(self.prob_columns):
            return f"column {self.prob_columns[j]!r}"
        if self.probs_source and self.probs_source.startswith("column "):
            return f"item {j}"
        return f"column {j}"


# -------------------------------------------------------------- conversions


def to_arrow_1d(values: Any, what: str) -> pa.Array:
    """A 1-D pyarrow Array from a list, numpy array, pandas Series or pyarrow (chunked) array."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 0:
            return pa.array([], type=values.type)
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise LabelqaError(
            f"{what} must be 1-D, got shape {values.shape}",
            hint=f"pass one {what[:-1] if what.endswith('s') else what} per row",
        )
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise LabelqaError(f"{what} must be a sequence, got {type(values).__name__}", hint="pass one value per row")
    try:
        if isinstance(values, np.ndarray) and values.dtype.kind in "US":
            return pa.array(values.astype(object), from_pandas=True)
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise LabelqaError(
            f"{what} mix value types or hold unsupported values ({exc})",
            hint="use integers or strings, one type for all rows",
        ) from exc


def _null_rows(arr: pa.Array) -> np.ndarray:
    return np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))


def normalize_labels(arr: pa.Array, where: str, rows: Rows) -> pa.Array:
    """Labels as an int64 or string pyarrow Array, rejecting nulls and other types."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:
        bad = _null_rows(arr)
        raise LabelqaError(
            f"{where}: {count_rows(len(bad))} {'has' if len(bad) == 1 else 'have'} no label: {rows.many(bad)}",
            hint="fill in or drop the rows without a label",
        )
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        try:
            return pc.cast(arr, pa.int64())
        except pa.ArrowInvalid as exc:
            raise LabelqaError(f"{where}: labels do not fit in int64 ({exc})", hint="use smaller integers or strings") from exc
    if pa.types.is_floating(t):
        integral = pc.equal(arr, pc.floor(arr)).to_numpy(zero_copy_only=False)
        if not integral.all():
            bad = np.flatnonzero(~integral)
            raise LabelqaError(
                f"{where}: labels must be integers or strings, found {_py(arr[int(bad[0])].as_py())!r} in "
                f"{rows.one(int(bad[0]))} ({count_rows(len(bad))} with non-integer values)",
                hint="labels are class values; give the class, not a score",
            )
        return pc.cast(arr, pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    if getattr(pa.types, "is_string_view", lambda _t: False)(t):
        return pc.cast(arr, pa.string())
    raise LabelqaError(
        f"{where}: labels have type {t}; expected integers or strings",
        hint="convert the label column to integers or strings",
    )


def normalize_classes(classes: Any) -> list[Any]:
    """Class values as a list of Python scalars; a ``"a,b,c"`` string is split on commas."""
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    elif isinstance(classes, (pa.Array, pa.ChunkedArray)):
        classes = classes.to_pylist()
    try:
        return [_py(c) for c in classes]
    except TypeError as exc:
        raise LabelqaError(f"classes must be a sequence, got {type(classes).__name__}", hint="pass a list of class values") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def classes_like_labels(classes: Sequence[Any], label_type: pa.DataType) -> tuple[Any, ...]:
    """Give class values the labels' type.

    With integer labels, a class that is an int, an integral float or a string
    spelling an int exactly (``"3"``, not ``"03"``) becomes an ``int``; other
    classes stay strings (names). With string labels every class becomes ``str``.
    """
    out: list[Any] = []
    if pa.types.is_integer(label_type):
        for c in classes:
            if isinstance(c, bool):
                out.append(int(c))
            elif _is_int(c):
                out.append(c)
            elif isinstance(c, float) and c.is_integer():
                out.append(int(c))
            elif isinstance(c, str) and _CANONICAL_INT.fullmatch(c.strip()):
                out.append(int(c.strip()))
            else:
                out.append(c if isinstance(c, str) else str(c))
    else:
        out = [c if isinstance(c, str) else str(c) for c in classes]
    return tuple(out)


def check_duplicate_classes(classes: Sequence[Any], source: str) -> None:
    seen: dict[Any, int] = {}
    for c in classes:
        seen[c] = seen.get(c, 0) + 1
    dups = [c for c, n in seen.items() if n > 1]
    if dups:
        shown = ", ".join(f"{c!r} ({seen[c]} times)" for c in dups[:5])
        raise LabelqaError(f"duplicate classes in {source}: {shown}", hint="list each class once, in probability-column order")


def convert_ids(ids: Any, n_rows: int, where: str, id_col: str | None) -> np.ndarray:
    """Row ids as a numpy array (int64 for integers, object for strings); reject nulls and duplicates."""
    if ids is None:
        return np.arange(n_rows, dtype=np.int64)
    arr = to_arrow_1d(ids, "ids")
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if len(arr) != n_rows:
        raise LabelqaError(f"{where}: {len(arr)} ids for {n_rows} rows", hint="give one id per row")
    plain = Rows()
    if arr.null_count:
        bad = _null_rows(arr)
        raise LabelqaError(
            f"{where}: {count_rows(len(bad))} {'has' if len(bad) == 1 else 'have'} no id: {plain.many(bad)}",
            hint="fill in the missing ids, or omit --id-col to use the row index",
        )
    if pa.types.is_integer(arr.type):
        try:
            arr = pc.cast(arr, pa.int64())
        except pa.ArrowInvalid:  # uint64 beyond int64: keep uint64
            pass
    n_distinct = pc.count_distinct(arr).as_py()
    if n_distinct != n_rows:
        counts = pc.value_counts(arr)
        values = counts.field("values")
        repeated = pc.filter(values, pc.greater(counts.field("counts"), 1))
        np_ids = arr.to_numpy(zero_copy_only=False)
        shown = []
        for v in repeated[:3].to_pylist():
            where_rows = np.flatnonzero(np_ids == v)[:4]
            shown.append(f"{v!r} in rows {', '.join(str(int(r)) for r in where_rows)}")
        raise LabelqaError(
            f"{where}: {n_rows - n_distinct} duplicate ids ({len(repeated)} values repeated): " + "; ".join(shown),
            hint="ids must be unique so the report can be joined back by id; "
            "pick another --id-col, or omit it to use the row index",
        )
    return arr.to_numpy(zero_copy_only=False)


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

    for_row_blocks(block, n, max(1, _BLOCK_ELEMENTS // max(k, 1)), elements=n * k)
    return sums, mins, maxs


def _prob_row_stats(P: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`row_stats`, cheaper for valid probabilities.

    Per-row minima and maxima only matter when some value is negative or above
    ``1 + tol`` (or NaN): the matrix-wide min and max (a vectorised pass, much
    faster than per-row ones) tell, and otherwise stand in for them.
    """
    n, k = P.shape
    sums = np.empty(n, dtype=P.dtype)
    lows = []
    highs = []
    lock = threading.Lock()

    def block(a: int, b: int) -> None:
        with np.errstate(all="ignore"):
            part = P[a:b]
            np.add.reduce(part, axis=1, out=sums[a:b])
            low, high = part.min(initial=np.inf), part.max(initial=-np.inf)
        with lock:
            lows.append(low)
            highs.append(high)

    for_row_blocks(block, n, max(1, _BLOCK_ELEMENTS // max(k, 1)), elements=n * k)
    low, high = np.min(lows, initial=np.inf), np.max(highs, initial=-np.inf)  # NaN propagates
    if not (low >= 0 and high <= 1 + tol):
        return row_stats(P)
    return sums, np.full(n, low, dtype=P.dtype), np.full(n, high, dtype=P.dtype)


def _check_finite_rows(
    P: np.ndarray, sums: np.ndarray, loc: str, cell: Callable[[int], str], rows: Rows,
    what: str = "probabilities",
    hint: str = "probabilities must be finite numbers; check the model outputs (e.g. a softmax overflow)",
) -> None:
    """Raise naming the rows (and first cell) holding NaN or inf.

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
                + rows.many(all_bad, lambda i: f"{cell(first[i])} = {_fmt_num(P[i, first[i]])}"),
                hint=hint,
            )


def check_probabilities(
    P: np.ndarray, *, renormalize: bool, where: _Where, rows: Rows
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reject NaN/inf, negatives, values above 1 and rows not summing to 1; or renormalize.

    Returns the (possibly renormalized) matrix and figures for ``meta``.
    """
    n, k = P.shape
    tol = sum_tolerance(P.dtype, k)
    sums, mins, maxs = _prob_row_stats(P, tol)
    loc = where.probs

    _check_finite_rows(P, sums, loc, where.cell, rows)
    finite = np.isfinite(sums)

    neg = np.flatnonzero((mins < 0) & finite)
    if len(neg):

        def neg_detail(i: int) -> str:
            j = int(np.argmin(P[i]))
            return f"{where.cell(j)} = {_fmt_num(P[i, j])}"

        raise LabelqaError(
            f"{loc}: {count_rows(len(neg))} with negative probabilities: {rows.many(neg, neg_detail)}",
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
        step = max(1, _BLOCK_ELEMENTS // max(k, 1))
        for a in range(0, n, step):
            np.divide(P[a : a + step], sums[a : a + step, None], out=out[a : a + step])
        return out, {"renormalized": True, "renormalized_rows": off, "sum_tolerance": tol}

    high = np.flatnonzero(maxs > 1 + tol)
    if len(high):

        def high_detail(i: int) -> str:
            j = int(np.argmax(P[i]))
            return f"{where.cell(j)} = {_fmt_num(P[i, j])}"

        raise LabelqaError(
            f"{loc}: {count_rows(len(high))} with probabilities above 1: {rows.many(high, high_detail)}",
            hint="probabilities must be in [0, 1]; if these are logits apply a softmax first, "
            "or pass --renormalize if they are non-negative scores",
        )

    off_rows = np.flatnonzero(np.abs(sums - 1) > tol)
    if len(off_rows):
        raise LabelqaError(
            f"{loc}: {count_rows(len(off_rows))} {'does' if len(off_rows) == 1 else 'do'} not sum to 1 "
            f"(tolerance {tol:.3g}): {rows.many(off_rows, lambda i: f'sum {_fmt_num(sums[i])}')}",
            hint="pass --renormalize (renormalize=True) to divide each row by its sum, "
            "or check that every class has a probability column",
        )
    return P, {"renormalized": False, "sum_tolerance": tol}


# ---------------------------------------------------------- classes & labels


def infer_classes(labels: pa.Array, n_classes: int) -> tuple[tuple[Any, ...], str]:
    """Classes when none are given: 0..K-1 for integer labels in [0, K), else the
    sorted unique labels when there are exactly K of them."""
    fits = False
    if pa.types.is_integer(labels.type) and len(labels):
        mm = pc.min_max(labels).as_py()
        fits = mm["min"] >= 0 and mm["max"] < n_classes
    uniques = () if fits else pc.unique(labels).to_pylist()
    return classes_from_label_summary(n_classes, int_codes_fit=fits, unique_labels=uniques)


def classes_from_label_summary(
    n_classes: int, *, int_codes_fit: bool, unique_labels: Collection[Any]
) -> tuple[tuple[Any, ...], str]:
    """The rule of :func:`infer_classes`, from a summary of the labels (also gathered batch by batch).

    Args:
        n_classes: K, the number of probability columns.
        int_codes_fit: The labels are integers, all in [0, K).
        unique_labels: The distinct labels (only read when the codes do not fit).

    Returns:
        ``(classes, how they were found)``.

    Raises:
        LabelqaError: When neither rule gives K classes.
    """
    if int_codes_fit:
        return tuple(range(n_classes)), f"integer labels as class codes 0..{n_classes - 1}"
    if len(unique_labels) == n_classes:
        return tuple(sorted(unique_labels)), "sorted unique labels"
    raise LabelqaError(
        f"cannot tell which probability column belongs to which class: found {len(unique_labels)} distinct "
        f"labels but {n_classes} probability columns",
        hint="pass --classes a,b,c or --classes-file",
    )


def _class_codes(values: pa.Array, classes: tuple[Any, ...]) -> tuple[pa.Array, bool, str]:
    """Codes of ``values`` in ``classes`` (null where not found), whether they were taken as codes, and how to
    describe a valid value in messages.

    Integer values are matched to integer classes by value; when no class is
    an integer (names such as ``cat``), integer values in [0, K) are codes.
    """
    k = len(classes)
    if pa.types.is_integer(values.type) and not any(_is_int(c) for c in classes):
        in_range = pc.and_(pc.greater_equal(values, 0), pc.less(values, k))
        return pc.if_else(in_range, values, pa.scalar(None, pa.int64())), True, \
            f"a class code 0..{k - 1} for the {k} classes"
    if pa.types.is_integer(values.type):
        value_set = pa.array([c if _is_int(c) else None for c in classes], type=pa.int64())
    else:
        value_set = pa.array([str(c) for c in classes], type=values.type)
    return pc.index_in(values, value_set=value_set), False, f"one of the {k} classes"


def encode_labels(
    labels: pa.Array, classes: tuple[Any, ...], where: _Where, rows: Rows
) -> tuple[np.ndarray, bool]:
    """Integer codes of ``labels`` in ``classes``; also whether labels were taken as codes.

    Integer labels are matched to integer classes by value; when no class is an
    integer (names such as ``cat``), integer labels in [0, K) are class codes.
    """
    codes, as_codes, outside = _class_codes(labels, classes)
    if codes.null_count:
        bad = _null_rows(codes)
        first = labels[int(bad[0])].as_py()
        unknown = pc.unique(pc.filter(labels, codes.is_null())).to_pylist()
        raise LabelqaError(
            f"{where.labels}: label {first!r} in {rows.one(int(bad[0]))} is not {outside} "
            f"({format_values(classes, 6)}); {count_rows(len(bad))} in all {'has a label' if len(bad) == 1 else 'have labels'} "
            "outside the classes "
            f"({format_values(unknown, 6)}): {rows.many(bad, lambda i: repr(labels[i].as_py()))}",
            hint="fix those labels, or pass --classes / --classes-file listing every class "
            "in probability-column order",
        )
    return codes.to_numpy(zero_copy_only=False).astype(np.int64), as_codes


# ------------------------------------------------------- multi-label labels

#: The ``task`` values of :func:`build_label_data`.
TASKS = ("multiclass", "multilabel")


def is_list_type(t: pa.DataType) -> bool:
    """list, large_list or fixed_size_list."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def type_name(t: pa.DataType) -> str:
    """A short type name for messages: ``list<string>`` whatever the item field is called."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{type_name(t.value_type)}, {t.list_size}>"
    if pa.types.is_large_list(t):
        return f"large_list<{type_name(t.value_type)}>"
    if pa.types.is_list(t):
        return f"list<{type_name(t.value_type)}>"
    return str(t)


def _is_matrix(labels: Any) -> bool:
    """An N x K label matrix (numpy array, DataFrame...) rather than a sequence of label sets."""
    return getattr(labels, "ndim", 1) == 2 and not isinstance(labels, (pa.Array, pa.ChunkedArray))


def label_sets_to_arrow(labels: Any, where: str) -> pa.Array:
    """Label sets (pyarrow list array, list of lists, Series of lists...) as one pyarrow list Array."""
    if isinstance(labels, pa.ChunkedArray):
        arr = labels.combine_chunks() if labels.num_chunks != 1 else labels.chunk(0)
    elif isinstance(labels, pa.Array):
        arr = labels
    else:
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
            raise LabelqaError(f"{where}: labels must be a sequence, got {type(labels).__name__}",
                               hint="pass one label set (a list of classes) per row")
        seq = labels
        if isinstance(seq, np.ndarray) and seq.dtype == object:
            seq = [list(v) if isinstance(v, (np.ndarray, tuple, set, frozenset)) else v for v in seq]
        elif not isinstance(seq, np.ndarray):
            try:
                seq = [list(v) if isinstance(v, (np.ndarray, tuple, set, frozenset)) else v for v in seq]
            except TypeError:
                pass
        try:
            arr = pa.array(seq, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise LabelqaError(
                f"{where}: multi-label labels mix value types or are not lists ({exc})",
                hint="pass one list of class values (or class codes) per row, one value type for all rows",
            ) from exc
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not is_list_type(arr.type):
        raise LabelqaError(
            f"{where}: multi-label labels must hold a list of classes per row, got type {arr.type}",
            hint="store a list<string> or list<int> column, or pass --label-sep ',' for delimited strings such as "
            "'cat,dog'",
        )
    return arr


def _items(arr: pa.Array, where: str, rows: Rows) -> tuple[pa.Array, np.ndarray]:
    """The label-set items as one int64 or string Array, and the row of each item."""
    if arr.null_count:
        bad = _null_rows(arr)
        raise LabelqaError(
            f"{where}: {count_rows(len(bad))} {'has' if len(bad) == 1 else 'have'} a null label list: {rows.many(bad)}",
            hint="write an empty list [] for a row without labels, or drop the row",
        )
    flat = pc.list_flatten(arr)
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks()
    parent = pc.list_parent_indices(arr)
    if isinstance(parent, pa.ChunkedArray):
        parent = parent.combine_chunks()
    parent_np = parent.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if pa.types.is_dictionary(flat.type):
        flat = flat.dictionary_decode()
    if flat.null_count:
        null_items = _null_rows(flat)
        bad = np.unique(parent_np[null_items])
        raise LabelqaError(
            f"{where}: {count_rows(len(bad))} with a null class in the label list: {rows.many(bad)}",
            hint="remove the nulls; an empty list [] means no labels",
        )
    t = flat.type
    if pa.types.is_null(t):  # only empty lists
        return pa.array([], pa.int64()), parent_np
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        try:
            return pc.cast(flat, pa.int64()), parent_np
        except pa.ArrowInvalid as exc:
            raise LabelqaError(f"{where}: labels do not fit in int64 ({exc})", hint="use smaller integers or strings") from exc
    if pa.types.is_floating(t):
        integral = pc.equal(flat, pc.floor(flat)).to_numpy(zero_copy_only=False)
        if not integral.all():
            bad_item = int(np.flatnonzero(~integral)[0])
            raise LabelqaError(
                f"{where}: labels must be integers or strings, found {flat[bad_item].as_py()!r} in "
                f"{rows.one(int(parent_np[bad_item]))}",
                hint="labels are class values; give the class, not a score",
            )
        return pc.cast(flat, pa.int64()), parent_np
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return flat, parent_np
    if getattr(pa.types, "is_string_view", lambda _t: False)(t):
        return pc.cast(flat, pa.string()), parent_np
    raise LabelqaError(
        f"{where}: label lists hold {t}; expected integers or strings",
        hint="store class names (list<string>) or class values/codes (list<int>)",
    )


def encode_label_items(
    items: pa.Array, parent: np.ndarray, classes: tuple[Any, ...], where: _Where, rows: Rows
) -> tuple[np.ndarray, bool]:
    """Class codes of the label-set items (as :func:`encode_labels`); errors name the row."""
    codes, as_codes, outside = _class_codes(items, classes)
    if codes.null_count:
        bad_items = _null_rows(codes)
        bad_rows, first_at = np.unique(parent[bad_items], return_index=True)
        first_item = {int(r): int(bad_items[j]) for r, j in zip(bad_rows[:MAX_ROWS_SHOWN], first_at[:MAX_ROWS_SHOWN])}
        i0 = int(bad_items[0])
        unknown = pc.unique(pc.filter(items, codes.is_null())).to_pylist()
        raise LabelqaError(
            f"{where.labels}: label {items[i0].as_py()!r} in {rows.one(int(parent[i0]))} is not {outside} "
            f"({format_values(classes, 6)}); {count_rows(len(bad_rows))} in all "
            f"{'has a label' if len(bad_rows) == 1 else 'have labels'} outside the classes "
            f"({format_values(unknown, 6)}): {rows.many(bad_rows, lambda r: repr(items[first_item[r]].as_py()))}",
            hint="fix those labels, or pass --classes / --classes-file listing every class "
            "in probability-column order",
        )
    return codes.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), as_codes


def scatter_label_sets(
    codes: np.ndarray, parent: np.ndarray, n_rows: int, classes: tuple[Any, ...], where: _Where, rows: Rows
) -> np.ndarray:
    """The N x K bool matrix of label sets; a class listed twice in a row is an error naming both."""
    k = len(classes)
    Y = np.zeros((n_rows, k), dtype=bool)
    flat_index = parent * k + codes
    Y.reshape(-1)[flat_index] = True
    if int(np.count_nonzero(Y)) != len(codes):  # some (row, class) pair was set twice
        keys = np.sort(flat_index)
        dup_keys = np.unique(keys[1:][keys[1:] == keys[:-1]])
        dup_rows, first = np.unique(dup_keys // k, return_index=True)
        first_class = {int(r): classes[int(dup_keys[j] % k)] for r, j in zip(dup_rows[:MAX_ROWS_SHOWN], first[:MAX_ROWS_SHOWN])}
        r0 = int(dup_rows[0])
        raise LabelqaError(
            f"{where.labels}: class {first_class[r0]!r} is listed twice in {rows.one(r0)}; "
            f"{count_rows(len(dup_rows))} in all {'repeats' if len(dup_rows) == 1 else 'repeat'} a class: "
            f"{rows.many(dup_rows, lambda r: repr(first_class[r]))}",
            hint="list each class at most once per row",
        )
    return Y


def label_matrix(labels: Any, n_rows: int, n_classes: int, where: _Where, rows: Rows) -> np.ndarray:
    """An N x K 0/1 (or bool) label matrix as bool; values other than 0/1 name the row and column."""
    try:
        Y = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise LabelqaError(f"{where.labels}: the label matrix is not an array ({exc})",
                           hint="pass an N x K array of 0/1, one column per class") from exc
    if Y.shape[0] != n_rows:
        raise LabelqaError(
            f"{where.source or 'input'}: {Y.shape[0]} rows of labels but {n_rows} rows of predicted probabilities",
            hint="labels and probabilities must describe the same rows in the same order",
        )
    if Y.shape[1] != n_classes:
        raise LabelqaError(
            f"{where.labels}: the label matrix has {Y.shape[1]} columns but there are {n_classes} probability columns",
            hint="give one label column per class, in probability-column order",
        )
    if Y.dtype == bool:
        return Y
    if Y.dtype.kind not in "iuf":
        raise LabelqaError(f"{where.labels}: the label matrix has dtype {Y.dtype}; expected 0/1 or bool",
                           hint="pass an N x K array of 0/1, one column per class")
    step = max(1, _BLOCK_ELEMENTS // max(n_classes, 1))
    bad_rows = []
    for a in range(0, n_rows, step):
        block = Y[a : a + step]
        ok = ((block == 0) | (block == 1)).all(axis=1)
        if not ok.all():
            bad_rows.append(a + np.flatnonzero(~ok))
    if bad_rows:
        bad = np.concatenate(bad_rows)

        def detail(i: int) -> str:
            j = int(np.flatnonzero((Y[i] != 0) & (Y[i] != 1))[0])
            return f"column {j} = {_py(Y[i, j])!r}"

        raise LabelqaError(
            f"{where.labels}: {count_rows(len(bad))} of the label matrix with values other than 0/1: "
            f"{rows.many(bad, detail)}",
            hint="a label matrix holds 1 where the row has the class, 0 elsewhere",
        )
    return Y.astype(bool)


def check_multilabel_probabilities(P: np.ndarray, *, where: _Where, rows: Rows) -> dict[str, Any]:
    """Independent per-class probabilities: finite and within [0, 1] (rows need not sum to 1)."""
    sums, mins, maxs = row_stats(P)
    loc = where.probs
    _check_finite_rows(P, sums, loc, where.cell, rows,
                       hint="probabilities must be finite numbers; check the model outputs (e.g. a sigmoid overflow)")
    finite = np.isfinite(sums)
    for bad_mask, what, pick in (
        ((mins < 0) & finite, "negative probabilities", np.argmin),
        ((maxs > 1) & finite, "probabilities above 1", np.argmax),
    ):
        bad = np.flatnonzero(bad_mask)
        if len(bad):

            def detail(i: int, pick: Callable[[np.ndarray], Any] = pick) -> str:
                j = int(pick(P[i]))
                return f"{where.cell(j)} = {_fmt_num(P[i, j])}"

            raise LabelqaError(
                f"{loc}: {count_rows(len(bad))} with {what}: {rows.many(bad, detail)}",
                hint="multi-label probabilities are independent per class, each in [0, 1]; "
                "if these are logits apply a sigmoid first",
            )
    return {"renormalized": False}


# --------------------------------------------------------------- embeddings


def check_embeddings(embeddings: Any, n_rows: int, where: _Where, rows: Rows) -> np.ndarray:
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
    step = max(1, _BLOCK_ELEMENTS // d)
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
            return f"dimension {j} = {_fmt_num(E[i, j])}"

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


# ------------------------------------------------------------------- builder


def build_label_data(
    labels: Any,
    pred_probs: Any,
    *,
    classes: Any = None,
    ids: Any = None,
    renormalize: bool = False,
    source: str | None = None,
    label_col: str = "label",
    id_col: str | None = None,
    meta: dict[str, Any] | None = None,
    task: str = "multiclass",
    embeddings: Any = None,
    combine_models: str = "geometric",
    model_names: Sequence[str] | None = None,
) -> LabelData:
    """Validate labels, probabilities, classes, ids and embeddings; build a :class:`LabelData`.

    Args:
        labels: Multiclass: one label per row (list, numpy, pandas or pyarrow):
            class values (ints or strings) or, when no class is an int, integer
            codes 0..K-1. Nulls are rejected; integral floats become ints;
            bools become 0/1. Multi-label: either an N x K 0/1 or bool matrix
            (numpy array or DataFrame; column ``k`` is ``classes[k]``) or one
            label set per row (a pyarrow list array, a list of lists, a Series
            of lists) holding class values or codes as above; an empty set is
            allowed, a null set, a null item or a class listed twice in a row
            are errors.
        pred_probs: N x K numeric array; float32 stays float32, anything else
            becomes float64. Column ``k`` belongs to ``classes[k]``.
        classes: Class values in column order. ``None``: 0..K-1 when labels are
            integers in [0, K) (or a label matrix), else the sorted unique
            labels when there are K. Classes take the labels' type (``"3"``
            becomes ``3`` for int labels).
        ids: Row ids, unique and non-null; default the row index (int64).
        renormalize: Multiclass only: divide each row by its sum instead of
            rejecting rows that do not sum to 1 (rows summing to 0 are still
            rejected). An error for multi-label data, whose rows need not sum
            to 1.
        source: Where the data came from (a path), for messages.
        label_col: Label column name, for messages.
        id_col: Id column name; when given, messages name ids beside rows.
        meta: Provenance to store; ``pred_probs_source``, ``pred_probs_columns``,
            ``classes_source`` and ``embeddings_source`` are also used in
            messages.
        task: ``"multiclass"`` (probability rows sum to 1) or ``"multilabel"``
            (labels are sets, stored as an N x K bool matrix; probabilities are
            independent per class, each in [0, 1]).
        embeddings: Optional N x D feature embeddings: finite, no all-zero
            row; stored as C-contiguous float32 (not copied if already so).
        combine_models: How several models' probabilities combine into
            ``pred_probs`` (see :mod:`labelqa.models`): ``geometric``
            (default), ``mean`` or ``loss_weighted``.
        model_names: Source names of the models when ``pred_probs`` is a list
            of matrices (``"column a"``, ``"file p.npy"``; default
            ``pred_probs[0]``, ``pred_probs[1]``...), for messages and
            ``meta["models"]``.

    ``pred_probs`` may be a list of N x K matrices, one per model: each is
    validated like a single matrix (messages name its source), all must
    share N and K, and ``pred_probs`` becomes their combination while
    ``model_pred_probs`` keeps each (``meta["models"]``,
    ``meta["combine_models"]``). A list of one matrix is a single model.

    Raises:
        LabelqaError: On any invalid input; the message names the column and
            the first offending rows, the hint says how to fix it.
    """
    if task not in TASKS:
        raise LabelqaError(f"unknown task {task!r}", hint="use 'multiclass' or 'multilabel'")
    multilabel = task == "multilabel"
    meta = dict(meta or {})
    meta.setdefault("input_format", "arrays")
    meta.setdefault("pred_probs_source", "array")
    if embeddings is not None:
        meta.setdefault("embeddings_source", "array")
    given_classes = classes is not None
    if given_classes:
        meta.setdefault("classes_source", "classes argument")
    where = _Where(source, label_col, id_col, meta)

    if multilabel and renormalize:
        raise LabelqaError(
            "--renormalize does not apply to multi-label data: its probabilities are independent per class "
            "and rows need not sum to 1",
            hint="drop --renormalize (renormalize=True)",
        )
    from labelqa.models import COMBINE_METHODS, check_same_shape, split_models

    if combine_models not in COMBINE_METHODS:
        raise LabelqaError(f"unknown model combination {combine_models!r}",
                           hint=f"use --combine-models {', '.join(COMBINE_METHODS)}")
    models = split_models(pred_probs) if not isinstance(pred_probs, np.ndarray) else None
    if models is not None and model_names is not None and len(model_names) != len(models):
        raise LabelqaError(f"{len(model_names)} model names for {len(models)} models", hint="give one name per model")
    model_wheres: list[_Where] = []
    model_mats: list[np.ndarray] = []
    if models is not None and len(models) == 1:
        if model_names is not None and meta.get("pred_probs_source") == "array":
            meta["pred_probs_source"] = model_names[0]
            where = _Where(source, label_col, id_col, meta)
        pred_probs, models = models[0], None
    if models is not None:
        names = list(model_names) if model_names is not None else [f"pred_probs[{i}]" for i in range(len(models))]
        if len(set(names)) != len(names):
            dup = sorted({x for x in names if names.count(x) > 1})
            raise LabelqaError(f"model {', '.join(dup)} given more than once",
                               hint="give each probability column or file once")
        for m, name in zip(models, names):
            w = _Where(source, label_col, id_col, {**meta, "pred_probs_source": name, "pred_probs_columns": None})
            model_wheres.append(w)
            model_mats.append(as_prob_matrix(m, w.probs))
        check_same_shape(model_mats, [w.probs for w in model_wheres])
        meta["pred_probs_source"] = f"{combine_models} of {len(models)} models"
        meta["models"] = names
        meta["combine_models"] = combine_models
        where = _Where(source, label_col, id_col, meta)
        P = model_mats[0]
    else:
        P = as_prob_matrix(pred_probs, where.probs)
    n, k = P.shape
    if n == 0:
        raise LabelqaError(f"{source or 'input'}: no rows", hint="the input has no data rows; check the file and filters")
    if k < (1 if multilabel else 2):
        raise LabelqaError(
            f"{where.probs}: {k} probabilit{'y' if k == 1 else 'ies'} per row; at least "
            f"{'1 class is' if multilabel else '2 classes are'} needed",
            hint="give one probability per class; for a binary task pass both p and 1 - p",
        )

    if not multilabel and _is_matrix(labels) and np.shape(labels)[1] == k:
        raise LabelqaError(
            f"{where.labels}: labels of shape {tuple(np.shape(labels))} form a label matrix, which is multi-label data",
            hint="pass task='multilabel' (--task multilabel) for label sets, or one label per row for multiclass",
        )
    if multilabel and _is_matrix(labels):
        ids_np = convert_ids(ids, n, where.ids, id_col)
        rows = Rows(ids_np, id_col if ids is not None else None)
        Y = label_matrix(labels, n, k, where, rows)
        if given_classes:
            cls = tuple(normalize_classes(classes))
            _check_class_count(cls, k, meta["classes_source"], where)
        else:
            cls = tuple(range(k))
            meta["classes_source"] = f"label matrix columns 0..{k - 1}"
        meta["label_format"] = "label matrix"
    elif multilabel:
        label_arr = label_sets_to_arrow(labels, where.labels)
        if len(label_arr) != n:
            raise LabelqaError(
                f"{source or 'input'}: {len(label_arr)} label sets but {n} rows of predicted probabilities",
                hint="labels and probabilities must describe the same rows in the same order",
            )
        ids_np = convert_ids(ids, n, where.ids, id_col)
        rows = Rows(ids_np, id_col if ids is not None else None)
        items, parent = _items(label_arr, where.labels, rows)
        cls = _resolve_classes(classes, items, k, meta, where)
        codes, as_codes = encode_label_items(items, parent, cls, where, rows)
        if as_codes:
            meta["labels_are_codes"] = True
        Y = scatter_label_sets(codes, parent, n, cls, where, rows)
        meta.setdefault("label_format", "label lists")
    else:
        label_arr = to_arrow_1d(labels, "labels")
        if len(label_arr) != n:
            raise LabelqaError(
                f"{source or 'input'}: {len(label_arr)} labels but {n} rows of predicted probabilities",
                hint="labels and probabilities must describe the same rows in the same order",
            )
        if is_list_type(label_arr.type):
            raise LabelqaError(
                f"{where.labels}: each row holds a list of labels ({type_name(label_arr.type)}), which is multi-label data",
                hint="pass --task multilabel (task='multilabel') or leave the task on auto for label sets, "
                "or give one label per row for multiclass",
            )
        ids_np = convert_ids(ids, n, where.ids, id_col)
        rows = Rows(ids_np, id_col if ids is not None else None)
        label_arr = normalize_labels(label_arr, where.labels, rows)
        cls = _resolve_classes(classes, label_arr, k, meta, where)
        codes, as_codes = encode_labels(label_arr, cls, where, rows)
        if as_codes:
            meta["labels_are_codes"] = True
        Y = codes

    model_tuple: tuple[np.ndarray, ...] | None = None
    if model_mats:
        P, model_tuple = _check_and_combine(model_mats, model_wheres, Y, rows, meta, renormalize=renormalize,
                                            multilabel=multilabel, method=combine_models)
    elif multilabel:
        meta.update(check_multilabel_probabilities(P, where=where, rows=rows))
    else:
        P, prob_meta = check_probabilities(P, renormalize=renormalize, where=where, rows=rows)
        meta.update(prob_meta)

    E = None if embeddings is None else check_embeddings(embeddings, n, where, rows)

    return LabelData(
        labels=_readonly(Y),
        pred_probs=_readonly(P),
        classes=tuple(cls),
        ids=_readonly(ids_np),
        task=task,  # type: ignore[arg-type]
        embeddings=None if E is None else _readonly(E),
        source=source,
        label_col=label_col,
        id_col=id_col,
        meta=meta,
        model_pred_probs=model_tuple,
    )


def _check_and_combine(
    mats: list[np.ndarray], wheres: list[_Where], Y: np.ndarray, rows: Rows, meta: dict[str, Any], *,
    renormalize: bool, multilabel: bool, method: str,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Validate each model like a single matrix, then combine them (one new N x K array)."""
    from labelqa.models import combine_pred_probs, fit_model_weights

    checked = []
    renormalized_rows = []
    for i, (m, w) in enumerate(zip(mats, wheres)):
        if multilabel:
            check_multilabel_probabilities(m, where=w, rows=rows)
            checked.append(m)
        else:
            m2, prob_meta = check_probabilities(m, renormalize=renormalize, where=w, rows=rows)
            checked.append(m2)
            renormalized_rows.append(prob_meta.get("renormalized_rows", 0))
            meta["sum_tolerance"] = max(meta.get("sum_tolerance", 0.0), prob_meta["sum_tolerance"])
    meta["renormalized"] = bool(renormalize and not multilabel)
    if meta["renormalized"]:
        meta["renormalized_rows"] = int(max(renormalized_rows))
        meta["model_renormalized_rows"] = [int(r) for r in renormalized_rows]
    task = "multilabel" if multilabel else "multiclass"
    if method == "loss_weighted":
        weights = fit_model_weights(checked, Y, task=task)
        meta["model_weights"] = [float(x) for x in weights]
        combined = combine_pred_probs(checked, "mean", weights, task=task)
    else:
        combined = combine_pred_probs(checked, method, task=task)
    return combined, tuple(_readonly(m) for m in checked)


def _check_class_count(cls: Sequence[Any], k: int, classes_source: str, where: _Where) -> None:
    check_duplicate_classes(cls, classes_source)
    if len(cls) != k:
        raise LabelqaError(
            f"{where.probs}: {k} probabilities per row but {len(cls)} classes from "
            f"{classes_source} ({format_values(cls, 8)})",
            hint="give exactly one class per probability column, in column order",
        )


def _resolve_classes(classes: Any, values: pa.Array, k: int, meta: dict[str, Any], where: _Where) -> tuple[Any, ...]:
    """Given classes in the labels' type (checked against K), or inferred from the label values."""
    if classes is not None:
        raw = normalize_classes(classes)
        check_duplicate_classes(raw, meta["classes_source"])
        cls = classes_like_labels(raw, values.type)
        _check_class_count(cls, k, meta["classes_source"], where)
        return cls
    cls, how = infer_classes(values, k)
    meta["classes_source"] = how
    return cls


def _readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view, so LabelData arrays are not mutated by accident."""
    view = arr.view()
    view.flags.writeable = False
    return view
