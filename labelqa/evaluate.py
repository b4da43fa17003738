"""Evaluating detectors against known label errors (docs/evaluation.md).

Ground truth comes either from a column of true labels (read only for scoring:
:func:`read_truth_codes` reads it on its own, it never reaches a detector) or
from synthetic noise injected into the given labels (:func:`inject_noise`,
:func:`inject_into`); then the original labels are the truth.

A row is a **true error** when its given label differs from its true label.
For each detector, and for the ensemble (the scan's combined flags and
score), :func:`evaluate` reports:

* ``precision``, ``recall``, ``f1`` of the flagged rows;
* ``auroc`` and ``average_precision`` (AP) of the ranking score (lower
  quality = more suspect; only the order matters);
* ``precision_at_true_count``: the share of true errors among the ``m`` most
  suspect rows, ``m`` = the number of true errors. Rows tied with the ``m``-th
  score share the remaining slots equally (the expected precision over
  random tie-breaking), so the figure does not depend on row order.

Edge cases (documented choices): with **no flagged rows** precision is
undefined and reported as NaN (``null`` in JSON), not 0; with **no true
errors** recall, AP and precision@true-count are NaN; F1 is computed as
``2 TP / (2 TP + FP + FN)``, which equals the harmonic mean when both are
defined, is 0 when either is 0, and is NaN only when there are neither flags
nor errors; AUROC is NaN unless there are both true errors and clean rows
(so with **all rows noisy** it is NaN, while AP is 1).

**Injected noise caveat.** Injecting noise after the fact into a dataset
whose ``pred_probs`` were computed on the original labels is the standard
synthetic protocol, but the model behind those probabilities was trained on
the clean labels: it never saw the injected errors, so it does not partly
learn them as a model trained on noisy labels would. Scores on injected
noise are therefore optimistic, relative to real noise of the same rate,
and injected noise is uniform or pair-flip rather than the
instance-dependent confusions humans make. Use a true-label column (e.g.
CIFAR-10N) for realistic figures.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.data.model import LabelData
from labelqa.detectors import ensemble
from labelqa.errors import LabelqaError
from labelqa.jsonable import jsonable
from labelqa.result import ScanResult

__all__ = [
    "EVALUATION_SCHEMA_VERSION",
    "INJECTION_CAVEAT",
    "NOISE_KINDS",
    "describe_truth",
    "detection_metrics",
    "evaluate",
    "evaluation_json",
    "inject_into",
    "inject_noise",
    "parse_noise_spec",
    "read_truth_codes",
    "render_markdown_table",
    "table_rows",
    "write_evaluation",
]

#: Version of the evaluation.json layout; bump on any incompatible change.
EVALUATION_SCHEMA_VERSION = 1

#: Synthetic noise kinds of :func:`inject_noise`.
NOISE_KINDS = ("uniform", "pairflip", "matrix")

INJECTION_CAVEAT = (
    "noise was injected after the pred_probs were computed, so the model never saw (or learnt) these errors: "
    "figures are optimistic relative to real noise of the same rate"
)

#: Metric keys of one row of the evaluation, in table order, with their headers.
METRICS = (
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("auroc", "AUROC"),
    ("average_precision", "AP"),
    ("precision_at_true_count", "P@true"),
)


# --------------------------------------------------------------------------- noise injection
def parse_noise_spec(spec: str) -> tuple[str, float]:
    """``"uniform:0.2"`` / ``"pairflip:0.1"`` -> ``(kind, rate)``.

    Raises:
        LabelqaError: On an unknown kind or a rate outside [0, 1].
    """
    kind, sep, rate_text = str(spec).partition(":")
    kind = kind.strip().lower().replace("-", "").replace("_", "")
    if not sep or kind not in ("uniform", "pairflip"):
        raise LabelqaError(f"--inject-noise {spec!r} is not KIND:RATE",
                           "e.g. --inject-noise uniform:0.2 or pairflip:0.1")
    try:
        rate = float(rate_text)
    except ValueError:
        raise LabelqaError(f"--inject-noise {spec!r}: rate {rate_text!r} is not a number",
                           "e.g. --inject-noise uniform:0.2") from None
    if not 0.0 <= rate <= 1.0:
        raise LabelqaError(f"--inject-noise {spec!r}: rate must be in [0, 1]", "e.g. --inject-noise uniform:0.2")
    return kind, rate


def inject_noise(
    labels: Any,
    n_classes: int,
    kind: str,
    rate: float = 0.0,
    seed: int | None = 0,
    *,
    noise_matrix: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip labels at random (seeded), as described in docs/evaluation.md.

    Args:
        labels: Class codes ``0..K-1``, shape ``(N,)`` (taken as the truth).
        n_classes: K (>= 2).
        kind: ``"uniform"``: each row is flipped with probability ``rate`` to
            one of the other K-1 classes at random (noise matrix off-diagonal
            ``rate / (K-1)``); ``"pairflip"``: each row is flipped with
            probability ``rate`` to ``(k + 1) mod K``; ``"matrix"``:
            class-conditional noise, the new label of a row of class ``k``
            drawn from column ``k`` of ``noise_matrix`` (``rate`` unused).
        rate: Flip probability in [0, 1].
        seed: Seed of the generator; equal seeds give equal labels.
        noise_matrix: For ``"matrix"``: ``(K, K)``,
            ``noise_matrix[j, k] = P(noisy = j | true = k)``, columns sum to 1.

    Returns:
        ``(noisy_labels, flipped)``: int64 codes and the bool mask of the rows
        whose label changed.
    """
    labs = np.asarray(labels)
    if labs.ndim != 1 or (labs.size and labs.dtype.kind not in "iu"):
        raise LabelqaError("noise injection needs multiclass labels as integer codes, shape (N,)")
    labs = labs.astype(np.int64)
    k = int(n_classes)
    if k < 2:
        raise LabelqaError(f"noise injection needs at least 2 classes, got {k}")
    if labs.size and (labs.min() < 0 or labs.max() >= k):
        raise LabelqaError(f"labels must be class codes in 0..{k - 1}")
    rng = np.random.default_rng(seed)
    n = labs.size
    if kind == "matrix":
        m = np.asarray(noise_matrix, dtype=np.float64)
        if m.shape != (k, k) or (m < 0).any() or not np.allclose(m.sum(axis=0), 1.0, atol=1e-6):
            raise LabelqaError(f"noise_matrix must be ({k}, {k}), non-negative, with columns summing to 1")
        cdf = np.cumsum(m, axis=0)
        cdf[-1] = 1.0
        u = rng.random(n)
        noisy = np.empty(n, dtype=np.int64)
        for c in range(k):  # K searchsorted calls over the rows of each class
            rows = np.flatnonzero(labs == c)
            noisy[rows] = np.minimum(np.searchsorted(cdf[:, c], u[rows], side="right"), k - 1)
        return noisy, noisy != labs
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise LabelqaError(f"noise rate must be in [0, 1], got {rate}")
    flip = rng.random(n) < rate
    noisy = labs.copy()
    if kind == "uniform":
        noisy[flip] = (labs[flip] + rng.integers(1, k, int(flip.sum()))) % k
    elif kind == "pairflip":
        noisy[flip] = (labs[flip] + 1) % k
    else:
        raise LabelqaError(f"unknown noise kind {kind!r}", f"choose one of {', '.join(NOISE_KINDS)}")
    return noisy, flip


def inject_into(data: LabelData, kind: str, rate: float, seed: int | None = 0) -> tuple[LabelData, np.ndarray]:
    """Inject noise into ``data``'s given labels.

    Returns:
        ``(noisy_data, truth_codes)``: a copy of ``data`` with noisy labels
        (``dataclasses.replace``; ``meta["injected_noise"]`` records the
        recipe) and the original labels, now the truth.
    """
    if data.task != "multiclass":
        raise LabelqaError("noise injection is for multiclass data", "evaluate multi-label data with --truth-col")
    noisy, _ = inject_noise(data.labels, data.n_classes, kind, rate, seed)
    meta = {**data.meta, "injected_noise": {"kind": kind, "rate": rate, "seed": seed}}
    return dataclasses.replace(data, labels=noisy, meta=meta), np.asarray(data.labels, dtype=np.int64).copy()


# --------------------------------------------------------------------------- truth column
def read_truth_codes(
    path: str | os.PathLike[str] | Any, truth_col: str, data: LabelData, input_format: str | None = None
) -> np.ndarray:
    """Read ``truth_col`` of the file (or of an in-memory :class:`pyarrow.Table`) on its own and map it to
    ``data``'s class codes.

    The column is read only here, for scoring; the detectors get ``data``,
    loaded without it.

    Raises:
        LabelqaError: Missing column, a null, or a value that is not one of
            ``data.classes`` (naming the row, and its id with an id column).
    """
    import pyarrow as pa

    from labelqa.data import read_table
    from labelqa.data.labels import encode_labels, normalize_labels
    from labelqa.data.rows import Rows

    if data.task != "multiclass":
        raise LabelqaError("evaluation with a truth column is for multiclass data")
    if truth_col == data.label_col:
        raise LabelqaError(f"--truth-col {truth_col!r} is the label column", "pass the column of true labels")
    if isinstance(path, pa.Table):
        if truth_col not in path.column_names:
            raise LabelqaError(f"truth column {truth_col!r} not found; columns are {path.column_names}",
                               "pass truth_col= the column of true labels, or an array of them")
        table, path = path.select([truth_col]), "in-memory data"
    else:
        table = read_table(path, input_format, columns=[truth_col])
    if table.num_rows != data.n_rows:
        raise LabelqaError(f"{path}: column {truth_col!r} has {table.num_rows} rows, the data {data.n_rows}")
    column = table.column(truth_col).combine_chunks()
    if isinstance(column, pa.ChunkedArray):  # an empty table
        column = pa.array([], type=column.type)
    rows = Rows(data.ids, data.id_col)
    where = f"{path}, column {truth_col!r}"

    class _Where:  # the location strings encode_labels uses
        labels = where

    # the loader's rules: values match classes (as text for a string column);
    # integer values with named classes are class codes
    codes, _ = encode_labels(normalize_labels(column, where, rows), data.classes, _Where(), rows)
    return codes


# --------------------------------------------------------------------------- metrics
def _nan_if(cond: bool, value: float) -> float:
    return math.nan if cond else float(value)


def detection_metrics(flags: Any, scores: Any, is_error: Any) -> dict[str, Any]:
    """Precision, recall, F1, AUROC, AP and precision@true-count of one detector.

    Args:
        flags: Per-row issue flags.
        scores: Per-row label quality, lower = more suspect (NaN = least).
        is_error: Per-row truth: the given label is wrong.

    Returns:
        Counts (``flagged``, ``true_positives``, ``false_positives``,
        ``false_negatives``) and the metrics (floats, NaN where undefined; see
        the module doc).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    flags = np.asarray(flags, dtype=bool)
    err = np.asarray(is_error, dtype=bool)
    n = err.size
    n_err = int(err.sum())
    tp = int(np.count_nonzero(flags & err))
    fp = int(np.count_nonzero(flags & ~err))
    fn = n_err - tp
    n_flag = tp + fp
    # Only the order of the scores matters: ranks (NaN last, i.e. least suspect)
    # turned into "suspicion", higher = more suspect.
    suspicion = 1.0 - ensemble.normalized_ranks(np.asarray(scores, dtype=np.float64))
    auroc = roc_auc_score(err, suspicion) if 0 < n_err < n else math.nan
    ap = average_precision_score(err, suspicion) if n_err > 0 else math.nan
    return {
        "flagged": n_flag,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": _nan_if(n_flag == 0, tp / max(n_flag, 1)),
        "recall": _nan_if(n_err == 0, tp / max(n_err, 1)),
        "f1": _nan_if(2 * tp + fp + fn == 0, 2 * tp / max(2 * tp + fp + fn, 1)),
        "auroc": float(auroc),
        "average_precision": float(ap),
        "precision_at_true_count": _precision_at(suspicion, err, n_err),
        "count_ratio": _nan_if(n_err == 0, n_flag / max(n_err, 1)),
    }


def _precision_at(suspicion: np.ndarray, err: np.ndarray, m: int) -> float:
    """Expected share of errors among the ``m`` most suspect rows (ties share slots)."""
    if m == 0:
        return math.nan
    n = suspicion.size
    if m >= n:
        return float(err.mean())
    cut = np.partition(suspicion, n - m)[n - m]  # the m-th largest suspicion
    above = suspicion > cut
    tied = suspicion == cut
    slots = m - int(above.sum())
    hits = float(np.count_nonzero(err & above)) + slots * float(err[tied].mean())
    return hits / m


def evaluate(result: ScanResult, truth_codes: Any, *, truth: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score every detector of a scan, and the ensemble, against true labels.

    Args:
        result: The scan (its data holds the given labels the detectors saw).
        truth_codes: True class codes, shape ``(N,)``, in ``result.data``'s
            class order.
        truth: Where the truth came from, recorded as is (e.g.
            ``{"kind": "column", "column": "true_label"}``).

    Returns:
        A JSON-ready dict (NaN where undefined; :func:`evaluation_json`
        writes those as ``null``): ``rows``, ``true_errors``,
        ``true_noise_rate``, ``estimated_noise_rate``, ``detectors`` (name ->
        metrics) and ``ensemble`` (metrics of the combined flags and score,
        plus ``issue_rule``); see :func:`detection_metrics`.
    """
    data = result.data
    if result.multilabel:
        raise LabelqaError("evaluate supports multiclass data only")
    truth_arr = np.asarray(truth_codes)
    if truth_arr.shape != (data.n_rows,):
        raise LabelqaError(f"truth must have one code per row: shape ({data.n_rows},), got {truth_arr.shape}")
    k = data.n_classes
    if truth_arr.size and (truth_arr.dtype.kind not in "iu" or truth_arr.min() < 0 or truth_arr.max() >= k):
        raise LabelqaError(f"truth must be class codes in 0..{data.n_classes - 1}")
    is_error = np.asarray(data.labels) != truth_arr
    n_err = int(is_error.sum())
    primary = result.primary_result.summary
    detectors = {
        name: detection_metrics(res.issues, res.scores, is_error) for name, res in result.results.items()
    }
    combined = detection_metrics(result.is_label_issue, result.label_quality, is_error)
    combined["issue_rule"] = result.issue_rule if len(result.results) > 1 else "primary"
    return {
        "schema_version": EVALUATION_SCHEMA_VERSION,
        "source": data.source,
        "rows": data.n_rows,
        "n_classes": data.n_classes,
        "truth": dict(truth or {}),
        "true_errors": n_err,
        "true_noise_rate": n_err / data.n_rows if data.n_rows else math.nan,
        "estimated_noise_rate": primary.get("estimated_noise_rate"),
        "estimated_errors": estimated_errors(primary, data.n_rows),
        "primary_detector": result.primary,
        "detectors": detectors,
        "ensemble": combined,
    }


def estimated_errors(summary: dict[str, Any], n_rows: int) -> dict[str, Any]:
    """The primary detector's estimates of the number of label errors, by estimator (those it reports).

    ``noise_rate``: ``estimated_noise_rate * N``, by the estimator the
    summary names (``estimator``: ``disputed_weighted_trend`` for the
    default ``filter_by``, ``calibrated_confident_joint`` for
    ``prune_by_noise_rate``); ``confident_joint``: ``estimated_num_issues``
    (``A``); ``midpoint``: ``A + U/2`` with ``bounds`` ``[A, A + U]``;
    ``weighted``: ``T = A + min(W, R)``, the uncertain disputes weighted by
    their margins and capped by the entropy trend (docs/detection.md).
    """
    out: dict[str, Any] = {}
    rate = summary.get("estimated_noise_rate")
    if isinstance(rate, (int, float)) and math.isfinite(rate):
        out["noise_rate"] = int(round(rate * n_rows))
        if summary.get("estimated_noise_rate_estimator"):
            out["estimator"] = str(summary["estimated_noise_rate_estimator"])
    if summary.get("estimated_num_issues") is not None:
        out["confident_joint"] = int(summary["estimated_num_issues"])
    if summary.get("estimated_num_issues_midpoint") is not None:
        out["midpoint"] = int(summary["estimated_num_issues_midpoint"])
        out["bounds"] = [int(b) for b in summary["disputed_bounds"]]
    if summary.get("estimated_num_issues_weighted") is not None:
        out["weighted"] = int(summary["estimated_num_issues_weighted"])
    return out


# --------------------------------------------------------------------------- output
def evaluation_json(evaluation: dict[str, Any]) -> str:
    """evaluation.json text: indented, NaN as ``null``, trailing newline."""
    return json.dumps(jsonable(evaluation), indent=2) + "\n"


def write_evaluation(evaluation: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``evaluation.json`` into ``out_dir`` (next to the report files), atomically."""
    from labelqa.atomic import write_atomic

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LabelqaError(f"output path {out} exists and is not a folder", "pass --out with a folder path")
    text = evaluation_json(evaluation)
    return write_atomic(out / "evaluation.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def table_rows(evaluation: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, metrics)`` per detector, then ``("ensemble", ...)`` when several detectors ran."""
    rows = list(evaluation["detectors"].items())
    if len(rows) > 1:
        rows.append((f"ensemble ({evaluation['ensemble'].get('issue_rule')})", evaluation["ensemble"]))
    return rows


def fmt_metric(value: Any) -> str:
    """A metric as ``0.873``; ``n/a`` when undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}"


def render_markdown_table(evaluation: dict[str, Any]) -> str:
    """The evaluation as a Markdown table (one row per detector, plus the ensemble).

    Columns: detector, flagged, precision, recall, F1, AUROC, AP,
    precision@true-count (``P@true``); undefined values read ``n/a``.
    """
    header = ["Detector", "Flagged"] + [title for _, title in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, m in table_rows(evaluation):
        cells = [name, f"{m['flagged']:,}"] + [fmt_metric(m.get(key)) for key, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def describe_truth(evaluation: dict[str, Any]) -> str:
    """One line: where the truth came from and how many true errors there are."""
    truth = evaluation.get("truth") or {}
    if truth.get("kind") == "column":
        origin = f"true labels from column {truth.get('column')!r}"
    elif truth.get("kind") == "injected":
        origin = f"{truth.get('noise')} noise injected at rate {truth.get('rate')} (seed {truth.get('seed')})"
    else:
        origin = "given truth"
    rate = evaluation.get("true_noise_rate")
    est = evaluation.get("estimated_noise_rate")
    text = (f"{origin}: {evaluation['true_errors']:,} label errors in {evaluation['rows']:,} rows "
            f"({fmt_pct(rate)})")
    if est is not None:
        text += f"; estimated noise rate {fmt_pct(est)}"
    counts = evaluation.get("estimated_errors") or {}
    if counts:
        parts = []
        if "noise_rate" in counts:
            parts.append(f"{counts['noise_rate']:,} (noise rate x rows, by "
                         f"{counts.get('estimator', 'calibrated_confident_joint')})")
        if "confident_joint" in counts:
            parts.append(f"{counts['confident_joint']:,} (confident joint, disputed)")
        if "midpoint" in counts:
            low, high = counts["bounds"]
            parts.append(f"{counts['midpoint']:,} (midpoint of {low:,}-{high:,})")
        if "weighted" in counts:
            parts.append(f"{counts['weighted']:,} (A + min(weighted disputes, entropy trend))")
        text += f"; estimated errors: {', '.join(parts)} vs {evaluation['true_errors']:,} true"
    return text


def fmt_pct(value: Any) -> str:
    """``0.0901`` -> ``9.01%``; ``n/a`` when undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.2f}%"

