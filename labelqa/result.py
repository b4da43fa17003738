"""ScanResult: what a scan found, and how it becomes report tables and a summary.

Writers and the gate read a ScanResult; they never recompute detector logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from labelqa._version import __version__
from labelqa.data.model import LabelData
from labelqa.detectors.base import DetectorResult

#: Version of the summary.json layout; bump on any incompatible change.
SUMMARY_SCHEMA_VERSION = 1

#: Fixed leading columns of issues.parquet, in order.
ISSUE_COLUMNS = (
    "id",
    "given_label",
    "suggested_label",
    "label_quality",
    "is_label_issue",
    "rank",
    "suggested_confidence",
    "detectors",
    "reason",
)


def rank_rows(scores: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Rank every row, 1 = most suspect: flagged rows first, each group by score.

    Ties are broken by row position, so equal inputs give equal ranks.

    Args:
        scores: Per-row quality, lower = more suspect.
        flags: Per-row issue flag.

    Returns:
        int64 ranks ``1..N``; flagged rows hold ``1..n_flagged``.
    """
    order = np.lexsort((np.arange(len(scores)), scores, ~np.asarray(flags, dtype=bool)))
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


@dataclass(eq=False)
class ScanResult:
    """The combined outcome of running detectors on one dataset.

    Attributes:
        data: The scanned data.
        results: Detector results by detector name, in run order.
        primary: Name of the detector whose score and flags drive the report.
        options: Options the scan ran with (recorded in the summary).
    """

    data: LabelData
    results: dict[str, DetectorResult]
    primary: str
    options: dict[str, Any] = field(default_factory=dict)
    _issues: pa.Table | None = field(default=None, init=False, repr=False)

    # ---- per-row views -------------------------------------------------
    @property
    def primary_result(self) -> DetectorResult:
        """The result of the primary detector."""
        return self.results[self.primary]

    @property
    def label_quality(self) -> np.ndarray:
        """Per-row label quality, lower = more suspect."""
        return self.primary_result.scores

    @property
    def is_label_issue(self) -> np.ndarray:
        """Per-row issue flag."""
        return self.primary_result.issues

    @property
    def suggested(self) -> np.ndarray:
        """Per-row suggested label codes."""
        return self.primary_result.suggested

    @property
    def n_issues(self) -> int:
        """Number of rows flagged as label issues."""
        return int(np.count_nonzero(self.is_label_issue))

    @property
    def issue_rate(self) -> float:
        """Share of rows flagged as label issues."""
        return self.n_issues / self.data.n_rows if self.data.n_rows else 0.0

    def ranks(self) -> np.ndarray:
        """Rank of every row (see :func:`rank_rows`)."""
        return rank_rows(self.label_quality, self.is_label_issue)

    def fired(self) -> list[str]:
        """Detector names, for the per-row ``detectors`` column."""
        return list(self.results)

    # ---- tables --------------------------------------------------------
    def issues_table(self) -> pa.Table:
        """One row per input row, joinable on ``id``, in input order.

        Columns: ``id, given_label, suggested_label, label_quality,
        is_label_issue, rank, suggested_confidence, detectors, reason`` and
        then ``<detector>_score``, ``<detector>_issue`` for every detector.
        The table is built once and cached.
        """
        if self._issues is None:
            self._issues = self._build_issues_table()
        return self._issues

    def _build_issues_table(self) -> pa.Table:
        data = self.data
        flags = np.asarray(self.is_label_issue, dtype=bool)
        conf = self.primary_result.suggested_confidence
        columns: dict[str, pa.Array] = {
            "id": pa.array(data.ids),
            "given_label": _class_array(data.labels, data.classes),
            "suggested_label": _class_array(self.suggested, data.classes),
            "label_quality": pa.array(np.asarray(self.label_quality, dtype=np.float64)),
            "is_label_issue": pa.array(flags),
            "rank": pa.array(self.ranks()),
            "suggested_confidence": pa.array(
                np.asarray(conf, dtype=np.float64) if conf is not None else np.full(data.n_rows, np.nan)
            ),
            "detectors": self._detectors_column(),
            "reason": self._reason_column(),
        }
        for name, res in self.results.items():
            columns[f"{name}_score"] = pa.array(np.asarray(res.scores, dtype=np.float64))
            columns[f"{name}_issue"] = pa.array(np.asarray(res.issues, dtype=bool))
        return pa.table(columns)

    def _detectors_column(self) -> pa.Array:
        """Comma-separated names of the detectors that flagged each row ("" for none).

        Rows are coded by the bitmask of their flags, so only the few distinct
        patterns are turned into strings (a dictionary array, cast to string).
        """
        names = list(self.results)
        if len(names) > 62:
            raise ValueError("at most 62 detectors per scan")
        code = np.zeros(self.data.n_rows, dtype=np.int64)
        for bit, res in enumerate(self.results.values()):
            code |= np.asarray(res.issues, dtype=np.int64) << bit
        patterns = np.flatnonzero(np.bincount(code, minlength=1))
        labels = [",".join(n for b, n in enumerate(names) if (int(p) >> b) & 1) for p in patterns]
        indices = np.searchsorted(patterns, code).astype(np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(labels, pa.string())).cast(pa.string())

    def _reason_column(self) -> pa.Array:
        """A short human reason for flagged rows; empty for the others."""
        data = self.data
        out = np.full(data.n_rows, "", dtype=object)
        idx = np.flatnonzero(self.is_label_issue)
        if idx.size == 0:
            return pa.array(out, type=pa.string())
        probs = data.pred_probs
        names = np.asarray(data.class_names, dtype=object)
        given = data.labels[idx]
        sugg = self.suggested[idx]
        p_given = probs[idx, given]
        p_sugg = probs[idx, sugg]
        out[idx] = [
            f"given '{g}' ({pg:.2f}), model says '{s}' ({ps:.2f})"
            for g, pg, s, ps in zip(names[given], p_given, names[sugg], p_sugg)
        ]
        return pa.array(out, type=pa.string())

    # ---- summary -------------------------------------------------------
    def per_class(self) -> list[dict[str, Any]]:
        """Per-class counts and issue rates (plus the primary detector's figures)."""
        data = self.data
        k = data.n_classes
        counts = data.class_counts()
        issues = np.bincount(data.labels[self.is_label_issue], minlength=k)
        suggested_into = np.bincount(self.suggested[self.is_label_issue], minlength=k)
        extra = self.primary_result.summary.get("per_class") or [{}] * k
        rows = []
        for c in range(k):
            row = {
                "class": data.class_names[c],
                "count": int(counts[c]),
                "issues": int(issues[c]),
                "issue_rate": float(issues[c] / counts[c]) if counts[c] else 0.0,
                "suggested_into": int(suggested_into[c]),
            }
            for key, value in extra[c].items():
                row.setdefault(key, value)
            rows.append(row)
        return rows

    def confused_pairs(self, top: int = 10) -> list[dict[str, Any]]:
        """Most frequent (given, suggested) pairs among flagged rows."""
        data = self.data
        k = data.n_classes
        flags = self.is_label_issue
        pair_codes = data.labels[flags] * k + self.suggested[flags]
        counts = np.bincount(pair_codes, minlength=k * k)
        order = np.argsort(-counts, kind="stable")[:top]
        names = data.class_names
        return [
            {"given": names[c // k], "suggested": names[c % k], "count": int(counts[c])}
            for c in order
            if counts[c] > 0
        ]

    def summary(self) -> dict[str, Any]:
        """The dataset summary, as written to summary.json (versioned schema)."""
        data = self.data
        primary = self.primary_result.summary
        return {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "labelqa_version": __version__,
            "source": data.source,
            "task": data.task,
            "rows": data.n_rows,
            "n_classes": data.n_classes,
            "classes": data.class_names,
            "primary_detector": self.primary,
            "issues_found": self.n_issues,
            "issue_rate": self.issue_rate,
            "estimated_num_issues": primary.get("estimated_num_issues"),
            "estimated_noise_rate": primary.get("estimated_noise_rate"),
            "noise_matrix": primary.get("noise_matrix"),
            "noise_matrix_orientation": "noise_matrix[i][j] = P(given label = classes[i] | true label = classes[j])",
            "per_class": self.per_class(),
            "confused_pairs": self.confused_pairs(),
            "detectors": {
                name: {"issues_found": res.n_issues, "params": _jsonable(res.params), "summary": res.summary}
                for name, res in self.results.items()
            },
            "options": _jsonable(self.options),
        }


def _class_array(codes: np.ndarray, classes: tuple[Any, ...]) -> pa.Array:
    """Class values for integer codes, as Arrow ints or strings like the label column."""
    codes = np.asarray(codes, dtype=np.int64)
    if classes and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return pa.array(np.asarray(classes, dtype=np.int64)[codes])
    return pa.array(np.asarray([str(c) for c in classes])[codes], type=pa.string())


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and paths into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
