"""Plain JSON values from numpy scalars and arrays, paths and the like (NaN and infinity become ``null``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MatrixList", "jsonable", "matrix_list"]


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
