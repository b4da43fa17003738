"""The NRG kNN index (labelqa.detectors.nrg_backends): top-k selection, recall of
the inverted-file index against exact neighbours, row-order independence, and
the scaled (no-copy) embedding path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelqa.detectors import nrg_backends as be
from labelqa.detectors.nrg import NeuralRelationGraph, embedding_scales, prepare_embeddings
from labelqa.errors import LabelqaError


def local_clusters(n, d=48, n_clusters=None, seed=0, spread=0.35):
    """Many small clusters (~25 rows each): neighbourhoods with real local structure."""
    rng = np.random.default_rng(seed)
    n_clusters = n_clusters or max(1, n // 25)
    centers = rng.normal(size=(n_clusters, d))
    X = centers[rng.integers(0, n_clusters, n)] + spread * rng.normal(size=(n, d))
    return X.astype(np.float32)


def normalised(X):
    return (X / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- top-k
@settings(max_examples=60, deadline=None)
@given(
    sims=hnp.arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 60)),
                    elements=st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0]) | st.floats(-1, 1, width=32)),
    kk=st.integers(1, 70),
)  # fmt: skip
def test_topk_rows_selects_the_largest_values(sims, kk):
    # Ties are frequent (few distinct values): any choice among equal values is
    # right, so compare values with a full sort, and check the columns are
    # distinct and point at those values.
    cols, vals = be.topk_rows(sims, kk)
    want = min(kk, sims.shape[1])
    assert cols.shape == vals.shape == (sims.shape[0], want)
    np.testing.assert_array_equal(vals, -np.sort(-sims, axis=1)[:, :want])
    np.testing.assert_array_equal(np.take_along_axis(sims, cols, axis=1), vals)
    assert all(len(set(row)) == want for row in cols.tolist())


def test_topk_rows_matches_argpartition_on_distinct_values():
    rng = np.random.default_rng(3)
    sims = rng.standard_normal((50, 300)).astype(np.float32)
    cols, vals = be.topk_rows(sims, 11)
    ref = np.argpartition(-sims, 10, axis=1)[:, :11]
    assert [set(r) for r in cols.tolist()] == [set(r) for r in ref.tolist()]
    assert (np.diff(vals, axis=1) <= 0).all()  # best first


# --------------------------------------------------------------------------- recall
def recall(found, exact):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found[:, 1:].tolist(), exact[:, 1:].tolist())])


@pytest.mark.parametrize("n_probe", [16, 4])
def test_ivf_recall_against_exact_neighbours(n_probe):
    # 6000 rows in ~240 clusters of 25: 187 cells, so the index is really used.
    # Measured recall@20: 0.995 (n_probe 16), 0.989 (n_probe 4); the bounds keep margin.
    X = normalised(local_clusters(6000, seed=1))
    exact, esims, _ = be.knn_search(X, 20, index="brute")
    found, fsims, used = be.knn_search(X, 20, index="sklearn", n_probe=n_probe)
    assert used == "sklearn" and be.ivf_cells(len(X)) > n_probe
    assert recall(found, exact) > (0.98 if n_probe == 16 else 0.95)
    # similarities are exact inner products of the rows returned
    np.testing.assert_allclose(fsims[:, 1:], np.einsum("ij,ikj->ik", X, X[found[:, 1:]]), atol=1e-5)
    assert (found[:, 0] == np.arange(len(X))).all()


def test_ivf_search_is_deterministic_and_row_order_independent():
    X = normalised(local_clusters(5000, seed=2))
    perm = np.random.default_rng(4).permutation(len(X))
    a, sa, _ = be.knn_search(X, 10, index="sklearn", n_probe=4)
    a2, _, _ = be.knn_search(X, 10, index="sklearn", n_probe=4)
    b, sb, _ = be.knn_search(X[perm], 10, index="sklearn", n_probe=4)
    np.testing.assert_array_equal(a, a2)
    # row i of the permuted problem is row perm[i] of the original; map neighbours back
    np.testing.assert_array_equal(np.sort(perm[b], axis=1), np.sort(a[perm], axis=1))
    np.testing.assert_allclose(np.sort(sb, axis=1), np.sort(sa[perm], axis=1), atol=1e-6)


@pytest.mark.parametrize("index", ["brute", "sklearn"])
def test_row_scale_equals_normalised_input(index):
    # The detector passes raw float32 rows plus 1 / norm instead of a normalised copy.
    X = local_clusters(4000, seed=5) * np.float32(7.0)
    F, scale = embedding_scales(X, len(X))
    assert F is X and scale is not None
    a, sa, _ = be.knn_search(X, 12, index=index, n_probe=4, row_scale=scale)
    b, sb, _ = be.knn_search(prepare_embeddings(X, len(X)), 12, index=index, n_probe=4)
    assert np.mean(np.sort(a, axis=1) == np.sort(b, axis=1)) > 0.99  # float32 rounding may swap near-ties
    np.testing.assert_allclose(sa, sb, atol=2e-5)


def test_knn_search_does_not_write_to_its_input():
    X = local_clusters(3000, seed=6)
    before = X.copy()
    F, scale = embedding_scales(X, len(X))
    for index in ("brute", "sklearn"):
        be.knn_search(F, 5, index=index, n_probe=4, row_scale=scale)
    np.testing.assert_array_equal(X, before)


# --------------------------------------------------------------------------- embedding_scales
def test_embedding_scales_copies_only_when_needed():
    X = local_clusters(50, d=8, seed=7)
    F, scale = embedding_scales(X, 50)
    assert F is X
    np.testing.assert_allclose(F * scale[:, None], prepare_embeddings(X, 50), rtol=1e-6, atol=1e-7)
    X64 = X.astype(np.float64)
    F, scale = embedding_scales(X64, 50)  # not float32: the normalised copy
    assert scale is None and F.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(X64, X.astype(np.float64))  # input untouched
    huge = X.copy()
    huge[3] *= np.float32(1e30)  # products of such rows would overflow float32
    F, scale = embedding_scales(huge, 50)
    assert scale is None and np.isfinite(F).all()


def test_embedding_scales_checks_like_prepare_embeddings():
    X = local_clusters(20, d=4, seed=8)
    X[[2, 5]] = 0.0
    with pytest.raises(LabelqaError, match="2 all-zero row"):
        embedding_scales(X, 20)
    X[2, 1] = np.nan
    with pytest.raises(LabelqaError, match="NaN or infinite values in 1 row"):
        embedding_scales(X, 20)


def test_detector_leaves_float32_embeddings_untouched():
    import dataclasses  # noqa: PLC0415

    from labelqa.data.model import LabelData  # noqa: PLC0415

    rng = np.random.default_rng(9)
    X = local_clusters(1500, seed=9)
    y = rng.integers(0, 3, len(X))
    P = rng.dirichlet(np.ones(3), len(X))
    data = dataclasses.replace(LabelData.from_arrays(y, P, renormalize=True), embeddings=X)
    before = X.copy()
    NeuralRelationGraph(nrg_mode="knn", nrg_index="sklearn", nrg_k=10, n_probe=3).detect(data)
    np.testing.assert_array_equal(X, before)


# --------------------------------------------------------------------------- wide top-k, cells, kernel
@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    m=st.integers(160, 700),
    kk=st.integers(1, 19),
    distinct=st.sampled_from([3, 50, 10_000]),
)  # fmt: skip
def test_topk_rows_wide_rows_take_the_sampled_threshold_path(data, m, kk, distinct):
    # m >= 8 kk and enough sampled columns: the threshold path; few distinct values make ties.
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    sims = (rng.integers(0, distinct, (7, m)) / distinct).astype(np.float32)
    cols, vals = be.topk_rows(sims, kk)
    np.testing.assert_array_equal(vals, -np.sort(-sims, axis=1)[:, :kk])
    np.testing.assert_array_equal(np.take_along_axis(sims, cols, axis=1), vals)
    assert all(len(set(row)) == kk for row in cols.tolist())


def test_topk_rows_falls_back_when_the_sample_misleads():
    # The large values sit only at sampled columns (every 8th): the sampled threshold
    # keeps fewer than kk entries, so these rows take the full selection.
    m, kk = 800, 40
    sims = np.zeros((3, m), dtype=np.float32)
    sims[:, :: be.TOPK_STRIDE] = np.linspace(1, 2, m // be.TOPK_STRIDE, dtype=np.float32)
    sims[1] = np.linspace(0, 1, m, dtype=np.float32)  # an ordinary row beside them
    cols, vals = be.topk_rows(sims, kk)
    np.testing.assert_array_equal(vals, -np.sort(-sims, axis=1)[:, :kk])
    np.testing.assert_array_equal(np.take_along_axis(sims, cols, axis=1), vals)


@pytest.mark.slow
def test_structureless_cloud_is_split_into_bounded_cells(monkeypatch):
    # A cloud of rows that are all about equally similar (isotropic noise around one direction):
    # the mean of a few of them is nearer to every cloud row than any row is, so a k-means
    # centroid there takes the cloud whole (measured: 715 rows in one cell, mean cell 50).
    # The index splits such a cell so no query scans the whole cloud.
    rng = np.random.default_rng(11)
    d = 256
    c = rng.standard_normal(d)
    cloud = (c / np.linalg.norm(c) + rng.standard_normal((2500, d)) / np.sqrt(d)).astype(np.float32)
    X = normalised(np.concatenate([cloud, local_clusters(7500, d=d, seed=12)]))
    mean = len(X) / be.ivf_cells(len(X))
    monkeypatch.setattr(be, "CELL_CAP", 10**9)  # no splitting: the hub cell
    cell, _ = be._ivf_cells(X, None, np.arange(len(X)), 0)
    assert np.bincount(cell).max() > 8 * mean
    monkeypatch.undo()
    cell, cent = be._ivf_cells(X, None, np.arange(len(X)), 0)
    sizes = np.bincount(cell, minlength=len(cent))
    assert cell.min() >= 0 and cell.max() < len(cent) and sizes.max() <= be.CELL_CAP * mean
    found, fsims, _ = be.knn_search(X, 10, index="sklearn", n_probe=4)
    np.testing.assert_allclose(fsims[:, 1:], np.einsum("ij,ikj->ik", X, X[found[:, 1:]]), atol=1e-5)


def test_knn_kernel_in_place_equals_a_new_array():
    rng = np.random.default_rng(13)
    X = normalised(local_clusters(500, d=16, seed=13))
    P = rng.dirichlet(np.ones(4), len(X)).astype(np.float32)
    nbrs, sims, _ = be.knn_search(X, 8, index="brute")
    want = be.knn_kernel(nbrs, sims, P, cutoff=0.03)
    got = be.knn_kernel(nbrs, sims, P, cutoff=0.03, in_place=True)
    assert got is sims
    np.testing.assert_array_equal(got, want)
