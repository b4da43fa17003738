"""Exact, mergeable selections (labelqa.stats.selection) against brute-force numpy references.

Every selection follows one tie rule: the ``c`` most extreme values, every
value tied with the ``c``-th shares its fate (all in, unless that makes more
than ``limit``; then none of them). The references below compute it from the
whole sorted data; the classes must give the same answer whatever the
batching of the values and the order in which partials merge.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.stats.selection import BoundedSmallest, Cut, GroupCuts, GroupedTop, Pick

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: A handful of values, so that almost every cut falls inside a block of ties (all exact in float32).
TIED = [-1.0, -0.5, 0.0, 0.125, 0.25, 0.5, 0.75, 1.0]
values_st = st.sampled_from(TIED) | st.floats(-1, 1, width=32)
dtypes = st.sampled_from([np.float32, np.float64])


# --------------------------------------------------------------------------- references
def ref_cut(values: np.ndarray, c: int, largest: bool) -> tuple[bool, float, int, int]:
    """``(complete, cut, strict, equal)`` of the ``c`` most extreme values, from the sorted data."""
    v = np.asarray(values)
    if c < 1 or v.size < c:
        return False, 0.0, 0, 0
    ordered = np.sort(v)[::-1] if largest else np.sort(v)
    cut = ordered[c - 1]
    strict = int(np.count_nonzero(v > cut if largest else v < cut))
    return True, cut, strict, int(np.count_nonzero(v == cut))


def ref_tie_rule(values: np.ndarray, c: int, largest: bool, limit: int | None) -> np.ndarray:
    """Mask of the ``c`` most extreme values, ties at the cut in unless that makes more than ``limit``."""
    v = np.asarray(values)
    complete, cut, strict, equal = ref_cut(v, c, largest)
    if not complete:
        return np.zeros(v.size, dtype=bool)
    beyond = v > cut if largest else v < cut
    if limit is not None and strict + equal > limit:
        return beyond
    return beyond | (v == cut)


def ref_pick(values: np.ndarray, count: int, largest: bool, limit: int | None) -> np.ndarray:
    """:class:`Pick`'s rule: none for ``count <= 0``, all for ``count >= n``, else the tie rule."""
    v = np.asarray(values)
    if count <= 0:
        return np.zeros(v.size, dtype=bool)
    if count >= v.size:
        return np.ones(v.size, dtype=bool)
    return ref_tie_rule(v, count, largest, limit)


def split_points(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    return list(zip(bounds, bounds[1:]))


def merge_in_order(parts: list, order: list[int]):
    """Merge partials in a given permutation (the Dask way: whichever finishes first)."""
    parts = [parts[i] for i in order]
    acc = parts[0]
    for p in parts[1:]:
        acc.merge(p)
    return acc


# --------------------------------------------------------------------------- Pick / BoundedSmallest
@SETTINGS
@given(
    values=st.lists(values_st, min_size=1, max_size=60),
    frac=st.floats(0, 1.2),
    largest=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 60)),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    merge=st.booleans(),
    dtype=dtypes,
    order=st.randoms(use_true_random=False),
)
def test_pick_equals_the_sorted_reference(values, frac, largest, limit, cuts, merge, dtype, order):
    v = np.asarray(values, dtype=dtype)
    count = int(frac * v.size)
    want = ref_pick(v, count, largest, limit)
    pieces = split_points(v.size, cuts)
    if merge:  # one partial per piece, merged in any order
        parts = [Pick(count, v.size, largest=largest, dtype=dtype).update(v[a:b]) for a, b in pieces]
        perm = list(range(len(parts)))
        order.shuffle(perm)
        pick = merge_in_order(parts, perm)
    else:
        pick = Pick(count, v.size, largest=largest, dtype=dtype)
        for a, b in pieces:
            pick.update(v[a:b])
    cut = pick.cut(limit)
    assert np.array_equal(cut.select(v), want)
    assert cut.selected == int(want.sum())
    assert pick.active == (0 < count < v.size)


def test_pick_hand_computed():
    v = np.array([0.5, 0.1, 0.3, 0.1, 0.9, 0.3])
    # the 2 smallest: 0.1, 0.1 (no tie beyond): exactly rows 1 and 3
    assert Pick(2, 6).update(v).cut().select(v).tolist() == [False, True, False, True, False, False]
    # the 3 smallest: cut 0.3, tied with row 5 -> 4 rows
    cut = Pick(3, 6).update(v).cut()
    assert (cut.mode, cut.value, cut.selected) == ("ties", 0.3, 4)
    # ... unless the limit is 3: the ties go, only the strict ones stay
    cut = Pick(3, 6).update(v).cut(limit=3)
    assert (cut.mode, cut.selected) == ("strict", 2)
    assert cut.select(v).tolist() == [False, True, False, True, False, False]
    # the 2 largest: 0.9 then 0.5
    assert Pick(2, 6, largest=True).update(v).cut().select(v).tolist() == [True, False, False, False, True, False]
    assert Pick(0, 6).cut() == Cut("none")
    assert Pick(6, 6).cut() == Cut("all", selected=6)


def test_pick_refuses_misuse():
    p = Pick(2, 5).update(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="fed 2"):
        p.cut()
    with pytest.raises(ValueError, match="different selections"):
        Pick(2, 5).merge(Pick(3, 5))
    with pytest.raises(ValueError, match="m must be >= 1"):
        BoundedSmallest(0)
    with pytest.raises(ValueError, match="cannot merge"):
        BoundedSmallest(2).merge(BoundedSmallest(3))


@SETTINGS
@given(
    values=st.lists(values_st, max_size=80),
    m=st.integers(1, 12),
    cuts=st.lists(st.integers(0, 80), max_size=6),
    dtype=dtypes,
    order=st.randoms(use_true_random=False),
)
def test_bounded_smallest_any_batching_and_merge_order(values, m, cuts, dtype, order):
    v = np.asarray(values, dtype=dtype)
    parts = [BoundedSmallest(m, dtype).update(v[a:b]) for a, b in split_points(v.size, cuts)] or [
        BoundedSmallest(m, dtype)]
    perm = list(range(len(parts)))
    order.shuffle(perm)
    acc = merge_in_order(parts, perm)
    assert acc.seen == v.size
    got = acc.result()
    if v.size < m:
        assert got is None
        return
    cut, below, equal = got
    assert cut == np.sort(v)[m - 1]
    assert below == np.count_nonzero(v < cut) and equal == np.count_nonzero(v == cut)


def test_bounded_smallest_compacts_and_counts_discarded_ties():
    acc = BoundedSmallest(3, np.float64)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 50, 20_000).astype(np.float64)
    for chunk in np.array_split(values, 37):
        acc.update(chunk)
    cut, below, equal = acc.result()
    ordered = np.sort(values)
    assert cut == ordered[2]
    assert below == np.count_nonzero(values < cut) and equal == np.count_nonzero(values == cut)
    assert acc.nbytes < 10_000 * 8  # bounded, not all values


def test_pick_far_side_keeps_few_values():
    """Selecting all but a few keeps the few from the other end: memory min(count, n - count + 1)."""
    rng = np.random.default_rng(1)
    v = rng.integers(0, 30, 50_000).astype(np.float32)
    pick = Pick(49_990, v.size, dtype=np.float32)
    for chunk in np.array_split(v, 13):
        pick.update(chunk)
    assert pick.nbytes < 50_000  # not 200 kB of float32
    cut = pick.cut()
    assert np.array_equal(cut.select(v), ref_pick(v, 49_990, False, None))


# --------------------------------------------------------------------------- GroupedTop
@st.composite
def grouped_values(draw, max_groups: int = 6, max_n: int = 70):
    g = draw(st.integers(1, max_groups))
    counts = np.asarray(draw(st.lists(st.integers(-1, 7), min_size=g, max_size=g)), dtype=np.int64)
    n = draw(st.integers(0, max_n))
    groups = np.asarray(draw(st.lists(st.integers(0, g - 1), min_size=n, max_size=n)), dtype=np.int64)
    dtype = draw(dtypes)
    values = np.asarray(draw(st.lists(values_st, min_size=n, max_size=n)), dtype=dtype)
    return counts, groups, values, dtype


def ref_cuts(counts, groups, values, largest):
    out = [ref_cut(values[groups == g], int(c), largest) for g, c in enumerate(counts)]
    return [np.array(col) for col in zip(*out)]


def assert_cuts_equal(top: GroupedTop, counts, groups, values, largest) -> None:
    complete, cut, strict, equal = top.cuts()
    w_complete, w_cut, w_strict, w_equal = ref_cuts(counts, groups, values, largest)
    assert complete.tolist() == w_complete.astype(bool).tolist()
    assert cut.dtype == top.dtype
    assert cut[complete].tolist() == w_cut[complete].tolist()
    assert strict.tolist() == w_strict.tolist() and equal.tolist() == w_equal.tolist()
    assert not cut[~complete].any() and not strict[~complete].any() and not equal[~complete].any()
    assert top.fed.tolist() == np.bincount(groups, minlength=counts.size).tolist()


@SETTINGS
@given(data=grouped_values(), largest=st.booleans(), cuts=st.lists(st.integers(0, 70), max_size=6),
       peek=st.booleans())
def test_grouped_top_update_in_batches(data, largest, cuts, peek):
    """``peek``: ask for the cuts between batches (compacts the buffers), then keep feeding."""
    counts, groups, values, dtype = data
    top = GroupedTop(counts, largest=largest, dtype=dtype)
    for a, b in split_points(values.size, cuts):
        top.update(groups[a:b], values[a:b])
        if peek:
            top.cuts()
    assert_cuts_equal(top, counts, groups, values, largest)


@contextlib.contextmanager
def compaction_chunks(values: int | None):
    """Compactions of more than ``values`` values work through ranges of groups (None: the shipped limit)."""
    import labelqa.stats.selection as sel

    old = sel._COMPACT_CHUNK_VALUES
    sel._COMPACT_CHUNK_VALUES = old if values is None else values
    try:
        yield
    finally:
        sel._COMPACT_CHUNK_VALUES = old


@SETTINGS
@given(data=grouped_values(), largest=st.booleans(), cuts=st.lists(st.integers(0, 70), max_size=6),
       order=st.randoms(use_true_random=False), peek=st.booleans(), chunk=st.sampled_from([None, 1, 5]))
def test_grouped_top_merge_in_any_order(data, largest, cuts, order, peek, chunk):
    counts, groups, values, dtype = data
    template = GroupedTop(counts, largest=largest, dtype=dtype)
    parts = []
    with compaction_chunks(chunk):
        for a, b in split_points(values.size, cuts):
            part = template.empty().update(groups[a:b], values[a:b])
            if peek:
                part.cuts()
            parts.append(part)
        merged = shuffled_merge(parts, template, order)
        assert_cuts_equal(merged, counts, groups, values, largest)


def shuffled_merge(parts: list[GroupedTop], template: GroupedTop, order) -> GroupedTop:
    """The parts (one empty part if none) merged in the order ``order`` shuffles them into."""
    parts = parts or [template.empty()]
    perm = list(range(len(parts)))
    order.shuffle(perm)
    return merge_in_order(parts, perm)


@st.composite
def row_matrices(draw):
    """A ``(R, m)`` matrix whose row ``i`` holds values of group ``rows[i]`` (groups may repeat)."""
    g = draw(st.integers(1, 6))
    counts = np.asarray(draw(st.lists(st.integers(-1, 7), min_size=g, max_size=g)), dtype=np.int64)
    r = draw(st.integers(0, 8))
    m = draw(st.integers(0, 12))
    rows = np.asarray(draw(st.lists(st.integers(0, g - 1), min_size=r, max_size=r)), dtype=np.int64)
    dtype = draw(dtypes)
    matrix = np.asarray(draw(st.lists(values_st, min_size=r * m, max_size=r * m)), dtype=dtype).reshape(r, m)
    return counts, rows, matrix, dtype


@SETTINGS
@given(data=row_matrices(), largest=st.booleans(), cuts=st.lists(st.integers(0, 8), max_size=3),
       via_reduce=st.booleans(), min_rows=st.sampled_from([1, 4096]))
def test_grouped_top_update_rows_and_reduce_rows(data, largest, cuts, via_reduce, min_rows):
    """Dense rows folded in (directly, or reduced by one partial and added to another) == every pair fed."""
    import labelqa.stats.selection as sel

    counts, rows, matrix, dtype = data
    top = GroupedTop(counts, largest=largest, dtype=dtype)
    reducer = top.empty()
    old = sel.PREFILTER_MIN_ROWS
    sel.PREFILTER_MIN_ROWS = min_rows  # 1: every row long enough to be narrowed first
    try:
        for a, b in split_points(rows.size, cuts):
            if via_reduce:
                reduced = reducer.reduce_rows(rows[a:b], matrix[a:b])
                top.add_reduced(rows[a:b], matrix.shape[1], *reduced)
            else:
                top.update_rows(rows[a:b], matrix[a:b])
    finally:
        sel.PREFILTER_MIN_ROWS = old
    groups = np.repeat(rows, matrix.shape[1])
    assert_cuts_equal(top, counts, groups, matrix.ravel(), largest)
    assert reducer.fed.sum() == 0  # reducing is read-only


def ref_kept(counts, groups, values, largest) -> list[set]:
    """Per group, the indices of the values a top keeps: at or beyond the cut when complete, else every one."""
    out = []
    for g, c in enumerate(counts):
        at = np.flatnonzero(groups == g)
        if c <= 0:
            out.append(set())
            continue
        complete, cut, _, _ = ref_cut(values[at], int(c), largest)
        if not complete:
            out.append(set(at.tolist()))
        else:
            beyond = values[at] >= cut if largest else values[at] <= cut
            out.append(set(at[beyond].tolist()))
    return out


@SETTINGS
@given(data=row_matrices(), largest=st.booleans(), cuts=st.lists(st.integers(0, 8), max_size=3),
       order=st.randoms(use_true_random=False), min_rows=st.sampled_from([1, 4096]), peek=st.booleans(),
       chunk=st.sampled_from([None, 1, 5]))
def test_grouped_top_ids_name_the_values_at_or_beyond_each_cut(data, largest, cuts, order, min_rows, peek, chunk):
    """Ids fed beside the values (reduced rows with their columns, merged in any order) name exactly the kept values."""
    import labelqa.stats.selection as sel

    counts, rows, matrix, dtype = data
    m = matrix.shape[1]
    ids = np.arange(rows.size * m).reshape(rows.size, m) * 3 + 7  # any integers, one per value
    template = GroupedTop(counts, largest=largest, dtype=dtype, ids=True)
    parts = []
    old = sel.PREFILTER_MIN_ROWS
    sel.PREFILTER_MIN_ROWS = min_rows
    try:
        with compaction_chunks(chunk):
            for a, b in split_points(rows.size, cuts):
                part = template.empty()
                r, values, cols = template.reduce_rows(rows[a:b], matrix[a:b], columns=True)
                plain = template.reduce_rows(rows[a:b], matrix[a:b])
                assert sorted(zip(r.tolist(), values.tolist())) == sorted(zip(plain[0].tolist(),
                                                                               plain[1].tolist()))
                assert np.array_equal(matrix[a:b][r, cols], values)
                part.add_reduced(rows[a:b], m, r, values, ids[a:b][r, cols])
                if peek:
                    part.cuts()
                parts.append(part)
            top = shuffled_merge(parts, template, order)
            groups, values, got_ids = top.kept()  # compacts, in ranges of groups when ``chunk`` is set
    finally:
        sel.PREFILTER_MIN_ROWS = old
    flat_groups, flat_values = np.repeat(rows, m), matrix.ravel()
    want = ref_kept(counts, flat_groups, flat_values, largest)
    for g in range(counts.size):
        assert set(((got_ids[groups == g] - 7) // 3).tolist()) == want[g]
    assert np.array_equal(flat_values[(got_ids - 7) // 3], values)
    assert_cuts_equal(top, counts, flat_groups, flat_values, largest)


def test_grouped_top_ids_are_required_and_checked():
    top = GroupedTop(np.array([1]), ids=True)
    with pytest.raises(ValueError, match="ids"):
        top.update(np.array([0]), np.array([0.5]))
    with pytest.raises(ValueError, match="ids"):
        top.merge(GroupedTop(np.array([1])))
    with pytest.raises(ValueError, match="no ids"):
        GroupedTop(np.array([1])).kept()
    top.update(np.array([0, 0]), np.array([0.5, 0.2]), np.array([10, 11]))
    assert top.kept()[2].tolist() == [11]


def test_grouped_top_reduce_rows_keeps_ties_outside_the_window():
    """Row values tied with the c-th but beyond the partition window are counted too."""
    counts = np.array([2, 3])
    matrix = np.array([[0.5, 0.1, 0.5, 0.5, 0.9], [0.2, 0.2, 0.2, 0.2, 0.2]])
    top = GroupedTop(counts)
    top.update_rows(np.array([0, 1]), matrix)
    complete, cut, strict, equal = top.cuts()
    assert complete.tolist() == [True, True]
    assert cut.tolist() == [0.5, 0.2]
    assert strict.tolist() == [1, 0] and equal.tolist() == [3, 5]


def test_grouped_top_compacts_under_its_budget():
    """More values than the buffer budget: compaction keeps the answer exact and the memory bounded."""
    rng = np.random.default_rng(2)
    counts = np.array([5, 0, 300, 1])
    groups = rng.integers(0, 4, 400_000)
    values = rng.integers(0, 40, groups.size).astype(np.float32) / 8
    top = GroupedTop(counts, largest=True, dtype=np.float32)
    for a, b in split_points(values.size, list(range(0, values.size, 50_000))):
        top.update(groups[a:b], values[a:b])
    assert top.nbytes < 2_000_000  # 400k pairs would be 4.8 MB
    assert_cuts_equal(top, counts, groups, values, True)


def test_grouped_top_partials_share_their_cuts_as_bounds():
    """A partial drops the values another partial's cut already excludes (the lanes of a stream pass), and the
    merged cuts stay exact, ties of the final cut included; pickled (Dask), a partial keeps a copy of them."""
    import pickle

    rng = np.random.default_rng(5)
    counts = np.array([50, 3, 7])
    groups = rng.integers(0, 3, 40_000)
    values = (rng.integers(0, 400, groups.size) / 16).astype(np.float32)  # ties at every cut
    template = GroupedTop(counts, largest=True, dtype=np.float32)
    first, second, alone = template.empty(), template.empty(), GroupedTop(counts, largest=True, dtype=np.float32)
    half = values.size // 2
    first.update(groups[:half], values[:half]).cuts()  # compacted: its cuts now bound every partial
    second.update(groups[half:], values[half:])
    alone.update(groups[half:], values[half:])
    assert second.nbytes < alone.nbytes // 20
    assert_cuts_equal(first.merge(second), counts, groups, values, True)
    shipped = pickle.loads(pickle.dumps(template.empty()))
    assert np.array_equal(shipped._bounds.keys, template._bounds.keys)  # a copy: tightened on its own
    assert shipped._bounds is not template._bounds
    shipped.update(groups[half:], values[half:])
    assert_cuts_equal(template.empty().update(groups[:half], values[:half]).merge(shipped), counts, groups, values,
                      True)


def test_grouped_top_merge_refuses_other_groups():
    with pytest.raises(ValueError, match="different groups"):
        GroupedTop(np.array([1, 2])).merge(GroupedTop(np.array([1, 2, 3])))
    with pytest.raises(ValueError, match="different groups"):
        GroupedTop(np.array([1, 2])).merge(GroupedTop(np.array([1, 2]), largest=True))


# --------------------------------------------------------------------------- GroupCuts
@SETTINGS
@given(data=grouped_values(), largest=st.booleans(), bound=st.sampled_from([None, -0.5, 0.0, 0.25, 0.5]),
       extra=st.floats(0, 1), limits=st.one_of(st.none(), st.lists(st.integers(0, 12), min_size=6, max_size=6)))
def test_group_cuts_settle_from_candidates(data, largest, bound, extra, limits):
    """Fed the values strictly before ``bound`` (and some others), a settled group selects exactly what
    the whole group would; the unsettled groups are those whose cut the fed values cannot place."""
    counts, groups, values, dtype = data
    lim = None if limits is None else np.asarray(limits[: counts.size], dtype=np.int64)
    if bound is None:
        fed = np.ones(values.size, dtype=bool)
    else:
        before = values > bound if largest else values < bound
        fed = before | (np.random.default_rng(values.size).random(values.size) < extra)
    top = GroupedTop(counts, largest=largest, dtype=dtype).update(groups[fed], values[fed])
    gc = GroupCuts(counts.size, largest=largest, dtype=dtype)
    left = gc.settle(top, limits=lim, bound=bound)

    complete, cut, _strict, _equal = ref_cuts(counts, groups[fed], values[fed], largest)
    settled = complete.astype(bool)
    if bound is not None:
        settled &= cut > bound if largest else cut < bound
    assert left.tolist() == np.flatnonzero((counts > 0) & ~settled).tolist()
    mask = gc.select(groups, values)
    for g in range(counts.size):
        rows = groups == g
        if settled[g]:
            want = ref_tie_rule(values[rows], int(counts[g]), largest, None if lim is None else int(lim[g]))
            assert mask[rows].tolist() == want.tolist(), g
            assert gc.selected[g] == int(want.sum())
        else:
            assert gc.mode[g] == GroupCuts.NONE and not mask[rows].any()


def test_group_cuts_settle_hand_computed():
    # group 0: the 2 smallest of [0.1, 0.3, 0.3, 0.3] -> cut 0.3 with 3 ties: 4 selected, over the limit 3
    # group 1: the 1 smallest of [0.2, 0.4] -> 0.2; group 2: count 0; group 3: 2 of one value fed -> unsettled
    top = GroupedTop(np.array([2, 1, 0, 2]))
    top.update(np.array([0, 0, 0, 0, 1, 1, 2, 3]), np.array([0.1, 0.3, 0.3, 0.3, 0.2, 0.4, 0.0, 0.1]))
    gc = GroupCuts(4)
    left = gc.settle(top, limits=np.array([3, 5, 5, 5]))
    assert left.tolist() == [3]
    assert gc.mode.tolist() == [GroupCuts.CUT, GroupCuts.CUT, GroupCuts.NONE, GroupCuts.NONE]
    assert gc.ties.tolist()[:2] == [False, True]
    assert gc.selected.tolist() == [1, 1, 0, 0]
    assert gc.select(np.array([0, 0, 1, 1, 2]), np.array([0.1, 0.3, 0.2, 0.4, 0.0])).tolist() == [
        True, False, True, False, False]
    # with a bound: group 0's cut 0.3 is not below 0.25, so it stays open
    gc = GroupCuts(4)
    assert gc.settle(top, bound=0.25).tolist() == [0, 3]
    assert gc.mode.tolist() == [GroupCuts.NONE, GroupCuts.CUT, GroupCuts.NONE, GroupCuts.NONE]


@SETTINGS
@given(data=grouped_values(), largest=st.booleans(), limit=st.one_of(st.none(), st.integers(0, 12)))
def test_group_cuts_set_from_picks(data, largest, limit):
    counts, groups, values, dtype = data
    gc = GroupCuts(counts.size, largest=largest, dtype=dtype)
    want = np.zeros(values.size, dtype=bool)
    for g, c in enumerate(counts):
        rows = groups == g
        pick = Pick(int(c), int(rows.sum()), largest=largest, dtype=dtype).update(values[rows])
        gc.set(g, pick.cut(limit))
        want[rows] = ref_pick(values[rows], int(c), largest, limit)
        assert gc.selected[g] == int(want[rows].sum())
    assert gc.select(groups, values).tolist() == want.tolist()


@SETTINGS
@given(n=st.integers(0, 12), k=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), largest=st.booleans(),
       dtype=dtypes)
def test_group_cuts_select_pairs_and_columns_equal_select(n, k, seed, largest, dtype):
    rng = np.random.default_rng(seed)
    gc = GroupCuts(2 * k, largest=largest, dtype=dtype)
    gc.mode[:] = rng.integers(0, 3, 2 * k)
    gc.value[:] = rng.choice(TIED, 2 * k)
    gc.ties[:] = rng.random(2 * k) < 0.5
    y = rng.random((n, k)) < 0.5
    values = rng.choice(TIED, (n, k)).astype(dtype)
    pair_groups = 2 * np.arange(k) + y
    assert gc.select_pairs(y, values).tolist() == gc.select(pair_groups, values).tolist()
    cols = GroupCuts(k, largest=largest, dtype=dtype)
    cols.mode[:], cols.value[:], cols.ties[:] = gc.mode[:k], gc.value[:k], gc.ties[:k]
    col_groups = np.broadcast_to(np.arange(k), (n, k))
    assert cols.select_columns(values).tolist() == cols.select(col_groups, values).tolist()
    # and select itself, by its definition
    for (i, j), v in np.ndenumerate(values):
        g = pair_groups[i, j]
        beyond = v > gc.value[g] if largest else v < gc.value[g]
        want = {GroupCuts.NONE: False, GroupCuts.ALL: True}.get(
            int(gc.mode[g]), bool(beyond or (gc.ties[g] and v == gc.value[g])))
        assert gc.select_pairs(y, values)[i, j] == want


# --------------------------------------------------------------------------- top_window (sampled-pivot narrowing)
@SETTINGS
@given(g=st.integers(1, 5), m=st.integers(1, 3000), top_frac=st.floats(0.0, 1.0), largest=st.booleans(),
       dtype=dtypes, seed=st.integers(0, 2**32 - 1), grid=st.sampled_from([0, 3, 50]), nan=st.booleans(),
       min_rows=st.sampled_from([1, 64, 4096]))
def test_top_window_equals_partition_then_sort(g, m, top_frac, largest, dtype, seed, grid, nan, min_rows):
    """Narrowed or not, each row's window holds the ``top`` most extreme values, sorted (ties, NaN as largest)."""
    import labelqa.stats.selection as sel

    rng = np.random.default_rng(seed)
    vals = rng.normal(-0.2, 0.3, (g, m))
    if grid:  # a coarse grid: ties everywhere, also at the pivot and the cut
        vals = np.round(vals * grid) / grid
    vals = vals.astype(dtype)
    if nan:
        vals[rng.integers(0, g), rng.integers(0, m)] = np.nan
    top = max(1, int(top_frac * m))
    old = sel.PREFILTER_MIN_ROWS
    sel.PREFILTER_MIN_ROWS = min_rows
    try:
        window = sel.top_window(vals, top, largest=largest)
    finally:
        sel.PREFILTER_MIN_ROWS = old
    ordered = np.sort(vals, axis=1)  # NaN last: the largest, as np.partition has it
    want = ordered[:, ::-1][:, :top] if largest else ordered[:, :top]
    assert window.shape == (g, top) and window.dtype == vals.dtype
    assert np.array_equal(window, want, equal_nan=True)


def test_top_window_narrows_long_rows_and_falls_back():
    from labelqa.stats.selection import top_window

    rng = np.random.default_rng(3)
    vals = rng.random((3, 20_000))
    for largest in (True, False):
        ordered = np.sort(vals, axis=1)
        want = ordered[:, ::-1][:, :500] if largest else ordered[:, :500]
        assert np.array_equal(top_window(vals, 500, largest=largest), want)
    # one row of equal values: the pivot keeps the whole row, still exact
    vals[1] = 0.25
    assert np.array_equal(top_window(vals, 500, largest=True)[1], np.full(500, 0.25))


@SETTINGS
@given(g=st.integers(1, 5), m=st.integers(1, 3000), largest=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**32 - 1),
       grid=st.sampled_from([0, 3, 50]), nan=st.booleans(), data=st.data())
def test_narrowed_beyond_equals_the_sorted_reference(g, m, largest, dtype, seed, grid, nan, data):
    """Each row's values at or beyond its c-th most extreme (ties included, NaN never), narrowed or not."""
    import labelqa.stats.selection as sel

    rng = np.random.default_rng(seed)
    vals = rng.normal(-0.2, 0.3, (g, m))
    if grid:
        vals = np.round(vals * grid) / grid
    vals = vals.astype(dtype)
    if nan:
        vals[rng.integers(0, g), rng.integers(0, m)] = np.nan
    counts = np.asarray(data.draw(st.lists(st.integers(-1, max(1, m // 4)), min_size=g, max_size=g)), dtype=np.int64)
    old = sel.PREFILTER_MIN_ROWS
    sel.PREFILTER_MIN_ROWS = 64
    try:
        got = sel.narrowed_beyond(vals, counts, largest=largest)
    finally:
        sel.PREFILTER_MIN_ROWS = old
    if got is None:
        assert m < 64 or counts.max() * 4 > m or counts.max() <= 0
        return
    rows, values = got
    assert values.dtype == vals.dtype
    for i in range(g):
        mine = np.sort(values[rows == i])
        if counts[i] <= 0:
            assert mine.size == 0
            continue
        ordered = np.sort(vals[i])  # NaN last: the largest
        cut = ordered[::-1][counts[i] - 1] if largest else ordered[counts[i] - 1]
        want = np.sort(vals[i][vals[i] >= cut] if largest else vals[i][vals[i] <= cut])
        assert np.array_equal(mine, want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.integers(0, 300), st.integers(0, 2**31), st.booleans())
def test_grouped_top_small_dtype_groups_equal_int64_groups(n_groups, n, seed, largest):
    """Groups given as uint8 (one group: no bincount) keep and count exactly what int64 groups do."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 40, n_groups)
    groups = rng.integers(0, n_groups, n)
    values = rng.integers(0, 8, n).astype(np.float32)  # many ties
    ids = np.arange(n)
    a = GroupedTop(counts, largest=largest, dtype=np.float32, ids=True, ids_dtype=np.int32)
    b = GroupedTop(counts, largest=largest, dtype=np.float32, ids=True, ids_dtype=np.int32)
    half = n // 2
    for sl in (slice(0, half), slice(half, n)):
        a.update(groups[sl], values[sl], ids[sl])
        b.update(groups[sl].astype(np.uint8), values[sl], ids[sl].astype(np.int32))
    assert np.array_equal(a.fed, b.fed)
    for x, y in zip(a.cuts(), b.cuts()):
        assert np.array_equal(x, y)
    for x, y in zip(a.kept(), b.kept()):
        assert np.array_equal(np.sort(x), np.sort(y))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_groups=st.integers(2, 40), largest=st.booleans(), ids=st.booleans(),
       chunk=st.sampled_from([1, 7, 64]))
def test_grouped_top_compacts_in_ranges_of_groups_to_the_same_state(seed, n_groups, largest, ids, chunk):
    """Compactions in ranges of groups keep the same values, ids, order and bounds as one compaction of all."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(-1, 12, n_groups)
    tops = [GroupedTop(counts, largest=largest, dtype=np.float32, ids=ids) for _ in range(2)]
    for step in range(4):  # feed, compact, feed more (the bounds of the last compaction drop values)
        n = int(rng.integers(0, 300))
        groups = rng.integers(0, n_groups, n)
        values = (rng.integers(-20, 20, n) / 4).astype(np.float32)  # ties everywhere
        named = rng.permutation(10_000)[:n] if ids else None
        for top, limit in zip(tops, [None, chunk]):
            with compaction_chunks(limit):
                top.update(groups, values, named)
                top._compact()
        whole, ranged = tops
        assert np.array_equal(whole._g[0], ranged._g[0]) and np.array_equal(whole._v[0], ranged._v[0])
        if ids:
            assert np.array_equal(whole._i[0], ranged._i[0])
        assert (whole._bounds.keys is None) == (ranged._bounds.keys is None)
        if whole._bounds.keys is not None:
            assert np.array_equal(whole._bounds.keys, ranged._bounds.keys)
