"""Process-wide settings the command-line tool applies before it works.

The library never calls this on import (it would change numpy for the host
program); :func:`labelqa.cli.app.main` does, because the CLI owns its process.
"""

from __future__ import annotations

import os


def prefer_small_pages() -> bool:
    """Stop numpy from asking the kernel for transparent huge pages on large arrays.

    numpy calls ``madvise(MADV_HUGEPAGE)`` on every allocation of 4 MB or
    more. Where the kernel's THP ``defrag`` setting is ``madvise`` (a common
    default) each first touch of such an array may then compact memory
    synchronously: filling a fresh 1M x 100 float32 matrix measured 0.8-1.2 s
    with huge pages and 0.16-0.2 s without on our 2-core CI VM. labelqa
    streams through its large arrays row block by row block, so it gains
    nothing from fewer TLB misses. Respects an explicit
    ``NUMPY_MADVISE_HUGEPAGE`` environment variable (numpy's own switch).

    Returns:
        Whether the setting was changed.
    """
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is not None:
        return False
    import numpy as np

    try:
        setter = np._core.multiarray._set_madvise_hugepage  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x layout
        try:
            setter = np.core.multiarray._set_madvise_hugepage
        except AttributeError:
            return False
    setter(False)
    return True


def skip_pyarrow_pandas_probe() -> bool:
    """Stop pyarrow from importing pandas just to ask whether values are pandas objects.

    pyarrow imports pandas (0.3-0.4 CPU-seconds here) the first time it builds or
    converts an array, only to check whether the input is a pandas object;
    labelqa's scan never passes one. This lets pyarrow's one-time probe find
    no pandas (hidden for that one call), so it stops looking. Nothing is
    lost: calls that need pandas (``Table.to_pandas``, ``from_pandas``)
    import it as usual, and ``import pandas`` works as before. For the CLI's
    own process only; does nothing if pandas is already imported.

    Returns:
        Whether the probe was skipped.
    """
    import sys

    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    finder = _HidePandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow's probe runs here, finds no pandas and remembers
    finally:
        sys.meta_path.remove(finder)
    return "pandas" not in sys.modules


class _HidePandas:
    """A meta path finder under which pandas cannot be imported."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
