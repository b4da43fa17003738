"""The class-order check (labelqa/data/class_order.py) on injected noise with known truth; the CLI cases are in
tests/test_safety_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import noisy_dataset
from labelqa.data.class_order import check_class_order
from labelqa.errors import LabelqaError


@pytest.mark.parametrize("noise", [0.0, 0.2, 0.45])
def test_legitimately_noisy_labels_never_trip(noise):
    given, _, probs, _ = noisy_dataset(n=3000, k=5, noise=noise, seed=2)
    check_class_order(given, probs, list("abcde"), classes_source="test", probs_where="x")


def test_a_model_no_better_than_chance_never_trips():
    rng = np.random.default_rng(3)
    for n, k in ((10, 3), (200, 10), (60, 30), (5000, 2)):
        probs = rng.dirichlet(np.ones(k), n)
        check_class_order(rng.integers(0, k, n), probs, list(range(k)), classes_source="t", probs_where="x")


def test_a_swap_of_two_classes_out_of_ten_is_caught():
    given, _, probs, _ = noisy_dataset(n=4000, k=10, noise=0.1, seed=4)
    perm = np.arange(10)
    perm[[3, 7]] = [7, 3]
    with pytest.raises(LabelqaError, match="3 is column 7|'3' is column 7|7 is column 3"):
        check_class_order(given, probs[:, perm], list(range(10)), classes_source="--classes", probs_where="x")


def test_greedy_assignment_above_the_exact_limit(monkeypatch):
    import labelqa.data.class_order as co

    given, _, probs, _ = noisy_dataset(n=3000, k=6, noise=0.1, seed=5)
    monkeypatch.setattr(co, "MAX_EXACT_K", 2)
    with pytest.raises(LabelqaError, match="does not fit"):
        co.check_class_order(given, probs[:, ::-1], list(range(6)), classes_source="t", probs_where="x")
