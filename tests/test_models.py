"""labelqa.models: combining several models' probabilities and measuring where they disagree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labelqa.data import LabelData
from labelqa.errors import LabelqaError
from labelqa.models import (
    COMBINE_METHODS,
    DEFAULT_COMBINE,
    combine_pred_probs,
    disagreement_columns,
    disagreement_summary,
    drop_suspects,
    fit_log_linear_weights,
    fit_model_weights,
    in_sample_check,
    log_linear_pool,
    model_disagreement,
    split_models,
)

A = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [1.0, 0.0, 0.0]])
B = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4], [0.0, 0.0, 1.0]])
LABELS = np.array([0, 1, 2, 0])


@st.composite
def model_sets(draw, multilabel: bool = False):
    n = draw(st.integers(1, 12))
    k = draw(st.integers(2, 6))
    m = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    mats = []
    for _ in range(m):
        raw = draw(arrays(np.float64, (n, k), elements=st.floats(0.0, 1.0)))
        if multilabel:
            mats.append(raw.astype(dtype))
            continue
        raw[np.arange(n), draw(st.integers(0, k - 1))] += 1e-3  # no all-zero row
        # sprinkle exact zeros and ones (the edge cases of logs)
        mats.append((raw / raw.sum(axis=1, keepdims=True)).astype(dtype))
    labels = draw(arrays(np.int64, n, elements=st.integers(0, k - 1)))
    return mats, labels


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_sets(), st.sampled_from(COMBINE_METHODS))
def test_combination_is_a_probability_matrix(data, method):
    mats, labels = data
    out = combine_pred_probs(mats, method, labels=labels)
    assert out.shape == mats[0].shape
    assert out.dtype == (np.float32 if all(m.dtype == np.float32 for m in mats) else np.float64)
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1 + 1e-6
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    # what the loader checks: the combination passes the same validation
    LabelData.from_arrays(labels, out, classes=list(range(out.shape[1])))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_sets(multilabel=True), st.sampled_from([m for m in COMBINE_METHODS if m != "log_linear"]))
def test_multilabel_combination_stays_in_unit_interval(data, method):
    mats, _ = data
    y = np.zeros(mats[0].shape, dtype=bool)
    y[:, 0] = True
    out = combine_pred_probs(mats, method, labels=y, task="multilabel")
    assert out.shape == mats[0].shape and np.all(np.isfinite(out))
    assert out.min() >= 0 and out.max() <= 1


@settings(max_examples=100, deadline=None)
@given(model_sets(), st.randoms(use_true_random=False))
def test_mean_and_geometric_do_not_depend_on_model_order(data, rnd):
    mats, _ = data
    shuffled = list(mats)
    rnd.shuffle(shuffled)
    for method in ("mean", "geometric"):
        np.testing.assert_allclose(combine_pred_probs(mats, method), combine_pred_probs(shuffled, method), atol=1e-6)


def test_mean_is_the_average_and_identical_models_are_a_fixed_point():
    np.testing.assert_allclose(combine_pred_probs([A, B], "mean"), (A + B) / 2)
    np.testing.assert_allclose(combine_pred_probs([A, B], labels=LABELS),  # the default
                               combine_pred_probs([A, B], "log_linear", labels=LABELS))
    for method in COMBINE_METHODS:
        if method != "log_linear":
            np.testing.assert_allclose(combine_pred_probs([A, A, A], method, labels=LABELS), A, atol=1e-9)
    # log_linear recalibrates: identical models give A to the power of the fitted total weight, renormalised
    w = fit_log_linear_weights([A, A, A], LABELS)
    powered = np.maximum(A, 1e-12) ** w.sum()
    np.testing.assert_allclose(combine_pred_probs([A, A, A], "log_linear", labels=LABELS),
                               powered / powered.sum(axis=1, keepdims=True), atol=1e-9)


def test_geometric_by_hand():
    out = combine_pred_probs([A, B], "geometric")
    g = np.sqrt(np.maximum(A, 1e-12) * np.maximum(B, 1e-12))
    np.testing.assert_allclose(out, g / g.sum(axis=1, keepdims=True), rtol=1e-9)
    # a class one model rules out stays (nearly) ruled out; the mean keeps half of it
    p, q = np.array([[0.5, 0.5, 0.0]]), np.array([[0.0, 0.5, 0.5]])
    geo = combine_pred_probs([p, q], "geometric")
    assert geo[0, 1] > 1 - 1e-5 and geo[0, 0] < 1e-5
    np.testing.assert_allclose(combine_pred_probs([p, q], "mean"), [[0.25, 0.5, 0.25]])


def test_weights():
    np.testing.assert_allclose(combine_pred_probs([A, B], "mean", weights=[3, 1]), 0.75 * A + 0.25 * B)
    np.testing.assert_allclose(combine_pred_probs([A, B], "mean", weights=[1, 0]), A)
    for bad in ([1], [-1, 2], [0, 0], [np.nan, 1]):
        with pytest.raises(LabelqaError, match="weight"):
            combine_pred_probs([A, B], "mean", weights=bad)


def test_loss_weighted_prefers_the_model_that_fits_the_given_labels():
    rng = np.random.default_rng(0)
    n, k = 400, 3
    y = rng.integers(0, k, n)
    good = np.full((n, k), 0.1)
    guess = np.where(rng.random(n) < 0.1, (y + 1) % k, y)  # an out-of-sample model is wrong now and then
    good[np.arange(n), guess] = 0.8
    noise = rng.dirichlet(np.ones(k), n)
    w = fit_model_weights([noise, good], y)
    assert w[1] > 0.9 and w.sum() == pytest.approx(1)
    out = combine_pred_probs([noise, good], "loss_weighted", labels=y)
    np.testing.assert_allclose(out, w[0] * noise + w[1] * good)
    with pytest.raises(LabelqaError, match="needs the given labels"):
        combine_pred_probs([noise, good], "loss_weighted")
    with pytest.raises(LabelqaError, match="fits the model weights"):
        combine_pred_probs([noise, good], "loss_weighted", [1, 1], labels=y)


def test_loss_weighted_multilabel():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    good = np.where(y, 0.9, 0.1)
    bad = np.where(y, 0.3, 0.6)
    w = fit_model_weights([bad, good], y, task="multilabel")
    assert w[1] > w[0]


def test_k_mismatch_names_both_models():
    with pytest.raises(LabelqaError, match=r"swin has 2 probabilities per row but resnet has 3") as exc:
        combine_pred_probs([A, np.full((4, 2), 0.5)], names=["resnet", "swin"])
    assert "same class order" in str(exc.value)
    with pytest.raises(LabelqaError, match=r"model 1 has 3 rows but model 0 has 4"):
        combine_pred_probs([A, A[:3]])
    with pytest.raises(LabelqaError, match="unknown model combination 'median'"):
        combine_pred_probs([A, B], "median")
    with pytest.raises(LabelqaError, match="non-empty list"):
        combine_pred_probs([])


def test_disagreement_by_hand():
    fig = model_disagreement([A, B])
    # argmax: A -> 0, 1, 2, 0; B -> 0, 0, 2, 2
    np.testing.assert_array_equal(fig["models_disagree"], [False, True, False, True])
    # total variation 0.5 * sum |A - B|: (0.1 + 0.1 + 0) / 2, (0.4 + 0.4 + 0) / 2, 0, (1 + 0 + 1) / 2
    np.testing.assert_allclose(fig["model_spread"], [0.1, 0.4, 0.0, 1.0])
    # three models: the largest pairwise distance, and any argmax difference
    C = A.copy()
    C[0] = [0.2, 0.7, 0.1]
    fig3 = model_disagreement([A, A, C])
    np.testing.assert_array_equal(fig3["models_disagree"], [True, False, False, False])
    np.testing.assert_allclose(fig3["model_spread"], [0.5, 0, 0, 0], atol=1e-12)


def test_multilabel_disagreement_by_hand():
    p = np.array([[0.9, 0.2], [0.6, 0.4]])
    q = np.array([[0.8, 0.6], [0.55, 0.1]])
    fig = model_disagreement([p, q], task="multilabel")
    np.testing.assert_array_equal(fig["models_disagree"], [True, False])
    np.testing.assert_allclose(fig["model_spread"], [0.4, 0.3])


def test_disagreement_columns_and_summary():
    single = LabelData.from_arrays(LABELS, A)
    assert disagreement_columns(single) == {} and disagreement_summary(single) is None
    data = LabelData.from_arrays(LABELS, [A, B], model_names=["resnet", "swin"])
    cols = disagreement_columns(data)
    assert set(cols) == {"models_disagree", "model_spread", "models_agree_with_label"}
    np.testing.assert_array_equal(cols["models_disagree"], [False, True, False, True])
    # labels 0, 1, 2, 0; argmax A 0, 1, 2, 0 and B 0, 0, 2, 2
    np.testing.assert_array_equal(cols["models_agree_with_label"], [2, 1, 2, 1])
    assert all(len(v) == 4 for v in cols.values())
    summ = disagreement_summary(data)
    assert summ["n_models"] == 2 and summ["models"] == ["resnet", "swin"] and summ["combine_models"] == DEFAULT_COMBINE
    assert summ["rows_disagree"] == 2 and summ["rows_disagree_rate"] == 0.5
    assert summ["agreement_with_given"] == [1.0, 0.5]
    assert summ["mean_model_spread"] == pytest.approx(1.5 / 4)


def test_split_models_tells_a_list_of_matrices_from_a_matrix_of_lists():
    assert split_models(A.tolist()) is None
    assert split_models([A[0], A[1]]) is None  # rows as 1-D arrays: one matrix
    assert split_models(A) is None
    assert len(split_models([A, B])) == 2
    assert len(split_models([A.tolist(), B.tolist()])) == 2
    assert split_models([]) is None


def test_memory_one_output_matrix(monkeypatch):
    """The combination allocates one N x K output; the rest works in row blocks."""
    import labelqa.models as models

    monkeypatch.setattr(models, "_BLOCK_ELEMENTS", 6)  # 2 rows of K=3 per block
    for method in COMBINE_METHODS:
        small = combine_pred_probs([A, B], method, labels=LABELS)
        monkeypatch.setattr(models, "_BLOCK_ELEMENTS", 1 << 18)
        np.testing.assert_allclose(small, combine_pred_probs([A, B], method, labels=LABELS))
        monkeypatch.setattr(models, "_BLOCK_ELEMENTS", 6)
    fig = model_disagreement([A, B])
    np.testing.assert_allclose(fig["model_spread"], [0.1, 0.4, 0.0, 1.0])


# --------------------------------------------------------------------------- in-sample guard
def _honest_and_leaky(seed=0, n=3000, k=4, noise=0.1, leak=0.5):
    """Two honest models (Dirichlet around the true class, labels 10% flipped) and a copy of the first that
    puts ``leak`` of its mass on the given label (scored partly on rows it trained on)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    given = np.where(rng.random(n) < noise, (true + rng.integers(1, k, n)) % k, true)

    def model():
        alpha = np.full((n, k), 0.7)
        alpha[np.arange(n), true] += 4.0
        p = rng.gamma(alpha)
        return p / p.sum(axis=1, keepdims=True)

    a, b = model(), model()
    leaky = (1 - leak) * a + leak * np.eye(k)[given]
    return given, a, b, leaky


def test_in_sample_check_flags_a_model_that_backs_its_training_labels():
    given, a, b, leaky = _honest_and_leaky()
    k = a.shape[1]
    honest = in_sample_check([a, b], given, names=["a", "b"])
    assert honest["suspect"] == [False, False]
    # out-of-sample: each doubts (p < 1/K) most labels the other doubts, far more often than labels at large
    assert min(honest["doubts_where_others_doubt"]) > 0.5
    assert min(np.subtract(honest["doubts_where_others_doubt"], honest["doubt_rate"])) > 0.3
    check = in_sample_check([leaky, b], given, names=["leaky", "b"])
    assert check["suspect"] == [True, False]
    assert check["doubts_where_others_doubt"][0] == 0.0 and check["doubt_rate"][0] == 0.0
    doubted = int(np.count_nonzero(b[np.arange(len(given)), given] < 1 / k))
    assert check["rows_others_doubt"] == [doubted, 0] and check["doubts_where_others_doubt"][1] is None
    # by hand: a model doubting as often as b would doubt none of b's doubted labels with chance (1 - u_b)^R
    assert check["chance_of_no_doubt"][0] == pytest.approx((1 - doubted / len(given)) ** doubted)
    assert check["mean_log_loss"][0] < check["mean_log_loss"][1]
    # a model right on every label where a poor one is wrong is no suspect, nor is the poor one
    poor = np.full_like(a, 0.25) + 1e-3 * b
    assert in_sample_check([a, poor / poor.sum(axis=1, keepdims=True)], given)["suspect"] == [False, False]


def test_in_sample_check_by_hand():
    """Three rows, K = 2 (doubt: p < 1/2). b doubts rows 0 and 1; a doubts neither; chance (1 - 2/3)^2 = 1/9."""
    given = np.array([0, 0, 1])
    a = np.array([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    b = np.array([[0.3, 0.7], [0.1, 0.9], [0.4, 0.6]])
    check = in_sample_check([a, b], given)
    assert check["rows_others_doubt"] == [2, 0] and check["doubts_where_others_doubt"] == [0.0, None]
    assert check["doubt_rate"] == [0.0, pytest.approx(2 / 3)]
    assert check["chance_of_no_doubt"][0] == pytest.approx(1 / 9)
    assert check["suspect"] == [False, False]  # 1/9 could be chance: too little evidence


@pytest.mark.parametrize("leak", [0.3, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_in_sample_check_catches_a_partial_leak_and_spares_honest_models(seed, leak):
    """Injected noise with known truth: a model with ``leak`` of its mass on the given label is the only suspect,
    with one or two honest models beside it; honest models alone are never suspects."""
    given, a, b, leaky = _honest_and_leaky(seed=seed, leak=leak, noise=0.2)
    assert in_sample_check([a, b], given)["suspect"] == [False, False]
    assert in_sample_check([leaky, b], given)["suspect"] == [True, False]
    assert in_sample_check([b, leaky, a], given)["suspect"] == [False, True, False]
    # the weights: the leaky model gets none, the others are fitted without it
    w = fit_log_linear_weights([leaky, b, a], given)
    assert w[0] == 0.0 and w[1:].min() > 0
    np.testing.assert_allclose(w[1:], fit_log_linear_weights([b, a], given))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.4), st.integers(2, 6))
def test_honest_models_are_never_suspects(seed, noise, k):
    """Property: models that never saw the labels (Dirichlet around the true class, labels flipped at any rate,
    including none) are no suspects, however they err."""
    rng = np.random.default_rng(seed)
    n = 1500
    true = rng.integers(0, k, n)
    given = np.where(rng.random(n) < noise, (true + rng.integers(1, k, n)) % k, true)
    mats = []
    for strength in (4.0, 1.5, 0.3):  # a good, a fair and a nearly useless model
        alpha = np.full((n, k), 0.7)
        alpha[np.arange(n), true] += strength
        p = rng.gamma(alpha)
        mats.append(p / p.sum(axis=1, keepdims=True))
    assert not any(in_sample_check(mats, given)["suspect"])
    assert not any(in_sample_check(mats[:2], given)["suspect"])


def test_a_leaky_model_cannot_take_the_weight():
    given, a, b, leaky = _honest_and_leaky()
    w = fit_model_weights([leaky, b], given)
    assert w.tolist() == [0.0, 1.0]  # unguarded: it fits the given labels best and gets ~1.0
    w3 = fit_model_weights([leaky, b, a], given)
    assert w3[0] == 0.0 and w3.sum() == pytest.approx(1) and w3[1:].min() > 0
    assert fit_model_weights([a, b], given).min() > 0  # two honest models: untouched by the guard


def test_drop_suspects():
    np.testing.assert_allclose(drop_suspects(np.array([0.9, 0.06, 0.04]), np.array([True, False, False])),
                               [0.0, 0.6, 0.4])
    np.testing.assert_allclose(drop_suspects(np.array([1.0, 0.0]), np.array([True, False])), [0.0, 1.0])
    np.testing.assert_allclose(drop_suspects(np.array([0.7, 0.3]), np.array([True, True])), [0.7, 0.3])
    np.testing.assert_allclose(drop_suspects(np.array([2.0, 0.5]), np.array([True, False]), normalize=False),
                               [0.0, 0.5])


def test_summary_and_cli_warn_about_an_in_sample_model(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelqa.cli.app import main

    given, a, b, leaky = _honest_and_leaky(n=1500)
    data = LabelData.from_arrays(given, [leaky, b])
    summary = disagreement_summary(data)
    assert summary["in_sample_suspects"] == [summary["models"][0]]
    assert summary["warning"].startswith("probabilities look in-sample") and summary["models"][0] in summary["warning"]
    assert "in_sample_suspects" in disagreement_summary(LabelData.from_arrays(given, [a, b]))
    assert "warning" not in disagreement_summary(LabelData.from_arrays(given, [a, b]))
    table = pa.table({"label": given, "leaky": [list(r) for r in leaky], "honest": [list(r) for r in b]})
    pq.write_table(table, tmp_path / "d.parquet")
    code = main(["scan", str(tmp_path / "d.parquet"), "--pred-probs-col", "leaky", "--pred-probs-col", "honest",
                 "--out", str(tmp_path / "out"), "--format", "json", "--exit-zero"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("labelqa: warning:")]
    assert len(lines) == 1 and "leaky" in lines[0] and "in-sample" in lines[0]


# --------------------------------------------------------------------------- log_linear
def test_log_linear_pool_by_hand():
    p = np.array([[0.5, 0.25, 0.25]])
    q = np.array([[0.25, 0.25, 0.5]])
    out = log_linear_pool([p, q], [2.0, 1.0])  # 0.5^2 * .25, .25^2 * .25, .25^2 * .5 = 1/16, 1/64, 1/32
    np.testing.assert_allclose(out, [[4 / 7, 1 / 7, 2 / 7]])
    np.testing.assert_allclose(log_linear_pool([p, q], [1.0, 0.0]), p)
    with pytest.raises(LabelqaError, match="weights"):
        log_linear_pool([p, q], [1.0, -1.0])


def test_log_linear_recovers_the_sharpening_the_labels_need():
    """Labels drawn from p; the models are p flattened to the power 1/2 and pure noise: w ~ (2, 0)."""
    rng = np.random.default_rng(5)
    n, k = 20000, 4
    p = rng.dirichlet(np.full(k, 0.6), n)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    soft = np.sqrt(p)
    soft /= soft.sum(axis=1, keepdims=True)
    noise = rng.dirichlet(np.ones(k), n)
    w = fit_log_linear_weights([soft, noise], y)
    assert w[0] == pytest.approx(2.0, abs=0.15) and w[1] < 0.1
    out = combine_pred_probs([soft, noise], "log_linear", labels=y)
    np.testing.assert_allclose(out, log_linear_pool([soft, noise], w))
    np.testing.assert_allclose(out, p, atol=0.05)  # the pool undoes the flattening
    with pytest.raises(LabelqaError, match="needs the given labels"):
        combine_pred_probs([soft, noise], "log_linear")


def test_log_linear_holds_an_in_sample_model_back():
    given, a, b, leaky = _honest_and_leaky()
    w = fit_log_linear_weights([leaky, b], given)
    assert w[0] == 0.0 and w[1] > 0
    data = LabelData.from_arrays(given, [a, b], combine_models="log_linear")
    assert data.meta["combine_models"] == "log_linear" and len(data.meta["model_weights"]) == 2
    np.testing.assert_allclose(data.pred_probs, log_linear_pool([a, b], data.meta["model_weights"]), rtol=1e-6)


def test_log_linear_multilabel_recovers_the_sharpening_the_labels_need():
    """Multi-label: each cell's label drawn from q; the models are q's logit halved and pure noise: w ~ (2, 0),
    and the pool is sigmoid(sum_m w_m logit p_m)."""
    rng = np.random.default_rng(6)
    n, k = 8000, 3
    logit_q = rng.normal(0.0, 2.0, (n, k))
    q = 1 / (1 + np.exp(-logit_q))
    y = rng.random((n, k)) < q
    soft = 1 / (1 + np.exp(-logit_q / 2))
    noise = rng.uniform(0.05, 0.95, (n, k))
    w = fit_log_linear_weights([soft, noise], y, task="multilabel")
    assert w[0] == pytest.approx(2.0, abs=0.15) and w[1] < 0.1
    out = combine_pred_probs([soft, noise], "log_linear", labels=y, task="multilabel")
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(w[0] * logit(soft) + w[1] * logit(noise)))), rtol=1e-6)
    np.testing.assert_allclose(out, q, atol=0.05)
    data = LabelData.from_arrays(y, [soft, noise], task="multilabel")  # the default holds for multi-label data
    assert data.meta["combine_models"] == "log_linear" and "model_num_issues" not in data.meta
    np.testing.assert_allclose(data.pred_probs, out, rtol=1e-6)


def test_log_linear_keeps_a_model_that_rules_wrong_labels_out():
    """Labels 15% flipped. A k-nearest-neighbours-like model gives exact zeros, among them to most wrong labels;
    the plain likelihood of the given labels would charge it log(1e-12) for each and drop it. Through the noise
    channel a doubted label costs at most -log(ε / (K - 1)): it keeps the larger weight."""
    rng = np.random.default_rng(8)
    n, k = 3000, 3
    true = rng.integers(0, k, n)
    given = np.where(rng.random(n) < 0.15, (true + rng.integers(1, k, n)) % k, true)
    votes = np.eye(k)[true] * 4 + np.eye(k)[rng.integers(0, k, n)]  # 5 neighbours, 4 of them right
    knn = votes / 5
    alpha = np.full((n, k), 1.0)
    alpha[np.arange(n), true] += 1.5
    soft = rng.gamma(alpha)
    soft /= soft.sum(axis=1, keepdims=True)
    assert (knn[np.arange(n), given] == 0).mean() > 0.05  # most of the 15% wrong labels
    w = fit_log_linear_weights([knn, soft], given)
    assert w[0] > w[1] and w[0] > 0.5
