"""Plain JSON values from numpy scalars and arrays, paths and the like (NaN and infinity become ``null``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["jsonable"]


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
