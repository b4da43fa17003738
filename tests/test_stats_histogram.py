"""Per-group histograms bound a selection's cuts exactly: no value they rule out is selected or ties the cut."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.stats.histogram import GroupHistogram

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def edge_values(bins: int, dtype: type) -> np.ndarray:
    """Every bin edge of [-1, 1) and its float neighbours, plus values out of range."""
    edges = np.linspace(-1, 1, bins + 1).astype(dtype)
    near = np.concatenate([np.nextafter(edges, dtype(-np.inf)), edges, np.nextafter(edges, dtype(np.inf))])
    return np.concatenate([near, np.array([-3, -1.5, 1.5, 2.0, np.inf, -np.inf], dtype=dtype)])


@st.composite
def grouped(draw):
    n_groups = draw(st.integers(1, 4))
    bins = draw(st.sampled_from([1, 2, 4, 8, 64]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 400))
    pool = np.concatenate([edge_values(bins, dtype), (rng.integers(-8, 9, 40) / 8).astype(dtype),
                           rng.uniform(-1, 1, 40).astype(dtype)])
    values = pool[rng.integers(0, pool.size, n)]  # ties everywhere, many on bin edges
    groups = rng.integers(0, n_groups, n)
    counts = rng.integers(-1, 60, n_groups)
    return GroupHistogram(n_groups, bins), groups, values, counts


def extreme(values: np.ndarray, c: int, largest: bool) -> float:
    """The c-th largest (smallest) value."""
    return float(np.sort(values)[::-1][c - 1] if largest else np.sort(values)[c - 1])


@SETTINGS
@given(data=grouped(), largest=st.booleans())
def test_bounds_never_rule_out_a_selected_value_or_a_tie(data, largest):
    hist, groups, values, counts = data
    hist.update(groups, values)
    bounded, at = hist.bounds(counts, largest=largest)
    assert np.all(np.diff(bounded) > 0)  # each group once, in order
    for g, bound in zip(bounded.tolist(), at.tolist()):
        mine = values[groups == g]
        assert 1 <= counts[g] <= mine.size
        cut = extreme(mine, int(counts[g]), largest)
        assert (bound <= cut) if largest else (bound >= cut)  # every value at or beyond the cut is kept
        if -1 <= cut < 1:  # and the bound is within two bins of the cut
            assert abs(cut - bound) <= 2 * hist.width
    full = [g for g in range(hist.n_groups) if 1 <= counts[g] <= np.count_nonzero(groups == g)]
    assert set(bounded.tolist()) <= set(full)


@SETTINGS
@given(data=grouped(), order=st.randoms(use_true_random=False), splits=st.lists(st.integers(0, 400), max_size=4))
def test_batches_and_merges_in_any_order_count_as_one_update(data, order, splits):
    hist, groups, values, _ = data
    whole = GroupHistogram(hist.n_groups, hist.bins).update(groups, values)
    cuts = sorted({0, values.size, *[min(s, values.size) for s in splits]})
    parts = [GroupHistogram(hist.n_groups, hist.bins).update(groups[a:b], values[a:b])
             for a, b in zip(cuts, cuts[1:])] or [GroupHistogram(hist.n_groups, hist.bins)]
    order.shuffle(parts)
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    assert np.array_equal(merged.counts, whole.counts)
    assert int(whole.counts.sum()) == values.size


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bins", [1, 64, 8192])
def test_bins_rise_with_the_values(dtype, bins):
    rng = np.random.default_rng(3)
    values = np.sort(np.concatenate([edge_values(min(bins, 512), dtype), rng.uniform(-1.2, 1.2, 5000).astype(dtype)]))
    at = GroupHistogram(1, bins).bin_of(values)
    assert np.all(np.diff(at) >= 0) and at.min() >= 0 and at.max() <= bins - 1
    inside = (values >= -1) & (values < 1)
    width = 2 / bins
    assert np.all(np.abs(values[inside] - (-1 + at[inside] * width)) <= width)  # each value near its bin


def test_a_known_case_by_hand():
    """Group 0 holds 0.9, 0.6, 0.6, 0.1, -0.5 in 4 bins of width 0.5: the 2nd largest (0.6) is in bin 3
    ([0.5, 1)): values below the lower edge of bin 2 (0.0) can go. The 2nd smallest (0.1) is in bin 2
    ([0, 0.5)): values above the upper edge of bin 2 (0.5) can go. Group 1 holds one value for a count of 2."""
    hist = GroupHistogram(2, 4).update(np.array([0, 0, 0, 0, 0, 1]), np.array([0.9, 0.6, 0.6, 0.1, -0.5, 0.3]))
    assert hist.counts.reshape(2, 4).tolist() == [[0, 1, 1, 3], [0, 0, 1, 0]]
    groups, values = hist.bounds(np.array([2, 2]), largest=True)
    assert groups.tolist() == [0] and values.tolist() == [0.0]
    groups, values = hist.bounds(np.array([2, 2]), largest=False)
    assert groups.tolist() == [0] and values.tolist() == [0.5]
    assert hist.bounds(np.array([5, 0]), largest=False)[0].size == 0  # the 5th smallest is in the last bin


def test_bins_and_span_must_be_powers_of_two():
    with pytest.raises(ValueError):
        GroupHistogram(2, 12)
    with pytest.raises(ValueError):
        GroupHistogram(2, 8, span=3)
    with pytest.raises(ValueError):
        GroupHistogram(2, 8).merge(GroupHistogram(2, 16))
