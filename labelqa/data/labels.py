"""One label per row (multiclass): normalized to int64 or strings, then encoded as class codes.

Integer labels are matched to integer classes by value; when no class is an
integer (names such as ``cat``), integer labels in [0, K) are class codes.
Label sets (multi-label) are in :mod:`labelqa.data.labelsets`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.arrays import decoded_type, is_string_view, null_rows, refuse_nulls
from labelqa.data.classes import is_int_value
from labelqa.data.rows import Rows, Where, count_rows, format_values, py_scalar
from labelqa.errors import LabelqaError


def normalize_labels(arr: pa.Array, where: str, rows: Rows) -> pa.Array:
    """Labels as an int64 or string pyarrow Array, rejecting nulls and other types."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    refuse_nulls(arr, where, rows, "no label", "fill in or drop the rows without a label")
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
                f"{where}: labels must be integers or strings, found {py_scalar(arr[int(bad[0])].as_py())!r} in "
                f"{rows.one(int(bad[0]))} ({count_rows(len(bad))} with non-integer values)",
                hint="labels are class values; give the class, not a score",
            )
        try:
            return pc.cast(arr, pa.int64())
        except pa.ArrowInvalid as exc:  # integral but beyond int64 (1e19)
            raise LabelqaError(f"{where}: labels do not fit in int64 ({exc})",
                               hint="use smaller integers or strings") from exc
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    if is_string_view(t):
        return pc.cast(arr, pa.string())
    raise LabelqaError(
        f"{where}: labels have type {t}; expected integers or strings",
        hint="convert the label column to integers or strings",
    )


def label_arrow_type(t: pa.DataType) -> pa.DataType:
    """What :func:`normalize_labels` makes of labels of type ``t``: int64 for numbers, else string
    (large_string labels stay large_string there; the kind, integer or string, is what matters)."""
    t = decoded_type(t)
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t):
        return pa.int64()
    return pa.string()


def labels_are_codes(label_type: pa.DataType, classes: tuple[Any, ...]) -> bool:
    """Integer labels and no integer class: the labels are class codes 0..K-1."""
    return pa.types.is_integer(label_type) and not any(is_int_value(c) for c in classes)


def _all_in_range(values: pa.Array, k: int) -> bool:
    """Integer ``values``, none null, all in ``0..k-1`` (one min/max pass)."""
    if values.null_count or not len(values):
        return False
    bounds = pc.min_max(values).as_py()
    return bounds["min"] >= 0 and bounds["max"] < k


def class_codes(values: pa.Array, classes: tuple[Any, ...]) -> tuple[pa.Array, bool, str]:
    """Codes of ``values`` in ``classes`` (null where not found), whether they were taken as codes, and how to
    describe a valid value in messages."""
    k = len(classes)
    if labels_are_codes(values.type, classes):
        if _all_in_range(values, k):
            return values, True, f"a class code 0..{k - 1} for the {k} classes"  # every code valid: no mask
        in_range = pc.and_(pc.greater_equal(values, 0), pc.less(values, k))
        return pc.if_else(in_range, values, pa.scalar(None, pa.int64())), True, \
            f"a class code 0..{k - 1} for the {k} classes"
    if pa.types.is_integer(values.type):
        if all(is_int_value(c) and int(c) == i for i, c in enumerate(classes)) and _all_in_range(values, k):
            return pc.cast(values, pa.int64()), False, f"one of the {k} classes"  # classes 0..K-1: value = code
        value_set = pa.array([c if is_int_value(c) else None for c in classes], type=pa.int64())
    else:
        value_set = pa.array([str(c) for c in classes], type=values.type)
    return pc.index_in(values, value_set=value_set), False, f"one of the {k} classes"


def encode_labels(
    labels: pa.Array, classes: tuple[Any, ...], where: Where, rows: Rows
) -> tuple[np.ndarray, bool]:
    """Integer codes of ``labels`` in ``classes``; also whether labels were taken as codes."""
    codes, as_codes, outside = class_codes(labels, classes)
    if codes.null_count:
        bad = null_rows(codes)
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
    return codes.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), as_codes
