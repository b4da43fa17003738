"""Ranks over batches (labelqa.stats.ranks): RankIndex over any batching == rank_rows on the concatenation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.stats import ranks
from labelqa.stats.ranks import RankIndex, rank_rows, sort_in_place

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: float32-exact values (ties galore), values that are not float32 (1/3, 0.1), and NaN.
EXACT = [0.0, 0.25, 0.5, 0.75, 1.0]
INEXACT = [1 / 3, 0.1, 0.1 + 1e-12, 0.7]


def lexsort_ranks(scores: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """The definition: flagged first, then by score (NaN last), then by row position."""
    order = np.lexsort((np.arange(scores.size), scores, ~flags))
    out = np.empty(scores.size, dtype=np.int64)
    out[order] = np.arange(1, scores.size + 1)
    return out


def split_points(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    return list(zip(bounds, bounds[1:]))


@st.composite
def scored_rows(draw):
    n = draw(st.one_of(st.integers(1, 60), st.integers(130, 400)))  # >= 64 per batch: sorted search
    pool = draw(st.sampled_from(["exact", "inexact", "nan", "floats"]))
    if pool == "floats":
        elem = st.floats(-2, 2, width=draw(st.sampled_from([32, 64])))
    else:
        choices = EXACT + (INEXACT if pool == "inexact" else []) + ([float("nan")] if pool == "nan" else [])
        elem = st.sampled_from(choices)
    scores = np.asarray(draw(st.lists(elem, min_size=n, max_size=n)), dtype=np.float64)
    flag_rate = draw(st.sampled_from([0.0, 0.3, 1.0]))
    flags = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n))) & (flag_rate > 0)
    if flag_rate == 1.0:
        flags[:] = True
    as_f32 = draw(st.booleans()) and pool != "inexact"
    return (scores.astype(np.float32) if as_f32 else scores), flags


@SETTINGS
@given(rows=scored_rows(), cuts=st.lists(st.integers(1, 399), max_size=6), n_indexes=st.integers(1, 3),
       order=st.randoms(use_true_random=False))
def test_rank_index_equals_rank_rows_on_the_concatenation(rows, cuts, n_indexes, order):
    """Batches added in any order, spread over several indexes that merge; ranks asked in input order,
    twice (``restart`` between the walks)."""
    scores, flags = rows
    want = rank_rows(scores, flags)
    assert want.tolist() == lexsort_ranks(scores, flags).tolist()
    pieces = split_points(scores.size, cuts)
    shuffled = list(pieces)
    order.shuffle(shuffled)
    indexes = [RankIndex() for _ in range(n_indexes)]
    for i, (a, b) in enumerate(shuffled):
        indexes[i % n_indexes].add(scores[a:b], flags[a:b], np.arange(a, b))
    index = indexes[0]
    for other in indexes[1:]:
        index.merge(other)
    index.finish()
    assert index.n_flagged == int(flags.sum())
    for _walk in range(2):
        index.restart()
        got = np.concatenate([index.ranks(scores[a:b], flags[a:b], np.arange(a, b)) for a, b in pieces])
        assert got.tolist() == want.tolist()


def test_one_batch_and_hand_computed_ties():
    scores = np.array([0.5, 0.1, 0.5, 0.2, 0.5, 0.1], dtype=np.float32)
    flags = np.array([False, True, False, False, False, False])
    # flagged row 1 first; then 0.1 (row 5), 0.2 (row 3), then the three 0.5 in row order
    want = [4, 1, 5, 3, 6, 2]
    assert rank_rows(scores, flags).tolist() == want
    index = RankIndex().add(scores, flags, np.arange(6)).finish()
    assert index.ranks(scores, flags, np.arange(6)).tolist() == want
    # the same in three batches
    index = RankIndex()
    for a, b in ((4, 6), (0, 2), (2, 4)):
        index.add(scores[a:b], flags[a:b], np.arange(a, b))
    index.finish()
    assert [r for a, b in ((0, 2), (2, 4), (4, 6))
            for r in index.ranks(scores[a:b], flags[a:b], np.arange(a, b)).tolist()] == want


def test_no_flagged_rows_and_all_flagged_rows():
    scores = np.array([0.3, 0.3, 0.1, 0.9])
    for flags in (np.zeros(4, dtype=bool), np.ones(4, dtype=bool)):
        index = RankIndex()
        index.add(scores[:1], flags[:1], np.arange(1)).add(scores[1:], flags[1:], np.arange(1, 4)).finish()
        got = np.concatenate([index.ranks(scores[:1], flags[:1], np.arange(1)),
                              index.ranks(scores[1:], flags[1:], np.arange(1, 4))])
        assert got.tolist() == [2, 3, 1, 4]


def test_unflagged_scores_stay_float32_only_when_exact():
    """float32-exact float64 scores are kept in 4 bytes; one inexact value switches to float64 (still exact)."""
    exact = np.array([0.5, 0.25, 0.75])
    index = RankIndex().add(exact, np.zeros(3, dtype=bool), np.arange(3))
    index.add(exact, np.zeros(3, dtype=bool), np.arange(3, 6)).finish()
    assert index.dtype == np.float32
    # 0.1 and its float32 neighbour differ in float64: ranking them in float32 would tie them
    near = np.array([0.1, float(np.float32(0.1)), 0.1])
    flags = np.zeros(3, dtype=bool)
    index = RankIndex().add(near[:1], flags[:1], np.arange(1)).add(near[1:], flags[1:], np.arange(1, 3)).finish()
    assert index.dtype == np.float64
    got = np.concatenate([index.ranks(near[:1], flags[:1], np.arange(1)),
                          index.ranks(near[1:], flags[1:], np.arange(1, 3))])
    assert got.tolist() == rank_rows(near, flags).tolist()


def test_merge_into_an_empty_index():
    scores = np.array([0.2, 0.2, 0.1])
    flags = np.array([False, True, False])
    part = RankIndex().add(scores, flags, np.arange(3))
    index = RankIndex().merge(part).finish()
    assert index.ranks(scores, flags, np.arange(3)).tolist() == rank_rows(scores, flags).tolist()


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 0.5]),
                          st.floats(-3, 3, width=32)), min_size=0, max_size=300),
       st.booleans())
def test_stable_argsort_is_numpy_stable_argsort(values, with_nan):
    """Packed-integer sort of float32 values (64 or more, no NaN) == numpy's stable argsort: ties in position
    order, -0.0 tied with 0.0, infinities at the ends; NaN and short inputs go to numpy itself."""
    from labelqa.stats.ranks import stable_argsort

    arr = np.asarray(values, dtype=np.float32)
    if with_nan and arr.size:
        arr[arr.size // 2] = np.nan
    got = stable_argsort(arr)
    assert got.dtype == np.intp and np.array_equal(got, np.argsort(arr, kind="stable"))


@st.composite
def near_tied_float64(draw):
    """float64 values that tie or differ only in their last bits (below the packed sort's cut), or anywhere."""
    n = draw(st.integers(0, 400))
    bases = draw(st.lists(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, -3.25, np.inf, -np.inf]),
                          min_size=1, max_size=4))
    steps = draw(st.lists(st.integers(0, 700), min_size=n, max_size=n))
    picks = draw(st.lists(st.integers(0, len(bases) - 1), min_size=n, max_size=n))
    values = np.array([bases[p] for p in picks], dtype=np.float64)
    finite = np.isfinite(values)
    # k ulps up: near ties in the low bits of the sortable key
    values[finite] = values[finite] + np.asarray(steps, dtype=np.float64)[finite] * np.spacing(values[finite])
    if draw(st.booleans()) and n:
        spread = draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n))
        values = np.where(np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n))), spread, values)
    return values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_tied_float64(), st.booleans())
def test_stable_argsort_float64_is_numpy_stable_argsort(values, with_nan):
    """The float64 packed sort (cut keys above positions, then the runs holding inversions re-sorted) ==
    numpy's stable argsort: exact ties in position order, ties in the cut key put right by the whole key."""
    from labelqa.stats.ranks import stable_argsort

    arr = values.copy()
    if with_nan and arr.size:
        arr[arr.size // 2] = np.nan
    got = stable_argsort(arr)
    assert got.dtype == np.intp and np.array_equal(got, np.argsort(arr, kind="stable"))


def test_stable_argsort_float64_mends_ties_of_the_cut_key_at_scale():
    """200k rows (18 position bits): values 1 + k ulp (k < 2^18) share their cut key, in shuffled order, beside
    distinct values; the mended order equals numpy's, as does the many-inversions fallback (all near-tied)."""
    from labelqa.stats.ranks import stable_argsort

    rng = np.random.default_rng(7)
    n = 200_000
    arr = rng.standard_normal(n)
    near = rng.choice(n, 5_000, replace=False)
    arr[near] = 1.0 + rng.integers(0, 1 << 17, near.size) * np.spacing(1.0)
    assert np.array_equal(stable_argsort(arr), np.argsort(arr, kind="stable"))
    dense = 1.0 + rng.integers(0, 1 << 17, n) * np.spacing(1.0)
    assert np.array_equal(stable_argsort(dense), np.argsort(dense, kind="stable"))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, -0.0, 0.5, 0.25, 1.0, -3.0, float("nan"), float("inf")])
                       | st.floats(allow_nan=True, width=32), max_size=300),
       dtype=st.sampled_from([np.float32, np.float64]), threshold=st.integers(1, 400))
def test_sort_in_place_sorts_as_numpy_on_two_threads(values, dtype, threshold):
    """Halves sorted side by side then merged: numpy's order (NaN last; -0.0 and 0.0 equal) at any size."""
    got = np.asarray(values, dtype=dtype)
    want = np.sort(got)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ranks, "PARALLEL_SORT_MIN", threshold)
        patch.setattr(ranks, "worker_count", lambda: 2)
        sort_in_place(got)
    assert np.array_equal(got, want, equal_nan=True)
