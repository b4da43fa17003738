"""ScoreCounts: normalised ranks over batches equal the in-memory ensemble's, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.detectors.ensemble import normalized_ranks
from labelqa.stats.rank_average import ScoreCounts, rank_average


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_ranks_from_batched_counts_equal_the_in_memory_ranks(data):
    n = data.draw(st.integers(1, 80))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    pool = np.array([0.0, 0.25, 0.5, 1.0, np.nan, np.inf, -1.0])  # ties, NaN (ranks last with inf)
    scores = np.where(rng.random(n) < 0.5, pool[rng.integers(0, pool.size, n)], rng.random(n))
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=6))))
    spans = list(zip([0, *cuts], [*cuts, n]))
    order = data.draw(st.permutations(range(len(spans))))
    counts = ScoreCounts()
    for i in order:
        a, b = spans[i]
        counts.merge(ScoreCounts.of(scores[a:b]))
    counts.finish()
    want = normalized_ranks(scores)
    for a, b in spans:  # each batch ranked against all rows, as the rows pass does
        assert np.array_equal(counts.normalized_ranks(scores[a:b]), want[a:b])


def test_rank_average_is_the_mean_of_each_detectors_ranks():
    a = np.array([0.1, 0.5, 0.5, 0.9])
    b = np.array([1.0, 1.0, 0.5, 1.0])  # coarse scores (like dup's): three rows tie at the top
    ca, cb = ScoreCounts.of(a).finish(), ScoreCounts.of(b).finish()
    # ranks of a: 0, 1.5, 1.5, 3 over 3; of b: 2, 2, 0, 2 over 3
    assert np.allclose(rank_average([a, b], [ca, cb]), [1 / 3, 3.5 / 6, 1.5 / 6, 5 / 6], rtol=0, atol=1e-15)


def test_one_row_ranks_zero():
    assert ScoreCounts.of(np.array([0.3])).finish().normalized_ranks(np.array([0.3])).tolist() == [0.0]
