"""The streaming engine gives the in-memory report, row for row, over many batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labelqa
from labelqa.detectors import confident as cl_module
from labelqa.detectors.confident import FILTER_METHODS, ConfidentLearning
from labelqa.engines.selection import BoundedSmallest, Pick
from labelqa.engines.stream import scan_stream
from labelqa.errors import LabelqaError
from labelqa.report.writers import write_report

from conftest import noisy_dataset, write_parquet

N = 50_000
BATCH = 4096  # 13 batches


# --------------------------------------------------------------------------- helpers
def tie_heavy(n: int = N, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """K = 3, probabilities from 12 distinct rows (multiples of 0.05): almost every value is tied."""
    rng = np.random.default_rng(seed)
    protos = np.array([
        [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5],
        [0.5, 0.0, 0.5], [0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2],
        [0.2, 0.6, 0.2], [1.0, 0.0, 0.0],
    ], dtype=np.float32)
    which = rng.integers(0, len(protos), n)
    probs = protos[which]
    labels = np.where(rng.random(n) < 0.7, probs.argmax(axis=1), rng.integers(0, 3, n))
    return labels, probs


@pytest.fixture(scope="module")
def noisy_file(tmp_path_factory) -> Path:
    given_, _true, probs, _ = noisy_dataset(n=N, k=5, noise=0.12, seed=7)
    return write_parquet(tmp_path_factory.mktemp("noisy") / "d.parquet", given_, probs)


@pytest.fixture(scope="module")
def ties_file(tmp_path_factory) -> Path:
    labels, probs = tie_heavy()
    return write_parquet(tmp_path_factory.mktemp("ties") / "t.parquet", labels, probs)


def memory_report(path: Path, out: Path, **params) -> tuple[pa.Table, dict]:
    result = labelqa.scan(str(path), detectors=[ConfidentLearning(**params)])
    write_report(result, out)
    return pq.read_table(out / "issues.parquet"), json.loads((out / "summary.json").read_text())


def stream_report(path, out: Path, **kwargs):
    res = scan_stream(path, out_dir=out, batch_size=kwargs.pop("batch_size", BATCH), **kwargs)
    return pq.read_table(out / "issues.parquet"), json.loads((out / "summary.json").read_text()), res


def assert_same(mem: pa.Table, got: pa.Table) -> None:
    assert mem.schema.equals(got.schema), (mem.schema, got.schema)
    for name in mem.column_names:
        a, b = mem.column(name), got.column(name)
        if pa.types.is_floating(a.type):
            np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=0, atol=1e-12, err_msg=name)
        assert a.equals(b), f"column {name} differs"


def drop_source(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "source"}


# --------------------------------------------------------------------------- selection kernel
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(0, 6), min_size=1, max_size=60),
    frac=st.floats(0, 1.2),
    largest=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 60)),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    merge=st.booleans(),
)
def test_pick_equals_in_memory_pick(values, frac, largest, limit, cuts, merge):
    v = np.asarray(values, dtype=np.float32) / 4
    count = int(frac * v.size)
    want = np.zeros(v.size, dtype=bool)
    want[cl_module._pick(v, count, largest=largest, limit=limit)] = True
    bounds = sorted({0, v.size, *[c for c in cuts if c < v.size]})
    pick = Pick(count, v.size, largest=largest, dtype=np.float32)
    for a, b in zip(bounds, bounds[1:]):
        if merge:  # one partial per piece, merged (the Dask way)
            part = Pick(count, v.size, largest=largest, dtype=np.float32).update(v[a:b])
            pick.merge(part)
        else:
            pick.update(v[a:b])
    cut = pick.cut(limit)
    assert np.array_equal(cut.select(v), want)
    assert cut.selected == want.sum()


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


# --------------------------------------------------------------------------- identity with memory
@pytest.mark.parametrize("filter_by", FILTER_METHODS)
def test_every_filter_method_matches_memory(noisy_file, tmp_path, filter_by):
    mem, mem_sum = memory_report(noisy_file, tmp_path / "mem", filter_by=filter_by)
    got, got_sum, res = stream_report(noisy_file, tmp_path / "str", filter_by=filter_by)
    assert_same(mem, got)
    assert got_sum == mem_sum
    assert res.n_issues == mem_sum["issues_found"] > 0
    assert (tmp_path / "mem" / "summary.md").read_text() == (tmp_path / "str" / "summary.md").read_text()
    assert (tmp_path / "mem" / "issues.csv").read_bytes() == (tmp_path / "str" / "issues.csv").read_bytes()


OPTIONS = [
    {"frac_noise": 0.4},
    {"min_examples_per_class": 9_000},
    {"num_to_remove_per_class": [300, 0, 50, 2_000, 10]},
    {"score_method": "normalized_margin", "adjust_pred_probs": True},
    {"score_method": "confidence_weighted_entropy"},
    {"min_examples_per_class": 0, "frac_noise": 0.75},
]


@pytest.mark.parametrize("filter_by", FILTER_METHODS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o))
def test_options_match_memory(noisy_file, tmp_path, filter_by, options):
    mem, mem_sum = memory_report(noisy_file, tmp_path / "mem", filter_by=filter_by, **options)
    got, got_sum, _ = stream_report(noisy_file, tmp_path / "str", filter_by=filter_by, **options)
    assert_same(mem, got)
    assert got_sum == mem_sum


@pytest.mark.parametrize("filter_by", FILTER_METHODS)
@pytest.mark.parametrize("options", [{}, {"min_examples_per_class": 12_000}, {"frac_noise": 0.3},
                                     {"num_to_remove_per_class": [5_000, 3, 1_000]},
                                     {"score_method": "normalized_margin"}],
                         ids=lambda o: ",".join(o) or "defaults")
def test_tie_heavy_data_matches_memory(ties_file, tmp_path, filter_by, options):
    """12 distinct probability rows: every cut falls inside a block of ties."""
    mem, mem_sum = memory_report(ties_file, tmp_path / "mem", filter_by=filter_by, **options)
    got, got_sum, _ = stream_report(ties_file, tmp_path / "str", filter_by=filter_by, **options)
    assert_same(mem, got)
    assert got_sum == mem_sum


def test_tie_heavy_cap_needs_the_union_count_pass(ties_file, tmp_path):
    """PBNR: ties at several cuts of one class may break the cap -> an extra counting pass."""
    found = False
    for m in (5_000, 9_000, 12_000, 14_000, 15_500):
        mem, mem_sum = memory_report(ties_file, tmp_path / f"mem{m}", min_examples_per_class=m)
        got, got_sum, res = stream_report(ties_file, tmp_path / f"str{m}", min_examples_per_class=m)
        assert_same(mem, got)
        assert got_sum == mem_sum
        found |= "selection (pbnr_count)" in res.passes
    assert found


@pytest.mark.parametrize("batch_size", [1, 777, 50_000, 1 << 20])
def test_batch_size_does_not_change_results(tmp_path, batch_size):
    labels, probs = tie_heavy(n=3_000 if batch_size == 1 else 20_000, seed=5)
    path = write_parquet(tmp_path / "t.parquet", labels, probs)
    mem, mem_sum = memory_report(path, tmp_path / "mem")
    got, got_sum, _ = stream_report(path, tmp_path / "str", batch_size=batch_size)
    assert_same(mem, got)
    assert got_sum == mem_sum


def test_float64_string_labels_ids_and_metadata_classes(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=30_000, k=4, noise=0.1, seed=11)
    names = np.array(["ant", "bee", "cat", "dog"])
    table = pa.table({
        "key": pa.array([f"r{i:06d}" for i in range(len(given_))]),
        "y": pa.array(names[given_]),
        "p": pa.array(list(probs.astype(np.float64))),
    }).replace_schema_metadata({"labelqa.classes": json.dumps(list(names))})
    path = tmp_path / "s.parquet"
    pq.write_table(table, path)
    kw = dict(label_col="y", pred_probs_col="p", id_col="key")
    result = labelqa.scan(str(path), **kw)
    write_report(result, tmp_path / "mem")
    got, got_sum, _ = stream_report(path, tmp_path / "str", **kw)
    assert_same(pq.read_table(tmp_path / "mem" / "issues.parquet"), got)
    mem_sum = json.loads((tmp_path / "mem" / "summary.json").read_text())
    assert mem_sum.pop("gate")["passed"]  # labelqa.scan decides the gate; the raw engine does not judge
    assert got_sum == mem_sum


def test_prob_columns_and_inferred_classes(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=20_000, k=3, noise=0.1, seed=2)
    names = np.array(["x", "y", "z"])
    cols = {"label": pa.array(names[given_])}
    cols.update({f"prob_{c}": pa.array(probs[:, j]) for j, c in enumerate(names)})
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table(cols), path)
    mem, mem_sum = memory_report(path, tmp_path / "mem")
    got, got_sum, _ = stream_report(path, tmp_path / "str")
    assert_same(mem, got)
    assert got_sum == mem_sum
    # inferred from sorted unique labels (pass 0 over the label column)
    path2 = tmp_path / "l.parquet"
    pq.write_table(pa.table({"label": pa.array(names[given_]), "pred_probs": pa.array(list(probs))}), path2)
    mem, mem_sum = memory_report(path2, tmp_path / "mem2")
    got, got_sum, _ = stream_report(path2, tmp_path / "str2")
    assert_same(mem, got)
    assert got_sum == mem_sum


# --------------------------------------------------------------------------- datasets
def _split_write(folder: Path, labels, probs, parts: int, hive: bool = False) -> Path:
    n = len(labels)
    bounds = np.linspace(0, n, parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        sub = folder / (f"part={i:02d}" if hive else "")
        sub.mkdir(parents=True, exist_ok=True)
        write_parquet(sub / f"f{i:02d}.parquet", labels[a:b], probs[a:b])
    return folder


@pytest.mark.parametrize("hive", [False, True], ids=["folder", "hive"])
def test_folder_and_hive_dataset_match_memory_of_the_concatenation(tmp_path, hive):
    given_, _t, probs, _ = noisy_dataset(n=N, k=5, noise=0.1, seed=4)
    folder = _split_write(tmp_path / "ds", given_, probs, parts=6, hive=hive)
    whole = write_parquet(tmp_path / "whole.parquet", given_, probs)
    # the dataset's row order is the concatenation of the files in path order
    assert ds.dataset(folder, partitioning="hive" if hive else None).to_table().column("label").to_pylist() == \
        pq.read_table(whole).column("label").to_pylist()
    for filter_by in ("prune_by_noise_rate", "low_self_confidence"):
        mem, mem_sum = memory_report(whole, tmp_path / "mem", filter_by=filter_by)
        # ids: the default row index is global, like the in-memory one
        got, got_sum, _ = stream_report(folder, tmp_path / "str", filter_by=filter_by)
        assert_same(mem, got)
        assert drop_source(got_sum) == drop_source(mem_sum)
        assert got_sum["source"] == str(folder)


# --------------------------------------------------------------------------- errors
def _late_nan_file(tmp_path: Path) -> Path:
    given_, _t, probs, _ = noisy_dataset(n=N, k=5, noise=0.1, seed=9)
    probs = probs.copy()
    probs[45_678, 2] = np.nan
    return write_parquet(tmp_path / "bad.parquet", given_, probs)


def test_bad_row_in_a_late_batch_is_named_by_its_global_index(tmp_path):
    path = _late_nan_file(tmp_path)
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path))
    with pytest.raises(LabelqaError) as got_err:
        scan_stream(path, out_dir=tmp_path / "out", batch_size=BATCH)
    assert "row 45678" in str(got_err.value)
    assert str(got_err.value) == str(mem_err.value)
    assert not (tmp_path / "out").exists()  # nothing published


def test_bad_label_in_a_late_batch_names_row_and_id(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=20_000, k=3, noise=0.1, seed=9)
    labels = given_.astype(np.int64)
    labels[19_001] = 7
    path = write_parquet(tmp_path / "bad.parquet", labels, probs, classes=[0, 1, 2])
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path), id_col="id")
    with pytest.raises(LabelqaError) as got_err:
        scan_stream(path, out_dir=tmp_path / "out", batch_size=1000, id_col="id")
    assert "row 19001 (id 19001)" in str(got_err.value)
    assert str(got_err.value) == str(mem_err.value)


def test_existing_report_is_untouched_on_failure(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "issues.parquet").write_text("old")
    with pytest.raises(LabelqaError):
        scan_stream(_late_nan_file(tmp_path), out_dir=out, batch_size=BATCH)
    assert (out / "issues.parquet").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "out"]  # no staging left


def test_unsupported_inputs_and_options(tmp_path, noisy_file):
    csv = tmp_path / "d.csv"
    csv.write_text("label\n1\n")
    with pytest.raises(LabelqaError, match="Parquet or Arrow"):
        scan_stream(csv, out_dir=tmp_path / "o")
    with pytest.raises(LabelqaError, match="filter_by"):
        scan_stream(noisy_file, out_dir=tmp_path / "o", filter_by="nope")
    with pytest.raises(LabelqaError, match="batch_size"):
        scan_stream(noisy_file, out_dir=tmp_path / "o", batch_size=0)
    with pytest.raises(LabelqaError, match="not found"):
        scan_stream(tmp_path / "missing.parquet", out_dir=tmp_path / "o")
