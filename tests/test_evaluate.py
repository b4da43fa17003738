"""Evaluating detectors: hand-computed metrics, edge cases, noise injection, truth columns."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from labelqa.data import load
from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.errors import LabelqaError
from labelqa.evaluate import (
    describe_truth,
    detection_metrics,
    evaluate,
    evaluation_json,
    inject_into,
    inject_noise,
    parse_noise_spec,
    read_truth_codes,
    render_markdown_table,
    write_evaluation,
)
from labelqa.scan import scan
from tests.conftest import TOY_LABELS, TOY_PROBS, noisy_dataset, write_parquet

# 8 rows, 3 true errors; lower score = more suspect
ERR = np.array([1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
SCORES = np.array([0.1, 0.5, 0.2, 0.9, 0.8, 0.3, 0.7, 0.6])
FLAGS = np.array([1, 0, 1, 0, 0, 1, 0, 0], dtype=bool)


def test_metrics_by_hand():
    m = detection_metrics(FLAGS, SCORES, ERR)
    assert (m["flagged"], m["true_positives"], m["false_positives"], m["false_negatives"]) == (3, 2, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # suspicion order: rows 0, 2, 5, 1, 7, 6, 4, 3 -> truth 1, 0, 1, 1, 0, 0, 0, 0
    assert m["auroc"] == pytest.approx(13 / 15)  # positives beat 5, 4 and 4 of the 5 negatives
    assert m["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m["precision_at_true_count"] == pytest.approx(2 / 3)  # top 3: rows 0, 2, 5


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(5)
    err = rng.random(500) < 0.2
    scores = rng.random(500) - 0.3 * err
    flags = scores < 0.25
    m = detection_metrics(flags, scores, err)
    assert m["precision"] == pytest.approx(precision_score(err, flags))
    assert m["recall"] == pytest.approx(recall_score(err, flags))
    assert m["f1"] == pytest.approx(f1_score(err, flags))
    assert m["auroc"] == pytest.approx(roc_auc_score(err, -scores))
    assert m["average_precision"] == pytest.approx(average_precision_score(err, -scores))


def test_precision_at_true_count_shares_ties():
    err = np.array([1, 0, 0, 0], dtype=bool)
    m = detection_metrics(np.zeros(4, bool), np.full(4, 0.5), err)
    assert m["precision_at_true_count"] == pytest.approx(0.25)  # one slot, 4 tied rows, 1 error
    m = detection_metrics(np.zeros(4, bool), np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 1, 0, 0], bool))
    assert m["precision_at_true_count"] == 0.0  # the most suspect row is clean
    order_a = detection_metrics(np.zeros(4, bool), np.array([0.5, 0.5, 0.1, 0.9]), np.array([1, 0, 1, 0], bool))
    order_b = detection_metrics(np.zeros(4, bool), np.array([0.5, 0.5, 0.1, 0.9]), np.array([0, 1, 1, 0], bool))
    assert order_a["precision_at_true_count"] == order_b["precision_at_true_count"] == pytest.approx(0.75)


def test_no_flagged_rows():
    m = detection_metrics(np.zeros(8, bool), SCORES, ERR)
    assert math.isnan(m["precision"])  # undefined, not 0
    assert m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["auroc"] == pytest.approx(13 / 15)  # the ranking is still scored


def test_no_true_errors():
    m = detection_metrics(FLAGS, SCORES, np.zeros(8, bool))
    assert m["precision"] == 0.0 and m["f1"] == 0.0
    for key in ("recall", "auroc", "average_precision", "precision_at_true_count"):
        assert math.isnan(m[key]), key
    nothing = detection_metrics(np.zeros(8, bool), SCORES, np.zeros(8, bool))
    assert math.isnan(nothing["f1"]) and math.isnan(nothing["precision"])


def test_all_rows_noisy():
    m = detection_metrics(FLAGS, SCORES, np.ones(8, bool))
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(3 / 8)
    assert math.isnan(m["auroc"])
    assert m["average_precision"] == 1.0 and m["precision_at_true_count"] == 1.0


def test_nan_scores_rank_least_suspect():
    m = detection_metrics(np.zeros(3, bool), np.array([np.nan, 0.2, 0.9]), np.array([0, 1, 0], bool))
    assert m["auroc"] == 1.0


# --------------------------------------------------------------------------- evaluate() on scans
def test_evaluate_toy_scan():
    result = scan(LabelData.from_arrays(TOY_LABELS, TOY_PROBS))  # flags row 2 only
    truth = TOY_LABELS.copy()
    truth[2] = 2
    ev = evaluate(result, truth, truth={"kind": "column", "column": "t"})
    assert ev["true_errors"] == 1 and ev["true_noise_rate"] == 0.1
    cl = ev["detectors"]["cl"]
    assert cl["precision"] == cl["recall"] == cl["f1"] == 1.0
    assert ev["ensemble"]["issue_rule"] == "primary"
    assert ev["truth"] == {"kind": "column", "column": "t"}
    # one row off the calibrated joint's diagonal, one confident dispute, no uncertain one
    assert ev["estimated_errors"] == {"noise_rate": 1, "estimator": "disputed_weighted_trend", "confident_joint": 1,
                                      "midpoint": 1, "bounds": [1, 1], "weighted": 1}
    assert cl["count_ratio"] == 1.0
    assert describe_truth(ev).endswith(
        "estimated errors: 1 (noise rate x rows, by disputed_weighted_trend), 1 (confident joint, disputed), "
        "1 (midpoint of 1-1), 1 (A + min(weighted disputes, entropy trend)) vs 1 true")


@dataclass
class Fixed(Detector):
    """A detector with fixed flags and scores (for ensemble tests)."""

    flags: tuple = ()
    scores: tuple = ()
    tag: str = "fixed"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.tag

    def detect(self, data: LabelData) -> DetectorResult:
        return DetectorResult(self.tag, np.asarray(self.scores, float), np.asarray(self.flags, bool),
                              np.asarray(data.labels).copy())


def test_evaluate_ensemble_of_two_detectors():
    data = LabelData.from_arrays(np.zeros(8, dtype=np.int64), np.tile([0.6, 0.4], (8, 1)))
    truth = np.where(ERR, 1, 0)
    a = Fixed(flags=tuple(FLAGS), scores=tuple(SCORES), tag="a")
    b = Fixed(flags=(1, 1, 0, 0, 0, 0, 0, 0), scores=tuple(SCORES[::-1]), tag="b")
    ev = evaluate(scan(data, detectors=[a, b], issue_rule="any"), truth)
    assert set(ev["detectors"]) == {"a", "b"}
    assert ev["ensemble"]["issue_rule"] == "any"
    assert ev["ensemble"]["flagged"] == 4 and ev["ensemble"]["true_positives"] == 3
    table = render_markdown_table(ev)
    assert table.splitlines()[0] == "| Detector | Flagged | Precision | Recall | F1 | AUROC | AP | P@true |"
    assert table.splitlines()[2] == "| a | 3 | 0.667 | 0.667 | 0.667 | 0.867 | 0.806 | 0.667 |"
    assert ev["detectors"]["b"]["count_ratio"] == 2 / 3
    assert table.splitlines()[-1].startswith("| ensemble (any) | 4 | 0.750 | 1.000 | 0.857 |")


def test_evaluate_rejects_bad_truth():
    result = scan(LabelData.from_arrays(TOY_LABELS, TOY_PROBS))
    with pytest.raises(LabelqaError, match="one code per row"):
        evaluate(result, TOY_LABELS[:5])
    with pytest.raises(LabelqaError, match="class codes"):
        evaluate(result, TOY_LABELS + 5)


def test_json_nan_is_null_and_written_atomically(tmp_path):
    result = scan(LabelData.from_arrays(TOY_LABELS, TOY_PROBS))
    ev = evaluate(result, TOY_LABELS)  # no true errors: recall undefined
    doc = json.loads(evaluation_json(ev))
    assert doc["detectors"]["cl"]["recall"] is None
    path = write_evaluation(ev, tmp_path / "rep")
    assert path == tmp_path / "rep" / "evaluation.json"
    assert json.loads(path.read_text()) == doc
    assert [p.name for p in (tmp_path / "rep").iterdir()] == ["evaluation.json"]  # no temporary left
    assert "n/a" in render_markdown_table(ev)


# --------------------------------------------------------------------------- noise injection
def _bound(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-9


@pytest.mark.parametrize("kind", ["uniform", "pairflip"])
@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_injected_rate_within_binomial_bounds(kind, rate):
    n, k = 20_000, 5
    labels = np.random.default_rng(0).integers(0, k, n)
    noisy, flipped = inject_noise(labels, k, kind, rate, seed=1)
    assert np.array_equal(flipped, noisy != labels)
    assert abs(flipped.mean() - rate) < _bound(rate, n)
    pairs = np.bincount(labels[flipped] * k + noisy[flipped], minlength=k * k).reshape(k, k)
    assert np.trace(pairs) == 0
    if kind == "pairflip":
        assert np.array_equal(noisy[flipped], (labels[flipped] + 1) % k)
    else:  # off-diagonal rate / (K - 1) for every pair
        counts = np.bincount(labels, minlength=k)
        target = rate / (k - 1)
        for j in range(k):
            for c in range(k):
                if j != c:
                    assert abs(pairs[j, c] / counts[j] - target) < _bound(target, int(counts[j]))


def test_injection_is_seeded():
    labels = np.arange(1000) % 7
    a = inject_noise(labels, 7, "uniform", 0.2, seed=3)[0]
    assert np.array_equal(a, inject_noise(labels, 7, "uniform", 0.2, seed=3)[0])
    assert not np.array_equal(a, inject_noise(labels, 7, "uniform", 0.2, seed=4)[0])


def test_injection_extremes_and_matrix():
    labels = np.arange(100) % 4
    assert not inject_noise(labels, 4, "uniform", 0.0)[1].any()
    assert inject_noise(labels, 4, "pairflip", 1.0)[1].all()
    assert not inject_noise(labels, 4, "matrix", noise_matrix=np.eye(4))[1].any()
    swap = np.array([[0, 1], [1, 0]], float)
    noisy, flipped = inject_noise(labels % 2, 2, "matrix", noise_matrix=swap)
    assert flipped.all() and np.array_equal(noisy, 1 - labels % 2)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(3, int), 1, "uniform", 0.1), "at least 2"),
        ((np.zeros(3, int), 3, "gaussian", 0.1), "unknown noise kind"),
        ((np.zeros(3, int), 3, "uniform", 1.5), r"\[0, 1\]"),
        ((np.array([0, 5]), 3, "uniform", 0.1), "class codes"),
        ((np.zeros(3, int), 2, "matrix", 0.0), "noise_matrix"),
    ],
)
def test_injection_errors(args, match):
    with pytest.raises(LabelqaError, match=match):
        inject_noise(*args)


def test_inject_into_label_data():
    given, _, probs, _ = noisy_dataset(n=500, k=3, noise=0.0)
    data = LabelData.from_arrays(given, probs)
    noisy, truth = inject_into(data, "uniform", 0.2, seed=0)
    assert np.array_equal(truth, data.labels)
    assert noisy.pred_probs is data.pred_probs and noisy.meta["injected_noise"]["kind"] == "uniform"
    assert 0.1 < (noisy.labels != truth).mean() < 0.3


@pytest.mark.parametrize(("spec", "expected"), [("uniform:0.2", ("uniform", 0.2)), ("pair-flip:0.1", ("pairflip", 0.1)),
                                                ("PairFlip:1", ("pairflip", 1.0))])
def test_parse_noise_spec(spec, expected):
    assert parse_noise_spec(spec) == expected


@pytest.mark.parametrize(("spec", "match"), [("uniform", "KIND:RATE"), ("gauss:0.1", "KIND:RATE"),
                                             ("uniform:x", "not a number"), ("uniform:2", r"\[0, 1\]")])
def test_parse_noise_spec_errors(spec, match):
    with pytest.raises(LabelqaError, match=match):
        parse_noise_spec(spec)


# --------------------------------------------------------------------------- truth column
def _file(tmp_path, truth, labels=("a", "b", "a", "c"), ids=None):
    probs = np.tile([0.5, 0.3, 0.2], (len(labels), 1))
    extra = {"truth": pa.array(truth)}
    if ids is not None:
        extra["key"] = pa.array(ids)
    return write_parquet(tmp_path / "d.parquet", list(labels), probs, classes=["a", "b", "c"], extra=extra)


def test_read_truth_codes(tmp_path):
    path = _file(tmp_path, ["a", "a", "c", "c"])
    data = load(path)
    assert read_truth_codes(path, "truth", data).tolist() == [0, 0, 2, 2]
    assert not hasattr(data, "truth") and data.labels.tolist() == [0, 1, 0, 2]


def test_unknown_truth_value_names_the_row(tmp_path):
    path = _file(tmp_path, ["a", "a", "zebra", "c"], ids=["r0", "r1", "r2", "r3"])
    data = load(path, id_col="key")
    with pytest.raises(LabelqaError, match=r"'zebra' in row 2 \(id 'r2'\)"):
        read_truth_codes(path, "truth", data)


def test_null_truth_and_label_column(tmp_path):
    path = _file(tmp_path, ["a", None, "c", "c"])
    data = load(path)
    with pytest.raises(LabelqaError, match="row 1"):
        read_truth_codes(path, "truth", data)
    with pytest.raises(LabelqaError, match="is the label column"):
        read_truth_codes(path, "label", data)
    with pytest.raises(LabelqaError, match="no column 'nope'"):
        read_truth_codes(path, "nope", data)


def test_integer_truth(tmp_path):
    probs = np.tile([0.5, 0.3, 0.2], (3, 1))
    path = write_parquet(tmp_path / "i.parquet", [0, 1, 2], probs, extra={"truth": pa.array([2, 1, 0])})
    assert read_truth_codes(path, "truth", load(path)).tolist() == [2, 1, 0]
