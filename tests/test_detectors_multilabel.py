"""Multi-label confident learning: known answers, invariants, agreement with
the multiclass detector on each one-vs-rest problem, and detection quality on
data with injected add/remove noise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.detectors.multilabel import (
    FILTER_METHODS,
    MultilabelConfidentLearning,
    aggregate_scores,
    calibrate_multilabel_confident_joint,
    compute_multilabel_confident_joint,
    ema_aggregate,
    find_multilabel_issues,
    get_multilabel_quality_scores,
    labels_to_indicator,
    multilabel_class_scores,
    multilabel_thresholds,
    softmin_aggregate,
)
from labelqa.errors import LabelqaError

TOY_PROBS = np.array(
    [[0.9, 0.1, 0.0, 0.4], [0.7, 0.8, 0.2, 0.3], [0.9, 0.8, 0.4, 0.2], [0.1, 0.1, 0.8, 0.3], [0.4, 0.5, 0.1, 0.1]]
)
TOY_LABELS = [[0], [0, 1], [0, 1], [2], [0, 2, 3]]
AGREEMENT_METHODS = FILTER_METHODS[:5]


def noisy_multilabel(n: int = 3000, k: int = 8, noise_rows: float = 0.1, seed: int = 0):
    """Generated multi-label data: true sets, sigmoid probabilities from the true
    sets (some hard rows), then ~noise_rows of the rows get one label removed
    or added (half and half). Returns (given, true, probs float32)."""
    rng = np.random.default_rng(seed)
    prior = rng.uniform(0.05, 0.35, size=k)
    true = rng.random((n, k)) < prior
    margin = rng.uniform(2.5, 4.5, size=k) * rng.gamma(4.0, 0.25, size=(n, 1))
    z = np.where(true, margin, -margin) + rng.normal(0.0, 1.2, size=(n, k))
    probs = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    given = true.copy()
    rows = rng.choice(n, size=int(round(noise_rows * n)), replace=False)
    for i in rows:
        present = np.flatnonzero(given[i])
        if present.size and rng.random() < 0.5:
            given[i, rng.choice(present)] = False
        else:
            given[i, rng.choice(np.flatnonzero(~given[i]))] = True
    return given, true, probs


def ml_data(y: np.ndarray, p: np.ndarray) -> LabelData:
    k = p.shape[1]
    return LabelData(
        labels=np.asarray(y, dtype=bool), pred_probs=p, classes=tuple(f"c{j}" for j in range(k)),
        ids=np.arange(p.shape[0]), task="multilabel",
    )


# --------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("filter_by", FILTER_METHODS)
def test_toy_flags_only_row_4(filter_by):
    res = find_multilabel_issues(TOY_LABELS, TOY_PROBS, filter_by=filter_by)
    assert np.flatnonzero(res.issues).tolist() == [4]
    # row 4 is given {0, 2, 3}; class 2 has p = 0.1: "remove 2"
    assert res.to_remove[4, 2]
    assert not res.to_add.any()


def test_toy_default_pairs():
    res = find_multilabel_issues(TOY_LABELS, TOY_PROBS)
    assert np.argwhere(res.to_remove).tolist() == [[4, 2]]


def test_toy_row_scores():
    scores = get_multilabel_quality_scores(TOY_LABELS, TOY_PROBS)
    np.testing.assert_array_equal(np.round(scores, 4), [0.6608, 0.704, 0.6408, 0.724, 0.1128])


def test_ema_and_softmin_known_values():
    q = np.array([[0.6, 0.3, 0.7, 0.1, 0.9]])
    assert round(float(ema_aggregate(q, 0.8)[0]), 5) == 0.15312
    assert round(float(softmin_aggregate(q, 0.1)[0]), 5) == 0.12812
    assert round(float(aggregate_scores(q, "softmin")[0]), 5) == 0.12812


def test_class_scores_and_aggregate_known_values():
    q = multilabel_class_scores(np.array([[0, 1, 0], [1, 0, 1]]), np.array([[0.1, 0.9, 0.7], [0.4, 0.1, 0.6]]))
    np.testing.assert_allclose(q, [[0.9, 0.9, 0.3], [0.4, 0.9, 0.6]], atol=1e-12)
    np.testing.assert_array_equal(np.round(ema_aggregate(q), 4), [0.42, 0.452])
    # the spec's example: q = (0.9, 0.9, 0.3) gives 0.42
    assert round(float(ema_aggregate([[0.9, 0.9, 0.3]])[0]), 10) == 0.42


def test_ema_matches_recursion():
    rng = np.random.default_rng(3)
    q = rng.random((50, 7))
    for alpha in (0.0, 0.3, 0.8, 1.0):
        expected = []
        for row in q:
            s = np.sort(row)[::-1]
            e = s[0]
            for v in s[1:]:
                e = alpha * v + (1 - alpha) * e
            expected.append(e)
        np.testing.assert_allclose(ema_aggregate(q, alpha), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- one-vs-rest = multiclass on each class
def _multiclass_per_class(y, p, filter_by, **kw):
    confident = pytest.importorskip("labelqa.detectors.confident")
    out = np.zeros(y.shape, dtype=bool)
    for k in range(y.shape[1]):
        binary = np.stack([p.dtype.type(1) - p[:, k], p[:, k]], axis=1)
        out[:, k] = confident.find_label_issues(y[:, k].astype(np.int64), binary, filter_by=filter_by, **kw)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("filter_by", FILTER_METHODS)
def test_same_pairs_as_multiclass_detector_on_each_class(seed, filter_by):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 80)), int(rng.integers(1, 6))
    y = rng.random((n, k)) < rng.uniform(0.1, 0.6)
    dtype = np.float32 if seed % 2 else np.float64
    if seed % 3 == 0:  # coarse grid: many ties
        p = (rng.integers(0, 9, (n, k)) / 8).astype(dtype)
    else:
        p = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.3, (n, k)), 0, 1).astype(dtype)
    kw = {"frac_noise": 0.5} if seed == 4 else {}
    if filter_by.startswith("low_"):
        # without per-class caps both definitions coincide (see the module doc)
        kw["min_examples_per_class"] = 0
    res = find_multilabel_issues(y, p, filter_by=filter_by, **kw)
    expected = _multiclass_per_class(y, p, filter_by, **kw)
    np.testing.assert_array_equal(res.to_remove | res.to_add, expected)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("filter_by", FILTER_METHODS)
def test_num_to_remove_matches_multiclass_detector(seed, filter_by):
    # row k of num_to_remove_per_class is the multiclass option of class k's binary problem
    confident = pytest.importorskip("labelqa.detectors.confident")
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(5, 60)), int(rng.integers(1, 5))
    y = rng.random((n, k)) < rng.uniform(0.1, 0.6)
    p = (rng.integers(0, 9, (n, k)) / 8) if seed % 2 else np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.3, (n, k)), 0, 1)
    ntr = rng.integers(0, 6, (k, 2))
    me = int(rng.integers(0, 3))
    res = find_multilabel_issues(y, p, filter_by=filter_by, num_to_remove_per_class=ntr, min_examples_per_class=me)
    for j in range(k):
        expected = confident.find_label_issues(
            y[:, j].astype(np.int64), np.stack([1 - p[:, j], p[:, j]], axis=1), filter_by=filter_by,
            num_to_remove_per_class=ntr[j], min_examples_per_class=me,
        )
        np.testing.assert_array_equal(res.to_remove[:, j] | res.to_add[:, j], expected, err_msg=f"class {j}")


def test_thresholds_joint_and_calibration():
    y = labels_to_indicator(TOY_LABELS, 4)
    thr = multilabel_thresholds(y, TOY_PROBS)
    # class 3: present only in row 4 (p = 0.1); absent rows 1 - p = .6 .7 .8 .7
    np.testing.assert_allclose(thr[3], [0.7, 0.1], atol=1e-9)
    joint = compute_multilabel_confident_joint(y, TOY_PROBS)
    assert joint.shape == (4, 2, 2)
    np.testing.assert_array_equal(joint.sum(axis=(1, 2)) <= 5, True)
    cal = calibrate_multilabel_confident_joint(joint, np.stack([5 - y.sum(0), y.sum(0)], axis=1))
    np.testing.assert_array_equal(cal.sum(axis=2), np.stack([5 - y.sum(0), y.sum(0)], axis=1))
    # an all-zero row with rows of that value: the class is taken as clean
    cal = calibrate_multilabel_confident_joint(np.zeros((1, 2, 2)), [[3, 2]])
    np.testing.assert_array_equal(cal, [[[3, 0], [0, 2]]])


# --------------------------------------------------------------------------- invariants (hypothesis)
@st.composite
def ml_problems(draw, grid: bool = True):
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.floats(0.0, 1.0))
    y = rng.random((n, k)) < density
    if grid:
        p = rng.integers(0, 17, (n, k)) / 16.0
    else:
        p = rng.random((n, k))
    if draw(st.booleans()):
        p = p.astype(np.float32)
    return y, p, rng


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ml_problems(), st.sampled_from(FILTER_METHODS), st.integers(0, 3))
def test_invariants(problem, filter_by, min_examples):
    y, p, _ = problem
    res = find_multilabel_issues(y, p, filter_by=filter_by, min_examples_per_class=min_examples)
    flags = res.to_remove | res.to_add
    # remove only present labels, add only missing ones; a row is flagged iff a pair is
    assert not (res.to_remove & ~y).any()
    assert not (res.to_add & y).any()
    np.testing.assert_array_equal(res.issues, flags.any(axis=1))
    # per class and given value, at least min_examples rows stay unflagged
    for b, grp in ((1, y), (0, ~y)):
        n_b = grp.sum(axis=0)
        assert ((flags & grp).sum(axis=0) <= np.maximum(n_b - min_examples, 0)).all(), b
    if filter_by in AGREEMENT_METHODS:
        # a flagged pair disagrees with the thresholded prediction, in the direction of the change
        assert (p[res.to_remove] < 0.5).all()
        assert (p[res.to_add] > 0.5).all()
    # scores in [0, 1]
    q = multilabel_class_scores(y, p)
    assert ((q >= 0) & (q <= 1)).all()
    for agg in ("ema", "softmin"):
        s = get_multilabel_quality_scores(y, p, aggregation=agg)
        assert s.shape == (y.shape[0],)
        assert ((s >= 0) & (s <= 1)).all()
        # an aggregate lies between the row's worst and best class
        assert (s >= q.min(axis=1) - 1e-6).all() and (s <= q.max(axis=1) + 1e-6).all()


@settings(max_examples=100, deadline=None)
@given(ml_problems())
def test_ema_alpha_one_is_min(problem):
    y, p, _ = problem
    q = multilabel_class_scores(y, p)
    np.testing.assert_array_equal(ema_aggregate(q, alpha=1.0), q.min(axis=1).astype(np.float64))


@settings(max_examples=100, deadline=None)
@given(st.booleans().flatmap(lambda grid: ml_problems(grid=grid)), st.sampled_from(FILTER_METHODS))
def test_row_order_invariance(problem, filter_by):
    # ties are shared in every selection, so even coarse-grid probabilities give the same pairs
    y, p, rng = problem
    perm = rng.permutation(y.shape[0])
    a = find_multilabel_issues(y, p, filter_by=filter_by)
    b = find_multilabel_issues(y[perm], p[perm], filter_by=filter_by)
    np.testing.assert_array_equal(a.to_remove[perm], b.to_remove)
    np.testing.assert_array_equal(a.to_add[perm], b.to_add)
    for agg in ("ema", "softmin"):
        np.testing.assert_array_equal(
            get_multilabel_quality_scores(y, p, aggregation=agg)[perm],
            get_multilabel_quality_scores(y[perm], p[perm], aggregation=agg),
        )


def test_row_chunks_give_the_same_result(monkeypatch):
    import labelqa.detectors.multilabel as ml

    y, _, p = noisy_multilabel(n=2000, k=7, seed=5)
    whole = {fb: find_multilabel_issues(y, p, filter_by=fb) for fb in FILTER_METHODS}
    monkeypatch.setattr(ml, "CHUNK_ELEMENTS", 1024 * 7)  # chunks of 1024 rows: 2 chunks
    for fb in FILTER_METHODS:
        part = find_multilabel_issues(y, p, filter_by=fb)
        np.testing.assert_array_equal(part.to_remove, whole[fb].to_remove)
        np.testing.assert_array_equal(part.to_add, whole[fb].to_add)


# --------------------------------------------------------------------------- options and inputs
def test_label_sets_and_indicator_are_the_same_input():
    y = labels_to_indicator(TOY_LABELS, 4)
    a = find_multilabel_issues(TOY_LABELS, TOY_PROBS)
    b = find_multilabel_issues(y.astype(np.int8), TOY_PROBS)
    np.testing.assert_array_equal(a.to_remove, b.to_remove)
    assert labels_to_indicator([[], [1]], 2).tolist() == [[False, False], [False, True]]


@pytest.mark.parametrize(
    ("labels", "probs"),
    [
        ([[0], [5]], np.full((2, 3), 0.5)),  # class code out of range
        (np.array([[0, 2, 1]]), np.full((1, 3), 0.5)),  # not 0/1
        (np.array([[0, 1]]), np.full((1, 3), 0.5)),  # wrong width
        ([[0]], np.array([[1.5, 0.2]])),  # not a probability
        ([[0]], np.array([[np.nan, 0.2]])),
        ([[0], [1]], np.full((3, 2), 0.5)),  # row count
    ],
)
def test_bad_inputs_raise(labels, probs):
    with pytest.raises(LabelqaError):
        find_multilabel_issues(labels, probs)


def test_bad_options_raise():
    with pytest.raises(LabelqaError):
        find_multilabel_issues(TOY_LABELS, TOY_PROBS, filter_by="nope")
    with pytest.raises(LabelqaError):
        find_multilabel_issues(TOY_LABELS, TOY_PROBS, frac_noise=1.5)
    with pytest.raises(LabelqaError):
        find_multilabel_issues(TOY_LABELS, TOY_PROBS, num_to_remove_per_class=[1, 1, 1, 1])
    with pytest.raises(LabelqaError):
        get_multilabel_quality_scores(TOY_LABELS, TOY_PROBS, aggregation="mean")
    with pytest.raises(LabelqaError):
        softmin_aggregate([[0.5]], temperature=0.0)


def test_frac_noise_and_num_to_remove():
    y, _, p = noisy_multilabel(n=1500, k=5, seed=2)
    full = find_multilabel_issues(y, p)
    half = find_multilabel_issues(y, p, frac_noise=0.5)
    none = find_multilabel_issues(y, p, frac_noise=0.0)
    assert not none.issues.any()
    n_full = (full.to_remove | full.to_add).sum()
    n_half = (half.to_remove | half.to_add).sum()
    assert 0.35 * n_full <= n_half <= 0.65 * n_full
    assert not (half.to_remove & ~full.to_remove).any() and not (half.to_add & ~full.to_add).any()
    ntr = np.array([[3, 2]] * 5)  # per class: 3 additions, 2 removals
    res = find_multilabel_issues(y, p, filter_by="prune_by_class", num_to_remove_per_class=ntr)
    assert (res.to_add.sum(axis=0) <= 3).all() and (res.to_remove.sum(axis=0) <= 2).all()
    assert res.to_add.sum() >= 10  # most of the requested pairs disagree with their label


def test_empty_inputs():
    res = find_multilabel_issues(np.zeros((0, 3), dtype=bool), np.zeros((0, 3)))
    assert res.issues.shape == (0,) and res.to_add.shape == (0, 3)
    assert get_multilabel_quality_scores(np.zeros((0, 3), dtype=bool), np.zeros((0, 3))).shape == (0,)


# --------------------------------------------------------------------------- detector
def test_detector_result():
    y = labels_to_indicator(TOY_LABELS, 4)
    res = MultilabelConfidentLearning().detect(ml_data(y, TOY_PROBS))
    assert res.name == "mlcl"
    np.testing.assert_array_equal(np.round(res.scores, 4), [0.6608, 0.704, 0.6408, 0.724, 0.1128])
    assert res.issues.tolist() == [False] * 4 + [True]
    expected = y.copy()
    expected[4, 2] = False
    np.testing.assert_array_equal(res.suggested, expected)
    np.testing.assert_array_equal(res.extra["labels_to_remove"], ~expected & y)
    assert not res.extra["labels_to_add"].any()
    np.testing.assert_allclose(res.extra["change_confidence"][4, 2], 0.9)
    np.testing.assert_allclose(res.extra["class_scores"], multilabel_class_scores(y, TOY_PROBS))
    # row 4's suggested set {0, 3}: backed by p = .4, .1 (in) and 1 - p = .5, .9 (out) -> min .1
    np.testing.assert_allclose(res.suggested_confidence[4], 0.1)
    s = res.summary
    assert s["rows_with_issue"] == 1 and s["share_rows_with_issue"] == pytest.approx(0.2)
    assert s["labels_to_remove"] == 1 and s["labels_to_add"] == 0
    c2 = s["per_class"][2]
    assert c2["class"] == "c2" and c2["count"] == 2 and c2["should_remove"] == 1
    assert c2["should_remove_rate"] == pytest.approx(0.5) and c2["should_add"] == 0
    assert s["filter_by"] == "prune_by_noise_rate" and s["aggregation"] == "ema"
    assert res.params["ema_alpha"] == 0.8 and s["ema_alpha"] == 0.8
    import json

    json.dumps(s)  # JSON-serialisable


def test_detector_softmin_and_errors():
    y = labels_to_indicator(TOY_LABELS, 4)
    res = MultilabelConfidentLearning(aggregation="softmin").detect(ml_data(y, TOY_PROBS))
    np.testing.assert_allclose(res.scores, softmin_aggregate(multilabel_class_scores(y, TOY_PROBS)))
    multiclass = LabelData(labels=np.zeros(5, dtype=np.int64), pred_probs=TOY_PROBS / TOY_PROBS.sum(1, keepdims=True),
                           classes=(0, 1, 2, 3), ids=np.arange(5))
    with pytest.raises(LabelqaError):
        MultilabelConfidentLearning().detect(multiclass)
    with pytest.raises(LabelqaError):
        MultilabelConfidentLearning(aggregation="max").detect(ml_data(y, TOY_PROBS))
    with pytest.raises(LabelqaError):
        MultilabelConfidentLearning(ema_alpha=2.0).detect(ml_data(y, TOY_PROBS))


# --------------------------------------------------------------------------- quality on injected noise
def _auroc(score: np.ndarray, noisy: np.ndarray) -> float:
    """AUROC of a low-is-suspect score for the noisy rows."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(noisy, -score))


def test_quality_on_injected_noise():
    given_sets, true_sets, p = noisy_multilabel(n=4000, k=8, seed=11)
    noisy = (given_sets != true_sets).any(axis=1)
    # Measured on this data: AUROC 0.981 (EMA) / 0.986 (softmin); PBNR
    # precision 0.78, recall 0.85. Bounds leave a margin.
    ema = get_multilabel_quality_scores(given_sets, p)
    softmin = get_multilabel_quality_scores(given_sets, p, aggregation="softmin")
    assert _auroc(ema, noisy) > 0.95
    assert _auroc(softmin, noisy) > 0.95
    res = find_multilabel_issues(given_sets, p)
    precision = (res.issues & noisy).sum() / res.issues.sum()
    recall = (res.issues & noisy).sum() / noisy.sum()
    assert precision > 0.6 and recall > 0.75
    # the suggested direction is mostly right: removals of labels the truth lacks, additions it has
    assert (~true_sets[res.to_remove]).mean() > 0.5
    assert true_sets[res.to_add].mean() > 0.4


def test_multiclass_only_filter_method_is_refused():
    y = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    with pytest.raises(LabelqaError, match="for multiclass data only"):
        MultilabelConfidentLearning(filter_by="low_margin_midpoint").detect(ml_data(y, TOY_PROBS[:2]))


# --------------------------------------------------------------------------- chunked and threaded == plain
def _plain_reference(y, p, det):
    """The detector's outputs computed the plain way: one chunk, every pair (dense flags), on this thread."""
    from labelqa.detectors import multilabel as ml
    from labelqa.detectors.base import Block, DatasetInfo, run_on_block

    info = DatasetInfo(y.shape[0], tuple(range(p.shape[1])), "multilabel", np.dtype(p.dtype))
    block = Block(y, p)
    rule = run_on_block(det.plan(info), block)
    pairs = ml._Pairs(y, p, rule.est.thresholds)
    flags = rule.flag.dense_flags(pairs)
    q = np.where(y, p, p.dtype.type(1) - p)
    k = p.shape[1]
    ordered = np.sort(q, axis=1).astype(np.float64)  # the EMA as first written: column by column
    acc = ordered[:, k - 1].copy()
    for t in range(k - 2, -1, -1):
        acc *= 1.0 - det.ema_alpha
        acc += det.ema_alpha * ordered[:, t]
    scores = np.clip(acc, 0.0, 1.0) if det.aggregation == "ema" else softmin_aggregate(q, det.softmin_temperature)
    backing = np.where(flags, p.dtype.type(1) - q, q)
    return {"scores": scores, "issues": flags.any(axis=1), "suggested": y ^ flags,
            "suggested_confidence": backing.min(axis=1).astype(np.float64), "labels_to_remove": flags & y,
            "labels_to_add": flags & ~y, "class_scores": q, "change_confidence": p.dtype.type(1) - q}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(problem=ml_problems(), filter_by=st.sampled_from(FILTER_METHODS), min_examples=st.integers(0, 3),
       aggregation=st.sampled_from(["ema", "softmin"]), rows=st.integers(1, 7))
def test_chunked_threaded_rows_equal_the_plain_reference(problem, filter_by, min_examples, aggregation, rows,
                                                         monkeypatch):
    """Tiny chunks on four threads (partials merged, flags looked up at disagreeing pairs only) give the plain
    one-chunk, every-pair results bit for bit: flags, scores, suggestions, tallies, lazy extras."""
    from labelqa.detectors import multilabel as ml

    y, p, _ = problem
    det = MultilabelConfidentLearning(filter_by=filter_by, min_examples_per_class=min_examples,
                                      aggregation=aggregation)
    want = _plain_reference(y, p, det)
    monkeypatch.setattr(ml, "CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(ml, "MIN_CHUNK_ROWS", rows)
    monkeypatch.setattr(ml, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setenv("LABELQA_THREADS", "4")
    res = det.detect(ml_data(y, p))
    got = {"scores": res.scores, "issues": res.issues, "suggested": res.suggested,
           "suggested_confidence": res.suggested_confidence, **{key: res.extra[key] for key in res.extra}}
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and np.array_equal(got[key], value), key
    total = res.summary
    assert total["labels_to_remove"] == int(want["labels_to_remove"].sum())
    assert total["labels_to_add"] == int(want["labels_to_add"].sum())
    assert total["rows_with_issue"] == int(want["issues"].sum())
    issues = find_multilabel_issues(y, p, filter_by=filter_by, min_examples_per_class=min_examples)
    assert np.array_equal(issues.issues, want["issues"]) and np.array_equal(issues.to_add, want["labels_to_add"])
    assert np.array_equal(multilabel_thresholds(y, p), ml.MultilabelSums(p.shape[1]).update(y, want["class_scores"])
                          .thresholds())


def test_class_scores_are_computed_only_when_read(monkeypatch):
    """The report never reads class_scores/change_confidence: they are made on first access, then kept."""
    from labelqa.detectors import multilabel as ml

    y, _, p = noisy_multilabel(n=500, k=5, seed=3)
    calls = []
    real = ml._chunked_class_scores
    monkeypatch.setattr(ml, "_chunked_class_scores", lambda *a: calls.append(1) or real(*a))
    res = MultilabelConfidentLearning().detect(ml_data(y, p))
    assert calls == [] and set(res.extra) == {"labels_to_remove", "labels_to_add", "class_scores",
                                              "change_confidence"}
    assert np.array_equal(res.extra["change_confidence"], 1 - multilabel_class_scores(y, p))
    assert res.extra["class_scores"] is res.extra["class_scores"] and calls == [1]
