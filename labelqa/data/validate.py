"""Validation shared by :func:`labelqa.data.load` and :meth:`LabelData.from_arrays`.

:func:`build_label_data` turns labels, probabilities, classes and ids into a
:class:`LabelData`, or raises one :class:`LabelqaError` that says what is
wrong, where (file, column, 0-based row, id) and how to fix it.

Probability checks are vectorised: one blocked pass computes each row's sum,
minimum and maximum (no full-size temporaries), and the slow per-cell look-ups
only run for the few rows named in an error message.

Tolerance: a row must sum to 1 within ``tol = max(1e-3, 4 * K * eps)``, where
``eps`` is the machine epsilon of the probability dtype; that is ``1e-3`` for
float64 and for float32 up to K of about 2000 classes, wider beyond, where
float32 rounding of K terms can reach it. The same ``tol`` bounds values above 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.model import LabelData
from labelqa.errors import LabelqaError

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
    """Per-row sum, min and max, in row blocks (no full-size temporaries)."""
    n, k = P.shape
    sums = np.empty(n, dtype=P.dtype)
    mins = np.empty(n, dtype=P.dtype)
    maxs = np.empty(n, dtype=P.dtype)
    step = max(1, _BLOCK_ELEMENTS // max(k, 1))
    with np.errstate(all="ignore"):
        for a in range(0, n, step):
            block = P[a : a + step]
            np.add.reduce(block, axis=1, out=sums[a : a + step])
            np.minimum.reduce(block, axis=1, out=mins[a : a + step])
            np.maximum.reduce(block, axis=1, out=maxs[a : a + step])
    return sums, mins, maxs


def check_probabilities(
    P: np.ndarray, *, renormalize: bool, where: _Where, rows: Rows
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reject NaN/inf, negatives, values above 1 and rows not summing to 1; or renormalize.

    Returns the (possibly renormalized) matrix and figures for ``meta``.
    """
    n, k = P.shape
    tol = sum_tolerance(P.dtype, k)
    sums, mins, maxs = row_stats(P)
    loc = where.probs

    # A row holds NaN or inf iff its sum is not finite (barring overflow,
    # which the look-up below filters out).
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
                f"{loc}: {count_rows(len(all_bad))} with NaN or infinite probabilities: "
                + rows.many(all_bad, lambda i: f"{where.cell(first[i])} = {_fmt_num(P[i, first[i]])}"),
                hint="probabilities must be finite numbers; check the model outputs (e.g. a softmax overflow)",
            )
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
    if pa.types.is_integer(labels.type) and len(labels):
        mm = pc.min_max(labels).as_py()
        if mm["min"] >= 0 and mm["max"] < n_classes:
            return tuple(range(n_classes)), f"integer labels as class codes 0..{n_classes - 1}"
    unique = pc.unique(labels)
    if len(unique) == n_classes:
        return tuple(sorted(unique.to_pylist())), "sorted unique labels"
    raise LabelqaError(
        f"cannot tell which probability column belongs to which class: found {len(unique)} distinct "
        f"labels but {n_classes} probability columns",
        hint="pass --classes a,b,c or --classes-file",
    )


def encode_labels(
    labels: pa.Array, classes: tuple[Any, ...], where: _Where, rows: Rows
) -> tuple[np.ndarray, bool]:
    """Integer codes of ``labels`` in ``classes``; also whether labels were taken as codes.

    Integer labels are matched to integer classes by value; when no class is an
    integer (names such as ``cat``), integer labels in [0, K) are class codes.
    """
    k = len(classes)
    as_codes = False
    if pa.types.is_integer(labels.type) and not any(_is_int(c) for c in classes):
        # Class names with integer labels: the labels are codes 0..K-1.
        as_codes = True
        in_range = pc.and_(pc.greater_equal(labels, 0), pc.less(labels, k))
        codes = pc.if_else(in_range, labels, pa.scalar(None, pa.int64()))
        outside = f"a class code 0..{k - 1} for the {k} classes"
    else:
        if pa.types.is_integer(labels.type):
            value_set = pa.array([c if _is_int(c) else None for c in classes], type=pa.int64())
        else:
            value_set = pa.array([str(c) for c in classes], type=labels.type)
        codes = pc.index_in(labels, value_set=value_set)
        outside = f"one of the {k} classes"
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
) -> LabelData:
    """Validate labels, probabilities, classes and ids; build a :class:`LabelData`.

    Args:
        labels: One label per row (list, numpy, pandas or pyarrow): class values
            (ints or strings) or, when no class is an int, integer codes 0..K-1.
            Nulls are rejected; integral floats become ints; bools become 0/1.
        pred_probs: N x K numeric array; float32 stays float32, anything else
            becomes float64. Column ``k`` belongs to ``classes[k]``.
        classes: Class values in column order. ``None``: 0..K-1 when labels are
            integers in [0, K), else the sorted unique labels when there are K.
            Classes take the labels' type (``"3"`` becomes ``3`` for int labels).
        ids: Row ids, unique and non-null; default the row index (int64).
        renormalize: Divide each row by its sum instead of rejecting rows that do
            not sum to 1 (rows summing to 0 are still rejected).
        source: Where the data came from (a path), for messages.
        label_col: Label column name, for messages.
        id_col: Id column name; when given, messages name ids beside rows.
        meta: Provenance to store; ``pred_probs_source``, ``pred_probs_columns``
            and ``classes_source`` are also used in messages.

    Raises:
        LabelqaError: On any invalid input; the message names the column and
            the first offending rows, the hint says how to fix it.
    """
    meta = dict(meta or {})
    meta.setdefault("input_format", "arrays")
    meta.setdefault("pred_probs_source", "array")
    given_classes = classes is not None
    if given_classes:
        meta.setdefault("classes_source", "classes argument")
    where = _Where(source, label_col, id_col, meta)

    P = as_prob_matrix(pred_probs, where.probs)
    n, k = P.shape
    if n == 0:
        raise LabelqaError(f"{source or 'input'}: no rows", hint="the input has no data rows; check the file and filters")
    if k < 2:
        raise LabelqaError(
            f"{where.probs}: {k} probabilit{'y' if k == 1 else 'ies'} per row; at least 2 classes are needed",
            hint="give one probability per class; for a binary task pass both p and 1 - p",
        )

    label_arr = to_arrow_1d(labels, "labels")
    if len(label_arr) != n:
        raise LabelqaError(
            f"{source or 'input'}: {len(label_arr)} labels but {n} rows of predicted probabilities",
            hint="labels and probabilities must describe the same rows in the same order",
        )
    ids_np = convert_ids(ids, n, where.ids, id_col)
    rows = Rows(ids_np, id_col if ids is not None else None)
    label_arr = normalize_labels(label_arr, where.labels, rows)

    if given_classes:
        raw = normalize_classes(classes)
        check_duplicate_classes(raw, meta["classes_source"])
        cls = classes_like_labels(raw, label_arr.type)
        check_duplicate_classes(cls, meta["classes_source"])
        if len(cls) != k:
            raise LabelqaError(
                f"{where.probs}: {k} probabilities per row but {len(cls)} classes from "
                f"{meta['classes_source']} ({format_values(cls, 8)})",
                hint="give exactly one class per probability column, in column order",
            )
    else:
        cls, how = infer_classes(label_arr, k)
        meta["classes_source"] = how

    codes, as_codes = encode_labels(label_arr, cls, where, rows)
    if as_codes:
        meta["labels_are_codes"] = True

    P, prob_meta = check_probabilities(P, renormalize=renormalize, where=where, rows=rows)
    meta.update(prob_meta)

    return LabelData(
        labels=_readonly(codes),
        pred_probs=_readonly(P),
        classes=tuple(cls),
        ids=_readonly(ids_np),
        source=source,
        label_col=label_col,
        id_col=id_col,
        meta=meta,
    )


def _readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view, so LabelData arrays are not mutated by accident."""
    view = arr.view()
    view.flags.writeable = False
    return view
