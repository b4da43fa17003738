"""ScanResult: ranks, issues table and summary built from real detector output."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.detectors.confident import ConfidentLearning
from labelqa.result import ISSUE_COLUMNS, ScanResult, rank_rows
from labelqa.scan import scan
from tests.conftest import TOY_LABELS, TOY_PROBS, noisy_dataset


def test_rank_rows_hand_computed():
    scores = np.array([0.5, 0.1, 0.9, 0.2, 0.1])
    flags = np.array([False, True, False, True, False])
    # flagged first by score: row1 (0.1), row3 (0.2); then unflagged: row4 (0.1), row0 (0.5), row2 (0.9)
    assert rank_rows(scores, flags).tolist() == [4, 1, 5, 2, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=40))
def test_rank_rows_is_a_permutation_with_flagged_first(rows):
    scores = np.array([r[0] for r in rows])
    flags = np.array([r[1] for r in rows])
    ranks = rank_rows(scores, flags)
    assert sorted(ranks.tolist()) == list(range(1, len(rows) + 1))
    assert set(ranks[flags].tolist()) == set(range(1, int(flags.sum()) + 1))
    order = np.argsort(ranks)
    flagged_scores = scores[order][: flags.sum()]
    assert np.all(np.diff(flagged_scores) >= 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, float("nan")]) | st.floats(0, 1), st.booleans()),
                min_size=1, max_size=60))
def test_rank_rows_equals_lexsort_definition(rows):
    """Ties (and NaN, which sorts last) are broken by row position, exactly as a lexsort would."""
    scores = np.array([r[0] for r in rows])
    flags = np.array([r[1] for r in rows])
    order = np.lexsort((np.arange(len(rows)), scores, ~flags))
    expected = np.empty(len(rows), dtype=np.int64)
    expected[order] = np.arange(1, len(rows) + 1)
    assert rank_rows(scores, flags).tolist() == expected.tolist()


def toy_result(classes=("a", "b", "c")) -> ScanResult:
    data = LabelData.from_arrays(TOY_LABELS, TOY_PROBS, classes=list(classes))
    return scan(data)


def test_issues_table_on_toy():
    result = toy_result()
    table = result.issues_table()
    assert table.column_names[: len(ISSUE_COLUMNS)] == list(ISSUE_COLUMNS)
    # one detector: its score and flag are label_quality and is_label_issue, not repeated under cl_*
    assert not {"cl_score", "cl_issue"} & set(table.column_names)
    columns = [table.column(c).combine_chunks() for c in table.column_names]
    for i in range(len(columns)):
        for j in range(i + 1, len(columns)):
            assert not (columns[i].type == columns[j].type and columns[i].equals(columns[j])), \
                (table.column_names[i], table.column_names[j])
    rows = table.to_pylist()
    assert [r["is_label_issue"] for r in rows] == [i == 2 for i in range(10)]
    flagged = rows[2]
    assert flagged["given_label"] == "b" and flagged["suggested_label"] == "c"
    assert flagged["rank"] == 1
    assert flagged["suggested_confidence"] == pytest.approx(0.9)
    assert flagged["detectors"] == "cl"
    assert "given 'b'" in flagged["reason"] and "'c'" in flagged["reason"]
    # unflagged rows suggest their given label and carry no reason
    assert all(r["suggested_label"] == r["given_label"] and r["reason"] == "" for r in rows if not r["is_label_issue"])
    assert table.column("id").to_pylist() == list(range(10))


def test_int_classes_stay_ints_in_the_table():
    data = LabelData.from_arrays(TOY_LABELS, TOY_PROBS)
    table = scan(data).issues_table()
    assert pa.types.is_integer(table.schema.field("given_label").type)
    assert table.column("suggested_label")[2].as_py() == 2


def test_summary_is_json_and_consistent():
    given, _, probs, _ = noisy_dataset(n=1500, k=5, seed=3)
    result = scan(LabelData.from_arrays(given, probs))
    summary = json.loads(json.dumps(result.summary(), allow_nan=False))
    assert summary["schema_version"] == 3
    assert summary["rows"] == 1500 and summary["n_classes"] == 5
    assert summary["issues_found"] == int(result.is_label_issue.sum())
    assert summary["issue_rate"] == pytest.approx(summary["issues_found"] / 1500)
    per_class = summary["per_class"]
    assert sum(r["count"] for r in per_class) == 1500
    assert sum(r["issues"] for r in per_class) == summary["issues_found"]
    nm = np.array(summary["noise_matrix"])
    assert nm.shape == (5, 5)
    assert np.allclose(nm.sum(axis=0), 1.0)  # columns are distributions over the given label
    assert sum(p["count"] for p in summary["confused_pairs"]) <= summary["issues_found"]
    assert "cl" in summary["detectors"]


def test_primary_must_have_run():
    from labelqa.errors import LabelqaError

    data = LabelData.from_arrays(TOY_LABELS, TOY_PROBS)
    with pytest.raises(LabelqaError, match="primary detector 'nope'"):
        scan(data, primary="nope")
    with pytest.raises(LabelqaError, match="given twice"):
        scan(data, detectors=[ConfidentLearning(), ConfidentLearning()])


def test_large_issues_table_ranks_match_rank_rows():
    """The rank sort runs on a thread beside the text columns: same ranks, same column position."""
    given_labels, _, probs, _ = noisy_dataset(n=70_000, k=5, noise=0.1, seed=21)
    result = scan(LabelData.from_arrays(given_labels, probs))
    table = result.issues_table()
    assert table.column_names.index("rank") == ISSUE_COLUMNS.index("rank")
    np.testing.assert_array_equal(table.column("rank").to_numpy(),
                                  rank_rows(result.label_quality, result.is_label_issue))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 4),
       st.sampled_from(["relative_rank", "primary_or_2", "primary", "any", "all", "majority"]), st.integers(0, 2**31))
def test_detectors_and_reason_columns_match_the_per_row_flags(n, n_det, rule, seed):
    """``detectors`` is the comma-joined names that flagged each row ("" for none); ``reason`` is "" exactly
    on rows the combined rule did not flag (both built from the flagged rows only)."""
    from labelqa.detectors.base import DetectorResult
    from labelqa.result import build_issues_table

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=n)
    labels = np.where(rng.random(n) < 0.1, rng.integers(0, 3, size=n), probs.argmax(axis=1))  # 10% noise
    data = LabelData.from_arrays(labels, probs)
    names = [f"det{i}" for i in range(n_det)]
    results = {
        name: DetectorResult(name=name, scores=rng.random(n), issues=rng.random(n) < rng.random(),
                             suggested=rng.integers(0, 3, size=n), suggested_confidence=rng.random(n))
        for name in names
    }
    table = build_issues_table(data, results, names[0], rule)
    expected = [",".join(m for m in names if results[m].issues[r]) for r in range(n)]
    assert table.column("detectors").type == pa.string()
    assert table.column("detectors").to_pylist() == expected
    reason = table.column("reason").to_pylist()
    flags = table.column("is_label_issue").to_pylist()
    assert table.column("reason").null_count == 0
    assert all((text != "") == flag for text, flag in zip(reason, flags))


@pytest.mark.parametrize("case", ["one detector", "cl+nrg relative_rank", "cl+nrg primary_or_2", "two models",
                                  "multi-label"])
def test_issue_batches_in_blocks_equal_the_whole_table(case, monkeypatch):
    """In memory the issues table reaches writers in blocks built on demand: concatenated, the blocks are the
    table built in one piece (ranks global, reasons and detector names per block, every extra column)."""
    import labelqa.result as result_module

    given_, _, probs, _ = noisy_dataset(n=1000, k=4, seed=3)
    rng = np.random.default_rng(3)
    options: dict = {}
    if case.startswith("cl+nrg"):
        emb = (np.eye(4)[given_] + rng.normal(0, 0.6, (1000, 4))).astype(np.float32)
        data = LabelData.from_arrays(given_, probs, embeddings=emb)
        options = {"detectors": ["cl", "nrg"], "issue_rule": case.split()[1]}
    elif case == "two models":
        other = np.clip(probs + rng.normal(0, 0.05, probs.shape), 1e-4, None)
        data = LabelData.from_arrays(given_, [probs, other / other.sum(axis=1, keepdims=True)])
    elif case == "multi-label":
        true_sets = rng.random((1000, 4)) < 0.3
        ml_probs = np.clip(np.where(true_sets, 0.85, 0.1) + rng.normal(0, 0.08, (1000, 4)), 0.01, 0.99)
        sets = true_sets ^ (rng.random((1000, 4)) < 0.05)  # 5% of the (row, class) cells flipped
        data = LabelData.from_arrays(sets, ml_probs, task="multilabel")
    else:
        data = LabelData.from_arrays(given_, probs)
    result = scan(data, **options)
    monkeypatch.setattr(result_module, "MEMORY_BATCH_ROWS", 97)
    blocks = list(result.iter_issue_batches())
    # a quarter-size first block (the writer starts sooner), then full blocks
    assert [b.num_rows for b in blocks] == [97 // 4] + [97] * 10 + [1000 - 97 // 4 - 970]
    whole = result.issues_table()
    assert result.n_issues > 0
    assert pa.concat_tables(blocks).combine_chunks().equals(whole.combine_chunks())
    assert list(result.iter_issue_batches()) == [whole]  # once built, the cached table is handed out
