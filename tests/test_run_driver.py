"""The driver's contract: a detector's plan gives the same results whatever the batching.

A tiny in-process runner (:class:`ArrayRunner`) implements the driver's
``Runner`` protocol over numpy arrays cut into random batches; ``fold`` either
feeds one partial batch after batch (the streaming way) or builds a partial
per batch and merges them in a random tree (the Dask way: whichever task
finishes first). ``scan_out_of_core`` on it must give, row for row, the issues
table and the summary of ``scan_memory`` (the whole dataset as one block).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.detectors.base import Block, DatasetInfo, Step, run_on_block
from labelqa.detectors.confident import CL_FILTER_METHODS, FILTER_METHODS, SCORE_METHODS, ConfidentLearning
from labelqa.detectors.multilabel import MultilabelConfidentLearning
from labelqa.errors import LabelqaError
from labelqa.run.driver import Runner, run_plans, scan_memory, scan_out_of_core

#: More examples for a deeper search: DRIVER_EXAMPLES=2000 pytest tests/test_run_driver.py
SETTINGS = settings(max_examples=int(os.environ.get("DRIVER_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class ArrayRunner:
    """A runner over in-memory arrays cut at ``bounds``: fresh blocks every pass, like decoded record batches.

    Args:
        data: The rows.
        bounds: Batch boundaries ``[0, ..., N]``.
        tree_seed: ``None``: one partial fed batch after batch; else one partial
            per batch, merged pairwise in a random order and shape.
        reuse_blocks: Keep the blocks (and their per-block caches) across passes.
    """

    engine = "arrays"

    def __init__(self, data: LabelData, bounds: Sequence[int], *, tree_seed: int | None = None,
                 reuse_blocks: bool = False) -> None:
        self.data = data
        self.info = DatasetInfo.of(data)
        self.bounds = list(bounds)
        self.tree = None if tree_seed is None else random.Random(tree_seed)
        self.renormalized_rows = 0
        self.passes: list[str] = []
        self.closed = False
        self._kept = [self._block(a, b) for a, b in self._pieces()] if reuse_blocks else None

    def _pieces(self) -> Iterator[tuple[int, int]]:
        return zip(self.bounds, self.bounds[1:])

    def _block(self, a: int, b: int) -> Block:
        d = self.data
        return Block(np.array(d.labels[a:b]), np.array(d.pred_probs[a:b]), np.array(d.ids[a:b]), a)

    def _blocks(self) -> Iterator[Block]:
        if self._kept is not None:
            yield from self._kept
        else:
            for a, b in self._pieces():
                yield self._block(a, b)

    def fold(self, steps: Sequence[Step]) -> list[Any]:
        if self.tree is None:
            partials = [s.start() for s in steps]
            for block in self._blocks():
                partials = [s.feed(p, block) for s, p in zip(steps, partials)]
        else:
            per_block = [[s.feed(s.start(), block) for s in steps] for block in self._blocks()]
            partials = []
            for i, step in enumerate(steps):
                parts = [pb[i] for pb in per_block] or [step.start()]
                while len(parts) > 1:
                    a, b = self.tree.sample(range(len(parts)), 2)
                    merged = step.merge(parts[a], parts[b])
                    parts = [p for j, p in enumerate(parts) if j not in (a, b)] + [merged]
                partials.append(parts[0])
        self.passes.append(", ".join(s.name for s in steps))
        return partials

    def map(self, fn: Callable[..., Any], *args: Any, name: str = "rows") -> Iterator[Any]:
        for block in self._blocks():
            yield fn(block, *args)
        self.passes.append(name)

    def close(self) -> None:
        self.closed = True


def _runner_type_check(r: ArrayRunner) -> Runner:
    return r  # the protocol is what the driver asks for


# --------------------------------------------------------------------------- data
@st.composite
def multiclass_data(draw):
    n = draw(st.integers(1, 60))
    k = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # a few distinct probability rows (multiples of 1/m): ties everywhere
    protos = rng.integers(0, 4, (draw(st.integers(1, 6)), k)).astype(np.float64)
    protos[protos.sum(axis=1) == 0, 0] = 1.0
    protos /= protos.sum(axis=1, keepdims=True)
    probs = protos[rng.integers(0, len(protos), n)].astype(draw(st.sampled_from([np.float32, np.float64])))
    labels = np.where(rng.random(n) < draw(st.sampled_from([0.5, 0.8, 1.0])), probs.argmax(axis=1),
                      rng.integers(0, k, n))
    data = LabelData.from_arrays(labels, probs)
    return data, rng


@st.composite
def multilabel_data(draw):
    n = draw(st.integers(1, 60))
    k = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    probs = (rng.integers(0, 5, (n, k)) / 4).astype(draw(st.sampled_from([np.float32, np.float64])))
    y = rng.random((n, k)) < draw(st.sampled_from([0.0, 0.2, 0.6, 1.0]))
    flip = rng.random((n, k)) < 0.2
    y = np.where(flip, y, probs >= 0.5) if draw(st.booleans()) else y
    data = LabelData.from_arrays(y, probs, task="multilabel")
    return data, rng


def random_bounds(n: int, rng: np.random.Generator) -> list[int]:
    cuts = rng.integers(1, n, rng.integers(0, min(n, 8))) if n > 1 else []
    return sorted({0, n, *map(int, cuts)})


# --------------------------------------------------------------------------- the check
def assert_same_as_memory(data: LabelData, make, runner: ArrayRunner) -> None:
    mem = scan_memory(data, [make()])
    messages: list[str] = []
    got = scan_out_of_core(runner, make(), source=None, meta=dict(data.meta), progress=messages.append)
    if messages[-1] == "ranks and totals from the last pass":  # one detector that gathered its rows on the way
        assert len(runner.passes) == len(messages) - 1
    else:
        assert messages[-1].endswith("ranks and totals") and len(runner.passes) == len(messages)
    table = pa.concat_tables(list(got.iter_issue_batches()))
    want = mem.issues_table()
    assert table.schema.equals(want.schema)
    for name in want.column_names:
        assert table.column(name).equals(want.column(name)), name
    s_got, s_want = got.summary(), mem.summary()
    assert s_got["options"].pop("engine") == "arrays" and s_want["options"].pop("engine") == "memory"
    assert s_got == s_want
    assert got.n_issues == mem.n_issues
    # a second walk over the rows (e.g. writing the report after top_issues) gives the same ranks
    assert got.top_issues(5).equals(mem.top_issues(5))
    assert pa.concat_tables(list(got.iter_issue_batches())).equals(table)
    got.close()
    assert runner.closed


@SETTINGS
@given(
    problem=multiclass_data(),
    filter_by=st.sampled_from(CL_FILTER_METHODS),
    frac=st.sampled_from([1.0, 0.5, 0.3, 0.0]),
    ntr=st.booleans(),
    min_ex=st.integers(0, 6),
    score=st.sampled_from(SCORE_METHODS),
    adjust=st.booleans(),
    tree=st.booleans(),
    reuse=st.booleans(),
)
def test_confident_learning_plan_ignores_batching(problem, filter_by, frac, ntr, min_ex, score, adjust, tree,
                                                  reuse):
    data, rng = problem
    k = data.n_classes
    ntr_value = rng.integers(0, 5, k).tolist() if ntr else None

    def make():
        return ConfidentLearning(filter_by=filter_by, frac_noise=frac, num_to_remove_per_class=ntr_value,
                                 min_examples_per_class=min_ex, score_method=score, adjust_pred_probs=adjust)

    runner = ArrayRunner(data, random_bounds(data.n_rows, rng), tree_seed=int(rng.integers(1 << 30)) if tree else None,
                         reuse_blocks=reuse)
    assert_same_as_memory(data, make, runner)


@SETTINGS
@given(
    problem=multilabel_data(),
    filter_by=st.sampled_from(FILTER_METHODS),
    frac=st.sampled_from([1.0, 0.5, 0.0]),
    ntr=st.booleans(),
    min_ex=st.integers(0, 6),
    aggregation=st.sampled_from(["ema", "softmin"]),
    tree=st.booleans(),
    reuse=st.booleans(),
)
def test_multilabel_plan_ignores_batching(problem, filter_by, frac, ntr, min_ex, aggregation, tree, reuse):
    data, rng = problem
    k = data.n_classes
    ntr_value = rng.integers(0, 4, (k, 2)).tolist() if ntr else None

    def make():
        return MultilabelConfidentLearning(filter_by=filter_by, frac_noise=frac, num_to_remove_per_class=ntr_value,
                                           min_examples_per_class=min_ex, aggregation=aggregation)

    runner = ArrayRunner(data, random_bounds(data.n_rows, rng), tree_seed=int(rng.integers(1 << 30)) if tree else None,
                         reuse_blocks=reuse)
    assert_same_as_memory(data, make, runner)


@pytest.mark.parametrize("filter_by", CL_FILTER_METHODS)
def test_every_filter_method_on_a_realistic_dataset(filter_by):
    """2 000 rows, 4 classes, 10% flipped; batches of 97 rows merged in a random tree; and multi-label."""
    from tests.conftest import noisy_dataset

    given_, _t, probs, _ = noisy_dataset(n=2000, k=4, noise=0.1, seed=5)
    data = LabelData.from_arrays(given_, probs)
    bounds = list(range(0, 2000, 97)) + [2000]
    assert_same_as_memory(data, lambda: ConfidentLearning(filter_by=filter_by, min_examples_per_class=420),
                          ArrayRunner(data, bounds, tree_seed=3))
    if filter_by not in FILTER_METHODS:  # multiclass only
        return
    rng = np.random.default_rng(1)
    true = rng.random((1500, 5)) < 0.3
    p = np.clip(np.where(true, 0.8, 0.2) + rng.normal(0, 0.2, true.shape), 0, 1)
    y = true ^ (rng.random(true.shape) < 0.08)
    ml = LabelData.from_arrays(y, p, task="multilabel")
    assert_same_as_memory(ml, lambda: MultilabelConfidentLearning(filter_by=filter_by, min_examples_per_class=200),
                          ArrayRunner(ml, list(range(0, 1500, 211)) + [1500]))


# --------------------------------------------------------------------------- run_plans
def test_run_plans_runs_several_plans_side_by_side():
    from tests.conftest import noisy_dataset

    given_, _t, probs, _ = noisy_dataset(n=600, k=3, noise=0.15, seed=8)
    data = LabelData.from_arrays(given_, probs)
    dets = {
        "pbnr": ConfidentLearning(filter_by="prune_by_noise_rate", min_examples_per_class=150),
        "both": ConfidentLearning(filter_by="both"),
        "low": ConfidentLearning(filter_by="low_normalized_margin", frac_noise=0.5),
        "png": ConfidentLearning(filter_by="predicted_neq_given"),
    }
    info = DatasetInfo.of(data)
    alone = {}
    for name, det in dets.items():
        runner = ArrayRunner(data, [0, 150, 151, 600])
        alone[name] = (run_plans({name: det.plan(info)}, runner), len(runner.passes))
    runner = ArrayRunner(data, [0, 150, 151, 600], tree_seed=4)
    messages: list[str] = []
    rules = run_plans({name: det.plan(info) for name, det in dets.items()}, runner, progress=messages.append)
    assert list(rules) != [] and set(rules) == set(dets)
    # one pass feeds every plan's pending step: as many passes as the longest plan
    assert len(runner.passes) == max(n for _r, n in alone.values()) == len(messages)
    assert messages[0].startswith("pass 1: ") and messages[0].count("class sums") == len(dets)
    whole = Block.of(data)
    for name, det in dets.items():
        rows = rules[name].rows(whole)
        want = det.detect(data)
        assert rows.issues.tolist() == want.issues.tolist(), name
        assert rows.suggested.tolist() == want.suggested.tolist(), name
        assert rows.scores.tolist() == want.scores.tolist(), name
        assert rows.issues.tolist() == alone[name][0][name].rows(whole).issues.tolist()


def test_run_on_block_is_run_plans_over_one_block():
    from tests.conftest import TOY_LABELS, TOY_PROBS

    data = LabelData.from_arrays(TOY_LABELS, TOY_PROBS)
    det = ConfidentLearning()
    rule = run_on_block(det.plan(DatasetInfo.of(data)), Block.of(data))
    rules = run_plans({"cl": det.plan(DatasetInfo.of(data))}, ArrayRunner(data, [0, data.n_rows]))
    assert rule.rows(Block.of(data)).issues.tolist() == rules["cl"].rows(Block.of(data)).issues.tolist()
    assert np.flatnonzero(rule.rows(Block.of(data)).issues).tolist() == [2]  # the toy's known answer


# --------------------------------------------------------------------------- refusals and result
def test_out_of_core_refuses_what_needs_all_rows_or_another_task():
    from labelqa.detectors.nrg import NeuralRelationGraph
    from tests.conftest import TOY_LABELS, TOY_PROBS

    data = LabelData.from_arrays(TOY_LABELS, TOY_PROBS)
    runner = ArrayRunner(data, [0, 4, 10])
    with pytest.raises(LabelqaError, match="needs .*--engine arrays cannot hold") as err:
        scan_out_of_core(runner, NeuralRelationGraph(), source=None, meta={})
    assert "--engine memory" in err.value.hint
    with pytest.raises(LabelqaError, match="needs multi-label data"):
        scan_out_of_core(runner, MultilabelConfidentLearning(), source=None, meta={})
    with pytest.raises(LabelqaError, match="filter_by= must be one of"):
        scan_out_of_core(runner, ConfidentLearning(filter_by="nope"), source=None, meta={})
    assert runner.passes == []  # refused before any pass


def test_out_of_core_result_holds_no_rows_in_memory():
    from tests.conftest import TOY_LABELS, TOY_PROBS

    data = LabelData.from_arrays(TOY_LABELS, TOY_PROBS, classes=["a", "b", "c"])
    runner = ArrayRunner(data, [0, 3, 10])
    with scan_out_of_core(runner, ConfidentLearning(), source="toy", meta=dict(data.meta)) as result:
        assert not result.in_memory and result.engine == "arrays"
        assert (result.n_rows, result.n_issues, result.classes, result.source) == (10, 1, ("a", "b", "c"), "toy")
        with pytest.raises(LabelqaError, match="ran out of core"):
            result.label_quality  # noqa: B018
        assert result.issues_table().column("is_label_issue").to_pylist() == [i == 2 for i in range(10)]
    assert runner.closed
