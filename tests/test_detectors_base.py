"""labelqa.detectors.base: the plan protocol, run on one block and on batches, with the worked example of
docs/architecture.md (a detector with no statistics pass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.data.model import LabelData
from labelqa.detectors.base import Block, DatasetInfo, Detector, DetectorRows, Plan, RowRule, Step, run_on_block
from labelqa.errors import LabelqaError


@dataclass(kw_only=True)
class MarginDetector(Detector):
    """docs/architecture.md's example: flag rows whose label trails the best other class by ``margin_gap``."""

    name: ClassVar[str] = "margin"
    margin_gap: float = 0.5

    def plan(self, info: DatasetInfo) -> Plan:
        return MarginRule(self.margin_gap)
        yield  # a generator with no pass


class MarginRule(RowRule):
    def __init__(self, gap: float) -> None:
        self.gap = gap

    def rows(self, block: Block) -> DetectorRows:
        p, s = block.pred_probs, block.labels
        own = p[np.arange(block.n), s]
        other = p.copy()
        other[np.arange(block.n), s] = -1
        best = other.argmax(axis=1)
        margin = own - other[np.arange(block.n), best]
        flags = margin <= -self.gap
        return DetectorRows(scores=(margin + 1) / 2, issues=flags, suggested=np.where(flags, best, s),
                            suggested_confidence=p[np.arange(block.n), best])


P = np.array([[0.9, 0.1], [0.2, 0.8], [0.05, 0.95], [0.6, 0.4]])
Y = np.array([0, 0, 0, 1])


def test_the_documented_example_detector_runs_in_memory():
    res = MarginDetector().detect(LabelData.from_arrays(Y, P))
    # margins: .8, -.6, -.9, -.2 -> rows 1 and 2 trail by at least 0.5
    assert res.issues.tolist() == [False, True, True, False]
    assert res.suggested.tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(res.scores, [0.9, 0.2, 0.05, 0.4])
    assert res.params == {"margin_gap": 0.5} and res.summary == {}


def test_the_documented_example_detector_streams_with_the_same_report(tmp_path):
    import labelqa
    from labelqa.data.source import open_source
    from labelqa.run.driver import scan_memory, scan_out_of_core
    from labelqa.run.stream import StreamRunner

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=500)
    labels = rng.integers(0, 3, 500)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"label": labels, "pred_probs": pa.array(list(probs))}), path, row_group_size=64)
    det = MarginDetector(margin_gap=0.3)
    memory = scan_memory(labelqa.load(path), [det])
    src = open_source(path, batch_size=50)
    streamed = scan_out_of_core(StreamRunner(src, 50), det, source=src.path, meta=dict(src.meta))
    assert len(streamed.passes) == 1  # no statistics pass: only the rows pass so far
    assert pa.concat_tables(streamed.iter_issue_batches()).equals(memory.issues_table())
    assert streamed.n_issues == memory.n_issues > 0


class CountRows(Step):
    name = "count"

    def start(self) -> int:
        return 0

    def feed(self, partial: int, block: Block) -> int:
        return partial + block.n

    def merge(self, a: int, b: int) -> int:
        return a + b


def test_run_on_block_sends_each_partial_back_and_returns_the_rule():
    seen = []

    def plan(info: DatasetInfo) -> Plan:
        n = yield CountRows()
        seen.append(n)
        m = yield CountRows()
        seen.append(m)
        return MarginRule(0.5)

    block = Block(Y, P)
    rule = run_on_block(plan(DatasetInfo(4, (0, 1))), block)
    assert seen == [4, 4] and isinstance(rule, MarginRule)


def test_block_cache_builds_once_and_positions_follow_the_offset():
    block = Block(Y, P, offset=10)
    calls = []
    assert block.cached("k", lambda: calls.append(1) or 7) == 7
    assert block.cached("k", lambda: calls.append(1) or 8) == 7 and calls == [1]
    assert block.positions.tolist() == [10, 11, 12, 13] and block.ids.tolist() == [10, 11, 12, 13]


def test_parameters_are_checked_by_their_option_declaration():
    from labelqa.detectors.confident import ConfidentLearning

    with pytest.raises(LabelqaError, match=r"frac_noise= must be a number in \[0, 1\], got 1.5"):
        ConfidentLearning(frac_noise=1.5).detect(LabelData.from_arrays(Y, P))
    with pytest.raises(LabelqaError, match="filter_by= must be one of"):
        ConfidentLearning(filter_by="best").check_params()
    ConfidentLearning(num_to_remove_per_class=[1, 2]).check_params()  # its shape is checked against the data
    with pytest.raises(LabelqaError, match="num_to_remove_per_class must be 2 integers"):
        ConfidentLearning(num_to_remove_per_class=[1, 2, 3]).detect(LabelData.from_arrays(Y, P))
