"""Reviewers' answers: read a decisions file, check it against the data, apply it with provenance.

A decisions file says, per row id, what a reviewer decided:

* **Label Studio's JSON export** (``.json``) of the tasks ``labelqa export``
  wrote: each task's ``data.labelqa_id`` is the row id; its last annotation
  that was not cancelled holds the chosen class (``keep`` when it is the
  row's given label, else ``relabel`` to it) or :data:`~labelqa.export.DROP_CHOICE`
  (``drop``). Tasks without an annotation are undecided. The JSON-MIN
  export (one flat object per task, the choice under ``label``) is read too.
* **Argilla records** (``.json``, what ``Dataset.records.to_json`` writes) of
  the records ``labelqa export --to argilla`` wrote: ``metadata.labelqa_id``
  is the row id, the ``label`` question's responses hold the choice (keep,
  relabel or drop as above; discarded responses are skipped). Records
  without a response are undecided; reviewers who answered one record
  differently are refused (settle it in Argilla first).
* **CSV or JSON lines** (``.csv``, ``.jsonl``) with columns ``id`` and
  ``decision``: ``keep``, ``drop``, ``relabel:CLASS`` (or ``relabel`` with the
  class in a ``label`` column), or a class name alone (``keep`` when it is
  the given label, else ``relabel``); an empty decision is undecided. The
  file ``labelqa export --to csv|jsonl`` writes has these columns.

:func:`apply_decisions` writes the decided labels into the label column
with the provenance columns ``label_original``, ``label_fixed`` and
``fix_action`` = ``reviewed_keep``, ``reviewed_relabel`` or ``reviewed_drop``
(dropped rows are removed); undecided rows keep their label (``keep``) or
follow the base plan of a scan (``fix --undecided strategy``). A decision for
an id not in the data, a relabel to a label that is not a class, or an id
decided twice in different ways is refused with one line naming the file,
the id and how to fix it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.errors import LabelqaError
from labelqa.provenance import with_provenance

__all__ = ["REVIEWED_DROP", "REVIEWED_KEEP", "REVIEWED_RELABEL", "Decisions", "apply_decisions", "read_decisions"]

#: fix_action values of reviewed rows.
REVIEWED_KEEP, REVIEWED_RELABEL, REVIEWED_DROP = "reviewed_keep", "reviewed_relabel", "reviewed_drop"

#: Decision words (case-insensitive) of CSV/JSONL files.
KEEP_WORD, DROP_WORD, RELABEL_WORD = "keep", "drop", "relabel"

#: The choice that drops a row in Label Studio (labelqa export offers it beside the classes).
DROP_CHOICE = "[drop this row]"


@dataclass(frozen=True)
class Decisions:
    """Reviewers' decisions, one per decided id.

    Attributes:
        source: The file read, for messages.
        ids: Row ids as text.
        words: Per id ``keep``, ``drop``, ``relabel`` or ``choose`` (a chosen
            class: keep or relabel, decided against the row's given label).
        labels: Per id the relabel/chosen class as text, ``None`` for keep/drop.
    """

    source: str
    ids: list[str]
    words: list[str]
    labels: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)


# --------------------------------------------------------------------------- reading
def read_decisions(path: str | os.PathLike[str]) -> Decisions:
    """Read a decisions file (Label Studio JSON export, CSV or JSONL); see the module docstring.

    Raises:
        LabelqaError: Missing or unreadable file, missing columns, an unknown
            decision, or an id decided twice in different ways.
    """
    p = Path(path)
    if not p.is_file():
        raise LabelqaError(f"decisions file {p} not found", "pass the file your reviewers exported")
    suffix = p.suffix.lower()
    if suffix == ".json":
        items = _label_studio(p)
    elif suffix in (".csv", ".jsonl", ".ndjson"):
        items = _rows(p)
    else:
        raise LabelqaError(f"cannot tell the format of decisions file {p}",
                           "use a Label Studio JSON export (.json) or a .csv/.jsonl with id and decision columns")
    decided: dict[str, tuple[str, str | None]] = {}
    for rid, word, label in items:
        if rid in decided and decided[rid] != (word, label):
            raise LabelqaError(f"decisions file {p}: id {rid!r} is decided twice, differently "
                               f"({_describe(*decided[rid])} and {_describe(word, label)})",
                               "keep one decision per id")
        decided[rid] = (word, label)
    return Decisions(str(p), list(decided), [w for w, _ in decided.values()], [lab for _, lab in decided.values()])


def _describe(word: str, label: str | None) -> str:
    return f"{word} {label!r}" if label is not None else word


def _label_studio(p: Path) -> list[tuple[str, str, str | None]]:
    try:
        tasks = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabelqaError(f"cannot read decisions file {p}: {exc}", "export the project from Label Studio as JSON") \
            from exc
    if not isinstance(tasks, list):
        raise LabelqaError(f"decisions file {p} is not a Label Studio export (not a JSON list of tasks)",
                           "export the project from Label Studio as JSON")
    if tasks and all(isinstance(t, dict) and "responses" in t and "fields" in t for t in tasks):
        return _argilla(p, tasks)
    out = []
    for n, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise LabelqaError(f"decisions file {p}: task {n} is not a JSON object", "export as JSON or JSON-MIN")
        data = task.get("data", task)
        if not isinstance(data, dict) or "labelqa_id" not in data:
            raise LabelqaError(f"decisions file {p}: task {n} has no data.labelqa_id",
                               "review tasks written by `labelqa export --to label-studio`")
        rid = str(data["labelqa_id"])
        choices = _task_choices(task) if "annotations" in task else _min_choices(task)
        if choices is None:
            continue  # not annotated: undecided
        if len(choices) != 1:
            raise LabelqaError(f"decisions file {p}: id {rid!r} has {len(choices)} choices {choices}",
                               "choose one class (or the drop choice) per task")
        choice = str(choices[0])
        out.append((rid, DROP_WORD, None) if choice == DROP_CHOICE else (rid, "choose", choice))
    return out


def _argilla(p: Path, records: list[dict]) -> list[tuple[str, str, str | None]]:
    """Argilla records: the ``label`` responses that were not discarded, which must agree per record."""
    out = []
    for n, record in enumerate(records):
        meta = record.get("metadata") or {}
        if not isinstance(meta, dict) or "labelqa_id" not in meta:
            raise LabelqaError(f"decisions file {p}: Argilla record {n} has no metadata.labelqa_id",
                               "review records written by `labelqa export --to argilla`")
        rid = str(meta["labelqa_id"])
        responses = (record.get("responses") or {}).get("label") or []
        values = []
        for resp in responses:
            if isinstance(resp, dict) and resp.get("status") not in ("discarded", "draft"):
                value = resp.get("value")
                values.append(tuple(value) if isinstance(value, list) else (value,))
        if not values:
            continue  # not answered: undecided
        if len(set(values)) > 1:
            raise LabelqaError(f"decisions file {p}: id {rid!r} has different answers "
                               f"{sorted({', '.join(map(str, v)) for v in values})}",
                               "settle the record in Argilla (one answer, or discard the others) and export again")
        choices = values[0]
        if len(choices) != 1:
            raise LabelqaError(f"decisions file {p}: id {rid!r} has {len(choices)} choices {list(choices)}",
                               "choose one class (or the drop choice) per record")
        choice = str(choices[0])
        out.append((rid, DROP_WORD, None) if choice == DROP_CHOICE else (rid, "choose", choice))
    return out


def _task_choices(task: dict) -> list[Any] | None:
    """The choices of the last annotation that was not cancelled, or ``None``."""
    for ann in reversed(task.get("annotations") or []):
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        for region in ann.get("result") or []:
            if isinstance(region, dict) and region.get("type") == "choices":
                return list((region.get("value") or {}).get("choices") or [])
    return None


def _min_choices(task: dict) -> list[Any] | None:
    """JSON-MIN: the choice is a string (single) or ``{"choices": [...]}`` under the control's name."""
    value = task.get("label")
    if value is None:
        return None
    if isinstance(value, dict):
        return list(value.get("choices") or [])
    return list(value) if isinstance(value, list) else [value]


def _rows(p: Path) -> list[tuple[str, str, str | None]]:
    from labelqa.data.readers import read_table

    table = read_table(p, "jsonl" if p.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    missing = [c for c in ("id", "decision") if c not in table.column_names]
    if missing:
        raise LabelqaError(f"decisions file {p} has no column {', '.join(missing)} "
                           f"(columns: {', '.join(table.column_names)})",
                           "write one row per reviewed id with columns id and decision")
    ids = table.column("id").cast(pa.string()).to_pylist()
    words = table.column("decision").cast(pa.string()).to_pylist()
    labels = table.column("label").cast(pa.string()).to_pylist() if "label" in table.column_names else \
        [None] * len(ids)
    out = []
    for n, (rid, text, label) in enumerate(zip(ids, words, labels)):
        if rid is None:
            raise LabelqaError(f"decisions file {p}: row {n + 1} has no id", "fill in the id of every row")
        text = (text or "").strip()
        if not text:
            continue
        low = text.lower()
        if low in (KEEP_WORD, DROP_WORD):
            out.append((rid, low, None))
        elif low == RELABEL_WORD:
            if not label:
                raise LabelqaError(f"decisions file {p}: id {rid!r} says relabel but gives no label",
                                   "write relabel:CLASS, or the class in a label column")
            out.append((rid, RELABEL_WORD, label))
        elif low.startswith(RELABEL_WORD + ":"):
            out.append((rid, RELABEL_WORD, text[len(RELABEL_WORD) + 1:].strip()))
        elif low.startswith(RELABEL_WORD + " to "):
            out.append((rid, RELABEL_WORD, text[len(RELABEL_WORD) + 4:].strip()))
        else:
            out.append((rid, "choose", text))
    return out


# --------------------------------------------------------------------------- applying
def apply_decisions(
    table: pa.Table,
    decisions: Decisions,
    *,
    label_col: str = "label",
    id_col: str | None = None,
    classes: list[Any] | None = None,
    base_actions: np.ndarray | None = None,
    base_labels: pa.Array | pa.ChunkedArray | None = None,
) -> tuple[pa.Table, dict[str, int]]:
    """The table with the decisions applied, and the number of input rows per ``fix_action``.

    Args:
        table: The input table (every column, as read).
        decisions: From :func:`read_decisions`.
        label_col: The label column (multiclass labels).
        id_col: The id column, or ``None`` when ids are row positions 0..N-1.
        classes: The allowed labels (default: the labels the column holds).
        base_actions: Undecided rows' actions (``keep``, ``relabel``, ``flag``,
            ``drop``), e.g. :func:`labelqa.fix.plan_actions` of a scan;
            default ``keep`` for every row.
        base_labels: Undecided rows' labels for ``relabel`` (the suggested labels).

    Raises:
        LabelqaError: An id not in the data, a label not among the classes, a
            missing column, or multi-label data.
    """
    where = f"decisions file {decisions.source}"
    for col in (label_col, id_col):
        if col is not None and col not in table.column_names:
            raise LabelqaError(f"column {col!r} not found; columns are {table.column_names}",
                               f"pass --{'label' if col == label_col else 'id'}-col NAME")
    original = table.column(label_col)
    if pa.types.is_list(original.type) or pa.types.is_large_list(original.type):
        raise LabelqaError(f"{where}: review decisions are supported for multiclass labels only",
                           "apply multi-label fixes with --strategy instead")
    n = table.num_rows
    data_ids = (table.column(id_col).cast(pa.string()) if id_col is not None
                else pa.array(np.arange(n).astype(str)))
    pos = pc.index_in(pa.array(decisions.ids, pa.string()), value_set=data_ids).to_numpy(zero_copy_only=False)
    if len(decisions) and np.isnan(pos.astype(np.float64)).any():
        bad = decisions.ids[int(np.flatnonzero(np.isnan(pos.astype(np.float64)))[0])]
        named = f"column {id_col!r}" if id_col is not None else "the row positions 0..N-1 (no --id-col given)"
        raise LabelqaError(f"{where}: id {bad!r} is not in the data ({named})",
                           "review the data these decisions were made on, or pass the same --id-col as the scan")
    rows = pos.astype(np.int64) if len(decisions) else np.zeros(0, np.int64)
    known = _class_lookup(original, classes)
    given_text = original.cast(pa.string()).to_pylist()
    actions = np.array(base_actions if base_actions is not None else ["keep"] * n, dtype=object)
    new_text: list[str | None] = [None] * n
    for rid, row, word, label in zip(decisions.ids, rows, decisions.words, decisions.labels):
        if word == KEEP_WORD:
            actions[row] = REVIEWED_KEEP
        elif word == DROP_WORD:
            actions[row] = REVIEWED_DROP
        else:
            if label not in known:
                raise LabelqaError(f"{where}: id {rid!r} is relabelled to "
                                   f"{label!r}, which is not one of the classes ({', '.join(sorted(known))})",
                                   "fix the decision, or pass --classes with every class")
            if word == "choose" and label == given_text[row]:
                actions[row] = REVIEWED_KEEP
            else:
                actions[row] = REVIEWED_RELABEL
                new_text[row] = label
    # the fixed label column: decided relabels, then the base plan's relabels, else the original
    fixed = original.combine_chunks() if isinstance(original, pa.ChunkedArray) else original
    if base_labels is not None:
        base_labels = base_labels.cast(fixed.type)
        fixed = pc.if_else(pa.array(actions == "relabel"), base_labels, fixed)
    decided = np.array([t is not None for t in new_text])
    if decided.any():
        values = pa.array([known[t] if t is not None else None for t in new_text]).cast(fixed.type)
        fixed = pc.if_else(pa.array(decided), values, fixed)
    out = with_provenance(table, label_col, original, fixed, actions)
    out = out.filter(pa.array((actions != REVIEWED_DROP) & (actions != "drop")))
    kinds = ("keep", "relabel", "flag", "drop", REVIEWED_KEEP, REVIEWED_RELABEL, REVIEWED_DROP)
    return out, {a: int(np.count_nonzero(actions == a)) for a in kinds}


def _class_lookup(original: Any, classes: list[Any] | None) -> dict[str, Any]:
    """Class text -> class value (the column's type), from ``classes`` or the labels the column holds."""
    values = classes if classes is not None else pc.unique(original).drop_null().to_pylist()
    return {str(v): v for v in values}
