"""The duplicates detector: row hashes, the mergeable exact-group partial, near duplicates, groups, the scan."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelqa.cli.app import main
from labelqa.detectors.duplicates import (
    NO_HASH,
    HashGroups,
    consensus_labels,
    find_duplicates,
    near_duplicate_pairs,
    row_hashes,
)
from tests.conftest import noisy_dataset


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- row hashes
def test_equal_rows_hash_equal_and_different_rows_differ():
    table = pa.table({
        "text": ["a cat", "a dog", "a cat", None, None, "a cat"],
        "n": [1, 2, 1, None, None, 2],
    })
    h = row_hashes(table)
    assert h[0] == h[2]  # same text, same number
    assert len({h[0], h[1], h[5]}) == 3  # any column differing makes a different row
    assert h[3] == h[4] == NO_HASH  # every hashed column null: no exact group
    assert row_hashes(table, ["text"])[5] == row_hashes(table, ["text"])[0]


def test_lists_bytes_and_numbers():
    table = pa.table({
        "pixels": pa.array([[1, 2, 3], [3, 2, 1], [1, 2, 3], [1, 2], [], []]),
        "img": pa.array([b"\x00\x01", b"\x00\x01", b"\x00\x01", b"", b"x", b"x"], pa.binary()),
        "f": pa.array([0.0, 0.0, -0.0, 1.5, 2.0, 2.0]),
    })
    h = row_hashes(table)
    assert h[0] == h[2]  # -0.0 == 0.0
    assert h[0] != h[1]  # list order matters
    assert h[0] != h[3] and h[4] == h[5]  # a prefix is another list; empty lists are equal
    assert row_hashes(table, ["pixels"])[4] == row_hashes(table, ["pixels"])[5] != NO_HASH


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["x", "y", "", None]), st.lists(st.integers(0, 3), max_size=3)),
                min_size=1, max_size=30))
def test_hashes_are_equal_exactly_when_rows_are(rows):
    table = pa.table({"s": [r[0] for r in rows], "v": pa.array([r[1] for r in rows], pa.list_(pa.int64()))})
    h = row_hashes(table)
    for i in range(len(rows)):
        for j in range(len(rows)):
            assert (h[i] == h[j]) == (rows[i] == rows[j])


def test_chunked_and_dictionary_columns_hash_like_plain_ones():
    plain = pa.table({"s": ["a", "b", "a", "c"]})
    chunked = pa.table({"s": pa.chunked_array([["a", "b"], ["a", "c"]])})
    dictionary = pa.table({"s": pa.array(["a", "b", "a", "c"]).dictionary_encode()})
    assert (row_hashes(plain) == row_hashes(chunked)).all()
    assert (row_hashes(plain) == row_hashes(dictionary)).all()


# --------------------------------------------------------------------------- consensus and the partial
def test_consensus_is_the_majority_then_the_model_then_the_lower_class():
    counts = np.array([[2, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 3]])
    sums = np.array([[1, 9, 0], [3, 5, 0], [4, 4, 0], [0, 0, 1]])
    assert consensus_labels(counts, sums).tolist() == [0, 1, 0, 2]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_hash_groups_merge_to_the_same_partial_in_any_batching(data):
    n = data.draw(st.integers(1, 60))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    hashes = rng.integers(0, 6, n).astype(np.uint64)  # 0 is NO_HASH: such rows are left out
    labels = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n)
    whole = HashGroups.of(hashes, labels, probs)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=5))))
    parts = [HashGroups.of(hashes[a:b], labels[a:b], probs[a:b]) for a, b in zip([0, *cuts], [*cuts, n])]
    order = data.draw(st.permutations(range(len(parts))))
    merged = HashGroups.empty(3)
    for i in order:
        merged = merged.merge(parts[i])
    assert (merged.hashes == whole.hashes).all()
    assert (merged.counts == whole.counts).all() and (merged.prob_sums == whole.prob_sums).all()
    assert NO_HASH not in whole.hashes
    assert whole.counts.sum() == int((hashes != NO_HASH).sum())


def test_exact_groups_from_the_partial_equal_the_in_memory_groups():
    given_labels, _, probs, _ = noisy_dataset(n=3000, k=4, seed=3)
    rng = np.random.default_rng(1)
    hashes = rng.integers(1, 1200, 3000).astype(np.uint64)  # many collisions = many groups
    groups = find_duplicates(given_labels, probs, hashes=hashes)
    partial = HashGroups.of(hashes[:1000], given_labels[:1000], probs[:1000]).merge(
        HashGroups.of(hashes[1000:], given_labels[1000:], probs[1000:])).duplicated()
    index, size, consensus, agree = partial.lookup(hashes)
    grouped = groups.group >= 0
    assert ((index >= 0) == grouped).all()
    assert (size == groups.size).all()
    assert (consensus[grouped] == groups.consensus[groups.group[grouped]]).all()
    flagged = np.zeros(3000, dtype=bool)
    flagged[grouped] = given_labels[grouped] != consensus[grouped]
    assert (flagged == groups.conflicts(given_labels)).all()
    assert (agree[grouped] == groups.agree[groups.group[grouped]]).all()


# --------------------------------------------------------------------------- near duplicates and groups
def _blobs(n=2000, d=32, k=4, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    centres = rng.normal(size=(k, d))
    emb = centres[true] + rng.normal(scale=1.5, size=(n, d))
    return true, emb


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("index", ["brute", "sklearn"])
def test_near_duplicate_pairs_are_the_pairs_above_the_threshold(index):
    _, emb = _blobs()
    rng = np.random.default_rng(5)
    src = rng.choice(2000, 40, replace=False)
    near = emb[src] + rng.normal(scale=0.02, size=(40, emb.shape[1]))
    f = _unit(np.vstack([emb, near]))
    i, j, s = near_duplicate_pairs(f, 0.98, k=5, index=index)
    sims = f @ f.T
    expected = {(a, b) for a, b in zip(*np.nonzero(np.triu(sims >= 0.98, 1)))}
    assert set(zip(i.tolist(), j.tolist())) == expected
    assert {(int(a), 2000 + t) for t, a in enumerate(src)} <= expected
    assert (i < j).all() and np.allclose(s, sims[i, j], atol=1e-6)


def test_groups_are_connected_components_of_exact_and_near_links():
    labels = np.array([0, 0, 1, 1, 2, 2, 0])
    probs = np.full((7, 3), 1 / 3)
    hashes = np.array([5, 5, 7, 9, 9, 11, 0], dtype=np.uint64)  # rows 0,1 and 3,4 identical; row 6 unhashed
    f = np.eye(7, dtype=np.float32)
    f[2] = f[3] = _unit(np.array([[0, 0, 1, 1, 0, 0, 0]], dtype=np.float32))[0]  # 2 ~ 3 near-identical
    g = find_duplicates(labels, probs, hashes=hashes, embeddings=f, threshold=0.99, index="brute", k=3)
    assert g.group.tolist() == [0, 0, 1, 1, 1, -1, -1]  # 2-3 near link joins the 3-4 exact group
    assert g.size.tolist() == [2, 2, 3, 3, 3, 1, 1]
    assert g.exact.tolist() == [True, False]
    assert g.counts.tolist() == [[2, 0, 0], [0, 2, 1]]
    assert g.consensus.tolist() == [0, 1] and g.agree.tolist() == [2, 2]
    assert g.conflicts(labels).tolist() == [False, False, False, False, True, False, False]


def test_no_links_no_groups():
    g = find_duplicates(np.array([0, 1, 2]), np.full((3, 3), 1 / 3), hashes=np.array([1, 2, 3], np.uint64))
    assert g.n_groups == 0 and (g.group == -1).all() and not g.conflicts(np.array([0, 1, 2])).any()


# --------------------------------------------------------------------------- the detector in a scan
def _dataset_with_duplicates(tmp_path, *, n=600, n_exact=12, n_near=10, seed=0, embeddings=True):
    """Rows with text and embeddings; ``n_exact`` exact copies and ``n_near`` near copies with flipped labels."""
    given_labels, true, probs, _ = noisy_dataset(n=n, k=4, noise=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    _, emb = _blobs(n=n, seed=seed)
    text = [f"example {i}" for i in range(n)]
    exact_src = rng.choice(n, n_exact, replace=False)
    near_src = rng.choice(np.setdiff1d(np.arange(n), exact_src), n_near, replace=False)
    labels, rows_p, rows_e, texts, split = list(given_labels), list(probs), list(emb), list(text), ["train"] * n
    for s in exact_src:
        labels.append((given_labels[s] + 1) % 4)
        rows_p.append(probs[s]), rows_e.append(emb[s]), texts.append(text[s]), split.append("test")
    for s in near_src:
        labels.append((given_labels[s] + 2) % 4)
        rows_p.append(probs[s]), rows_e.append(emb[s] + rng.normal(scale=0.01, size=emb.shape[1]))
        texts.append(text[s] + " (copy)"), split.append("train")
    names = np.array(["ant", "bee", "cat", "dog"])
    cols = {
        "id": pa.array([f"r{i}" for i in range(len(labels))]),
        "label": pa.array(names[np.array(labels)]),
        "text": pa.array(texts),
        "split": pa.array(split),
        "pred_probs": pa.array([list(map(float, p)) for p in rows_p], pa.list_(pa.float32())),
    }
    if embeddings:
        cols["embedding"] = pa.array([list(map(float, e)) for e in rows_e], pa.list_(pa.float32()))
    path = tmp_path / "dups.parquet"
    table = pa.table(cols).replace_schema_metadata({"labelqa.classes": json.dumps(list(names))})
    pq.write_table(table, path)
    exact_copies = np.arange(n, n + n_exact)
    near_copies = np.arange(n + n_exact, n + n_exact + n_near)
    # each pair ties 1:1, so the model (the same probabilities on both rows) decides which label is wrong
    sources = np.concatenate([exact_src, near_src])
    copies = np.concatenate([exact_copies, near_copies])
    p, lab = np.array(rows_p), np.array(labels)
    model_backs_source = p[sources, lab[sources]] >= p[sources, lab[copies]]
    wrong = np.where(model_backs_source, copies, sources)
    return path, exact_copies, near_copies, wrong


def test_scan_flags_every_flipped_duplicate_and_only_those(tmp_path, capsys):
    path, exact_copies, near_copies, wrong = _dataset_with_duplicates(tmp_path)
    code, _, err = run(["scan", path, "--id-col", "id", "--detectors", "dup", "--dup-cols", "text",
                        "--split-col", "split", "-o", tmp_path / "rep", "-q"], capsys)
    assert code == 0, err
    issues = pq.read_table(tmp_path / "rep" / "issues.parquet").to_pandas()
    flagged = set(issues.index[issues["is_label_issue"]])
    assert flagged == set(wrong)  # one row of each pair: the one whose label the model ranks lower
    assert 0 < np.isin(wrong, np.concatenate([exact_copies, near_copies])).sum() < len(wrong)
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())["detectors"]["dup"]["summary"]
    assert summary["n_groups"] == summary["n_conflicting_groups"] == 22
    assert summary["n_exact_groups"] == 12 and summary["n_near_groups"] == 10
    assert summary["n_leak_groups"] == 12  # the exact copies went to the test split
    row = issues.loc[wrong[0]]  # an exact pair
    assert row["reason"] == f"1 identical row is labelled '{row['suggested_label']}'"
    assert issues.loc[wrong[-1], "reason"].startswith("1 near-identical row is labelled")
    assert row["dup_leak"] and not issues.loc[wrong[-1], "dup_leak"]
    assert (issues["dup_group"] >= 0).sum() == 44


def test_exact_duplicates_without_embeddings_join_the_ensemble(tmp_path, capsys):
    path, exact_copies, _, wrong = _dataset_with_duplicates(tmp_path, embeddings=False)
    code, _, err = run(["scan", path, "--detectors", "cl,dup", "--dup-cols", "text", "--issue-rule", "any",
                        "-o", tmp_path / "rep", "-q"], capsys)
    assert code == 0, err
    issues = pq.read_table(tmp_path / "rep" / "issues.parquet").to_pandas()
    assert set(np.flatnonzero(issues["dup_issue"])) == set(wrong[:len(exact_copies)])
    assert issues.loc[wrong[:len(exact_copies)], "is_label_issue"].all()
    assert "dup" in issues.loc[wrong[0], "detectors"]


@pytest.mark.parametrize("argv, message", [
    (["--detectors", "dup", "--embeddings-col", "nope"], "nope"),
    (["--detectors", "dup", "--dup-cols", "missing"], "no column 'missing'"),
    (["--detectors", "dup"], "needs columns to hash or embeddings"),
    (["--detectors", "dup", "--dup-cols", "text", "--dup-threshold", "0"], "--dup-threshold must be"),
])
def test_bad_dup_options_are_one_line_exit_2(tmp_path, capsys, argv, message):
    path, *_ = _dataset_with_duplicates(tmp_path, embeddings=False, n=100, n_exact=2, n_near=0)
    code, _, err = run(["scan", path, "-o", tmp_path / "rep", "-q", *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "rep").exists()


# --------------------------------------------------------------------------- the exact plan on every engine
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_hash_counts_and_group_extras_merge_the_same_in_any_batching(data):
    from labelqa.detectors.duplicates import HashCounts

    n = data.draw(st.integers(1, 60))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    hashes = rng.integers(0, 6, n).astype(np.uint64)
    labels, probs = rng.integers(0, 3, n), rng.dirichlet(np.ones(3), n)
    split = rng.integers(0, 3, n).astype(np.uint64)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=5))))
    spans = list(zip([0, *cuts], [*cuts, n]))
    order = data.draw(st.permutations(range(len(spans))))
    counts, groups = HashCounts.empty(), HashGroups.empty(3, positions=True, splits=True)
    for i in order:
        a, b = spans[i]
        counts = counts.merge(HashCounts.of(hashes[a:b]))
        groups = groups.merge(HashGroups.of(hashes[a:b], labels[a:b], probs[a:b], positions=np.arange(a, b),
                                            split_hashes=split[a:b]))
    real = hashes[hashes != NO_HASH]
    assert counts.hashes.tolist() == sorted(set(real.tolist()))
    assert counts.counts.tolist() == [int((real == h).sum()) for h in counts.hashes]
    assert counts.duplicated().tolist() == [h for h in counts.hashes if (real == h).sum() >= 2]
    for h, first in zip(groups.hashes, groups.first):  # first row and the (hash, split) pairs, by brute force
        assert first == np.flatnonzero(hashes == h)[0]
    assert sorted(map(tuple, groups.splits.tolist())) == sorted(
        {(int(h), int(s)) for h, s in zip(hashes, split) if h != NO_HASH})


def _exact_dataset(tmp_path, *, n=900, seed=0, row_group_size=128, class_names=("ant", "bee", "cat", "dog")):
    """Rows with text: pairs, triples and quads of identical text (some with flipped labels), a few null texts.

    Returns the path and the rows whose label differs from their group's majority when the majority is strict.
    """
    rng = np.random.default_rng(seed)
    k = len(class_names)
    labels, _, probs, _ = noisy_dataset(n=n, k=k, noise=0.0, seed=seed)
    text = np.array([f"example {i}" for i in range(n)], dtype=object)
    split = np.where(rng.random(n) < 0.8, "train", "test").astype(object)
    sources = rng.choice(n, 60, replace=False)
    rows_l, rows_p, rows_t, rows_s = list(labels), list(probs), list(text), list(split)
    for j, s in enumerate(sources):
        for c in range(1 + j % 3):  # 1, 2 or 3 copies, scattered through the file by the shuffle below
            flip = (j + c) % 2 == 0
            rows_l.append((labels[s] + 1) % k if flip else labels[s])
            rows_p.append(probs[s])
            rows_t.append(text[s])
            rows_s.append("test" if c == 0 else "train")
    for i in rng.choice(n, 15, replace=False):  # null texts are no duplicates of each other
        rows_t[i] = None
    perm = rng.permutation(len(rows_l))
    names = np.array(class_names)
    table = pa.table({
        "id": pa.array([f"r{i}" for i in range(len(rows_l))]),
        "label": pa.array(names[np.array(rows_l)[perm]]),
        "text": pa.array([rows_t[i] for i in perm]),
        "split": pa.array([rows_s[i] for i in perm]),
        "pred_probs": pa.array([list(map(float, rows_p[i])) for i in perm], pa.list_(pa.float32())),
    }).replace_schema_metadata({"labelqa.classes": json.dumps(list(names))})
    path = tmp_path / "exact.parquet"
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("options", [
    {"detectors": "cl,dup"},
    {"detectors": "dup,cl", "issue_rule": "any"},
    {"detectors": "cl,dup", "issue_rule": "majority", "split_col": "split"},
    {"detectors": "dup", "split_col": "split"},
])
def test_stream_engine_gives_the_memory_engines_report(tmp_path, options):
    from tests.test_run_stream import compare

    path = _exact_dataset(tmp_path)
    summary = compare(path, tmp_path, "stream", id_col="id", dup_cols=["text"], batch_size=97, **options)
    dup = summary["detectors"]["dup"]["summary"]
    assert dup["n_groups"] == 60 and dup["n_conflicting_groups"] > 20 and dup["n_near_groups"] == 0
    assert summary["detectors"]["dup"]["issues_found"] == dup["n_issues"] > 20
    if "split_col" in options:
        assert dup["n_leak_groups"] > 0 and all("splits" in g for g in dup["groups"])


def test_memory_and_stream_flag_exactly_the_flipped_copies(tmp_path, capsys):
    """Groups of 2-4 identical rows, some flipped: both engines flag the rows outside the majority, no others."""
    path = _exact_dataset(tmp_path, n=400, seed=3, row_group_size=50)
    table = pq.read_table(path).to_pandas()
    expected = set()
    for _, rows in table[table["text"].notna()].groupby("text"):
        if len(rows) < 2:
            continue
        top = rows["label"].value_counts()
        if (top == top.max()).sum() == 1:  # a strict majority: the others are the flagged rows
            expected |= set(rows.index[rows["label"] != top.idxmax()])
    assert len(expected) > 10
    for engine in ("memory", "stream"):
        code, _, err = run(["scan", path, "--id-col", "id", "--detectors", "dup,cl", "--dup-cols", "text",
                            "--engine", engine, "--batch-size", "64", "-o", tmp_path / engine, "-v",
                            "--issue-rule", "primary_or_2"], capsys)
        assert code == 0, err
        issues = pq.read_table(tmp_path / engine / "issues.parquet").to_pandas()
        flagged = set(np.flatnonzero(issues["dup_issue"]))
        assert expected <= flagged  # ties add one row of each tied group, chosen by the model
        ties = flagged - expected
        assert all((issues.loc[list(ties), "dup_group_size"] % 2) == 0)
        assert issues.loc[list(flagged), "is_label_issue"].all()  # dup is primary (primary_or_2): its flags are issues
    a, b = (pq.read_table(tmp_path / e / "issues.parquet") for e in ("memory", "stream"))
    assert a.equals(b)
    assert "dup on --engine stream: exact duplicates of text only" in err


@pytest.mark.parametrize("argv, message", [
    (["--dup-threshold", "0.9"], "near duplicates over every embedding"),
    (["--embeddings-col", "embedding"], "near duplicates over every embedding"),
    ([], "near duplicates over every embedding"),  # the file has embeddings: the memory engine would use them
])
def test_stream_refuses_near_duplicates_in_one_line(tmp_path, capsys, argv, message):
    path, *_ = _dataset_with_duplicates(tmp_path, n=100, n_exact=2, n_near=2)
    code, _, err = run(["scan", path, "--detectors", "cl,dup", "--dup-cols", "text", "--engine", "stream",
                        "-o", tmp_path / "rep", *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "rep").exists()


def test_stream_dup_errors_are_one_line(tmp_path, capsys):
    path = _exact_dataset(tmp_path, n=100)
    for argv, message in ((["--dup-cols", "nope"], "no column 'nope'"),
                          (["--split-col", "nope", "--dup-cols", "text"], "no column 'nope'"),
                          ([], "needs columns to hash")):
        code, _, err = run(["scan", path, "--detectors", "cl,dup", "--engine", "stream", "-o", tmp_path / "rep",
                            *argv], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "rep").exists()


def test_the_plan_on_one_block_equals_the_in_memory_detector(tmp_path):
    """run_on_block(plan) and detect() (find_duplicates) are two derivations of the same outputs."""
    import labelqa
    from labelqa.detectors.base import Block, DatasetInfo, run_on_block
    from labelqa.detectors.duplicates import DuplicateDetector

    path = _exact_dataset(tmp_path, n=300, seed=5)
    data = labelqa.load(str(path), id_col="id")
    det = DuplicateDetector(dup_cols=["text"], split_col="split")
    res = det.detect(data)
    block = Block.of(data)
    rule = run_on_block(det.plan(DatasetInfo.of(data)), block)
    rows = rule.rows(block)
    assert np.array_equal(rows.scores, res.scores) and np.array_equal(rows.issues, res.issues)
    assert np.array_equal(rows.suggested, res.suggested)
    assert np.array_equal(rows.suggested_confidence, res.suggested_confidence)
    assert rows.extra.keys() == res.extra.keys()
    for key in res.extra:
        assert np.array_equal(rows.extra[key], res.extra[key]), key
    assert rule.summary(rule.tally(block, rows)) == res.summary


@pytest.mark.slow
def test_dask_engine_gives_the_memory_engines_report(tmp_path):
    pytest.importorskip("distributed")
    from tests.test_run_stream import compare

    path = _exact_dataset(tmp_path)
    summary = compare(path, tmp_path, "dask", id_col="id", dup_cols=["text"], split_col="split", batch_size=128,
                      detectors="cl,dup")
    assert summary["detectors"]["dup"]["summary"]["n_conflicting_groups"] > 20


def test_gate_on_one_detectors_flags_is_the_same_out_of_core(tmp_path):
    import labelqa
    from labelqa.errors import LabelqaError

    path = _exact_dataset(tmp_path, n=300, seed=2)
    gates = {}
    for engine in ("memory", "stream"):
        for names in (["dup"], ["cl"]):
            with labelqa.scan(str(path), engine=engine, detectors="cl,dup", dup_cols=["text"], gate_detectors=names,
                              max_issues=5, batch_size=70) as result:
                gates[engine, names[0]] = result.gate.as_dict()
    assert gates["memory", "dup"] == gates["stream", "dup"] and gates["memory", "cl"] == gates["stream", "cl"]
    assert gates["memory", "dup"] != gates["memory", "cl"]  # each detector's own count, not the combined one
    with pytest.raises(LabelqaError, match="one detector's"):
        labelqa.scan(str(path), engine="stream", detectors="cl,dup", dup_cols=["text"], gate_detectors=["cl", "dup"],
                      max_issues=5, issue_rule="primary")
