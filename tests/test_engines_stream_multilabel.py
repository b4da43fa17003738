"""The streaming engine on multi-label data gives the in-memory report, row for row, over many batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labelqa
from labelqa.detectors.multilabel import FILTER_METHODS, MultilabelConfidentLearning
from labelqa.engines.stream import scan_stream
from labelqa.errors import LabelqaError
from labelqa.report.writers import write_report

N = 30_000
K = 6
BATCH = 4096  # 8 batches
NAMES = np.array(["ant", "bee", "cat", "dog", "eel", "fox"])


# --------------------------------------------------------------------------- data
def ml_data(n: int = N, k: int = K, seed: int = 0, ties: bool = True, dtype=np.float32):
    """Per-class sigmoid outputs, 8% of (row, class) pairs flipped; half the rows rounded to 0.05 (ties)."""
    rng = np.random.default_rng(seed)
    true = rng.random((n, k)) < np.linspace(0.1, 0.5, k)
    logit = np.where(true, 2.0, -2.0) + rng.normal(0, 1.5, (n, k))
    p = 1 / (1 + np.exp(-logit))
    if ties:
        q = rng.random(n) < 0.5
        p[q] = np.round(p[q] * 20) / 20
    given = true ^ (rng.random((n, k)) < 0.08)
    return given, p.astype(dtype)


def tie_heavy(n: int = N, k: int = 4, seed: int = 3):
    """Probabilities from 11 values (multiples of 0.1): every cut falls inside a block of ties."""
    rng = np.random.default_rng(seed)
    true = rng.random((n, k)) < 0.3
    p = np.clip(np.where(true, 0.7, 0.2) + rng.integers(-3, 4, (n, k)) / 10, 0, 1)
    given = true ^ (rng.random((n, k)) < 0.1)
    return given, p.astype(np.float32)


def label_lists(given: np.ndarray, names=NAMES) -> list[list]:
    return [list(names[np.flatnonzero(r)]) for r in given]


def write_ml(path: Path, given, probs, *, names=NAMES, labels=None, extra: dict | None = None,
             list_type=pa.list_(pa.string()), row_group_size: int | None = None) -> Path:
    probs = np.asarray(probs)
    k = probs.shape[1]
    cols = {
        "label": pa.array(labels if labels is not None else label_lists(given, names[:k]), list_type),
        "pred_probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), k),
    }
    cols.update(extra or {})
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def ml_file(tmp_path_factory) -> Path:
    given, probs = ml_data()
    return write_ml(tmp_path_factory.mktemp("ml") / "d.parquet", given, probs)


@pytest.fixture(scope="module")
def ties_file(tmp_path_factory) -> Path:
    given, probs = tie_heavy()
    return write_ml(tmp_path_factory.mktemp("mlties") / "t.parquet", given, probs)


# --------------------------------------------------------------------------- helpers
def memory_report(path: Path, out: Path, load: dict | None = None, **params) -> tuple[pa.Table, dict]:
    result = labelqa.scan(str(path), detectors=[MultilabelConfidentLearning(**params)], **(load or {}))
    write_report(result, out)
    return pq.read_table(out / "issues.parquet"), json.loads((out / "summary.json").read_text())


def stream_report(path, out: Path, **kwargs):
    res = scan_stream(path, out_dir=out, batch_size=kwargs.pop("batch_size", BATCH), **kwargs)
    return pq.read_table(out / "issues.parquet"), json.loads((out / "summary.json").read_text()), res


def assert_same(mem: pa.Table, got: pa.Table) -> None:
    assert mem.schema.equals(got.schema), (mem.schema, got.schema)
    for name in mem.column_names:
        assert mem.column(name).equals(got.column(name)), f"column {name} differs"


def assert_same_files(mem_dir: Path, got_dir: Path) -> None:
    assert (mem_dir / "summary.md").read_text() == (got_dir / "summary.md").read_text()
    assert (mem_dir / "issues.csv").read_bytes() == (got_dir / "issues.csv").read_bytes()


def drop_source(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "source"}


# --------------------------------------------------------------------------- identity with memory
@pytest.mark.parametrize("filter_by", FILTER_METHODS)
def test_every_filter_method_matches_memory(ml_file, tmp_path, filter_by):
    mem, mem_sum = memory_report(ml_file, tmp_path / "mem", filter_by=filter_by)
    got, got_sum, res = stream_report(ml_file, tmp_path / "str", filter_by=filter_by)
    assert_same(mem, got)
    assert got_sum == mem_sum
    assert got_sum["task"] == "multilabel" and got_sum["primary_detector"] == "mlcl"
    assert res.n_issues == mem_sum["issues_found"] > 0
    assert_same_files(tmp_path / "mem", tmp_path / "str")
    assert {"labels_to_remove", "labels_to_add", "suggested_labels", "mlcl_score", "mlcl_issue"} <= set(got.column_names)


OPTIONS = [
    {"frac_noise": 0.4},
    {"min_examples_per_class": 9_000},
    {"min_examples_per_class": 24_000},
    {"num_to_remove_per_class": [[300, 50], [0, 2_000], [10, 10], [5_000, 0], [1, 1], [20_000, 20_000]]},
    {"aggregation": "softmin", "temperature": 0.05},
    {"alpha": 0.5, "min_examples_per_class": 0, "frac_noise": 0.75},
]


@pytest.mark.parametrize("filter_by", FILTER_METHODS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o))
def test_options_match_memory(ml_file, tmp_path, filter_by, options):
    mem, mem_sum = memory_report(ml_file, tmp_path / "mem", filter_by=filter_by, **options)
    got, got_sum, _ = stream_report(ml_file, tmp_path / "str", filter_by=filter_by, **options)
    assert_same(mem, got)
    assert got_sum == mem_sum


@pytest.mark.parametrize("filter_by", FILTER_METHODS)
@pytest.mark.parametrize("options", [{}, {"min_examples_per_class": 8_000}, {"min_examples_per_class": 21_500},
                                     {"frac_noise": 0.3},
                                     {"num_to_remove_per_class": [[5_000, 3], [1_000, 2_500], [0, 9], [7, 0]]}],
                         ids=lambda o: ",".join(o) or "defaults")
def test_tie_heavy_data_matches_memory(ties_file, tmp_path, filter_by, options):
    mem, mem_sum = memory_report(ties_file, tmp_path / "mem", filter_by=filter_by, **options)
    got, got_sum, _ = stream_report(ties_file, tmp_path / "str", filter_by=filter_by, **options)
    assert_same(mem, got)
    assert got_sum == mem_sum


def test_low_methods_cap_pass(ties_file, tmp_path):
    """``low_*`` without counts: when a class cut selects more rows of one value than its cap, one
    more pass applies the cap among them."""
    found = False
    for m in (8_000, 15_000, 21_500, 23_000):
        for filter_by in ("low_self_confidence", "low_normalized_margin"):
            mem, mem_sum = memory_report(ties_file, tmp_path / f"m{m}{filter_by}", filter_by=filter_by,
                                         min_examples_per_class=m)
            got, got_sum, res = stream_report(ties_file, tmp_path / f"s{m}{filter_by}", filter_by=filter_by,
                                              min_examples_per_class=m)
            assert_same(mem, got)
            assert got_sum == mem_sum
            found |= "selection (caps)" in res.passes
    assert found


@pytest.mark.parametrize("batch_size", [7, 1_000, 1 << 20])
def test_batch_size_does_not_change_results(tmp_path, batch_size):
    given, probs = tie_heavy(n=2_000 if batch_size == 7 else 20_000, seed=5)
    path = write_ml(tmp_path / "t.parquet", given, probs)
    for filter_by in ("prune_by_noise_rate", "low_normalized_margin"):
        mem, mem_sum = memory_report(path, tmp_path / "mem", filter_by=filter_by, min_examples_per_class=500)
        got, got_sum, _ = stream_report(path, tmp_path / "str", batch_size=batch_size, filter_by=filter_by,
                                        min_examples_per_class=500)
        assert_same(mem, got)
        assert got_sum == mem_sum


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 120),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**31),
    filter_by=st.sampled_from(FILTER_METHODS),
    min_ex=st.integers(0, 6),
    frac=st.sampled_from([1.0, 0.5, 0.0]),
    ntr=st.booleans(),
    batch_size=st.integers(1, 50),
    aggregation=st.sampled_from(["ema", "softmin"]),
)
def test_small_tied_inputs_match_memory(tmp_path, n, k, seed, filter_by, min_ex, frac, ntr, batch_size, aggregation):
    """Tiny datasets, probabilities from 5 values (ties everywhere), empty classes, tiny batches."""
    rng = np.random.default_rng(seed)
    probs = (rng.integers(0, 5, (n, k)) / 4).astype(np.float32)
    given_ = rng.random((n, k)) < rng.choice([0.0, 0.2, 0.6, 1.0])
    names = np.array([f"c{j}" for j in range(k)])
    path = write_ml(tmp_path / f"h{seed}.parquet", given_, probs, names=names)
    params = dict(filter_by=filter_by, min_examples_per_class=min_ex, frac_noise=frac, aggregation=aggregation)
    if ntr:
        params["num_to_remove_per_class"] = rng.integers(0, 4, (k, 2)).tolist()
    load = {"classes": list(names)}
    mem, mem_sum = memory_report(path, tmp_path / f"m{seed}", load=load, **params)
    got, got_sum, _ = stream_report(path, tmp_path / f"s{seed}", batch_size=batch_size, **load, **params)
    assert_same(mem, got)
    assert got_sum == mem_sum


@pytest.mark.parametrize("batch_size", [1, 3, 777])
@pytest.mark.parametrize("small_blocks", [False, True], ids=["one-block", "many-blocks"])
def test_ema_scores_follow_the_in_memory_row_blocks(tmp_path, monkeypatch, batch_size, small_blocks):
    """K >= 8: the in-memory EMA product rounds a row differently by its place in its row block; the
    stream engine scores the same blocks (here also with blocks of 1024 rows, so several of them)."""
    import labelqa.detectors.multilabel as ml_module

    if small_blocks:
        monkeypatch.setattr(ml_module, "_BLOCK_ELEMENTS", 2048)
    given, probs = ml_data(n=2_500 if batch_size == 1 else 5_000, k=10, seed=13, ties=False, dtype=np.float64)
    path = write_ml(tmp_path / "e.parquet", given, probs, names=np.array([f"c{j}" for j in range(10)]))
    mem, mem_sum = memory_report(path, tmp_path / "mem")
    got, got_sum, _ = stream_report(path, tmp_path / "str", batch_size=batch_size)
    assert_same(mem, got)
    assert got_sum == mem_sum


# --------------------------------------------------------------------------- inputs
def test_delimited_strings_with_label_sep(tmp_path):
    """Delimited labels; the first batches spell only integer names, later ones words: the dataset's
    item type is strings, as the loader sees the whole column."""
    given, probs = ml_data(n=20_000, k=4, seed=8)
    names = np.array(["10", "2", "cat", "dog"])
    cells = ["|".join(names[np.flatnonzero(r)]) for r in given]
    for i in range(8_000):  # early rows: integer-looking names only
        cells[i] = "|".join(names[:2][np.flatnonzero(given[i, :2])])
    for i in range(0, 20_000, 997):
        cells[i] = None  # null cell = empty set
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"label": pa.array(cells, pa.string()),
                             "pred_probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), 4)}), path)
    mem, mem_sum = memory_report(path, tmp_path / "mem", load={"label_sep": "|"})
    got, got_sum, _ = stream_report(path, tmp_path / "str", label_sep="|")
    assert_same(mem, got)
    assert got_sum == mem_sum
    assert got_sum["classes"] == ["10", "2", "cat", "dog"]
    assert got_sum["options"]["label_format"] == "delimited strings (separator '|')"
    assert_same_files(tmp_path / "mem", tmp_path / "str")


def test_integer_codes_string_ids_float64_and_softmin(tmp_path):
    given, probs = ml_data(n=20_000, k=5, seed=4, dtype=np.float64)
    labels = [list(map(int, np.flatnonzero(r))) for r in given]
    path = tmp_path / "d.parquet"
    write_ml(path, given, probs, labels=labels, list_type=pa.list_(pa.int32()),
             extra={"key": pa.array([f"r{i:06d}" for i in range(len(given))])})
    for params in ({}, {"aggregation": "softmin", "filter_by": "both"}):
        mem, mem_sum = memory_report(path, tmp_path / "mem", load={"id_col": "key"}, **params)
        got, got_sum, _ = stream_report(path, tmp_path / "str", id_col="key", **params)
        assert_same(mem, got)
        assert got_sum == mem_sum
    assert got_sum["options"]["classes_source"].startswith("integer labels as class codes")


def test_prob_columns_classes_and_metadata(tmp_path):
    given, probs = ml_data(n=15_000, k=3, seed=6)
    names = ["x", "y", "z"]
    cols = {"label": pa.array(label_lists(given, np.array(names)), pa.list_(pa.string()))}
    cols.update({f"prob_{c}": pa.array(probs[:, j]) for j, c in enumerate(names)})
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table(cols), path)
    mem, mem_sum = memory_report(path, tmp_path / "mem")
    got, got_sum, _ = stream_report(path, tmp_path / "str")
    assert_same(mem, got)
    assert got_sum == mem_sum
    # classes given explicitly (a different order than sorted) and task="multilabel"
    path2 = write_ml(tmp_path / "l.parquet", given, probs, names=np.array(["zz", "aa", "mm"]))
    load = {"classes": ["zz", "aa", "mm"], "task": "multilabel"}
    mem, mem_sum = memory_report(path2, tmp_path / "mem2", load=load)
    got, got_sum, _ = stream_report(path2, tmp_path / "str2", **load)
    assert_same(mem, got)
    assert got_sum == mem_sum


def test_folder_dataset_matches_memory_of_the_concatenation(tmp_path):
    given, probs = ml_data(n=N, seed=9)
    folder = tmp_path / "ds"
    folder.mkdir()
    bounds = np.linspace(0, N, 5).astype(int)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        write_ml(folder / f"f{i}.parquet", given[a:b], probs[a:b])
    whole = write_ml(tmp_path / "whole.parquet", given, probs)
    mem, mem_sum = memory_report(whole, tmp_path / "mem")
    got, got_sum, res = stream_report(folder, tmp_path / "str")
    assert_same(mem, got)
    assert drop_source(got_sum) == drop_source(mem_sum)
    assert res.n_issues == mem_sum["issues_found"] > 0


# --------------------------------------------------------------------------- errors
def test_bad_probability_in_a_late_batch_is_named_by_its_global_index(tmp_path):
    given, probs = ml_data(n=N, seed=1)
    probs = probs.copy()
    probs[27_123, 4] = 1.5
    path = write_ml(tmp_path / "bad.parquet", given, probs)
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path))
    with pytest.raises(LabelqaError) as got_err:
        scan_stream(path, out_dir=tmp_path / "out", batch_size=BATCH)
    assert "row 27123" in str(got_err.value)
    assert str(got_err.value) == str(mem_err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["unknown", "null list", "twice"])
def test_bad_label_sets_in_a_late_batch(tmp_path, bad):
    given, probs = ml_data(n=20_000, k=4, seed=2)
    labels = label_lists(given, NAMES[:4])
    labels[19_001] = {"unknown": ["ant", "wolf"], "null list": None, "twice": ["bee", "bee"]}[bad]
    path = write_ml(tmp_path / "bad.parquet", given, probs, labels=labels,
                    extra={"id": pa.array(np.arange(20_000))})
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path), id_col="id", classes=list(NAMES[:4]))
    with pytest.raises(LabelqaError) as got_err:
        scan_stream(path, out_dir=tmp_path / "out", batch_size=1000, id_col="id", classes=list(NAMES[:4]))
    assert "row 19001 (id 19001)" in str(got_err.value)
    assert str(got_err.value) == str(mem_err.value)


def test_task_and_option_errors(ml_file, tmp_path):
    with pytest.raises(LabelqaError, match="task is multiclass"):
        scan_stream(ml_file, out_dir=tmp_path / "o", task="multiclass")
    with pytest.raises(LabelqaError, match="does not apply to multi-label"):
        scan_stream(ml_file, out_dir=tmp_path / "o", score_method="normalized_margin")
    with pytest.raises(LabelqaError, match="renormalize"):
        scan_stream(ml_file, out_dir=tmp_path / "o", renormalize=True)
    with pytest.raises(LabelqaError, match="num_to_remove_per_class"):
        scan_stream(ml_file, out_dir=tmp_path / "o", num_to_remove_per_class=[1] * K)
    with pytest.raises(LabelqaError, match="aggregation"):
        scan_stream(ml_file, out_dir=tmp_path / "o", aggregation="max")
    plain = tmp_path / "p.parquet"
    pq.write_table(pa.table({"label": ["a", "b"], "pred_probs": [[0.9, 0.1], [0.2, 0.8]]}), plain)
    with pytest.raises(LabelqaError, match="need a list column"):
        scan_stream(plain, out_dir=tmp_path / "o", task="multilabel")
    with pytest.raises(LabelqaError, match="does not apply to multiclass"):
        scan_stream(plain, out_dir=tmp_path / "o", aggregation="softmin")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def ml_folder(tmp_path_factory) -> tuple[Path, Path]:
    given, probs = ml_data(n=N, seed=12)
    base = tmp_path_factory.mktemp("mldask")
    folder = base / "ds"
    bounds = np.linspace(0, N, 6).astype(int)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        sub = folder / f"part={i:02d}"
        sub.mkdir(parents=True)
        write_ml(sub / f"f{i}.parquet", given[a:b], probs[a:b], row_group_size=1_500)
    return folder, write_ml(base / "whole.parquet", given, probs)


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "both", "predicted_neq_given", "low_self_confidence"])
@pytest.mark.parametrize("blocksize", [None, "64KiB"], ids=["per-file", "small-blocks"])
def test_dask_matches_memory(dask_client, ml_folder, tmp_path, filter_by, blocksize):
    from labelqa.engines.dask_engine import scan_dask

    folder, whole = ml_folder
    messages: list[str] = []
    mem, mem_sum = memory_report(whole, tmp_path / "mem", filter_by=filter_by, min_examples_per_class=5_000)
    res = scan_dask(folder, out_dir=tmp_path / "d", client=dask_client, blocksize=blocksize, filter_by=filter_by,
                    min_examples_per_class=5_000, progress=messages.append)
    got = pq.read_table(tmp_path / "d" / "issues.parquet")
    got_sum = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert_same(mem, got)
    assert drop_source(got_sum) == drop_source(mem_sum)
    assert res.n_issues == mem_sum["issues_found"] > 0
    assert f"dask: {5 if blocksize is None else 20} partitions" in messages[0]


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
@pytest.mark.parametrize("aggregation", ["ema", "softmin"])
def test_dask_ema_scores_follow_the_in_memory_row_blocks(dask_client, tmp_path, aggregation):
    """K = 10, partitions of 335 rows inside one in-memory block: the EMA scores are computed on the
    in-memory block in the pass-1 chain, then shipped to the later passes' tasks (scored per
    partition, rows would round differently)."""
    from labelqa.engines.dask_engine import scan_dask

    given, probs = ml_data(n=4_000, k=10, seed=14, ties=False, dtype=np.float64)
    path = write_ml(tmp_path / "e.parquet", given, probs, names=np.array([f"c{j}" for j in range(10)]),
                    row_group_size=335)
    mem, mem_sum = memory_report(path, tmp_path / "mem", aggregation=aggregation)
    scan_dask(path, out_dir=tmp_path / "d", client=dask_client, blocksize="16KiB", aggregation=aggregation)
    got = pq.read_table(tmp_path / "d" / "issues.parquet")
    assert_same(mem, got)
    assert json.loads((tmp_path / "d" / "summary.json").read_text()) == mem_sum
