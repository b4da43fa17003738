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
