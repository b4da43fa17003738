"""ScanResult: what a scan found, and how it becomes report tables and a summary.

Writers, the gate and fix read a ScanResult; they never recompute detector
logic. With several detectors, per-row score, flag and suggestion come from
:mod:`labelqa.detectors.ensemble`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa._version import __version__
from labelqa.data.model import LabelData
from labelqa.detectors import ensemble
from labelqa.detectors.base import DetectorResult
from labelqa.report.reasons import reasons_for, scatter_text

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

#: Extra per-row arrays of detectors that become issue-table columns under their own name.
_NAMED_EXTRAS = ("outlier_score", "is_outlier", "aum")
#: N x K boolean extras of multi-label detectors, written as lists of class names.
_CLASS_SET_EXTRAS = ("labels_to_remove", "labels_to_add")


def rank_rows(scores: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Rank every row, 1 = most suspect: flagged rows first, each group by score.

    Ties are broken by row position, so equal inputs give equal ranks.

    Args:
        scores: Per-row quality, lower = more suspect.
        flags: Per-row issue flag.

    Returns:
        int64 ranks ``1..N``; flagged rows hold ``1..n_flagged``.
    """
    flags = np.asarray(flags, dtype=bool)
    scores = np.asarray(scores)
    flagged, others = np.flatnonzero(flags), np.flatnonzero(~flags)
    # a stable sort of each group by score == lexsort by (flag, score, position); NaN sorts last in both
    order = np.concatenate([flagged[np.argsort(scores[flagged], kind="stable")],
                            others[np.argsort(scores[others], kind="stable")]])
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


@dataclass(eq=False)
class ScanResult:
    """The combined outcome of running detectors on one dataset.

    Attributes:
        data: The scanned data.
        results: Detector results by detector name, in run order.
        primary: Name of the primary detector (its figures lead the summary).
        issue_rule: How flags combine when several detectors ran (see
            :mod:`labelqa.detectors.ensemble`).
        options: Options the scan ran with (recorded in the summary).
    """

    data: LabelData
    results: dict[str, DetectorResult]
    primary: str
    issue_rule: str = "primary_or_2"
    options: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.issue_rule not in ensemble.ISSUE_RULES:
            from labelqa.errors import LabelqaError

            raise LabelqaError(f"unknown issue rule {self.issue_rule!r}",
                               f"choose one of {', '.join(ensemble.ISSUE_RULES)}")

    def _cached(self, key: str, build: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # ---- per-row views -------------------------------------------------
    @property
    def multilabel(self) -> bool:
        """Whether the data is multi-label."""
        return self.data.task == "multilabel"

    @property
    def primary_result(self) -> DetectorResult:
        """The result of the primary detector."""
        return self.results[self.primary]

    @property
    def label_quality(self) -> np.ndarray:
        """Per-row label quality, lower = more suspect (rank average with several detectors)."""
        return self._cached("quality", lambda: ensemble.combined_score(list(self.results.values())))

    @property
    def is_label_issue(self) -> np.ndarray:
        """Per-row issue flag (the ensemble rule with several detectors)."""
        return self._cached(
            "flags", lambda: ensemble.combined_flags(list(self.results.values()), self.primary, self.issue_rule)
        )

    def _suggestion(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._cached(
            "suggestion",
            lambda: ensemble.combined_suggestion(list(self.results.values()), self.primary, self.data.labels),
        )

    @property
    def suggested(self) -> np.ndarray:
        """Per-row suggested label codes (N x K bool label sets for multi-label)."""
        return self._suggestion()[0]

    @property
    def suggested_confidence(self) -> np.ndarray | None:
        """Per-row probability backing the suggestion (NaN where unknown)."""
        return self._suggestion()[1]

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

    # ---- tables --------------------------------------------------------
    def issues_table(self) -> pa.Table:
        """One row per input row, joinable on ``id``, in input order.

        Columns: ``id, given_label, suggested_label, label_quality,
        is_label_issue, rank, suggested_confidence, detectors, reason``; for
        multi-label data also ``labels_to_remove, labels_to_add,
        suggested_labels`` (lists of class names, where the label columns are
        lists too); then ``<detector>_score`` and ``<detector>_issue`` for every
        detector, and detector extras such as ``outlier_score``,
        ``is_outlier`` (NRG) and ``aum`` (AUM). Built once and cached.
        """
        return self._cached("issues", self._build_issues_table)

    def _build_issues_table(self) -> pa.Table:
        data = self.data
        flags = np.asarray(self.is_label_issue, dtype=bool)
        # The rank sort releases the GIL: it runs beside the text columns built below (on arrays computed here
        # first, so the two threads never both fill the same cache entry).
        quality = self.label_quality
        with ThreadPoolExecutor(max_workers=1) as pool:
            ranks = pool.submit(rank_rows, quality, flags)
            columns = self._row_columns(flags, quality)
            columns["rank"] = pa.array(ranks.result())
        from labelqa.models import disagreement_columns

        for key, values in disagreement_columns(data).items():  # several models: where they disagree
            columns[key] = pa.array(values)
        return pa.table(columns)

    def _row_columns(self, flags: np.ndarray, quality: np.ndarray) -> dict[str, pa.Array | None]:
        """The issues table's columns but ``rank`` (left as a ``None`` placeholder, to keep its position)."""
        data = self.data
        conf = self.suggested_confidence
        if self.multilabel:
            given = _class_sets(data.labels, data.classes)
            suggested = _class_sets(self.suggested, data.classes)
        else:
            given = _class_array(data.labels, data.classes)
            suggested = _class_array(self.suggested, data.classes)
        columns: dict[str, pa.Array | None] = {
            "id": pa.array(data.ids),
            "given_label": given,
            "suggested_label": suggested,
            "label_quality": pa.array(np.asarray(quality, dtype=np.float64)),
            "is_label_issue": pa.array(flags),
            "rank": None,  # filled in by _build_issues_table
            "suggested_confidence": pa.array(
                np.asarray(conf, dtype=np.float64) if conf is not None else np.full(data.n_rows, np.nan)
            ),
            "detectors": self._detectors_column(),
            "reason": self._reason_column(),
        }
        if self.multilabel:
            for key in _CLASS_SET_EXTRAS:
                mats = [r.extra[key] for r in self.results.values() if key in r.extra]
                if mats:
                    columns[key] = _class_sets(np.logical_or.reduce(mats) & flags[:, None], data.classes)
            columns["suggested_labels"] = suggested
        for name, res in self.results.items():
            columns[f"{name}_score"] = pa.array(np.asarray(res.scores, dtype=np.float64))
            columns[f"{name}_issue"] = pa.array(np.asarray(res.issues, dtype=bool))
            for key in _NAMED_EXTRAS:
                if key in res.extra and key not in columns:
                    columns[key] = pa.array(np.asarray(res.extra[key]))
        return columns

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
        seen = np.bincount(code, minlength=1)
        patterns = np.flatnonzero(seen)
        labels = [",".join(n for b, n in enumerate(names) if (int(p) >> b) & 1) for p in patterns]
        lookup = np.zeros(seen.size, dtype=np.int32)  # pattern -> its label's index: one gather, no search
        lookup[patterns] = np.arange(patterns.size, dtype=np.int32)
        indices = lookup[code]
        return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(labels, pa.string())).cast(pa.string())

    def _reason_column(self) -> pa.Array:
        """A short human reason for flagged rows ("" for the others).

        Each detector that fired contributes a phrase; several are joined
        with "; " (Arrow kernels throughout, no per-row Python).
        """
        idx = np.flatnonzero(self.is_label_issue)
        parts = [reasons_for(self.data, res, idx) for res in self.results.values()]
        if len(parts) == 1:
            joined = parts[0]
        else:
            nulled = [pc.if_else(pc.equal(p, ""), pa.scalar(None, pa.string()), p) for p in parts]
            joined = pc.fill_null(pc.binary_join_element_wise(*nulled, "; ", null_handling="skip"), "")
        return scatter_text(joined, idx, self.data.n_rows)

    # ---- summary -------------------------------------------------------
    def per_class(self) -> list[dict[str, Any]]:
        """Per-class counts and issue rates (plus the primary detector's figures)."""
        data = self.data
        k = data.n_classes
        flags = np.asarray(self.is_label_issue, dtype=bool)
        if self.multilabel:
            counts = data.labels.sum(axis=0)
            issues = data.labels[flags].sum(axis=0)
            suggested_into = (self.suggested[flags] & ~data.labels[flags]).sum(axis=0)
        else:
            counts = data.class_counts()
            issues = np.bincount(data.labels[flags], minlength=k)
            suggested_into = np.bincount(self.suggested[flags], minlength=k)
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
                if key not in ("class", "class_count"):
                    row.setdefault(key, value)
            rows.append(row)
        return rows

    def confused_pairs(self, top: int = 10) -> list[dict[str, Any]]:
        """Most frequent (given, suggested) pairs among flagged rows (multiclass only)."""
        if self.multilabel:
            return []
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
        out = {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "labelqa_version": __version__,
            "source": data.source,
            "task": data.task,
            "rows": data.n_rows,
            "n_classes": data.n_classes,
            "classes": data.class_names,
            "primary_detector": self.primary,
            "detectors_run": list(self.results),
            "issue_rule": self.issue_rule if len(self.results) > 1 else "primary",
            "issues_found": self.n_issues,
            "issue_rate": self.issue_rate,
            "estimated_num_issues": primary.get("estimated_num_issues"),
            "estimated_noise_rate": primary.get("estimated_noise_rate"),
            "estimated_noise_rate_interval": primary.get("estimated_noise_rate_interval"),
            "noise_matrix": primary.get("noise_matrix"),
            "noise_matrix_orientation": "noise_matrix[i][j] = P(given label = classes[i] | true label = classes[j])",
            "per_class": self.per_class(),
            "confused_pairs": self.confused_pairs(),
            "detectors": {
                name: {"issues_found": res.n_issues, "params": _jsonable(res.params), "summary": _jsonable(res.summary)}
                for name, res in self.results.items()
            },
            "options": _jsonable(self.options),
        }
        from labelqa.models import disagreement_summary

        models = disagreement_summary(data)
        if models is not None:
            out["models"] = _jsonable(models)
        if "outlier_score" in self._extras():
            out["outliers_found"] = int(np.count_nonzero(self._extras().get("is_outlier", [])))
        return out

    def _extras(self) -> dict[str, np.ndarray]:
        merged: dict[str, np.ndarray] = {}
        for res in self.results.values():
            for key, value in res.extra.items():
                merged.setdefault(key, value)
        return merged


def _class_array(codes: np.ndarray, classes: tuple[Any, ...]) -> pa.Array:
    """Class values for integer codes, as Arrow ints or strings like the label column."""
    codes = np.asarray(codes, dtype=np.int64)
    if classes and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return pa.array(np.asarray(classes, dtype=np.int64)[codes])
    return pa.array(np.asarray([str(c) for c in classes])[codes], type=pa.string())


def _class_sets(matrix: np.ndarray, classes: tuple[Any, ...]) -> pa.Array:
    """Rows of an N x K bool matrix as lists of class values (vectorised)."""
    matrix = np.asarray(matrix, dtype=bool)
    rows, cols = np.nonzero(matrix)
    offsets = np.zeros(matrix.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=matrix.shape[0]), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), _class_array(cols, classes))


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and paths into plain JSON types (NaN/inf become None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(type(v) is float or type(v) is int for v in value):  # noqa: E721 - not bool, not numpy
            if np.isfinite(np.asarray(value, dtype=np.float64)).all():  # a row of numbers: one vectorised check
                return list(value)
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
