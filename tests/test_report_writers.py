"""Report files: content, escaping, and atomic publication."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.data.model import LabelData
from labelqa.report import writers
from labelqa.report.markdown import render_markdown
from labelqa.report.writers import REPORT_FILES, read_issues, write_report
from labelqa.scan import scan
from tests.conftest import TOY_LABELS, TOY_PROBS


@pytest.fixture
def toy():
    return scan(LabelData.from_arrays(TOY_LABELS, TOY_PROBS, classes=["<script>", "b|c", "plain"]))


def test_writes_all_files(toy, tmp_path):
    out = tmp_path / "rep"
    written = write_report(toy, out, csv=True)
    assert sorted(p.name for p in written) == sorted(REPORT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)  # no temp leftovers
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    issues = pq.read_table(out / "issues.parquet")
    assert issues.equals(read_issues(out))
    csv = pacsv.read_csv(out / "issues.csv")
    assert csv.num_rows == issues.num_rows == 10
    summary = json.loads((out / "summary.json").read_text())
    assert summary["issues_found"] == 1


def test_markdown_escapes_dataset_strings(toy):
    md = render_markdown(toy.summary(), toy.issues_table())
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "b\\|c" in md
    assert "## Top 1 issues" in md


def test_failure_leaves_nothing_half_written(toy, tmp_path, monkeypatch):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "summary.json").write_text("old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writers, "render_markdown", boom)
    with pytest.raises(OSError):
        write_report(toy, out)
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert (out / "summary.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_out_must_be_a_folder(toy, tmp_path):
    from labelqa.errors import LabelqaError

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(LabelqaError, match="not a folder"):
        write_report(toy, f)


def test_summary_has_no_nan(tmp_path):
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    res = scan(LabelData.from_arrays(np.array([0, 1, 0, 1]), probs))
    write_report(res, tmp_path / "r")
    json.loads((tmp_path / "r" / "summary.json").read_text())


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), _json_values, max_size=5))
def test_summary_json_round_trips(value):
    text = writers.summary_json(value)
    assert json.loads(text) == value
    assert text.endswith("\n")


def test_evaluation_is_written_and_shown(toy, tmp_path):
    from labelqa.evaluate import evaluate
    from labelqa.report.folder import write_html

    truth = toy.data.labels.copy()
    truth[2] = 2  # row 2 really is class 2: the one flagged row is a true error
    ev = evaluate(toy, truth, truth={"kind": "column", "column": "t"})
    write_report(toy, tmp_path / "r", evaluation=ev)
    saved = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    assert saved["detectors"]["cl"]["precision"] == 1.0 and saved["detectors"]["cl"]["recall"] == 1.0
    assert "## Detection quality" in (tmp_path / "r" / "summary.md").read_text()
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'id="evaluation"' in html
    (tmp_path / "r" / "report.html").unlink()
    write_html(tmp_path / "r")  # a rebuild keeps the evaluation
    assert 'id="evaluation"' in (tmp_path / "r" / "report.html").read_text()


def test_failing_issue_writer_leaves_nothing_half_written(toy, tmp_path, monkeypatch):
    """A writer-thread failure (issues.parquet) is raised and nothing is published."""
    out = tmp_path / "rep"

    class Boom:
        def __init__(self, *args, **kwargs):
            pass

        def write_table(self, table, row_group_size=None):
            raise OSError("disk full")

        def close(self):
            pass

    monkeypatch.setattr(writers.pq, "ParquetWriter", Boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(toy, out)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_given_summary_is_written(toy, tmp_path):
    write_report(toy, tmp_path / "rep", summary={**toy.summary(), "note": "given"})
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["note"] == "given"
    assert "note" not in toy.summary()


def test_issue_files_in_batches_and_halves_have_the_bytes_of_one_encoding(tmp_path, monkeypatch):
    """issues.csv/.parquet appended batch by batch, big batches in two halves on threads == written at once
    (quoting, nulls, lists, odd row counts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelqa.report.textlists import lists_to_text

    n = 1001
    rng = np.random.default_rng(3)
    table = pa.table({
        "id": pa.array(np.arange(n)),
        "text": pa.array([None if i % 7 == 0 else f'a "quoted", line\\n{i}' for i in range(n)]),
        "score": pa.array(rng.random(n)),
        "flag": pa.array(rng.random(n) < 0.5),
        "labels": pa.array([[f"c{i % 3}", "x,y"] if i % 5 else [] for i in range(n)], pa.list_(pa.string())),
    })
    monkeypatch.setattr(writers, "CSV_SPLIT_ROWS", 10)
    (tmp_path / "split").mkdir()
    with writers.IssueFiles(tmp_path / "split", csv=True) as files:
        for start in (0, 5, 400, 401):  # a batch of 5 (one encoding), others split in halves
            stop = {0: 5, 5: 400, 400: 401, 401: n}[start]
            files.write(table.slice(start, stop - start))
    pacsv.write_csv(lists_to_text(table), tmp_path / "whole.csv")
    assert (tmp_path / "split" / "issues.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert pq.read_table(tmp_path / "split" / "issues.parquet").equals(table)
    back = pacsv.read_csv(tmp_path / "split" / "issues.csv")
    assert back.num_rows == n and back.column("id").to_pylist() == list(range(n))


# --------------------------------------------------------------------------- files sized to what people read
def test_issues_csv_only_when_asked(toy, tmp_path, capsys):
    """Default: issues.parquet alone holds the rows; csv=True / --csv / [scan] csv = true add issues.csv."""
    from labelqa.cli.app import main

    plain = write_report(toy, tmp_path / "plain")
    assert "issues.csv" not in {p.name for p in plain}
    assert not (tmp_path / "plain" / "issues.csv").exists()
    with_csv = write_report(toy, tmp_path / "csv", csv=True)
    assert tmp_path / "csv" / "issues.csv" in with_csv
    assert pacsv.read_csv(tmp_path / "csv" / "issues.csv").num_rows == 10
    # the same files otherwise
    assert {p.name for p in with_csv} - {p.name for p in plain} == {"issues.csv"}
    # CLI flag and configuration key
    data = tmp_path / "d.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"label": TOY_LABELS, "pred_probs": [list(r) for r in TOY_PROBS]}), data)
    assert main(["scan", str(data), "-o", str(tmp_path / "cli"), "-q"]) == 0
    assert not (tmp_path / "cli" / "issues.csv").exists()
    assert main(["scan", str(data), "-o", str(tmp_path / "cli2"), "-q", "--csv"]) == 0
    assert (tmp_path / "cli2" / "issues.csv").is_file()
    (tmp_path / "labelqa.toml").write_text("[scan]\ncsv = true\n")
    config = str(tmp_path / "labelqa.toml")
    assert main(["scan", str(data), "-o", str(tmp_path / "cli3"), "-q", "--config", config]) == 0
    assert (tmp_path / "cli3" / "issues.csv").is_file()


def _many_classes(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    logits[np.arange(n), true] += 4
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    given = true.copy()
    flip = rng.random(n) < 0.1
    given[flip] = rng.integers(0, k, int(flip.sum()))
    return given, probs


@pytest.mark.slow
def test_summary_json_stays_small_at_1000_classes_and_matrices_round_trip(tmp_path):
    """K = 1,000: summary.json under 1 MB; the K x K matrices in matrices.npy (no pickle), exactly the scan's."""
    from labelqa.report.folder import read_matrices, read_summary, write_html
    from labelqa.result import MATRICES_FILE

    given, probs = _many_classes(8000, 1000)
    result = scan(LabelData.from_arrays(given, probs))
    out = tmp_path / "rep"
    write_report(result, out)
    assert (out / "summary.json").stat().st_size < 1_000_000
    summary = read_summary(out)
    assert summary["noise_matrix"] is None and summary["matrices"]["inline"] is False
    cl = summary["detectors"]["cl"]["summary"]
    index = summary["matrices"]["index"]
    moved = [key for key, v in cl.items() if v is None and f"detectors.cl.summary.{key}" in index]
    assert {"confident_joint", "noise_matrix"} <= set(moved)
    stack = np.load(out / MATRICES_FILE, allow_pickle=False)
    assert stack.dtype == np.float64 and stack.shape == tuple(summary["matrices"]["shape"])
    back = read_matrices(out, summary)
    own = result.outcomes["cl"].summary
    for key in moved:
        assert np.array_equal(back[f"detectors.cl.summary.{key}"], np.asarray(own[key], dtype=np.float64)), key
    assert np.array_equal(back["noise_matrix"], back["detectors.cl.summary.noise_matrix"])
    # the noise matrix is stored once, for both places that name it
    assert index["noise_matrix"] == index["detectors.cl.summary.noise_matrix"]
    assert stack.shape[0] == len(set(index.values()))
    # the page rebuilt from the folder equals the one the scan wrote (the heatmap reads the file)
    written = (out / "report.html").read_text(encoding="utf-8")
    assert "Noise matrix" in written
    write_html(out)
    assert (out / "report.html").read_text(encoding="utf-8") == written


def test_matrices_inline_at_few_classes_equal_the_file(toy, tmp_path):
    """K <= MATRIX_INLINE_CLASSES: summary.json keeps the matrices (people read them) and matrices.npy too."""
    from labelqa.report.folder import read_summary
    from labelqa.result import MATRICES_FILE, MATRIX_INLINE_CLASSES

    assert len(toy.classes) <= MATRIX_INLINE_CLASSES
    out = tmp_path / "rep"
    write_report(toy, out)
    summary = read_summary(out)
    stack = np.load(out / MATRICES_FILE, allow_pickle=False)
    assert summary["matrices"]["inline"] is True
    for path, i in summary["matrices"]["index"].items():
        node = summary
        for key in path.split("."):
            node = node[key]
        assert np.allclose(np.asarray(node, dtype=np.float64), stack[i], rtol=0, atol=0), path
    assert summary["noise_matrix"] == summary["detectors"]["cl"]["summary"]["noise_matrix"]


def test_a_missing_or_foreign_matrices_file_is_a_clear_error(tmp_path):
    from labelqa.errors import LabelqaError
    from labelqa.report.folder import read_matrices, read_summary, write_html
    from labelqa.result import MATRICES_FILE, MATRIX_INLINE_CLASSES

    k = MATRIX_INLINE_CLASSES + 5
    given, probs = _many_classes(2000, k, seed=1)
    out = tmp_path / "rep"
    write_report(scan(LabelData.from_arrays(given, probs)), out)
    summary = read_summary(out)
    assert summary["matrices"]["inline"] is False
    (out / MATRICES_FILE).unlink()
    with pytest.raises(LabelqaError, match="no matrices.npy"):
        write_html(out)
    np.save(out / MATRICES_FILE, np.zeros((1, k, k - 1)))
    with pytest.raises(LabelqaError, match="shape"):
        read_matrices(out, summary)
    np.save(out / MATRICES_FILE, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # never unpickled
    with pytest.raises(LabelqaError, match="cannot read"):
        read_matrices(out, summary)
    (out / MATRICES_FILE).write_bytes(b"not numpy")
    with pytest.raises(LabelqaError, match="cannot read"):
        read_matrices(out, summary)


# --------------------------------------------------------------------------- issues.parquet encodings
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def issue_tables(draw):
    """Tables shaped like the issues table: int or text ids, class columns, scores with NaN/inf/-0.0, lists."""
    n = draw(st.integers(0, 40))
    ids = (draw(st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), min_size=n, max_size=n)) if draw(st.booleans())
           else draw(st.lists(st.text(max_size=5), min_size=n, max_size=n)))
    classes = st.integers(-5, 5)
    cols = {
        "id": pa.array(ids),
        "given_label": pa.array(draw(st.lists(classes, min_size=n, max_size=n)), pa.int64()),
        "suggested_label": pa.array(draw(st.lists(st.lists(classes, max_size=4), min_size=n, max_size=n)),
                                    pa.list_(pa.int64())),
        "label_quality": pa.array(draw(st.lists(_FLOATS, min_size=n, max_size=n)), pa.float64()),
        "is_label_issue": pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        "rank": pa.array(draw(st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), min_size=n, max_size=n)), pa.int64()),
        "score32": pa.array(np.asarray(draw(st.lists(st.floats(width=32), min_size=n, max_size=n)), dtype=np.float32)),
        "small": pa.array(draw(st.lists(st.integers(-(2 ** 31), 2 ** 31 - 1) | st.none(), min_size=n, max_size=n)),
                          pa.int32()),
        "reason": pa.array(draw(st.lists(st.text(max_size=8), min_size=n, max_size=n)), pa.string()),
    }
    return pa.table(cols)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=issue_tables(), batches=st.integers(1, 3), group=st.sampled_from([1, 3, 1 << 18]))
def test_issues_parquet_encodings_round_trip_exactly(table, batches, group, tmp_path_factory, monkeypatch):
    """Byte-stream split floats, delta integers and dictionary classes read back bit for bit, in any batching."""
    folder = tmp_path_factory.mktemp("enc")
    monkeypatch.setattr(writers, "PARQUET_ROW_GROUP_ROWS", group)
    step = max(1, -(-table.num_rows // batches))
    with writers.IssueFiles(folder) as files:
        for a in range(0, max(table.num_rows, 1), step):
            files.write(table.slice(a, step))
    back = pq.read_table(folder / "issues.parquet")
    assert back.schema.equals(table.schema)
    for name in table.column_names:  # bit patterns: NaN payloads and -0.0 included
        want, got = table.column(name).combine_chunks(), back.column(name).combine_chunks()
        if pa.types.is_floating(want.type):
            dtype = np.uint64 if want.type.bit_width == 64 else np.uint32
            assert np.array_equal(want.to_numpy(zero_copy_only=False).view(dtype),
                                  got.to_numpy(zero_copy_only=False).view(dtype)), name
        else:
            assert got.equals(want), name


def test_issues_parquet_encodings_chosen_per_column(toy, tmp_path):
    write_report(toy, tmp_path / "rep")
    meta = pq.ParquetFile(tmp_path / "rep" / "issues.parquet").metadata
    encodings = {meta.schema.column(i).path: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    assert "BYTE_STREAM_SPLIT" in encodings["label_quality"]
    assert "DELTA_BINARY_PACKED" in encodings["id"] and "DELTA_BINARY_PACKED" in encodings["rank"]
    assert any("DICTIONARY" in e for e in encodings["detectors"])
    assert not any("DICTIONARY" in e for e in encodings["reason"])  # phrases: mostly distinct
    group = meta.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(meta.num_columns)}
    assert stats["rank"] and stats["is_label_issue"] and stats["label_quality"]  # readers skip row groups by these
    assert not stats["reason"] and not stats["detectors"]
    codecs = {group.column(i).path_in_schema: group.column(i).compression for i in range(meta.num_columns)}
    assert codecs["label_quality"] == codecs["reason"] == "LZ4"  # byte-split floats, phrases: fast, near zstd's size
    assert codecs["rank"] == "UNCOMPRESSED" and codecs["id"] == codecs["given_label"] == "ZSTD"


def test_issues_parquet_read_by_polars(toy, tmp_path):
    pl = pytest.importorskip("polars")
    write_report(toy, tmp_path / "rep")
    frame = pl.read_parquet(tmp_path / "rep" / "issues.parquet")
    assert frame.equals(pl.from_arrow(toy.issues_table()))


def test_write_matrices_has_the_bytes_of_np_save_of_the_stack(tmp_path):
    """matrices.npy written matrix by matrix == np.save of the stacked (M, K, K) float64 array, byte for byte
    (int64 and float32 inputs widened as np.stack of float64 copies would)."""
    from labelqa.result import write_matrices

    rng = np.random.default_rng(2)
    k = 7
    noise = rng.random((k, k))
    matrices = {"confident_joint": rng.integers(0, 50, (k, k)), "noise_matrix": noise,
                "detectors.cl.summary.x": rng.random((k, k)).astype(np.float32),
                "detectors.cl.summary.noise_matrix": noise}  # the same array: stored once
    write_matrices(tmp_path / "m.npy", matrices)
    distinct = list(matrices.values())[:3]
    np.save(tmp_path / "ref.npy", np.stack([np.asarray(m, dtype=np.float64) for m in distinct]), allow_pickle=False)
    assert (tmp_path / "m.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
