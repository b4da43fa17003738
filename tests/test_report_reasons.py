"""Reasons for flagged rows (labelqa.report.reasons): vectorised text equals the plain per-row phrasing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.detectors.base import DetectorResult
from labelqa.detectors.multilabel import MultilabelConfidentLearning
from labelqa.report.reasons import reasons_for

try:
    from labelqa.report.reasons import _two_decimals as two_decimals  # module-private helper under test
except ImportError:  # pragma: no cover
    two_decimals = None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.integers(0, 200).map(lambda i: i / 200)), min_size=1, max_size=50))
def test_two_decimals_is_pythons_formatting(values):
    assert two_decimals(np.asarray(values)).to_pylist() == [f"{v:.2f}" for v in values]


def per_row_reasons(names, probs, remove, add):
    """The phrase as written row by row: removals then additions, each in class order."""
    out = []
    for r in range(remove.shape[0]):
        parts = [f"remove '{names[c]}' (p={probs[r, c]:.2f})" for c in np.flatnonzero(remove[r])]
        parts += [f"add '{names[c]}' (p={probs[r, c]:.2f})" for c in np.flatnonzero(add[r])]
        out.append(", ".join(parts))
    return out


def test_multilabel_reasons_match_the_per_row_phrasing():
    rng = np.random.default_rng(3)
    n, k = 400, 6
    true = rng.random((n, k)) < 0.3
    probs = np.clip(true * 0.8 + rng.normal(0.1, 0.1, (n, k)), 0, 1).astype(np.float32)
    labels = true ^ (rng.random((n, k)) < 0.03)  # injected noise: some labels added, some removed
    names = ("cat", "dog", "bird", "o'neil", "x y", "z")
    data = LabelData(labels=labels, pred_probs=probs, classes=names, ids=np.arange(n), task="multilabel")
    res = MultilabelConfidentLearning().detect(data)
    idx = np.arange(n)
    got = reasons_for(data, res, idx).to_pylist()
    fired = np.asarray(res.issues)
    assert fired.sum() > 10
    remove = np.asarray(res.extra["labels_to_remove"])
    add = np.asarray(res.extra["labels_to_add"])
    want = per_row_reasons(names, probs, remove, add)
    assert got == [w if f else "" for w, f in zip(want, fired)]


def test_rows_not_flagged_get_no_reason():
    labels = np.array([[True, False], [False, True], [True, True]])
    probs = np.array([[0.9, 0.1], [0.2, 0.9], [0.9, 0.8]], dtype=np.float32)
    data = LabelData(labels=labels, pred_probs=probs, classes=("a", "b"), ids=np.arange(3), task="multilabel")
    n = 3
    res = DetectorResult(name="cl", scores=np.ones(n), issues=np.array([False, True, False]),
                         suggested=labels, suggested_confidence=np.ones(n),
                         extra={"labels_to_remove": np.array([[0, 0], [0, 1], [0, 0]], bool),
                                "labels_to_add": np.array([[0, 0], [1, 0], [0, 0]], bool)})
    assert reasons_for(data, res, np.arange(n)).to_pylist() == ["", "remove 'b' (p=0.90), add 'a' (p=0.20)", ""]


def taken_text(values, positions, n):
    """``scatter_text`` as one Arrow take (its general path): the reference for the offsets-only path."""
    import pyarrow as pa

    index = np.full(n, len(values), dtype=np.int64)
    index[positions] = np.arange(len(values))
    return pa.concat_arrays([values.cast(pa.string()), pa.array([""], pa.string())]).take(pa.array(index))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=40), st.integers(0, 30), st.integers(0, 3), st.randoms())
def test_scatter_text_equals_one_take(texts, extra, skip, rnd):
    import pyarrow as pa

    from labelqa.report.reasons import scatter_text

    n = len(texts) + extra
    positions = np.sort(np.asarray(rnd.sample(range(n), len(texts)), dtype=np.int64))
    values = pa.array(["pad"] * skip + texts, pa.string()).slice(skip)  # a sliced array: nonzero offset
    out = scatter_text(values, positions, n)
    assert out.type == pa.string() and out.null_count == 0
    assert out.equals(taken_text(values, positions, n))
    shuffled = positions.copy()
    rnd.shuffle(shuffled)  # any order falls back to the take
    assert scatter_text(values, shuffled, n).equals(taken_text(values, shuffled, n))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.integers(0, 200).map(lambda i: i / 200), st.floats(-2, 3)),
                min_size=1, max_size=50))
def test_percent_text_is_the_rounded_cast(values):
    import pyarrow as pa
    import pyarrow.compute as pc

    from labelqa.report.reasons import _pct_text as pct_text  # module-private helper under test

    ints = np.rint(np.asarray(values, dtype=np.float64) * 100).astype(np.int64)
    expected = pc.binary_join_element_wise(pc.cast(pa.array(ints), pa.string()), "%", "")
    assert pct_text(np.asarray(values)).equals(expected)
