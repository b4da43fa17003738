"""Bootstrap interval of the estimated noise rate: containment, width, coverage, speed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.errors import LabelqaError
from labelqa.stats.noise_interval import (
    bootstrap_noise_rates,
    interval_from_replicates,
    linear_quantiles,
    noise_rate_interval,
    noise_rate_point,
)
from labelqa.scan import scan
from tests.conftest import noisy_dataset


def _cl_counts(result):
    s = result.primary_result.summary
    return np.array(s["confident_joint"]), np.array([row["class_count"] for row in s["per_class"]]), s


def _population(k: int, noise: float, uncounted: float = 0.05) -> np.ndarray:
    """Cell probabilities over (given, guess) plus a per-class 'no confident class' cell."""
    joint = np.full((k, k), noise / (k * (k - 1)))
    np.fill_diagonal(joint, (1 - noise) / k)
    cells = np.concatenate([joint.ravel() * (1 - uncounted), np.full(k, uncounted / k)])
    return cells / cells.sum()


def _counts(cells: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    joint = cells[: k * k].reshape(k, k)
    return joint, joint.sum(axis=1) + cells[k * k:]


def test_point_is_the_detectors_estimate_and_interval_holds_it():
    given_, _, probs, _ = noisy_dataset(n=5000, k=6, noise=0.2, seed=3)
    joint, counts, summary = _cl_counts(scan(LabelData.from_arrays(given_, probs)))
    point = noise_rate_point(joint, counts)
    assert point == summary["estimated_noise_rate"]
    low, high = noise_rate_interval(joint, counts)
    assert 0.0 <= low < point < high <= 1.0
    assert high - low < 0.05
    # the detector draws the same bootstrap on a side thread during its selection passes
    assert summary["noise_rate_estimates"]["calibrated_confident_joint"]["interval"] == [low, high]


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_interval_from_replicates_is_the_interval(level):
    joint, counts = _counts(np.random.default_rng(4).multinomial(6000, _population(7, 0.3)), 7)
    point = noise_rate_point(joint, counts)
    reps, smooth = bootstrap_noise_rates(joint, counts)
    low, high = interval_from_replicates(reps, smooth, point, level=level)
    assert (low, high) == noise_rate_interval(joint, counts, level=level)
    assert low <= point <= high
    # a basic bootstrap interval: the replicates' quantiles around their own centre, moved to the point
    spread = np.quantile(reps - smooth, [(1 - level) / 2, (1 + level) / 2])
    assert low == pytest.approx(max(point + spread[0], 0.0)) and high == pytest.approx(min(point + spread[1], 1.0))


def test_seeded_and_reproducible():
    joint, counts = _counts(np.random.default_rng(0).multinomial(4000, _population(5, 0.2)), 5)
    a = noise_rate_interval(joint, counts, seed=7)
    assert a == noise_rate_interval(joint, counts, seed=7)
    assert a != noise_rate_interval(joint, counts, seed=8)
    reps, _ = bootstrap_noise_rates(joint, counts, n_boot=50, seed=1)
    assert reps.shape == (50,) and np.array_equal(reps, bootstrap_noise_rates(joint, counts, n_boot=50, seed=1)[0])


def test_width_shrinks_like_one_over_sqrt_n():
    k = 8
    cells = _population(k, 0.25)
    widths = []
    for n in (10_000, 40_000, 160_000):
        joint, counts = _counts(np.rint(cells * n).astype(np.int64), k)
        low, high = noise_rate_interval(joint, counts, n_boot=400, seed=0)
        widths.append(high - low)
    assert 1.6 < widths[0] / widths[1] < 2.5, widths
    assert 1.6 < widths[1] / widths[2] < 2.5, widths


def test_higher_level_is_wider():
    joint, counts = _counts(np.random.default_rng(1).multinomial(5000, _population(4, 0.3)), 4)
    lo90, hi90 = noise_rate_interval(joint, counts, level=0.9, n_boot=500)
    lo99, hi99 = noise_rate_interval(joint, counts, level=0.99, n_boot=500)
    assert lo99 <= lo90 and hi99 >= hi90 and (hi99 - lo99) > (hi90 - lo90)


def test_coverage_of_the_population_value():
    """Counts drawn from a known population: ~95% of intervals hold its noise rate."""
    k, noise, n = 5, 0.2, 3000
    cells = _population(k, noise)
    target = noise  # with equal class sizes the calibrated estimate's population value is the noise rate
    rng = np.random.default_rng(2024)
    hits = 0
    replicates = 100
    for i in range(replicates):
        joint, counts = _counts(rng.multinomial(n, cells), k)
        low, high = noise_rate_interval(joint, counts, seed=i)
        hits += low <= target <= high
    assert 0.85 <= hits / replicates <= 1.0, hits


def test_coverage_end_to_end_through_the_cl_detector():
    """Synthetic data with 15% uniform flips: the cl interval holds 15% in most datasets."""
    hits = 0
    for seed in range(20):
        given_, _, probs, _ = noisy_dataset(n=3000, k=4, noise=0.15, seed=seed)
        joint, counts, _ = _cl_counts(scan(LabelData.from_arrays(given_, probs)))
        low, high = noise_rate_interval(joint, counts, seed=seed)
        hits += low <= 0.15 <= high
    assert hits >= 16, hits


def test_a_million_rows_and_100_classes():
    rng = np.random.default_rng(0)
    k = 100
    joint = rng.integers(0, 40, (k, k))
    np.fill_diagonal(joint, 9000)
    counts = joint.sum(axis=1) + 500
    assert counts.sum() > 1_000_000
    low, high = noise_rate_interval(joint, counts, n_boot=200)
    point = noise_rate_point(joint, counts)
    assert low < point < high and high - low < 0.01  # ~1M rows: a narrow interval around the point


def test_edge_cases():
    assert noise_rate_interval(np.zeros((3, 3)), np.zeros(3)) == (0.0, 0.0)
    # nothing confidently counted: every class is taken as clean
    assert noise_rate_interval(np.zeros((2, 2)), [5, 5]) == (0.0, 0.0)
    # every counted row off the diagonal: estimate 1
    low, high = noise_rate_interval([[0, 10], [10, 0]], [10, 10])
    assert high == 1.0 and low <= 1.0


@pytest.mark.parametrize(
    ("joint", "counts", "kwargs", "match"),
    [
        (np.zeros((2, 3)), [1, 1], {}, "confident joint"),
        ([[5, 0], [0, 5]], [4, 5], {}, "counts more rows"),
        ([[-1, 0], [0, 5]], [4, 5], {}, ">= 0"),
        ([[1, 0], [0, 1]], [1, 1], {"n_boot": 0}, "n_boot"),
        ([[1, 0], [0, 1]], [1, 1], {"level": 1.0}, "level"),
    ],
)
def test_bad_input(joint, counts, kwargs, match):
    with pytest.raises(LabelqaError, match=match):
        noise_rate_interval(joint, counts, **kwargs)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5).flatmap(lambda k: st.tuples(
    st.lists(st.integers(0, 30), min_size=k * k, max_size=k * k),
    st.lists(st.integers(0, 10), min_size=k, max_size=k),
)))
def test_interval_always_brackets_the_point(data):
    flat, extra = data
    k = len(extra)
    joint = np.array(flat).reshape(k, k)
    counts = joint.sum(axis=1) + np.array(extra)
    point = noise_rate_point(joint, counts)
    low, high = noise_rate_interval(joint, counts, n_boot=50)
    assert 0.0 <= low <= point <= high <= 1.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=300),
       st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4))
def test_linear_quantiles_equal_numpys_quantile(values, quantiles):
    """The sort-based quantiles are numpy's default (linear) quantiles, bit for bit, at any size and level."""
    values = np.array(values)
    assert np.array_equal(linear_quantiles(values, quantiles), np.quantile(values, quantiles))


def test_linear_quantiles_by_hand():
    """[1, 2, 4, 8]: position q * 3; 0.5 -> between 2 and 4; 0.25 -> 1.75 of the way -> 1 + 0.75 * 1."""
    values = np.array([8.0, 1.0, 4.0, 2.0])
    assert linear_quantiles(values, [0.0, 0.25, 0.5, 1.0]).tolist() == [1.0, 1.75, 3.0, 8.0]
    with pytest.raises(ValueError):
        linear_quantiles(np.array([]), [0.5])
