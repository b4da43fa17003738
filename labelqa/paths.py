"""The one guard that keeps every command from writing over, moving or deleting an input.

Every command and library function that writes calls
:func:`refuse_overwriting_inputs` before any work, with its inputs and its
output (a file for ``fix``, a folder for ``scan``, ``evaluate`` and
``train``). Paths are compared as real paths (symlinks resolved, also in
their parent folders) and, for existing files, by identity (hard links).

Refused, with exit 2 and one line:

- an output file that is an input (``fix data.csv --out data.csv``, also through a symlink or a hard link);
- an input inside the output folder, or the output folder itself
  (``scan rep/issues.parquet --out rep``, ``train data.parquet --out .``):
  a report folder is replaced as a whole, so nothing the run reads may live there;
- an output inside an input folder read as a whole (a folder or hive dataset,
  a dynamics folder): the report would become part of the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from labelqa.errors import LabelqaError

# Options whose value is an input path (or, for the last two, a path or a column name).
_NOT_INPUTS = ("out", "config")
_PATH_OR_COLUMN = ("logits_by_epoch", "threshold_samples")
# The files read from a report folder (``fix --report``, ``export``): the folder itself is not read as a whole.
REPORT_INPUT_FILES = ("issues.parquet", "summary.json", "shown.parquet")

_HINT = "labelqa never writes over, moves or deletes an input: choose an --out "


def option_inputs(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(option name, path)`` of every input path among resolved option values.

    Path options (``data``, ``pred_probs``, ``classes_file``, ``embeddings``,
    ``features``, ``report``...) count when given; ``logits_by_epoch`` and
    ``threshold_samples`` when they name an existing path (not a column).
    A ``report`` folder contributes the files read from it.
    """
    from labelqa.options import OPTIONS

    found: list[tuple[str, str]] = []
    for name, value in values.items():
        opt = OPTIONS.get(name)
        if value is None or opt is None or name in _NOT_INPUTS:
            continue
        if opt.kind != "path" and name not in _PATH_OR_COLUMN:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not isinstance(item, (str, os.PathLike)):
                continue
            text = os.fspath(item)
            if name in _PATH_OR_COLUMN and not os.path.exists(text):
                continue  # a column of the data
            if name == "report":
                found += [(name, os.path.join(text, f)) for f in REPORT_INPUT_FILES]
            else:
                found.append((name, text))
    return found


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _flag(name: str) -> str:
    return "DATA" if name in ("data", "report_dir") else "--" + name.replace("_", "-")


def _out_flag(out_file: str | os.PathLike[str]) -> str:
    text = os.fspath(out_file)
    return f"$GITHUB_STEP_SUMMARY {text}" if text == os.environ.get("GITHUB_STEP_SUMMARY") else f"--out {text}"


def refuse_overwriting_inputs(
    inputs: Iterable[tuple[str, str | os.PathLike[str]]],
    *,
    out_file: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Raise before any work when writing ``out_file`` or into ``out_dir`` could touch an input.

    Args:
        inputs: ``(option name, path)`` pairs (see :func:`option_inputs`);
            paths that do not exist are skipped (their own check reports them).
        out_file: The one output file (``fix``; ``$GITHUB_STEP_SUMMARY`` for ``scan --format github``).
        out_dir: The output folder (``scan``, ``evaluate``, ``train``).

    Raises:
        LabelqaError: Naming the input, the output and how to choose another.
    """
    out_file_real = os.path.realpath(out_file) if out_file is not None else None
    out_dir_real = os.path.realpath(out_dir) if out_dir is not None else None
    for name, raw in inputs:
        path = os.fspath(raw)
        if not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        shown = path if real == os.path.abspath(path) else f"{path} (really {real})"
        is_folder = os.path.isdir(real)
        if out_file_real is not None:
            if real == out_file_real or (os.path.exists(out_file_real) and _same_file(real, out_file_real)):
                raise LabelqaError(f"{_out_flag(out_file)} is the input {_flag(name)} {shown}",
                                   _HINT + "path that is not an input")
            if is_folder and _inside(out_file_real, real):
                raise LabelqaError(f"{_out_flag(out_file)} lies inside the input folder {_flag(name)} {shown}",
                                   _HINT + "path outside the input folder")
        if out_dir_real is not None:
            if _inside(real, out_dir_real):
                where = "is" if real == out_dir_real else "lies inside"
                raise LabelqaError(f"the input {_flag(name)} {shown} {where} the output folder --out "
                                   f"{os.fspath(out_dir)}, whose contents the run replaces",
                                   _HINT + "folder that holds no input")
            if is_folder and _inside(out_dir_real, real):
                raise LabelqaError(f"the output folder --out {os.fspath(out_dir)} lies inside the input folder "
                                   f"{_flag(name)} {shown}", _HINT + "folder outside the input folder")
