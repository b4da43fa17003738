"""ScoreCounts: rows-before counts over batches equal the in-memory ensemble's, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.detectors.ensemble import rows_before
from labelqa.stats.score_counts import ScoreCounts


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_rows_before_from_batched_counts_equal_the_in_memory_counts(data):
    n = data.draw(st.integers(1, 80))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    pool = np.array([0.0, 0.25, 0.5, 1.0, np.nan, np.inf, -1.0])  # ties, NaN (counted as the highest, with inf)
    scores = np.where(rng.random(n) < 0.5, pool[rng.integers(0, pool.size, n)], rng.random(n))
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=6))))
    spans = list(zip([0, *cuts], [*cuts, n]))
    order = data.draw(st.permutations(range(len(spans))))
    counts = ScoreCounts()
    for i in order:
        a, b = spans[i]
        counts.merge(ScoreCounts.of(scores[a:b]))
    counts.finish()
    want = rows_before(scores)
    for a, b in spans:  # each batch counted against all rows, as the rows pass does
        assert np.array_equal(counts.rows_before(scores[a:b]), want[a:b])


def test_ties_count_from_where_their_group_starts():
    scores = np.array([1.0, 1.0, 0.5, 1.0, 0.2])  # coarse scores (like dup's): three rows tie at the top
    counts = ScoreCounts.of(scores[:2]).merge(ScoreCounts.of(scores[2:])).finish()
    assert counts.rows_before(scores).tolist() == [2.0, 2.0, 1.0, 2.0, 0.0]
    assert counts.n == 5
