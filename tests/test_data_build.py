"""labelqa.data.build: build_label_data / LabelData.from_arrays assemble validated data."""

from __future__ import annotations

import numpy as np
import pytest

from labelqa.data import LabelData
from labelqa.errors import LabelqaError
from tests.conftest import build_label_data

P = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.25, 0.25, 0.5]])


def test_arrays_are_read_only():
    d = LabelData.from_arrays([0, 1, 2, 2], P)
    for arr in (d.labels, d.pred_probs, d.ids):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        d.pred_probs[0, 0] = 1.0


def test_meta_and_source():
    d = build_label_data([0, 1, 2, 2], P, source="d.csv", meta={"input_format": "csv", "pred_probs_source": "prob_* columns"})
    assert d.source == "d.csv"
    assert d.meta["input_format"] == "csv" and d.meta["pred_probs_source"] == "prob_* columns"
    assert LabelData.from_arrays([0, 1, 2, 2], P).meta["input_format"] == "arrays"


def test_row_count_mismatch():
    with pytest.raises(LabelqaError, match=r"3 labels but 4 rows of predicted probabilities"):
        LabelData.from_arrays([0, 1, 2], P)


def test_top_class_is_the_checks_argmax_and_only_for_its_matrix():
    """LabelData keeps the probability checks' argmax (ties: the first column); it is dropped when the matrix
    is renormalized, for multi-label data, and for any other matrix put in by dataclasses.replace."""
    import dataclasses

    from labelqa.data import LabelData

    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    data = LabelData.from_arrays([1, 0, 2, 0], probs)
    assert np.array_equal(data.top_class(), [1, 0, 2, 0]) and not data.top_class().flags.writeable
    assert LabelData.from_arrays([1, 0, 2, 0], probs * 2, renormalize=True).top_class() is None
    assert dataclasses.replace(data, pred_probs=data.pred_probs[::-1].copy()).top_class() is None
    assert dataclasses.replace(data, labels=np.array([0, 0, 0, 0])).top_class() is data.top_class()
    multi = LabelData.from_arrays(np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0]]), probs, task="multilabel")
    assert multi.top_class() is None
