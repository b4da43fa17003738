"""The streaming runner's contract, through ``labelqa.scan(path, engine="stream")`` and ``write_report``.

The plans' batch-independence is proven in test_run_driver.py; here: the
report files of a streamed scan are those of the in-memory engine (issues
table, issues.csv bytes, summary.json but ``options.engine``, summary.md
bytes), over files, folders and hive datasets, every input layout, and the
behaviours of a real reader: global row numbers in errors, refusals,
failures that leave an existing report alone, the gate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import labelqa
from labelqa.cli.app import main
from labelqa.errors import LabelqaError
from tests.conftest import noisy_dataset, write_parquet

N = 3000
BATCH = 256  # 12 batches
NAMES = np.array(["ant", "bee", "cat", "dog", "eel", "fox"])


# --------------------------------------------------------------------------- data
def tie_heavy(n: int = N, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """K = 3, probabilities from 12 distinct rows (multiples of 0.05): almost every value is tied."""
    rng = np.random.default_rng(seed)
    protos = np.array([
        [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5],
        [0.5, 0.0, 0.5], [0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2],
        [0.2, 0.6, 0.2], [1.0, 0.0, 0.0],
    ], dtype=np.float32)
    probs = protos[rng.integers(0, len(protos), n)]
    labels = np.where(rng.random(n) < 0.7, probs.argmax(axis=1), rng.integers(0, 3, n))
    return labels, probs


def ml_data(n: int = N, k: int = 6, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sigmoid outputs, 8% of (row, class) pairs flipped; half the rows rounded to 0.05 (ties)."""
    rng = np.random.default_rng(seed)
    true = rng.random((n, k)) < np.linspace(0.1, 0.5, k)
    p = 1 / (1 + np.exp(-(np.where(true, 2.0, -2.0) + rng.normal(0, 1.5, (n, k)))))
    q = rng.random(n) < 0.5
    p[q] = np.round(p[q] * 20) / 20
    return true ^ (rng.random((n, k)) < 0.08), p.astype(dtype)


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


def split_write(folder: Path, n: int, write, parts: int, hive: bool = False) -> Path:
    """Write rows ``[a, b)`` of each part with ``write(path, a, b)``; the dataset is their concatenation."""
    bounds = np.linspace(0, n, parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        sub = folder / (f"part={i:02d}" if hive else "")
        sub.mkdir(parents=True, exist_ok=True)
        write(sub / f"f{i:02d}.parquet", a, b)
    return folder


@pytest.fixture(scope="module")
def mc_file(tmp_path_factory) -> Path:
    given_, _t, probs, _ = noisy_dataset(n=N, k=5, noise=0.12, seed=7)
    return write_parquet(tmp_path_factory.mktemp("mc") / "d.parquet", given_, probs)


@pytest.fixture(scope="module")
def ml_file(tmp_path_factory) -> Path:
    given, probs = ml_data()
    return write_ml(tmp_path_factory.mktemp("ml") / "d.parquet", given, probs)


@pytest.fixture(scope="module")
def ties_file(tmp_path_factory) -> Path:
    labels, probs = tie_heavy()
    return write_parquet(tmp_path_factory.mktemp("ties") / "t.parquet", labels, probs)


# --------------------------------------------------------------------------- helpers
def report(path: Path, out: Path, engine: str, **options: Any) -> labelqa.ScanResult:
    """Scan ``path`` with ``engine`` and write its report to ``out``."""
    if engine != "memory":
        options.setdefault("batch_size", BATCH)
    with labelqa.scan(str(path), engine=engine, **options) as result:
        assert result.engine == engine
        labelqa.write_report(result, out, csv=True)
        return result


def read_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def assert_same_report(mem: Path, got: Path, engine: str, *, same_source: bool = True) -> None:
    """The report files of ``got`` are those of ``mem``: issues table, csv bytes, summary but its engine, md bytes."""
    a, b = pq.read_table(mem / "issues.parquet"), pq.read_table(got / "issues.parquet")
    assert a.schema.equals(b.schema), (a.schema, b.schema)
    for name in a.column_names:
        assert a.column(name).equals(b.column(name)), f"column {name} differs"
    assert (mem / "issues.csv").read_bytes() == (got / "issues.csv").read_bytes()
    s_mem, s_got = read_summary(mem), read_summary(got)
    assert s_mem["options"].pop("engine") == "memory" and s_got["options"].pop("engine") == engine
    if same_source:
        assert s_got == s_mem
        assert (mem / "summary.md").read_text() == (got / "summary.md").read_text()
    else:
        assert {**s_got, "source": None} == {**s_mem, "source": None}


def compare(path: Path, tmp: Path, engine: str = "stream", **options: Any) -> dict:
    """Memory vs ``engine`` reports of ``path`` with ``options``; returns the streamed summary."""
    report(path, tmp / "mem", "memory", **options)
    report(path, tmp / engine, engine, **options)
    assert_same_report(tmp / "mem", tmp / engine, engine)
    return read_summary(tmp / engine)


# --------------------------------------------------------------------------- reports equal the memory engine's
@pytest.mark.parametrize("options", [{}, {"filter_by": "both", "min_examples_per_class": 500},
                                     {"filter_by": "low_normalized_margin", "frac_noise": 0.5},
                                     {"filter_by": "prune_by_class", "score_method": "normalized_margin",
                                      "adjust_pred_probs": True},
                                     {"filter_by": "prune_by_noise_rate"},
                                     {"filter_by": "prune_by_noise_rate_plus", "min_examples_per_class": 560}],
                         ids=["defaults", "both", "low_nm", "pbc_adjusted", "pbnr", "plus_capped"])
def test_multiclass_report_equals_memory(mc_file, tmp_path, options):
    summary = compare(mc_file, tmp_path, **options)
    assert summary["issues_found"] > 0 and summary["task"] == "multiclass"


@pytest.mark.parametrize("options", [{}, {"filter_by": "both", "min_examples_per_class": 2000},
                                     {"filter_by": "low_self_confidence", "aggregation": "softmin"}],
                         ids=["defaults", "both", "low_softmin"])
def test_multilabel_report_equals_memory(ml_file, tmp_path, options):
    summary = compare(ml_file, tmp_path, **options)
    assert summary["issues_found"] > 0 and summary["primary_detector"] == "mlcl"
    issues = pq.read_table(tmp_path / "stream" / "issues.parquet")
    assert {"labels_to_remove", "labels_to_add", "suggested_label"} <= set(issues.column_names)


def test_tie_heavy_cap_takes_the_ties_counting_pass(ties_file, tmp_path):
    """PBNR: ties at several cuts of one class may break the min-examples cap -> a counting pass."""
    seen_pass = False
    for m in (300, 600, 800, 900, 950):
        messages: list[str] = []
        report(ties_file, tmp_path / f"mem{m}", "memory", min_examples_per_class=m)
        report(ties_file, tmp_path / f"str{m}", "stream", min_examples_per_class=m, progress=messages.append)
        assert_same_report(tmp_path / f"mem{m}", tmp_path / f"str{m}", "stream")
        seen_pass |= any("selection (pbnr ties)" in msg for msg in messages)
    assert seen_pass


def test_multilabel_tie_heavy_low_methods_take_the_caps_pass(tmp_path):
    rng = np.random.default_rng(3)
    true = rng.random((N, 4)) < 0.3
    p = np.clip(np.where(true, 0.7, 0.2) + rng.integers(-3, 4, (N, 4)) / 10, 0, 1).astype(np.float32)
    path = write_ml(tmp_path / "t.parquet", true ^ (rng.random((N, 4)) < 0.1), p)
    seen_pass = False
    for m in (800, 1500, 2150):
        messages: list[str] = []
        report(path, tmp_path / f"mem{m}", "memory", filter_by="low_self_confidence", min_examples_per_class=m)
        report(path, tmp_path / f"str{m}", "stream", filter_by="low_self_confidence", min_examples_per_class=m,
               progress=messages.append)
        assert_same_report(tmp_path / f"mem{m}", tmp_path / f"str{m}", "stream")
        seen_pass |= any("selection (caps)" in msg for msg in messages)
    assert seen_pass


@pytest.mark.parametrize("batch_size", [1, 7, 1 << 20])
def test_batch_size_does_not_change_the_report(tmp_path, batch_size):
    n = 120 if batch_size == 1 else 300
    labels, probs = tie_heavy(n=n, seed=5)
    path = write_parquet(tmp_path / "t.parquet", labels, probs)
    compare(path, tmp_path, batch_size=batch_size)
    given, p = ml_data(n=n, k=4, seed=5)
    compare(write_ml(tmp_path / "m.parquet", given, p), tmp_path / "ml", batch_size=batch_size)


# --------------------------------------------------------------------------- input layouts
def test_float64_string_labels_string_ids_and_metadata_classes(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=2000, k=4, noise=0.1, seed=11)
    names = np.array(["ant", "bee", "cat", "dog"])
    table = pa.table({
        "key": pa.array([f"r{i:05d}" for i in range(len(given_))]),
        "y": pa.array(names[given_]),
        "p": pa.array(list(probs.astype(np.float64))),
    }).replace_schema_metadata({"labelqa.classes": json.dumps(list(names))})
    path = tmp_path / "s.parquet"
    pq.write_table(table, path)
    summary = compare(path, tmp_path, label_col="y", pred_probs_col="p", id_col="key")
    assert summary["classes"] == list(names)
    assert pq.read_table(tmp_path / "stream" / "issues.parquet").column("id")[5].as_py() == "r00005"


def test_prob_columns_and_inferred_classes(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=2000, k=3, noise=0.1, seed=2)
    names = np.array(["x", "y", "z"])
    cols = {"label": pa.array(names[given_])}
    cols.update({f"prob_{c}": pa.array(probs[:, j]) for j, c in enumerate(names)})
    pq.write_table(pa.table(cols), tmp_path / "c.parquet")
    compare(tmp_path / "c.parquet", tmp_path / "cols")
    # classes inferred from the sorted unique labels (one pass over the label column)
    pq.write_table(pa.table({"label": pa.array(names[given_]), "pred_probs": pa.array(list(probs))}),
                   tmp_path / "l.parquet")
    assert compare(tmp_path / "l.parquet", tmp_path / "inferred")["classes"] == ["x", "y", "z"]


def test_arrow_ipc_file(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=1500, k=3, noise=0.1, seed=12)
    path = write_parquet(tmp_path / "a.parquet", given_, probs)
    feather.write_feather(pq.read_table(path), tmp_path / "a.arrow", chunksize=200)
    compare(tmp_path / "a.arrow", tmp_path)


def test_multilabel_delimited_strings_with_label_sep(tmp_path):
    """The first batches spell only integer-like names, later ones words: the item type is strings, as the
    loader sees the whole column; null cells are empty sets."""
    given, probs = ml_data(n=2000, k=4, seed=8)
    names = np.array(["10", "2", "cat", "dog"])
    cells = ["|".join(names[np.flatnonzero(r)]) for r in given]
    for i in range(800):
        cells[i] = "|".join(names[:2][np.flatnonzero(given[i, :2])])
    for i in range(0, 2000, 97):
        cells[i] = None
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"label": pa.array(cells, pa.string()),
                             "pred_probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), 4)}), path)
    summary = compare(path, tmp_path, label_sep="|")
    assert summary["classes"] == ["10", "2", "cat", "dog"]
    assert summary["options"]["label_format"] == "delimited strings (separator '|')"


def test_multilabel_integer_codes_string_ids_float64_and_softmin(tmp_path):
    given, probs = ml_data(n=2000, k=5, seed=4, dtype=np.float64)
    path = write_ml(tmp_path / "d.parquet", given, probs, labels=[list(map(int, np.flatnonzero(r))) for r in given],
                    list_type=pa.list_(pa.int32()), extra={"key": pa.array([f"r{i:05d}" for i in range(2000)])})
    summary = compare(path, tmp_path, id_col="key", aggregation="softmin", filter_by="both")
    assert summary["options"]["classes_source"].startswith("integer labels as class codes")


def test_multilabel_prob_columns_and_given_classes(tmp_path):
    given, probs = ml_data(n=1500, k=3, seed=6)
    names = ["x", "y", "z"]
    cols = {"label": pa.array(label_lists(given, np.array(names)), pa.list_(pa.string()))}
    cols.update({f"prob_{c}": pa.array(probs[:, j]) for j, c in enumerate(names)})
    pq.write_table(pa.table(cols), tmp_path / "c.parquet")
    compare(tmp_path / "c.parquet", tmp_path / "cols")
    # classes given explicitly, in another order than sorted
    path = write_ml(tmp_path / "l.parquet", given, probs, names=np.array(["zz", "aa", "mm"]))
    summary = compare(path, tmp_path / "given", classes=["zz", "aa", "mm"], task="multilabel")
    assert summary["classes"] == ["zz", "aa", "mm"]


# --------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("hive", [False, True], ids=["folder", "hive"])
def test_folder_and_hive_dataset_equal_the_concatenation(tmp_path, hive):
    given_, _t, probs, _ = noisy_dataset(n=N, k=5, noise=0.1, seed=4)
    folder = split_write(tmp_path / "ds", N, lambda p, a, b: write_parquet(p, given_[a:b], probs[a:b]), 5, hive)
    whole = write_parquet(tmp_path / "whole.parquet", given_, probs)
    # the dataset's row order is the concatenation of the files in path order
    assert ds.dataset(folder, partitioning="hive" if hive else None).to_table().column("label").to_pylist() == \
        pq.read_table(whole).column("label").to_pylist()
    report(whole, tmp_path / "mem", "memory", filter_by="both")
    report(folder, tmp_path / "str", "stream", filter_by="both")  # default ids: the global row index
    assert_same_report(tmp_path / "mem", tmp_path / "str", "stream", same_source=False)
    assert read_summary(tmp_path / "str")["source"] == str(folder)
    # auto streams a folder
    with labelqa.scan(str(folder)) as result:
        assert result.engine == "stream"


def test_multilabel_folder_equals_the_concatenation(tmp_path):
    given, probs = ml_data(n=N, seed=9)
    folder = split_write(tmp_path / "ds", N, lambda p, a, b: write_ml(p, given[a:b], probs[a:b]), 4)
    whole = write_ml(tmp_path / "whole.parquet", given, probs)
    report(whole, tmp_path / "mem", "memory")
    report(folder, tmp_path / "str", "stream")
    assert_same_report(tmp_path / "mem", tmp_path / "str", "stream", same_source=False)


# --------------------------------------------------------------------------- errors
def late_nan_file(tmp_path: Path) -> Path:
    given_, _t, probs, _ = noisy_dataset(n=N, k=5, noise=0.1, seed=9)
    probs = probs.copy()
    probs[2_789, 2] = np.nan
    return write_parquet(tmp_path / "bad.parquet", given_, probs)


def test_bad_row_in_a_late_batch_is_named_by_its_global_index(tmp_path):
    path = late_nan_file(tmp_path)
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path))
    with pytest.raises(LabelqaError) as got_err:
        labelqa.scan(str(path), engine="stream", batch_size=BATCH)
    assert "row 2789" in str(got_err.value)
    assert str(got_err.value) == str(mem_err.value)


def test_bad_label_in_a_late_batch_names_row_and_id(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=2000, k=3, noise=0.1, seed=9)
    labels = given_.astype(np.int64)
    labels[1_901] = 7
    path = write_parquet(tmp_path / "bad.parquet", labels, probs, classes=[0, 1, 2])
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path), id_col="id")
    with pytest.raises(LabelqaError) as got_err:
        labelqa.scan(str(path), engine="stream", batch_size=100, id_col="id")
    assert "row 1901 (id 1901)" in str(got_err.value)
    assert str(got_err.value) == str(mem_err.value)


@pytest.mark.parametrize("bad", ["unknown", "null list", "twice", "probability"])
def test_bad_label_sets_in_a_late_batch(tmp_path, bad):
    given, probs = ml_data(n=2000, k=4, seed=2)
    labels = label_lists(given, NAMES[:4])
    if bad == "probability":
        probs[1_901, 3] = 1.5
    else:
        labels[1_901] = {"unknown": ["ant", "wolf"], "null list": None, "twice": ["bee", "bee"]}[bad]
    path = write_ml(tmp_path / "bad.parquet", given, probs, labels=labels, extra={"id": pa.array(np.arange(2000))})
    load = {"id_col": "id", "classes": list(NAMES[:4])}
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path), **load)
    with pytest.raises(LabelqaError) as got_err:
        labelqa.scan(str(path), engine="stream", batch_size=100, **load)
    assert "row 1901 (id 1901)" in str(got_err.value)
    assert str(got_err.value) == str(mem_err.value)


def test_failed_scan_leaves_an_existing_report_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "issues.parquet").write_text("old")
    code = main(["scan", str(late_nan_file(tmp_path)), "--engine", "stream", "--batch-size", str(BATCH),
                 "-o", str(out), "-q"])
    assert code == 2 and "row 2789" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["issues.parquet"]
    assert (out / "issues.parquet").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "out"]  # no staging left


def test_data_gone_while_writing_leaves_an_existing_report_untouched(tmp_path, monkeypatch):
    """The rows of a streamed scan too large to keep (and not spilled) are read again when written: a failure then
    publishes nothing."""
    monkeypatch.setattr("labelqa.run.stream.KEEP_BYTES", 0)
    given_, _t, probs, _ = noisy_dataset(n=N, k=4, noise=0.1, seed=1)
    path = write_parquet(tmp_path / "d.parquet", given_, probs)
    out = tmp_path / "out"
    report(path, out, "stream")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with labelqa.scan(str(path), engine="stream", batch_size=BATCH, spill_dir="off") as result:
        path.unlink()
        with pytest.raises(Exception, match="d.parquet"):
            labelqa.write_report(result, out, csv=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("options, match", [
    ({"filter_by": "nope"}, "filter_by"),
    ({"batch_size": 0}, "batch_size"),
    ({"embeddings_col": "x"}, "--engine memory"),
    ({"detectors": "cl,nrg"}, "--engine memory"),
    ({"pred_probs": "x.npy"}, "--engine memory"),
    ({"aggregation": "softmin"}, "does not apply to multiclass"),
    ({"max_issue_rate": 2}, "max_issue_rate"),
], ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_unsupported_options_are_refused(mc_file, options, match):
    with pytest.raises(LabelqaError, match=match):
        labelqa.scan(str(mc_file), engine="stream", **options)


@pytest.mark.parametrize("options, match", [
    ({"task": "multiclass"}, "but the task is multiclass"),
    ({"score_method": "normalized_margin"}, "does not apply to multi-label"),
    ({"renormalize": True}, "renormalize"),
    ({"num_to_remove_per_class": [1] * 6}, "num_to_remove_per_class"),
    ({"aggregation": "max"}, "aggregation"),
], ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_unsupported_multilabel_options_are_refused(ml_file, options, match):
    with pytest.raises(LabelqaError, match=match):
        labelqa.scan(str(ml_file), engine="stream", **options)


def test_unsupported_inputs_are_refused(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    csv.write_text("label\n1\n")
    with pytest.raises(LabelqaError, match="Parquet or Arrow"):
        labelqa.scan(str(csv), engine="stream")
    with pytest.raises(LabelqaError, match="not found"):
        labelqa.scan(str(tmp_path / "missing.parquet"), engine="stream")
    plain = tmp_path / "p.parquet"
    pq.write_table(pa.table({"label": ["a", "b"], "pred_probs": [[0.9, 0.1], [0.2, 0.8]]}), plain)
    with pytest.raises(LabelqaError, match="need a list column"):
        labelqa.scan(str(plain), engine="stream", task="multilabel")
    # through the CLI: exit 2 and nothing written
    assert main(["scan", str(csv), "--engine", "stream", "-o", str(tmp_path / "o"), "-q"]) == 2
    assert "Parquet or Arrow" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- gate
def test_gate_is_decided_on_the_streamed_result(mc_file, tmp_path):
    with labelqa.scan(str(mc_file), engine="stream", batch_size=BATCH, max_issue_rate=0.01) as result:
        assert not result.gate.passed
        labelqa.write_report(result, tmp_path / "stream", csv=True)
    report(mc_file, tmp_path / "mem", "memory", max_issue_rate=0.01)
    assert_same_report(tmp_path / "mem", tmp_path / "stream", "stream")  # gate included, the same
    summary = read_summary(tmp_path / "stream")
    assert summary["gate"]["passed"] is False
    assert "Quality gate: FAILED" in (tmp_path / "stream" / "summary.md").read_text()
    with labelqa.scan(str(mc_file), engine="stream", batch_size=BATCH, max_issue_rate=0.9) as result:
        assert result.gate.passed


def test_reader_thread_stops_when_a_pass_is_abandoned(tmp_path):
    """The runner reads ahead on a thread: a consumer that stops early (an error, a ``break``)
    must not leave the reader blocked on its queue, and a later pass starts from the first batch."""
    import threading

    from labelqa.data.source import open_source
    from labelqa.run.stream import StreamRunner

    given, _, probs, _ = noisy_dataset(n=5000, k=3, seed=4)
    path = write_parquet(tmp_path / "d.parquet", given, probs)
    runner = StreamRunner(open_source(str(path)), batch_size=100)
    before = threading.active_count()
    for _ in range(3):
        for i, offset in enumerate(runner.map(lambda block: block.offset)):
            if i == 2:
                break
    assert threading.active_count() == before
    offsets = list(runner.map(lambda block: block.offset))
    assert offsets == list(range(0, 5000, 100))


def test_report_html_comes_from_the_batches_not_from_issues_parquet(mc_file, tmp_path, monkeypatch):
    """The streamed report's page (histogram, top rows, heatmap) is built from what the writer held while
    writing the batches: issues.parquet is never read back, and the page equals the in-memory scan's."""
    import pyarrow.parquet as pq_module

    import labelqa.report.writers as writers

    mem = tmp_path / "mem"
    with labelqa.scan(str(mc_file), engine="memory") as result:
        labelqa.write_report(result, mem)
    with labelqa.scan(str(mc_file), engine="stream", batch_size=BATCH) as result:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"issues read back: {args[:1]}")

        monkeypatch.setattr(writers, "file_histogram", refuse)
        monkeypatch.setattr(pq_module, "read_table", refuse)
        monkeypatch.setattr(pq_module, "ParquetFile", refuse)
        labelqa.write_report(result, tmp_path / "stream")
    monkeypatch.undo()
    page = (tmp_path / "stream" / "report.html").read_text(encoding="utf-8")
    want = (mem / "report.html").read_text(encoding="utf-8")
    assert 'id="histogram"' in page and "No scores." not in page
    # the same page but the engine's name
    assert page.replace("stream", "ENGINE") == want.replace("memory", "ENGINE")


def test_stream_runner_returns_freed_memory_to_the_system(mc_file, tmp_path):
    """The runner bounds glibc's heap (once, idempotent) and the report is unchanged by it (see compare())."""
    import sys

    from labelqa.run import stream

    with labelqa.scan(str(mc_file), engine="stream", batch_size=BATCH) as result:
        labelqa.write_report(result, tmp_path / "r")
    if sys.platform.startswith("linux"):
        assert stream.bound_freed_memory() is True and stream.bound_freed_memory() is True
    stream.release_arrow_memory()  # harmless at any time
    assert (tmp_path / "r" / "report.html").is_file()


# --------------------------------------------------------------------------- threads
def test_prefetching_reader_yields_the_batches_of_a_plain_read_in_order(mc_file, monkeypatch):
    """The runner's batches (decoded on the reader thread, computed on by the map threads) are the source's
    batches decoded one after the other on the calling thread: same offsets, labels and probabilities."""
    from labelqa.data.source import open_source
    from labelqa.run.stream import StreamRunner

    monkeypatch.setenv("LABELQA_THREADS", "2")
    src = open_source(str(mc_file))
    plain = [src.decode(table, offset) for offset, table in src.tables(BATCH)]
    runner = StreamRunner(src, batch_size=BATCH)
    got = list(runner.map(lambda block: (block.offset, block.labels.copy(), np.array(block.pred_probs))))
    assert [g[0] for g in got] == [b.offset for b in plain] == list(range(0, N, BATCH))
    for (_, labels, probs), want in zip(got, plain, strict=True):
        np.testing.assert_array_equal(labels, want.labels)
        np.testing.assert_array_equal(probs, want.probs)


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "both"])
def test_threads_do_not_change_the_report(mc_file, tmp_path, monkeypatch, filter_by):
    """``LABELQA_THREADS=1`` (every pass on the calling thread) and 2 (reader, fold lanes, map threads) give
    the in-memory report."""
    monkeypatch.setenv("LABELQA_THREADS", "1")
    report(mc_file, tmp_path / "one", "stream", filter_by=filter_by)
    monkeypatch.setenv("LABELQA_THREADS", "2")
    report(mc_file, tmp_path / "two", "stream", filter_by=filter_by)
    report(mc_file, tmp_path / "mem", "memory", filter_by=filter_by)
    assert_same_report(tmp_path / "mem", tmp_path / "one", "stream")
    assert_same_report(tmp_path / "mem", tmp_path / "two", "stream")


@pytest.mark.parametrize("threads", ["1", "2"])
def test_error_in_the_reader_thread_is_the_usual_one_line_error(tmp_path, capsys, monkeypatch, threads):
    """A bad row found while decoding on the reader thread stops the scan with the loader's one-line message
    (exit code 2), and no reader or lane thread is left behind."""
    import threading

    monkeypatch.setenv("LABELQA_THREADS", threads)
    path = late_nan_file(tmp_path)
    with pytest.raises(LabelqaError) as mem_err:
        labelqa.load(str(path))
    before = threading.active_count()
    code = main(["scan", str(path), "--engine", "stream", "--batch-size", str(BATCH), "-o", str(tmp_path / "o"),
                 "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(mem_err.value) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("labelqa: error: "), err
    assert threading.active_count() == before
    assert not (tmp_path / "o").exists()


class _OffsetsStep:
    """A step recording which batches (offsets and sizes) a partial was fed, and on which thread; batches at
    ``slow`` offsets take a while, and a batch at an offset in ``fail`` raises (after ``fail[offset]`` s)."""

    name = "offsets"

    def __init__(self, slow: tuple[int, ...] = (), fail: dict[int, float] | None = None) -> None:
        self.slow = slow
        self.fail = fail or {}

    def start(self) -> list[tuple[int, int, str]]:
        return []

    def feed(self, partial: list[tuple[int, int, str]], block: Any) -> list[tuple[int, int, str]]:
        import threading
        import time

        if block.offset in self.fail:
            time.sleep(self.fail[block.offset])
            raise LabelqaError(f"batch at {block.offset} failed")
        if block.offset in self.slow:
            time.sleep(0.3)
        partial.append((block.offset, block.n, threading.current_thread().name))
        return partial

    def merge(self, a: list, b: list) -> list:
        return a + b


def test_fold_lanes_take_batches_as_they_are_free(mc_file, monkeypatch):
    """A lane busy with a slow batch does not hold the other back: the other takes the next batches meanwhile
    (batch ``i`` is not tied to lane ``i % 2``); every batch is fed once, as with one thread."""
    from labelqa.data.source import open_source
    from labelqa.run.stream import StreamRunner

    monkeypatch.setenv("LABELQA_THREADS", "2")
    runner = StreamRunner(open_source(str(mc_file)), batch_size=BATCH)
    [fed] = runner.fold([_OffsetsStep(slow=(0,))])
    assert sorted((offset, n) for offset, n, _ in fed) == [(o, min(BATCH, N - o)) for o in range(0, N, BATCH)]
    lanes = {thread for _, _, thread in fed}
    assert len(lanes) == 2
    slow_lane = next(thread for offset, _, thread in fed if offset == 0)
    # while batch 0 slept, the other lane fed most batches (with i % 2 it would have fed one, then waited)
    assert sum(thread != slow_lane for _, _, thread in fed) >= len(fed) // 2 + 2
    monkeypatch.setenv("LABELQA_THREADS", "1")
    [alone] = StreamRunner(open_source(str(mc_file)), batch_size=BATCH).fold([_OffsetsStep()])
    assert [(o, n) for o, n, _ in alone] == sorted((o, n) for o, n, _ in fed)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_fold_raises_the_error_of_the_earliest_failing_batch(mc_file, monkeypatch, threads):
    """When several batches fail, the error raised is the first one in input order, even when a later batch
    fails first on another lane; no lane or reader thread is left behind."""
    import threading

    from labelqa.data.source import open_source
    from labelqa.run.stream import StreamRunner

    monkeypatch.setenv("LABELQA_THREADS", threads)
    runner = StreamRunner(open_source(str(mc_file)), batch_size=BATCH)
    before = threading.active_count()
    with pytest.raises(LabelqaError, match=f"batch at {2 * BATCH} failed"):
        runner.fold([_OffsetsStep(fail={2 * BATCH: 0.3, 3 * BATCH: 0.0})])
    assert threading.active_count() == before
    [fed] = runner.fold([_OffsetsStep()])  # the runner still works
    assert len(fed) == len(range(0, N, BATCH))
