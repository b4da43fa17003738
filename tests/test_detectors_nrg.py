"""Neural Relation Graph detector: known answers, engines, modes and validation.

The expected values come from the formulas of ALGORITHMS.md section 4,
computed by hand (the toy) or by the plain O(N^2) Python reference below,
never from the code under test.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from labelqa.data.model import LabelData
from labelqa.detectors.nrg import NeuralRelationGraph, prepare_embeddings
from labelqa.errors import LabelqaError

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "examples" / "digits" / "digits_noisy.parquet"


def make_data(labels, probs, emb) -> LabelData:
    data = LabelData.from_arrays(np.asarray(labels), np.asarray(probs, dtype=np.float64), renormalize=True)
    return dataclasses.replace(data, embeddings=emb)


def raw(res) -> np.ndarray:
    """s' itself: the scores are s' / max|s'|."""
    return res.scores * res.summary["max_abs_s_refined"]


# --------------------------------------------------------------------------- reference
def reference(emb, probs, labels, *, t=4.0, cutoff=0.03, lam=0.05, feature=False, knn=None):
    """The formulas, literally, with Python loops over pairs (float64).

    ``knn``: optional list of neighbour lists (row i's sums run over knn[i]).
    Returns (s, S, s', outlier_score).
    """
    n = len(labels)
    f = [np.asarray(e, dtype=np.float64) / math.sqrt(float(np.dot(e, e))) for e in np.asarray(emb, dtype=np.float64)]
    p = np.asarray(probs, dtype=np.float64)

    def kern(i, j):
        k = max(float(np.dot(f[i], f[j])), 0.0)
        if not feature:
            k *= float(np.dot(p[i], p[j]))
        return k

    def w(i, j):
        k = kern(i, j)
        if k <= cutoff:
            return 0.0
        return (1.0 if labels[i] == labels[j] else -1.0) * k**t

    cols = [list(range(n)) if knn is None else knn[i] for i in range(n)]
    s = [sum(w(i, j) for j in cols[i]) for i in range(n)]
    m = max(abs(v) for v in s)
    S = {i for i in range(n) if s[i] / m < -lam}
    s2 = [s[i] - 2 * sum(w(i, j) for j in cols[i] if j in S) for i in range(n)]
    ksum = [sum(kern(i, j) for j in cols[i] if kern(i, j) > cutoff) for i in range(n)]
    out = [1.0 / (v + 1e-6) for v in ksum]
    return np.array(s), S, np.array(s2), np.array(out)


# --------------------------------------------------------------------------- the 6-row toy
# Unit-direction embeddings (row 5 is given un-normalised, twice row 4's
# direction, to exercise the L2 normalisation):
#   f0=(1,0) f1=(.8,.6) f2=(.6,.8) f3=(0,1) f4=(-.6,.8) f5=(-1.2,1.6)->(-.6,.8)
# Clipped cosines max(<fi,fj>,0) (pairs not listed are 0, e.g. f0.f4=-.6):
#   01 .8   02 .6   12 .96   13 .6   23 .8   24 .28   25 .28
#   34 .8   35 .8   45 1     self 1
TOY_EMB = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [-0.6, 0.8], [-1.2, 1.6]])
# Probabilities (two classes) and their inner products <pi,pj>:
#   p0=(.9,.1) p1=(.8,.2) p2=(1,0) p3=(.3,.7) p4=(.1,.9) p5=(.2,.8)
#   00 .82  11 .68  22 1  33 .58  44 .82  55 .68
#   01 .74  02 .9  12 .8  13 .38  23 .3  24 .1  25 .2  34 .66  35 .62  45 .74
TOY_P = np.array([[0.9, 0.1], [0.8, 0.2], [1.0, 0.0], [0.3, 0.7], [0.1, 0.9], [0.2, 0.8]])
# Row 5 sits on row 4 (class 1) but is labelled 0.
TOY_Y = np.array([0, 0, 0, 1, 1, 0])
# Kernel k = cosine x prob product, by hand:
#   self: .82 .68 1 .58 .82 .68
#   01 .8*.74=.592  02 .6*.9=.54   12 .96*.8=.768  13 .6*.38=.228
#   23 .8*.3=.24    24 .28*.1=.028 (<= .03: cut)   25 .28*.2=.056
#   34 .8*.66=.528  35 .8*.62=.496 45 1*.74=.74
TOY_K = {
    (0, 0): 0.82, (1, 1): 0.68, (2, 2): 1.0, (3, 3): 0.58, (4, 4): 0.82, (5, 5): 0.68,
    (0, 1): 0.592, (0, 2): 0.54, (1, 2): 0.768, (1, 3): 0.228, (2, 3): 0.24,
    (2, 4): 0.028, (2, 5): 0.056, (3, 4): 0.528, (3, 5): 0.496, (4, 5): 0.74,
}  # fmt: skip
TOY_COS = {
    (0, 1): 0.8, (0, 2): 0.6, (1, 2): 0.96, (1, 3): 0.6, (2, 3): 0.8, (2, 4): 0.28,
    (2, 5): 0.28, (3, 4): 0.8, (3, 5): 0.8, (4, 5): 1.0,
    **{(i, i): 1.0 for i in range(6)},
}  # fmt: skip


def toy_expected(table, t, cutoff=0.03, lam=0.05):
    """Apply the formulas to a hand-made kernel table (explicit loops)."""
    def k(i, j):
        return table.get((min(i, j), max(i, j)), 0.0)

    def w(i, j):
        kij = k(i, j)
        return 0.0 if kij <= cutoff else (1 if TOY_Y[i] == TOY_Y[j] else -1) * kij**t

    s = [sum(w(i, j) for j in range(6)) for i in range(6)]
    m = max(abs(v) for v in s)
    S = {i for i in range(6) if s[i] / m < -lam}
    s2 = [s[i] - 2 * sum(w(i, j) for j in S) for i in range(6)]
    out = [1 / (sum(k(i, j) for j in range(6) if k(i, j) > cutoff) + 1e-6) for i in range(6)]
    return s, S, s2, out


def test_toy_t1_by_hand():
    # t = 1, prob kernel. s(i) = sum of signed kept kernel values:
    #   s0 = .82 + .592 + .54                    = 1.952
    #   s1 = .68 + .592 + .768 - .228            = 1.812
    #   s2 = 1 + .54 + .768 - .24 + .056         = 2.124  (edge 24 cut)
    #   s3 = .58 - .228 - .24 + .528 - .496      = .144
    #   s4 = .82 + .528 - .74                    = .608   (edge 24 cut)
    #   s5 = .68 + .056 - .496 - .74             = -.5
    # max|s| = 2.124; s5/2.124 = -.235 < -.05, others > 0: S = {5}.
    # s'(i) = s(i) - 2 w_i5:
    #   s'0 = 1.952, s'1 = 1.812, s'2 = 2.124 - .112 = 2.012,
    #   s'3 = .144 + .992 = 1.136, s'4 = .608 + 1.48 = 2.088, s'5 = -.5 - 1.36 = -1.86
    # Outlier: 1 / (sum of kept k incl. self):
    #   1.952, 2.268, 2.604 (not 2.632: .028 cut), 2.072, 2.088 (not 2.116), 1.972
    s_exp = [1.952, 1.812, 2.124, 0.144, 0.608, -0.5]
    s2_exp = [1.952, 1.812, 2.012, 1.136, 2.088, -1.86]
    ksum_exp = [1.952, 2.268, 2.604, 2.072, 2.088, 1.972]
    s, S, s2, out = toy_expected(TOY_K, 1.0)
    np.testing.assert_allclose(s, s_exp, atol=1e-12)
    assert S == {5}
    np.testing.assert_allclose(s2, s2_exp, atol=1e-12)
    np.testing.assert_allclose(out, [1 / (v + 1e-6) for v in ksum_exp], rtol=1e-12)

    for mode in ("exact", "knn"):
        det = NeuralRelationGraph(nrg_power=1.0, nrg_mode=mode, nrg_index="brute")
        res = det.detect(make_data(TOY_Y, TOY_P, TOY_EMB))
        np.testing.assert_allclose(raw(res), s2_exp, atol=1e-5)
        np.testing.assert_allclose(res.scores, np.array(s2_exp) / 2.088, atol=1e-5)
        np.testing.assert_allclose(res.extra["outlier_score"], [1 / (v + 1e-6) for v in ksum_exp], rtol=1e-5)
        assert res.summary["n_suspect"] == 1
        assert res.issues.tolist() == [False] * 5 + [True]
        # Row 5: neighbour weight by class (self excluded): class 0 .056, class 1 .496 + .74.
        assert res.suggested.tolist() == [0, 0, 0, 1, 1, 1]
        assert res.suggested_confidence[5] == pytest.approx(0.8)
        assert res.suggested_confidence[0] == pytest.approx(0.9)


def test_toy_t4_prob():
    # t = 4: e.g. s5 = .68^4 + .056^4 - .496^4 - .74^4
    #   (.68^2 = .4624, ^2 = .21381376; .496^2 = .246016, ^2 = .06052387; .74^2 = .5476, ^2 = .29986576)
    #               = .21381376 + .00000983 - .06052387 - .29986576 = -.14656604
    s, S, s2, out = toy_expected(TOY_K, 4.0)
    assert s[5] == pytest.approx(0.21381376 + 0.00000983 - 0.06052387 - 0.29986576, abs=1e-7)
    assert S == {5}
    res = NeuralRelationGraph().detect(make_data(TOY_Y, TOY_P, TOY_EMB))
    np.testing.assert_allclose(raw(res), s2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.extra["outlier_score"], out, rtol=1e-5)  # outlier uses t = 1
    assert res.summary["n_suspect"] == 1
    assert np.flatnonzero(res.issues).tolist() == [5]
    # (At t = 4 the cut edge 2-4 would only move s'2 by .028^4 = 6e-7, close to
    # float32 rounding; the cutoff is checked at t = 1 in the tests around.)
    assert np.argmin(res.scores) == 5


def test_toy_cutoff_changes_result():
    # With cutoff 0 the edge 2-4 (k = .028) is kept: outlier score of row 2 uses 2.632.
    res = NeuralRelationGraph(nrg_power=1.0, nrg_edge_cutoff=0.0).detect(make_data(TOY_Y, TOY_P, TOY_EMB))
    assert res.extra["outlier_score"][2] == pytest.approx(1 / (2.632 + 1e-6), rel=1e-5)
    # and s2 = 2.124 - .028 = 2.096 before refinement; s'2 = 2.096 - .112 = 1.984
    assert raw(res)[2] == pytest.approx(1.984, abs=1e-5)


def test_toy_feature_kernel_t1():
    # Feature kernel, t = 1: k = clipped cosine, all listed pairs > .03.
    #   s0 = 1 + .8 + .6 = 2.4;  s1 = 1 + .8 + .96 - .6 = 2.16
    #   s2 = 1 + .6 + .96 - .8 - .28 + .28 = 1.76;  s3 = 1 - .6 - .8 + .8 - .8 = -.4
    #   s4 = 1 - .28 + .8 - 1 = .52;  s5 = 1 + .28 - .8 - 1 = -.52
    # max|s| = 2.4: S = {3, 5} (-.167, -.217 < -.05).
    s_exp = [2.4, 2.16, 1.76, -0.4, 0.52, -0.52]
    s, S, s2, out = toy_expected(TOY_COS, 1.0)
    np.testing.assert_allclose(s, s_exp, atol=1e-12)
    assert S == {3, 5}
    # s'3 = -.4 - 2(w33 + w35) = -.4 - 2(1 - .8) = -.8; s'5 = -.52 - 2(w53 + w55) = -.52 - .4 = -.92
    assert s2[3] == pytest.approx(-0.8) and s2[5] == pytest.approx(-0.92)
    res = NeuralRelationGraph(nrg_kernel="feature", nrg_power=1.0).detect(make_data(TOY_Y, TOY_P, TOY_EMB))
    np.testing.assert_allclose(raw(res), s2, atol=1e-5)
    np.testing.assert_allclose(res.extra["outlier_score"], out, rtol=1e-5)
    assert res.summary["n_suspect"] == 2


# --------------------------------------------------------------------------- random data
def clustered(n, d=32, k=4, noise=0.1, seed=0, spread=3.0, scale=1.0):
    """Class clusters with sub-clusters; probabilities from a noisy softmax."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    subs = centers[:, None, :] + 0.6 * rng.normal(size=(k, 3, d))
    true = rng.integers(0, k, n)
    X = subs[true, rng.integers(0, 3, n)] + spread * rng.normal(size=(n, d)) / np.sqrt(d)
    logits = scale * X @ centers.T / np.sqrt(d) + rng.normal(size=(n, k))
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    flip = rng.random(n) < noise
    y = true.copy()
    y[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    return X.astype(np.float32), P, y, flip


@pytest.mark.parametrize("kernel", ["prob", "feature"])
@pytest.mark.parametrize("power", [4.0, 1.5])
def test_blocked_exact_equals_reference(kernel, power):
    X, P, y, _ = clustered(97, seed=3)
    s, S, s2, out = reference(X, P, y, t=power, feature=kernel == "feature")
    data = make_data(y, P, X)
    for block in (1, 7, 32, 97, 500, None):  # 7 and 32 do not divide 97
        res = NeuralRelationGraph(nrg_kernel=kernel, nrg_power=power, nrg_mode="exact", block_size=block).detect(data)
        assert res.summary["n_suspect"] == len(S)
        np.testing.assert_allclose(raw(res), s2, rtol=1e-5, atol=1e-5 * np.abs(s2).max())
        np.testing.assert_allclose(res.extra["outlier_score"], out, rtol=1e-5)
        np.testing.assert_array_equal(res.issues, s2 < 0)


def test_knn_with_explicit_neighbours_equals_reference():
    X, P, y, _ = clustered(80, seed=4)
    k = 6
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    g = Xn @ Xn.T
    np.fill_diagonal(g, -np.inf)
    nbrs = [[i] + list(np.argsort(-g[i], kind="stable")[:k]) for i in range(len(y))]
    s, S, s2, out = reference(X, P, y, knn=nbrs)
    res = NeuralRelationGraph(nrg_mode="knn", nrg_index="brute", nrg_k=k).detect(make_data(y, P, X))
    assert res.summary["mode"] == "knn" and res.summary["k_neighbors"] == k
    np.testing.assert_allclose(raw(res), s2, rtol=1e-5, atol=1e-5 * np.abs(s2).max())
    np.testing.assert_allclose(res.extra["outlier_score"], out, rtol=1e-5)


@pytest.mark.parametrize("index", ["brute", "sklearn", "faiss"])
def test_knn_all_neighbours_equals_exact(index):
    if index == "faiss":
        pytest.importorskip("faiss")
    X, P, y, _ = clustered(300, seed=5)
    data = make_data(y, P, X)
    ex = NeuralRelationGraph(nrg_mode="exact").detect(data)
    kn = NeuralRelationGraph(nrg_mode="knn", nrg_index=index, nrg_k=299).detect(data)
    np.testing.assert_allclose(raw(kn), raw(ex), rtol=1e-5, atol=1e-5 * np.abs(raw(ex)).max())
    np.testing.assert_allclose(kn.extra["outlier_score"], ex.extra["outlier_score"], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [{"nrg_mode": "exact"}, {"nrg_mode": "exact", "nrg_kernel": "feature"},
     {"nrg_mode": "knn", "nrg_index": "brute", "nrg_k": 15}, {"nrg_mode": "knn", "nrg_index": "sklearn", "nrg_k": 15}],
)  # fmt: skip
def test_row_order_invariance(kwargs):
    X, P, y, _ = clustered(2000, seed=6)
    perm = np.random.default_rng(1).permutation(len(y))
    a = NeuralRelationGraph(**kwargs).detect(make_data(y, P, X))
    b = NeuralRelationGraph(**kwargs).detect(make_data(y[perm], P[perm], X[perm]))
    np.testing.assert_allclose(b.scores, a.scores[perm], atol=1e-5)
    np.testing.assert_allclose(b.extra["outlier_score"], a.extra["outlier_score"][perm], rtol=1e-5)
    np.testing.assert_array_equal(b.issues, a.issues[perm])
    np.testing.assert_array_equal(b.suggested, a.suggested[perm])
    np.testing.assert_array_equal(b.extra["is_outlier"], a.extra["is_outlier"][perm])


def test_torch_backend_equals_numpy():
    pytest.importorskip("torch")
    X, P, y, _ = clustered(700, seed=7)
    data = make_data(y, P, X)
    for kernel in ("prob", "feature"):
        a = NeuralRelationGraph(nrg_kernel=kernel, nrg_backend="numpy", block_size=128).detect(data)
        b = NeuralRelationGraph(nrg_kernel=kernel, nrg_backend="torch", block_size=128).detect(data)
        assert b.summary["backend"] == "torch"
        np.testing.assert_allclose(raw(b), raw(a), rtol=1e-5, atol=1e-5 * np.abs(raw(a)).max())
        np.testing.assert_allclose(b.extra["outlier_score"], a.extra["outlier_score"], rtol=1e-5)
        np.testing.assert_array_equal(b.issues, a.issues)


def test_exact_vs_knn_agreement_medium():
    # 5000 rows, 10 classes, 10% flipped; a weak classifier (accuracy ~0.73,
    # self-confidence AUROC ~0.96) and noisy clusters. Measured here, kNN
    # (k neighbours, sklearn index) vs exact: Spearman of s' 0.919 (k=10),
    # 0.981 (k=30), 0.996 (k=100, the default); AUROC of the score 0.880 /
    # 0.978 / 0.996 (exact 0.998); AUROC of the kNN flags 0.82 / 0.94 / 0.98.
    # Bounds below fail for k=10 and keep margin for k=100.
    X, P, y, flip = clustered(5000, d=64, k=10, seed=8, spread=8.0, scale=0.3)
    data = make_data(y, P, X)
    ex = NeuralRelationGraph(nrg_mode="exact").detect(data)
    kn = NeuralRelationGraph(nrg_mode="knn", nrg_index="sklearn").detect(data)
    assert kn.summary["index"] == "sklearn" and kn.summary["k_neighbors"] == 100
    rho = spearmanr(ex.scores, kn.scores)[0]
    assert rho > 0.98, rho
    assert roc_auc_score(flip, -ex.scores) > 0.98
    assert roc_auc_score(flip, -kn.scores) > 0.97
    # the kNN-mode flags recover the flips
    assert roc_auc_score(flip, kn.issues) > 0.93


def test_outlier_score_finds_injected_outliers():
    X, P, y, _ = clustered(1000, d=32, seed=9)
    rng = np.random.default_rng(0)
    ood = rng.normal(size=(20, 32)).astype(np.float32) * 5  # random directions, far from the clusters
    Xo = np.vstack([X, ood])
    Po = np.vstack([P, rng.dirichlet(np.ones(P.shape[1]), 20)])
    yo = np.concatenate([y, rng.integers(0, P.shape[1], 20)])
    is_ood = np.arange(len(yo)) >= len(y)
    res = NeuralRelationGraph(outlier_rate=0.02).detect(make_data(yo, Po, Xo))
    assert roc_auc_score(is_ood, res.extra["outlier_score"]) > 0.95
    # Rule: strictly above the 98th percentile -> about 2% of rows.
    flagged = res.extra["is_outlier"]
    assert abs(int(flagged.sum()) - 0.02 * len(yo)) <= 1
    assert res.summary["n_outliers"] == int(flagged.sum())
    assert res.extra["outlier_score"][flagged].min() > res.summary["outlier_threshold"]
    assert NeuralRelationGraph(outlier_rate=0.0).detect(make_data(yo, Po, Xo)).extra["is_outlier"].sum() == 0


def test_result_shape_and_summary():
    X, P, y, _ = clustered(300, seed=10)
    res = NeuralRelationGraph().detect(make_data(y, P, X))
    assert res.name == "nrg"
    assert res.scores.shape == (300,) and res.scores.min() >= -1 and res.scores.max() <= 1
    assert set(res.extra) == {"outlier_score", "is_outlier"}
    assert res.extra["is_outlier"].dtype == bool
    for key in ("mode", "n_suspect", "n_issues", "n_outliers", "outlier_threshold", "power", "edge_cutoff"):
        assert key in res.summary
    assert res.summary["mode"] == "exact"
    json.dumps(res.summary)
    assert res.params["nrg_power"] == 4.0 and res.params["nrg_edge_cutoff"] == 0.03
    assert res.params["nrg_lambda"] == 0.05
    # Unflagged rows suggest their given label.
    assert (res.suggested[~res.issues] == y[~res.issues]).all()


def test_auto_mode_threshold():
    X, P, y, _ = clustered(200, seed=11)
    data = make_data(y, P, X)
    assert NeuralRelationGraph(exact_max_n=200).detect(data).summary["mode"] == "exact"
    res = NeuralRelationGraph(exact_max_n=199, nrg_index="brute", nrg_k=10).detect(data)
    assert res.summary["mode"] == "knn"


# --------------------------------------------------------------------------- validation
def test_missing_embeddings():
    data = LabelData.from_arrays(TOY_Y, TOY_P)
    with pytest.raises(LabelqaError, match="embeddings") as exc:
        NeuralRelationGraph().detect(data)
    assert "--embeddings" in str(exc.value)


def test_nan_and_inf_rows_named():
    emb = TOY_EMB.copy()
    emb[2, 1] = np.nan
    emb[4, 0] = np.inf
    with pytest.raises(LabelqaError, match=r"NaN or infinite .* rows 2, 4"):
        NeuralRelationGraph().detect(make_data(TOY_Y, TOY_P, emb))


def test_zero_rows_named():
    emb = TOY_EMB.copy()
    emb[[1, 3]] = 0.0
    with pytest.raises(LabelqaError, match=r"2 all-zero row\(s\).*rows 1, 3"):
        NeuralRelationGraph().detect(make_data(TOY_Y, TOY_P, emb))


def test_row_count_mismatch():
    with pytest.raises(LabelqaError, match="5 rows but the labels have 6"):
        NeuralRelationGraph().detect(make_data(TOY_Y, TOY_P, TOY_EMB[:5]))


def test_ragged_and_bad_shapes():
    ragged = [[1.0, 0.0], [0.5, 0.5, 0.1]] + [[1.0, 0.0]] * 4
    with pytest.raises(LabelqaError, match="ragged"):
        prepare_embeddings(np.array(ragged, dtype=object), 6)
    with pytest.raises(LabelqaError, match="ragged"):
        prepare_embeddings(ragged, 6)
    with pytest.raises(LabelqaError, match="2-D"):
        prepare_embeddings(np.ones(6), 6)
    with pytest.raises(LabelqaError, match="0 dimensions"):
        prepare_embeddings(np.ones((6, 0)), 6)
    with pytest.raises(LabelqaError, match="numbers"):
        prepare_embeddings(np.array([["a", "b"]] * 6), 6)


def test_huge_values_normalise_without_overflow():
    emb = np.array([[1e200, 1e200], [3.0, 4.0]])
    out = prepare_embeddings(emb, 2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[2**-0.5, 2**-0.5], [0.6, 0.8]], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{"nrg_kernel": "cos"}, {"nrg_mode": "fast"}, {"nrg_backend": "cuda"}, {"nrg_index": "annoy"}, {"nrg_power": 0},
     {"nrg_edge_cutoff": 1.0}, {"nrg_lambda": -1}, {"outlier_rate": 1.0}, {"nrg_k": 0}, {"block_size": 0}],
)  # fmt: skip
def test_bad_params(kwargs):
    (key,) = kwargs  # the message names the option as the user spells it
    with pytest.raises(LabelqaError, match=f"{key}="):
        NeuralRelationGraph(**kwargs).detect(make_data(TOY_Y, TOY_P, TOY_EMB))


def test_torch_missing_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(LabelqaError, match="torch"):
        NeuralRelationGraph(nrg_backend="torch").detect(make_data(TOY_Y, TOY_P, TOY_EMB))
    # auto falls back to numpy
    res = NeuralRelationGraph(nrg_backend="auto").detect(make_data(TOY_Y, TOY_P, TOY_EMB))
    assert res.summary["backend"] == "numpy"


def test_faiss_missing_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(LabelqaError, match="faiss"):
        NeuralRelationGraph(nrg_mode="knn", nrg_index="faiss", nrg_k=2).detect(make_data(TOY_Y, TOY_P, TOY_EMB))
    res = NeuralRelationGraph(nrg_mode="knn", nrg_k=2).detect(make_data(TOY_Y, TOY_P, TOY_EMB))
    assert res.summary["index"] == "sklearn"


# --------------------------------------------------------------------------- realistic
def load_digits():
    table = pq.read_table(DIGITS)
    classes = json.loads(table.schema.metadata[b"labelqa.classes"])
    pos = {c: i for i, c in enumerate(classes)}
    y = np.array([pos[v] for v in table.column("label").to_pylist()])
    true = np.array([pos[v] for v in table.column("true_label").to_pylist()])
    P = np.array(table.column("pred_probs").to_pylist(), dtype=np.float64)
    X = np.array(table.column("features").to_pylist(), dtype=np.float32)
    return make_data(y, P, X), y, true


def test_digits_example_auroc():
    # Measured (exact, defaults): NRG AUROC 0.991, confident-learning
    # self-confidence p[label] 0.996; flags (s' < 0): 304 rows, precision .59,
    # recall 1.0 of the 180 corrupted labels. Bounds keep margin.
    data, y, true = load_digits()
    noisy = y != true
    res = NeuralRelationGraph().detect(data)
    auc = roc_auc_score(noisy, -res.scores)
    auc_cl = roc_auc_score(noisy, -data.pred_probs[np.arange(len(y)), y])
    assert auc > 0.97, (auc, auc_cl)
    assert auc_cl > 0.98
    flagged = res.issues
    recall = noisy[flagged].sum() / noisy.sum()
    precision = noisy[flagged].mean()
    assert recall > 0.95 and precision > 0.45, (precision, recall)
    # kNN mode (default k = 100) on the same data stays close
    kn = NeuralRelationGraph(nrg_mode="knn", nrg_index="sklearn").detect(data)
    assert roc_auc_score(noisy, -kn.scores) > 0.97
    assert spearmanr(res.scores, kn.scores)[0] > 0.97


# --------------------------------------------------------------------------- options vocabulary
def test_parameters_are_spelled_like_the_cli_flags():
    from labelqa.cli.scan_cmd import scan

    flags = {n for n in inspect.signature(scan).parameters if n.startswith("nrg_")} | {"outlier_rate"}
    fields = {f.name for f in dataclasses.fields(NeuralRelationGraph)}
    assert {"nrg_mode", "nrg_k", "nrg_lambda"} <= flags  # the signature was read
    assert flags <= fields, flags - fields


def test_says_why_it_needs_all_rows():
    assert "graph" in NeuralRelationGraph.needs_all_rows
