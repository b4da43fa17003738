"""Label sets (multi-label data): lists of classes per row, delimited strings, or an N x K 0/1 matrix.

Label sets become their items (one int64 or string Array, with each item's
row), are encoded as class codes (as :func:`labelqa.data.labels.encode_labels`
does for single labels) and scattered into an N x K bool matrix. An empty set
is allowed; a null set, a null item or a class listed twice in a row are
errors naming the row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.arrays import is_list_type, is_string_view, null_rows, one_chunk, refuse_nulls
from labelqa.data.classes import CANONICAL_INT_PATTERN
from labelqa.data.labels import class_codes
from labelqa.data.probabilities import BLOCK_ELEMENTS
from labelqa.data.rows import MAX_ROWS_SHOWN, Rows, Where, count_rows, format_values, py_scalar
from labelqa.errors import LabelqaError


def split_label_strings(col: pa.ChunkedArray | pa.Array, sep: str, where: str) -> pa.Array:
    """Delimited label sets such as ``"cat, dog"`` to a ``list<string>`` column, vectorised.

    An empty or null cell is the empty set; whitespace around each name is
    stripped and empty names (``"cat,,dog"``, a trailing separator) are
    dropped. When every name spells an integer exactly (``"0|3"``, not
    ``"03"``) the result is ``list<int64>``, so integer classes and class codes
    work as in a list<int> column. A non-string column (a CSV whose cells each
    hold one integer is read as int64) is cast to strings first.
    """
    if not sep:
        raise LabelqaError("the label separator is empty", hint="pass --label-sep ',' (or another non-empty string)")
    col = one_chunk(col)
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_null(t) or is_string_view(t):
        col = pc.cast(col, pa.string())
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise LabelqaError(
            f"{where}: delimited labels need a string column, got type {t}",
            hint="store label sets as strings such as 'cat,dog', or as a list column without --label-sep",
        )
    n = len(col)
    parts = pc.split_pattern(pc.fill_null(col, pa.scalar("", col.type)), pattern=sep)
    names = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    parent = pc.list_parent_indices(parts)
    keep = pc.not_equal(names, "")
    names = pc.filter(names, keep)
    parent_np = pc.filter(parent, keep).to_numpy(zero_copy_only=False)
    if len(names) and pc.all(pc.match_substring_regex(names, pattern=CANONICAL_INT_PATTERN)).as_py():
        try:
            names = pc.cast(names, pa.int64())
        except pa.ArrowInvalid:  # beyond int64: keep the names
            pass
    counts = np.bincount(parent_np, minlength=n) if n else np.zeros(0, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks()
    if len(names) < 2**31 - 1:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), names)
    return pa.LargeListArray.from_arrays(pa.array(offsets), names)


def is_label_matrix(labels: Any) -> bool:
    """An N x K label matrix (numpy array, DataFrame...) rather than a sequence of label sets."""
    return getattr(labels, "ndim", 1) == 2 and not isinstance(labels, (pa.Array, pa.ChunkedArray))


def label_sets_to_arrow(labels: Any, where: str) -> pa.Array:
    """Label sets (pyarrow list array, list of lists, Series of lists...) as one pyarrow list Array."""
    if isinstance(labels, (pa.Array, pa.ChunkedArray)):
        arr = one_chunk(labels)
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


def label_set_items(arr: pa.Array, where: str, rows: Rows) -> tuple[pa.Array, np.ndarray]:
    """The label-set items as one int64 or string Array, and the row of each item."""
    refuse_nulls(arr, where, rows, "a null label list", "write an empty list [] for a row without labels, or drop the row")
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
        null_items = null_rows(flat)
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
    if is_string_view(t):
        return pc.cast(flat, pa.string()), parent_np
    raise LabelqaError(
        f"{where}: label lists hold {t}; expected integers or strings",
        hint="store class names (list<string>) or class values/codes (list<int>)",
    )


def encode_label_items(
    items: pa.Array, parent: np.ndarray, classes: tuple[Any, ...], where: Where, rows: Rows
) -> tuple[np.ndarray, bool]:
    """Class codes of the label-set items (as :func:`encode_labels`); errors name the row."""
    codes, as_codes, outside = class_codes(items, classes)
    if codes.null_count:
        bad_items = null_rows(codes)
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
    codes: np.ndarray, parent: np.ndarray, n_rows: int, classes: tuple[Any, ...], where: Where, rows: Rows
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


def label_matrix(labels: Any, n_rows: int, n_classes: int, where: Where, rows: Rows) -> np.ndarray:
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
    step = max(1, BLOCK_ELEMENTS // max(n_classes, 1))
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
            return f"column {j} = {py_scalar(Y[i, j])!r}"

        raise LabelqaError(
            f"{where.labels}: {count_rows(len(bad))} of the label matrix with values other than 0/1: "
            f"{rows.many(bad, detail)}",
            hint="a label matrix holds 1 where the row has the class, 0 elsewhere",
        )
    return Y.astype(bool)


def label_sets_from_column(col: pa.ChunkedArray | pa.Array, label_sep: str | None, where: str) -> pa.Array:
    """A label column's label sets as one list Array: delimited strings split on ``label_sep``
    (:func:`split_label_strings`), else the list column itself (dictionary-decoded)."""
    if label_sep is not None:
        return split_label_strings(col, label_sep, where)
    return one_chunk(col)
