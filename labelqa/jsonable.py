"""Plain JSON values from numpy scalars and arrays, paths and the like (NaN and infinity become ``null``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MATRIX_INLINE_CLASSES", "MatrixList", "jsonable", "matrix_list", "summary_matrix"]

#: Up to this many classes the K x K matrices are also written inline in summary.json (K^2 numbers each);
#: above it they are ``null`` there and live only in the matrices file, so summary.json stays small at any K.
MATRIX_INLINE_CLASSES = 20


def jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and paths into plain JSON types; NaN/inf become ``None``.

    Dict keys become strings; anything else unknown becomes its ``str``.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(type(v) is float or type(v) is int for v in value):  # noqa: E721 - not bool, not numpy
            if np.isfinite(np.asarray(value, dtype=np.float64)).all():  # a row of numbers: one vectorised check
                return list(value)
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


class MatrixList(list):
    """A matrix as nested lists (JSON-able, equal to the plain lists) that keeps the array it came from.

    Readers that need the array back (the summary's matrices file) take :attr:`array`: at K = 1,000
    turning a million nested floats back into an array took ~20 ms a matrix.
    """

    __slots__ = ("array",)


def matrix_list(matrix: np.ndarray) -> MatrixList:
    """``matrix.tolist()`` as a :class:`MatrixList` holding a read-only copy of ``matrix``."""
    out = MatrixList(matrix.tolist())
    out.array = np.array(matrix, copy=True)
    out.array.flags.writeable = False
    return out


def summary_matrix(matrix: np.ndarray) -> MatrixList | np.ndarray:
    """A detector summary's K x K matrix: :func:`matrix_list` up to :data:`MATRIX_INLINE_CLASSES` classes (where
    summary.json shows it), a read-only copy of the array above (summary.json names it in the matrices file).

    At K = 1,000 the nested lists were a million Python floats a matrix (30-100 ms each, with the garbage
    collector's passes over them) that nothing read.
    """
    if matrix.ndim == 2 and matrix.shape[0] <= MATRIX_INLINE_CLASSES:
        return matrix_list(matrix)
    out = np.array(matrix, copy=True)
    out.flags.writeable = False
    return out
