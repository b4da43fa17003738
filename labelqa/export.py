"""Send flagged rows for review: a report folder's issues, ranked, in a labeling tool's import format.

:func:`export_review` reads a report folder written by ``labelqa scan``
(summary.json and issues.parquet) and writes its flagged rows, best-ranked
first (capped by ``top``), each with its id, given label, suggested label,
score and reason:

* ``label-studio``: a JSON list of Label Studio tasks (``data`` holds the
  row, ``predictions`` pre-selects the suggested label with the score), and
  next to it a labeling config (``<out stem>.xml``) whose choices are the
  classes plus :data:`DROP_CHOICE`; reviewers' answers come back through
  Label Studio's JSON export and ``labelqa fix --decisions`` (see
  :mod:`labelqa.decisions`);
* data columns shown by ``labelqa scan --show-cols`` (kept in the report's
  shown.parquet, for the report's best-ranked rows) go along: text and
  numbers as values, images as PNG data URIs (Label Studio shows the first
  image column as the object to label; CSV leaves images out);
* ``csv`` / ``jsonl``: one row per flagged row with an empty ``decision``
  column for reviewers to fill in (``keep``, ``drop``, ``relabel:CLASS`` or a
  class name), read back by the same ``--decisions``;
* ``argilla``: Argilla 2.x records (the JSON list ``Dataset.records.to_json``
  writes and ``Dataset.records.from_json`` loads; the suggested label as a
  suggestion with its score) and beside it the dataset settings
  (``<out stem>.settings.json``, what ``Settings.from_json`` loads): a label
  question over the classes plus the drop choice, the row as fields, the
  scores as metadata. Writing needs no Argilla package; loading them into a
  server uses the optional ``argilla`` SDK (``pip install "labelqa[argilla]"``),
  and the records exported back from Argilla are a decisions file too.

The output is written atomically; an existing file is replaced only with
``force``. See docs/review.md.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pyarrow as pa
import pyarrow.compute as pc

from labelqa import decisions
from labelqa.atomic import write_atomic
from labelqa.errors import LabelqaError

__all__ = ["DROP_CHOICE", "FORMATS", "ExportResult", "argilla_records", "argilla_settings", "export_review",
           "label_studio_tasks", "labeling_config", "review_rows"]

#: Export formats (``--to``).
FORMATS = ("label-studio", "csv", "jsonl", "argilla")

#: The extra choice a reviewer picks in Label Studio to drop a row (read back by labelqa.decisions).
DROP_CHOICE = decisions.DROP_CHOICE

#: Label Studio names: the choices control and the object it labels.
FROM_NAME, TO_NAME = "label", "item"

#: Columns of the review rows, in order (the report's columns they come from).
REVIEW_COLUMNS = ("rank", "id", "given_label", "suggested_label", "label_quality", "suggested_confidence",
                  "detectors", "reason")

_SUFFIX = {"label-studio": ".json", "csv": ".csv", "jsonl": ".jsonl", "argilla": ".json"}
_DEFAULT_NAME = {"argilla": "review-argilla"}

#: Argilla: the question reviewers answer, the field holding the row, and who made the suggestions.
ARGILLA_QUESTION, ARGILLA_ITEM, ARGILLA_AGENT = "label", "item", "labelqa"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_review` wrote.

    Attributes:
        path: The review file.
        rows: Flagged rows written.
        config: The Label Studio labeling config or the Argilla settings written beside it, or ``None``.
    """

    path: Path
    rows: int
    config: Path | None = None


def review_rows(issues: pa.Table, top: int | None = None, shown: pa.Table | None = None) -> pa.Table:
    """The flagged rows of an issues table, best-ranked first, at most ``top``, with the review columns (and the
    ``shown`` data columns)."""
    missing = [c for c in REVIEW_COLUMNS if c not in issues.column_names]
    if missing:
        raise LabelqaError(f"the issues table lacks column(s) {', '.join(missing)}",
                           "re-run `labelqa scan` to rewrite the report")
    flagged = issues.filter(pc.fill_null(issues.column("is_label_issue"), False))
    flagged = flagged.sort_by([("rank", "ascending")])
    if top is not None:
        flagged = flagged.slice(0, top)
    from labelqa.report.shown import attach

    return attach(flagged.select(list(REVIEW_COLUMNS)), shown)


def _plain(value: Any) -> Any:
    """A JSON value of a row cell (floats rounded for reading, NaN as null)."""
    if isinstance(value, float):
        return None if value != value else round(value, 6)
    return value


def _item_text(row: dict[str, Any]) -> str:
    """What the reviewer reads when no data column is shown: the row and why it was flagged."""
    given = row["given_label"]
    given = ", ".join(map(str, given)) if isinstance(given, list) else given
    return f"id {row['id']}: labelled '{given}'. Flagged because: {row['reason']}"


def data_key(column: str) -> str:
    """A shown column's key in a task's ``data`` (letters, digits and ``_``: Label Studio's ``$variable``)."""
    return "col_" + re.sub(r"\W", "_", column)


def _shown_values(rows: pa.Table) -> dict[str, list[Any]]:
    """Shown columns of ``rows`` as JSON values by data key (images as PNG data URIs)."""
    from labelqa.report.shown import shown_fields

    out = {}
    for name, kind in shown_fields(rows):
        values = rows.column(name).to_pylist()
        if kind == "image":
            values = [None if v is None else "data:image/png;base64," + base64.b64encode(v).decode("ascii")
                      for v in values]
        out[data_key(name)] = [_plain(v) for v in values]
    return out


def label_studio_tasks(rows: pa.Table, *, multilabel: bool = False, model_version: str = "labelqa") -> list[dict]:
    """Label Studio tasks of review rows: ``data`` (the row) and one prediction (the suggested label).

    The prediction's ``result`` selects the suggested label in the ``label``
    choices of object ``item`` (see :func:`labeling_config`); its ``score`` is
    the model probability of the suggested label (``suggested_confidence``).
    """
    tasks = []
    shown = _shown_values(rows)
    for i, row in enumerate(rows.select(list(REVIEW_COLUMNS)).to_pylist()):
        data = {key: _plain(value) for key, value in row.items()}
        data.update({key: values[i] for key, values in shown.items()})
        data["labelqa_id"] = data.pop("id")
        data["item"] = _item_text(row)
        suggested = row["suggested_label"]
        choices = [str(c) for c in suggested] if multilabel else [str(suggested)]
        score = _plain(row["suggested_confidence"])
        prediction = {
            "model_version": model_version,
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": choices}}],
        }
        if score is not None:
            prediction["score"] = score
        tasks.append({"data": data, "predictions": [prediction]})
    return tasks


def labeling_config(classes: list[str], *, multilabel: bool = False, shown: list[tuple[str, str]] = ()) -> str:
    """A Label Studio labeling config: the row (its first shown image, else its text and reason), the shown text
    columns, and one choice per class plus drop."""
    choices = "\n".join(f"    <Choice value={quoteattr(str(c))}/>" for c in classes)
    images = [name for name, kind in shown if kind == "image"]
    texts = [name for name, kind in shown if kind != "image"]
    if images:
        objects = (f'  <Image name="{TO_NAME}" value="${data_key(images[0])}" zoom="true"/>\n'
                   '  <Text name="why" value="$item"/>\n')
    else:
        objects = f'  <Text name="{TO_NAME}" value="$item"/>\n'
    objects += "".join(f'  <Header value={quoteattr(name)} size="6"/>\n  <Text name="{data_key(name)}" '
                       f'value="${data_key(name)}"/>\n' for name in texts)
    return (
        "<View>\n"
        + objects +
        '  <Header value="Suggested: $suggested_label (model probability $suggested_confidence)"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="{"multiple" if multilabel else "single"}" '
        'showInline="true">\n'
        f"{choices}\n"
        f"    <Choice value={quoteattr(DROP_CHOICE)}/>\n"
        "  </Choices>\n"
        "</View>\n"
    )


def argilla_name(column: str) -> str:
    """An Argilla field name for a shown column (lower-case letters, digits and ``_``)."""
    return data_key(column).lower()


def _argilla_item(kind: str, name: str, title: str, **settings: Any) -> dict[str, Any]:
    """One entry of Argilla's serialized settings (``Settings.serialize()``'s field/question/metadata shape)."""
    return {"id": None, "inserted_at": None, "updated_at": None, "name": name, "title": title,
            "dataset_id": None, "settings": {"type": kind, **settings}}


def argilla_settings(classes: list[str], *, multilabel: bool = False, shown: list[tuple[str, str]] = ()) -> dict:
    """Argilla 2.x dataset settings (the JSON ``Settings.to_json`` writes): the row as fields, one label question
    (classes plus the drop choice), the review columns as metadata."""
    fields = [{**_argilla_item("text", ARGILLA_ITEM, "Row", use_markdown=False), "required": True,
               "description": "The row's id, given label and why labelqa flagged it", "type": "text"}]
    for name, kind in shown:
        ftype = "image" if kind == "image" else "text"
        extra = {} if ftype == "image" else {"use_markdown": False}
        fields.append({**_argilla_item(ftype, argilla_name(name), name, **extra), "required": False,
                       "description": None, "type": ftype})
    qtype = "multi_label_selection" if multilabel else "label_selection"
    options = [{"text": c, "value": c} for c in [*classes, DROP_CHOICE]]
    qsettings: dict[str, Any] = {"options": options, "visible_options": len(options)}
    if multilabel:
        qsettings["options_order"] = "natural"
    question = {**_argilla_item(qtype, ARGILLA_QUESTION, "Label", **qsettings), "required": True, "type": qtype,
                "description": "The row's correct label (the suggestion is labelqa's); "
                               f"{DROP_CHOICE} to remove the row"}
    meta = [("labelqa_id", "terms", {"values": None}), ("rank", "integer", {"min": None, "max": None}),
            ("given_label", "terms", {"values": None}), ("suggested_label", "terms", {"values": None}),
            ("label_quality", "float", {"min": None, "max": None}),
            ("suggested_confidence", "float", {"min": None, "max": None}), ("detectors", "terms", {"values": None})]
    metadata = [{**_argilla_item(kind, name, name, visible_for_annotators=True, **extra),
                 "visible_for_annotators": True} for name, kind, extra in meta]
    return {
        "guidelines": "Rows labelqa flagged as possible label errors, most suspect first. Pick the correct label "
                      f"(labelqa's suggestion is pre-filled), or {DROP_CHOICE} to remove the row.",
        "questions": [question], "fields": fields, "vectors": [], "metadata": metadata,
        "allow_extra_metadata": False, "distribution": {"strategy": "overlap", "min_submitted": 1}, "mapping": None,
    }


def argilla_records(rows: pa.Table, *, multilabel: bool = False) -> list[dict]:
    """Argilla 2.x records of review rows (``Record.to_dict()``'s shape, what ``records.from_json`` loads)."""
    shown = {argilla_name(name): values for name, values in
             zip([n for n, _ in _shown_fields_of(rows)], _shown_values(rows).values())}
    records = []
    for i, row in enumerate(rows.select(list(REVIEW_COLUMNS)).to_pylist()):
        labels = lambda v: [str(c) for c in v] if isinstance(v, list) else str(v)  # noqa: E731
        metadata = {"labelqa_id": str(row["id"]), "rank": int(row["rank"]), "given_label": labels(row["given_label"]),
                    "suggested_label": labels(row["suggested_label"]), "label_quality": _plain(row["label_quality"]),
                    "suggested_confidence": _plain(row["suggested_confidence"]), "detectors": row["detectors"]}
        fields = {ARGILLA_ITEM: _item_text(row)}
        for key, values in shown.items():
            if values[i] is not None:
                fields[key] = values[i] if isinstance(values[i], str) else str(values[i])
        suggestion: dict[str, Any] = {"value": labels(row["suggested_label"]), "agent": ARGILLA_AGENT}
        score = _plain(row["suggested_confidence"])
        if score is not None:
            suggestion["score"] = score
        records.append({"id": str(row["id"]), "fields": fields,
                        "metadata": {k: v for k, v in metadata.items() if v is not None},
                        "suggestions": {ARGILLA_QUESTION: suggestion}, "responses": {}, "vectors": {},
                        "status": "pending", "_server_id": None})
    return records


def _shown_fields_of(rows: pa.Table) -> list[tuple[str, str]]:
    from labelqa.report.shown import shown_fields

    return shown_fields(rows)


def _argilla_settings_path(out: Path) -> Path:
    """Where the Argilla settings go beside the records file ``out``."""
    return out.with_name(out.stem + ".settings.json")


def _with_decision(rows: pa.Table) -> pa.Table:
    """CSV rows: lists as text, images left out, and an empty decision column."""
    from labelqa.report.shown import shown_fields
    from labelqa.report.textlists import lists_to_text

    images = [name for name, kind in shown_fields(rows) if kind == "image"]
    return lists_to_text(rows.drop_columns(images)).append_column("decision", pa.nulls(rows.num_rows, pa.string()))


def export_review(report_dir: str | os.PathLike[str], **options: Any) -> ExportResult:
    """Write a report folder's flagged rows for review in a labeling tool's format.

    Args:
        report_dir: Folder written by ``labelqa scan``.
        **options: ``to`` (``label-studio``, ``csv``, ``jsonl`` or ``argilla``), ``out``
            (default ``REPORT_DIR/review.json|.csv|.jsonl``, ``review-argilla.json``), ``top`` (only the
            N best-ranked flagged rows) and ``force`` (replace an existing file).

    Raises:
        LabelqaError: A folder without a report, an existing output without
            ``force``, or a bad option.
        TypeError: An unknown keyword argument.
    """
    import labelqa.options as opts
    from labelqa.report.folder import read_issues, read_summary
    from labelqa.report.shown import read_shown, shown_fields

    s = opts.resolve("export", given=options, function="export_review")
    report_dir = Path(report_dir)
    summary = read_summary(report_dir)
    issues = read_issues(report_dir)
    to = s["to"]
    out = s["out"] if s["out"] is not None else report_dir / f"{_DEFAULT_NAME.get(to, 'review')}{_SUFFIX[to]}"
    if out.suffix.lower() != _SUFFIX[to]:
        raise LabelqaError(f"--out {out} does not end in {_SUFFIX[to]}, the suffix of --to {to}",
                           f"name the file *{_SUFFIX[to]}")
    from labelqa.paths import option_inputs, refuse_overwriting_inputs

    from labelqa.atomic import REPORT_NAMES

    inputs = option_inputs({"report": report_dir}) + [("report", report_dir / name) for name in sorted(REPORT_NAMES)]
    refuse_overwriting_inputs(inputs, out_file=out)
    if to == "label-studio":
        refuse_overwriting_inputs(inputs, out_file=out.with_suffix(".xml"))
    if to == "argilla":
        refuse_overwriting_inputs(inputs, out_file=_argilla_settings_path(out))
    if out.exists() and not s["force"]:
        raise LabelqaError(f"output file {out} already exists", "choose another --out, or pass --force to replace it")
    multilabel = summary.get("task") == "multilabel"
    rows = review_rows(issues, s["top"], read_shown(report_dir))
    config_path = None
    if to == "label-studio":
        tasks = label_studio_tasks(rows, multilabel=multilabel)
        text = json.dumps(tasks, ensure_ascii=False, indent=1)
        write_atomic(out, lambda p: p.write_text(text, encoding="utf-8"))
        config_path = out.with_suffix(".xml")
        config = labeling_config([str(c) for c in summary.get("classes", [])], multilabel=multilabel,
                                 shown=shown_fields(rows))
        write_atomic(config_path, lambda p: p.write_text(config, encoding="utf-8"))
    elif to == "argilla":
        records = argilla_records(rows, multilabel=multilabel)
        text = json.dumps(records, ensure_ascii=False, indent=1)
        write_atomic(out, lambda p: p.write_text(text, encoding="utf-8"))
        config_path = _argilla_settings_path(out)
        settings = argilla_settings([str(c) for c in summary.get("classes", [])], multilabel=multilabel,
                                    shown=shown_fields(rows))
        settings_text = json.dumps(settings, ensure_ascii=False, indent=1)
        write_atomic(config_path, lambda p: p.write_text(settings_text, encoding="utf-8"))
    elif to == "csv":
        from labelqa.data.csvwrite import write_csv
        from labelqa.report.escape import neutralize_formulas
        from labelqa.report.textlists import lists_to_text

        table = lists_to_text(_with_decision(rows))
        table = table if s["csv_formulas"] else neutralize_formulas(table)
        write_atomic(out, lambda p: write_csv(table, p))
    else:
        shown = _shown_values(rows)
        records = [{**{k: _plain(v) for k, v in row.items()}, **{k: vals[i] for k, vals in shown.items()},
                    "decision": None} for i, row in enumerate(rows.select(list(REVIEW_COLUMNS)).to_pylist())]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        write_atomic(out, lambda p: p.write_text(text, encoding="utf-8"))
    return ExportResult(path=out, rows=rows.num_rows, config=config_path)
