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


def import_pandas_in_background() -> None:
    """Start importing pandas on a daemon thread, if it is installed and not imported yet.

    pyarrow imports pandas (~0.25 s) the first time an array is built from
    Python or numpy objects, to check whether they are pandas objects. A
    scan gets there within its first second anyway; importing on a side
    thread lets that overlap the Parquet decoding, which runs without the GIL.
    Import locks make the main thread wait for, never repeat, the import.
    """
    import importlib.util
    import sys
    import threading

    if "pandas" in sys.modules or importlib.util.find_spec("pandas") is None:
        return
    import pyarrow.compute  # noqa: F401 - the pyarrow modules pandas touches, imported here first so the
    import pyarrow.parquet  # noqa: F401 - two threads never wait on each other's half-imported modules

    def work() -> None:
        try:
            import pandas  # noqa: F401
            import pyarrow.pandas_compat  # noqa: F401
        except Exception:  # noqa: BLE001 - a broken pandas shows up, if ever, where it is used
            pass

    threading.Thread(target=work, name="labelqa-import-pandas", daemon=True).start()
