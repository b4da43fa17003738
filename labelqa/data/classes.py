"""Classes: given (``--classes``, a classes file), from schema metadata, or inferred from the labels.

Class values take the labels' type (:func:`classes_like_labels`); given
classes are checked for duplicates and against K (:func:`given_classes_like`);
without any, :func:`infer_classes` (one array) or :class:`LabelSummary`
(batch by batch) apply the one rule of :func:`classes_from_label_summary`.
Which source wins is decided in :mod:`labelqa.data.schema`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.readers import check_file
from labelqa.data.rows import format_values, py_scalar
from labelqa.errors import LabelqaError

#: Parquet/Arrow schema metadata key holding the classes as a JSON list.
CLASSES_METADATA_KEY = "labelqa.classes"
#: A string spelling an integer exactly (``"3"``, ``"-1"``; not ``"03"`` or ``"+3"``).
CANONICAL_INT_PATTERN = r"^-?(?:0|[1-9][0-9]*)$"

_CANONICAL_INT = re.compile(CANONICAL_INT_PATTERN)


# ------------------------------------------------------------- given classes


def normalize_classes(classes: Any) -> list[Any]:
    """Class values as a list of Python scalars; a ``"a,b,c"`` string is split on commas."""
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    elif isinstance(classes, (pa.Array, pa.ChunkedArray)):
        classes = classes.to_pylist()
    try:
        return [py_scalar(c) for c in classes]
    except TypeError as exc:
        raise LabelqaError(f"classes must be a sequence, got {type(classes).__name__}", hint="pass a list of class values") from exc


def parse_classes_file(path: str | os.PathLike[str]) -> list[str | Any]:
    """Classes from a text file (one per line, blank lines ignored) or a JSON list."""
    p = check_file(path, what="classes file")
    try:
        with open(p, encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelqaError(f"cannot read classes file {p}: {exc}", hint="use a UTF-8 text file, one class per line") from exc
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise LabelqaError(
                f"classes file {p} starts with '[' but is not a JSON list ({exc.msg}, line {exc.lineno})",
                hint="write a JSON list such as [\"cat\", \"dog\"], or one class per line",
            ) from exc
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise LabelqaError(f"classes file {p}: the JSON list must hold strings or integers", hint="e.g. [\"cat\", \"dog\"]")
        classes: list[Any] = value
    else:
        classes = [line.strip() for line in text.splitlines() if line.strip()]
    if not classes:
        raise LabelqaError(f"classes file {p} lists no classes", hint="write one class per line, in probability-column order")
    return classes


def given_classes(classes: Any, classes_file: str | os.PathLike[str] | None) -> tuple[list[Any] | None, str | None]:
    """Classes passed by the user and where they came from, or ``(None, None)``."""
    if classes is not None and classes_file is not None:
        raise LabelqaError("both classes and a classes file were given", hint="pass either --classes or --classes-file, not both")
    if classes is not None:
        values = normalize_classes(classes)
        if not values:
            raise LabelqaError("--classes lists no classes", hint="pass --classes a,b,c in probability-column order")
        return values, "--classes"
    if classes_file is not None:
        return parse_classes_file(classes_file), f"classes file {os.fspath(classes_file)}"
    return None, None


def classes_from_metadata(schema: pa.Schema) -> list[Any] | None:
    """The ``labelqa.classes`` JSON list from schema metadata, or ``None``."""
    md = schema.metadata or {}
    raw = md.get(CLASSES_METADATA_KEY.encode())
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelqaError(
            f"schema metadata {CLASSES_METADATA_KEY!r} is not valid JSON ({exc})",
            hint="store a JSON list such as [\"cat\", \"dog\"], or pass --classes",
        ) from exc
    if not isinstance(value, list) or not value:
        raise LabelqaError(
            f"schema metadata {CLASSES_METADATA_KEY!r} must be a non-empty JSON list, got {raw[:80]!r}",
            hint="store a JSON list such as [\"cat\", \"dog\"], or pass --classes",
        )
    return value


# --------------------------------------------------------- typing & checking


def is_int_value(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
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
            elif is_int_value(c):
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
    """Raise naming the classes listed more than once in ``source``."""
    seen: dict[Any, int] = {}
    for c in classes:
        seen[c] = seen.get(c, 0) + 1
    dups = [c for c, n in seen.items() if n > 1]
    if dups and source.startswith("classes file"):  # never echo a file's lines (it may be any file)
        lines = [i + 1 for i, c in enumerate(classes) if seen[c] > 1][:6]
        raise LabelqaError(f"duplicate classes in {source}: entries {', '.join(map(str, lines))} repeat others",
                           hint="list each class once, in probability-column order")
    if dups:
        shown = ", ".join(f"{c!r} ({seen[c]} times)" for c in dups[:5])
        raise LabelqaError(f"duplicate classes in {source}: {shown}", hint="list each class once, in probability-column order")


def check_class_count(classes: Sequence[Any], k: int, classes_source: str, probs_where: str) -> None:
    """Distinct classes, exactly one per probability column (``probs_where`` names them)."""
    check_duplicate_classes(classes, classes_source)
    if len(classes) != k:
        raise LabelqaError(
            f"{probs_where}: {k} probabilities per row but {len(classes)} classes from "
            f"{classes_source}" + ("" if classes_source.startswith("classes file") else  # never echo a file
                                   f" ({format_values(classes, 8)})"),
            hint="give exactly one class per probability column, in column order",
        )


def given_classes_like(
    classes: Any, label_type: pa.DataType, k: int, classes_source: str, probs_where: str
) -> tuple[Any, ...]:
    """Given classes in the labels' type, without duplicates, one per probability column."""
    raw = normalize_classes(classes)
    check_duplicate_classes(raw, classes_source)
    cls = classes_like_labels(raw, label_type)
    check_class_count(cls, k, classes_source, probs_where)
    return cls


# ------------------------------------------------------------------ inference


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


def infer_classes(labels: pa.Array, n_classes: int) -> tuple[tuple[Any, ...], str]:
    """Classes when none are given: 0..K-1 for integer labels in [0, K), else the
    sorted unique labels when there are exactly K of them."""
    fits = False
    if pa.types.is_integer(labels.type) and len(labels):
        mm = pc.min_max(labels).as_py()
        fits = mm["min"] >= 0 and mm["max"] < n_classes
    uniques = () if fits else pc.unique(labels).to_pylist()
    return classes_from_label_summary(n_classes, int_codes_fit=fits, unique_labels=uniques)


class LabelSummary:
    """What :func:`infer_classes` needs of labels (or label-set items) seen batch by batch.

    The range and distinct values of integer labels, the distinct string
    labels, and how many were seen. A dataset whose batches mix integer and
    string items (delimited label sets: a batch of names that all spell
    integers splits to ints) is a dataset of strings.
    """

    def __init__(self) -> None:
        self.lo: int | None = None
        self.hi: int | None = None
        self.ints: set[int] = set()
        self.strings: set[str] = set()
        self.count = 0

    def update(self, values: pa.Array) -> LabelSummary:
        """Add a batch of normalized labels (int64 or string)."""
        if len(values) == 0:
            return self
        self.count += len(values)
        if pa.types.is_integer(values.type):
            mm = pc.min_max(values).as_py()
            self.lo = mm["min"] if self.lo is None else min(self.lo, mm["min"])
            self.hi = mm["max"] if self.hi is None else max(self.hi, mm["max"])
            self.ints.update(pc.unique(values).to_pylist())
        else:
            self.strings.update(pc.unique(values).to_pylist())
        return self

    @property
    def any_strings(self) -> bool:
        """Some batch held strings."""
        return bool(self.strings)

    def classes(self, n_classes: int, integers: bool) -> tuple[tuple[Any, ...], str]:
        """The inferred classes and how, for labels of the dataset type (``integers`` or strings)."""
        fits = bool(integers and self.count and self.lo >= 0 and self.hi < n_classes)
        uniques = self.ints if integers else self.strings | {str(v) for v in self.ints}
        return classes_from_label_summary(n_classes, int_codes_fit=fits, unique_labels=uniques)
