"""Report pieces of the out-of-core engines: global ranks, summary, incremental writers.

* :class:`RankIndex`: the in-memory ``rank`` (flagged rows first, each group
  by score, ties by row position; :func:`labelqa.result.rank_rows`) for rows
  written batch by batch in input order. Flagged rows (bounded by the issue
  count) are ranked in memory; for the others only their scores are kept,
  sorted (4 bytes a row for float32 self-confidence, else 8), plus one
  counter per score value that occurs more than once: a row's rank is
  ``n_flagged + 1 + #(smaller scores) + #(equal scores earlier in the file)``.
* :func:`build_summary`: ``ScanResult.summary()`` from aggregates (same keys,
  same order, the detector's own ``_summary``).
* :func:`issues_piece`: one batch of ``ScanResult.issues_table()``, built by
  a ``ScanResult`` over that batch (so ids, labels, reasons and detector
  columns are produced by the same code), with the global ranks.
* :class:`ReportWriter`: issues.parquet (and issues.csv) written batch by
  batch into a staging folder, summary.json and summary.md at the end, then
  everything published atomically (:mod:`labelqa.atomic`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from labelqa._version import __version__
from labelqa.atomic import publish, staging_dir
from labelqa.data.model import LabelData
from labelqa.detectors.base import DetectorResult
from labelqa.detectors.multilabel import multilabel_detector_summary
from labelqa.errors import LabelqaError
from labelqa.report.markdown import render_markdown
from labelqa.report.textlists import lists_to_text
from labelqa.report.writers import summary_json
from labelqa.result import SUMMARY_SCHEMA_VERSION, ScanResult, _jsonable

__all__ = ["RankIndex", "RankPart", "ReportWriter", "build_multilabel_summary", "build_summary", "issues_piece",
           "multilabel_issues_piece"]

#: How many best-ranked issues summary.md lists (``render_markdown``'s default).
MARKDOWN_TOP = 20


class RankPart:
    """What one batch contributes to the ranks and the summary."""

    def __init__(self, scores: np.ndarray, flags: np.ndarray, positions: np.ndarray, labels: np.ndarray,
                 suggested: np.ndarray, n_classes: int, score_dtype: np.dtype) -> None:
        unf = scores[~flags]
        if score_dtype != np.float64:
            narrow = unf.astype(score_dtype)
            if not np.array_equal(narrow.astype(np.float64), unf):  # pragma: no cover - guarded by the caller
                raise AssertionError("scores are not exact in the narrow dtype")
            unf = narrow
        self.unflagged = unf
        self.flag_scores = scores[flags]
        self.flag_pos = positions[flags]
        k = n_classes
        self.pairs = np.bincount(labels[flags] * k + suggested[flags], minlength=k * k).reshape(k, k)


class RankIndex:
    """Global ranks for rows written in input order (see the module doc)."""

    def __init__(self, n_rows: int, n_classes: int, score_dtype: np.dtype | type = np.float64) -> None:
        self.dtype = np.dtype(score_dtype)
        self._unflagged = np.empty(n_rows, dtype=self.dtype)
        self._n_unf = 0
        self._fs: list[np.ndarray] = []
        self._fp: list[np.ndarray] = []
        self.pairs = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.n_flagged = 0

    def add(self, part: RankPart) -> None:
        m = part.unflagged.size
        self._unflagged[self._n_unf : self._n_unf + m] = part.unflagged
        self._n_unf += m
        self._fs.append(part.flag_scores)
        self._fp.append(part.flag_pos)
        self.pairs += part.pairs
        self.n_flagged += part.flag_pos.size

    def finish(self) -> None:
        fs = np.concatenate(self._fs) if self._fs else np.empty(0)
        fp = np.concatenate(self._fp) if self._fp else np.empty(0, dtype=np.int64)
        self._fs, self._fp = [], []
        order = np.lexsort((fp, fs))
        frank = np.empty(fp.size, dtype=np.int64)
        frank[order] = np.arange(1, fp.size + 1)
        by_pos = np.argsort(fp, kind="stable")
        self.flag_pos = fp[by_pos]
        self.flag_rank = frank[by_pos]
        s = self._unflagged[: self._n_unf]
        s.sort()
        self.sorted = s
        dup = s[1:][s[1:] == s[:-1]]
        self.dups = np.unique(dup) if dup.size else dup
        self.seen = np.zeros(self.dups.size, dtype=np.int64)

    def ranks(self, scores: np.ndarray, flags: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Ranks of one batch; batches must come in input order."""
        out = np.empty(scores.size, dtype=np.int64)
        if flags.any():
            out[flags] = self.flag_rank[np.searchsorted(self.flag_pos, positions[flags])]
        unf = ~flags
        s = scores[unf].astype(self.dtype)
        r = self.n_flagged + 1 + np.searchsorted(self.sorted, s, side="left")
        if self.dups.size and s.size:
            di = np.searchsorted(self.dups, s)
            hit = di < self.dups.size
            hit[hit] = self.dups[di[hit]] == s[hit]
            sub = di[hit]
            if sub.size:
                order = np.argsort(sub, kind="stable")
                sd = sub[order]
                start = np.r_[True, sd[1:] != sd[:-1]]
                first = np.maximum.accumulate(np.where(start, np.arange(sd.size), 0))
                before = np.empty(sd.size, dtype=np.int64)
                before[order] = self.seen[sd] + (np.arange(sd.size) - first)
                r[hit] += before
                np.add.at(self.seen, sub, 1)
        out[unf] = r
        return out

    @property
    def nbytes(self) -> int:
        return int(self._unflagged.nbytes + getattr(self, "dups", np.empty(0)).nbytes * 2)


def issues_piece(
    classes: tuple[Any, ...], labels: np.ndarray, probs: np.ndarray, ids: np.ndarray, scores: np.ndarray,
    flags: np.ndarray, suggested: np.ndarray, suggested_confidence: np.ndarray,
) -> pa.Table:
    """``ScanResult.issues_table()`` rows of one batch (``rank`` still local: replace it)."""
    data = LabelData(labels=labels, pred_probs=probs, classes=classes, ids=ids)
    res = DetectorResult(name="cl", scores=scores, issues=flags, suggested=suggested,
                         suggested_confidence=suggested_confidence)
    return ScanResult(data=data, results={"cl": res}, primary="cl").issues_table()


def multilabel_issues_piece(
    classes: tuple[Any, ...], labels: np.ndarray, probs: np.ndarray, ids: np.ndarray, scores: np.ndarray,
    flags: np.ndarray, suggested_confidence: np.ndarray, name: str = "mlcl",
) -> pa.Table:
    """``ScanResult.issues_table()`` rows of one multi-label batch; ``flags`` is the ``(n, K)`` pair matrix."""
    data = LabelData(labels=labels, pred_probs=probs, classes=classes, ids=ids, task="multilabel")
    res = DetectorResult(name=name, scores=scores, issues=flags.any(axis=1), suggested=labels ^ flags,
                         suggested_confidence=suggested_confidence,
                         extra={"labels_to_remove": flags & labels, "labels_to_add": flags & ~labels})
    return ScanResult(data=data, results={name: res}, primary=name).issues_table()


def build_multilabel_summary(
    *, source: str, classes: tuple[Any, ...], counts: np.ndarray, thresholds: np.ndarray, joint: np.ndarray,
    est: np.ndarray, quality: np.ndarray, issues: np.ndarray, remove: np.ndarray, add: np.ndarray,
    n_issues: int, params: dict[str, Any], meta: dict[str, Any], name: str = "mlcl",
) -> dict[str, Any]:
    """``ScanResult.summary()`` of a single multi-label ``cl`` scan, from aggregates.

    ``counts``: ``(K, 2)`` rows without / with each class; ``issues``: flagged
    rows holding each class; ``remove``/``add``: flagged pairs per class;
    the detector part is ``MultilabelConfidentLearning._summary``'s.
    """
    k = len(classes)
    names = [str(c) for c in classes]
    n = int(counts[0].sum()) if k else 0
    count = counts[:, 1]
    det_summary = multilabel_detector_summary(
        names=names, counts=counts, thresholds=thresholds, joint=joint, est=est, quality=quality,
        remove=remove, add=add, n_issues=n_issues, params=params,
    )
    det_per_class = det_summary["per_class"]
    per_class = []
    for c in range(k):
        row = {
            "class": names[c],
            "count": int(count[c]),
            "issues": int(issues[c]),
            "issue_rate": float(issues[c] / count[c]) if count[c] else 0.0,
            "suggested_into": int(add[c]),
        }
        for key, value in det_per_class[c].items():
            if key not in ("class", "class_count"):
                row.setdefault(key, value)
        per_class.append(row)
    options = {"detectors": {name: params}}
    options.update(meta)
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "labelqa_version": __version__,
        "source": source,
        "task": "multilabel",
        "rows": n,
        "n_classes": k,
        "classes": names,
        "primary_detector": name,
        "detectors_run": [name],
        "issue_rule": "primary",
        "issues_found": int(n_issues),
        "issue_rate": n_issues / n if n else 0.0,
        "estimated_num_issues": None,
        "estimated_noise_rate": None,
        "estimated_noise_rate_interval": None,
        "noise_matrix": None,
        "noise_matrix_orientation": "noise_matrix[i][j] = P(given label = classes[i] | true label = classes[j])",
        "per_class": per_class,
        "confused_pairs": [],
        "detectors": {name: {"issues_found": int(n_issues), "params": _jsonable(params),
                             "summary": _jsonable(det_summary)}},
        "options": _jsonable(options),
    }


def build_summary(
    *, source: str, classes: tuple[Any, ...], class_counts: np.ndarray, pairs: np.ndarray,
    detector_summary: dict[str, Any], params: dict[str, Any], meta: dict[str, Any],
) -> dict[str, Any]:
    """``ScanResult.summary()`` of a single-``cl`` multiclass scan, from aggregates."""
    k = len(classes)
    names = [str(c) for c in classes]
    n = int(class_counts.sum())
    n_issues = int(pairs.sum())
    issues = pairs.sum(axis=1)
    into = pairs.sum(axis=0)
    extra = detector_summary.get("per_class") or [{}] * k
    per_class = []
    for c in range(k):
        row = {
            "class": names[c],
            "count": int(class_counts[c]),
            "issues": int(issues[c]),
            "issue_rate": float(issues[c] / class_counts[c]) if class_counts[c] else 0.0,
            "suggested_into": int(into[c]),
        }
        for key, value in extra[c].items():
            if key not in ("class", "class_count"):
                row.setdefault(key, value)
        per_class.append(row)
    flat = pairs.ravel()
    order = np.argsort(-flat, kind="stable")[:10]
    confused = [{"given": names[c // k], "suggested": names[c % k], "count": int(flat[c])} for c in order if flat[c] > 0]
    options = {"detectors": {"cl": params}}
    options.update(meta)
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "labelqa_version": __version__,
        "source": source,
        "task": "multiclass",
        "rows": n,
        "n_classes": k,
        "classes": names,
        "primary_detector": "cl",
        "detectors_run": ["cl"],
        "issue_rule": "primary",
        "issues_found": n_issues,
        "issue_rate": n_issues / n if n else 0.0,
        "estimated_num_issues": detector_summary.get("estimated_num_issues"),
        "estimated_noise_rate": detector_summary.get("estimated_noise_rate"),
        "estimated_noise_rate_interval": detector_summary.get("estimated_noise_rate_interval"),
        "noise_matrix": detector_summary.get("noise_matrix"),
        "noise_matrix_orientation": "noise_matrix[i][j] = P(given label = classes[i] | true label = classes[j])",
        "per_class": per_class,
        "confused_pairs": confused,
        "detectors": {"cl": {"issues_found": n_issues, "params": _jsonable(params), "summary": _jsonable(detector_summary)}},
        "options": _jsonable(options),
    }


class ReportWriter:
    """Write report files batch by batch, publish them atomically at :meth:`close`.

    Use as a context manager: on an exception nothing is published and the
    staging folder is removed.
    """

    def __init__(self, out_dir: str | Path, *, csv: bool = True) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise LabelqaError(f"output path {self.out_dir} exists and is not a folder", "pass --out with a folder path")
        self.csv = csv
        self._stack = contextlib.ExitStack()
        self._pq: pq.ParquetWriter | None = None
        self._csv: pacsv.CSVWriter | None = None
        self._top: list[pa.Table] = []
        self.rows = 0

    def __enter__(self) -> ReportWriter:
        self.tmp = self._stack.enter_context(staging_dir(self.out_dir))
        return self

    def __exit__(self, *exc: Any) -> None:
        for w in (self._pq, self._csv):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()
        self._stack.close()

    def write(self, table: pa.Table) -> None:
        """Append one batch of the issues table."""
        text = lists_to_text(table) if self.csv else None  # CSV has no list type (label sets)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.tmp / "issues.parquet", table.schema, compression="zstd")
            if text is not None:
                self._csv = pacsv.CSVWriter(self.tmp / "issues.csv", text.schema)
        self._pq.write_table(table)
        if self._csv is not None:
            self._csv.write_table(text)
        self.rows += table.num_rows
        flags = table.column("is_label_issue").to_numpy(zero_copy_only=False)
        ranks = table.column("rank").to_numpy()
        top = np.flatnonzero(flags & (ranks <= MARKDOWN_TOP))
        if top.size:
            self._top.append(table.take(pa.array(top)))

    def close(self, summary: dict[str, Any]) -> list[Path]:
        """Finish issues files, write summary.json and summary.md, publish all."""
        for name in ("_pq", "_csv"):
            w = getattr(self, name)
            if w is not None:
                w.close()
                setattr(self, name, None)
        top = pa.concat_tables(self._top) if self._top else None
        (self.tmp / "summary.json").write_text(summary_json(summary), encoding="utf-8")
        (self.tmp / "summary.md").write_text(render_markdown(summary, top), encoding="utf-8")
        return publish(self.tmp, self.out_dir)
