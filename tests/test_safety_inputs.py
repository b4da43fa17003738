"""The input half of labelqa's safety promises (docs/safety.md), tried as an adversarial user would.

Every case runs the real CLI in-process and checks the exit code, ONE line on stderr, no traceback, and that
every input file is byte-for-byte unchanged (hashed before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, noisy_dataset, write_parquet
from labelqa.cli.app import main
from labelqa.data.probabilities import check_classes_fit
from labelqa.errors import LabelqaError

DIGITS = REPO / "examples" / "digits" / "digits_noisy.parquet"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def digest(*paths: Path) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders)."""
    found = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        for f in files:
            found[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return found


def refused(argv, capsys, *inputs: Path, match: str) -> str:
    """Run ``argv``; it must exit 2 with one error line matching ``match`` and leave ``inputs`` unchanged."""
    before = digest(*inputs)
    code, _out, err = run(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelqa: error: "), err
    assert "Traceback" not in err and "unexpected" not in err, err
    assert match in lines[0], lines[0]
    assert digest(*inputs) == before
    return lines[0]


@pytest.fixture
def report(noisy_parquet, tmp_path, capsys):
    """A report folder of the noisy dataset, and the dataset."""
    path, _ = noisy_parquet
    assert run(["scan", path, "-o", tmp_path / "rep", "-q"], capsys)[0] == 0
    return tmp_path / "rep", path


# ------------------------------------------------------------------ 1. inputs are never written over


def test_scan_refuses_its_own_report_as_input(report, capsys):
    rep, _ = report
    refused(["scan", rep / "issues.parquet", "--out", rep], capsys, rep, match="inside the output folder")


def test_scan_refuses_an_input_reached_through_a_symlink(report, tmp_path, capsys):
    rep, _ = report
    (tmp_path / "link").symlink_to(rep)
    line = refused(["scan", tmp_path / "link" / "issues.parquet", "-o", rep], capsys, rep,
                   match="inside the output folder")
    assert "really" in line  # the real path is named


def test_evaluate_refuses_writing_where_it_reads(report, capsys):
    rep, data = report
    refused(["evaluate", rep / "issues.parquet", "--inject-noise", "uniform:0.1", "--out", rep], capsys, rep,
            match="inside the output folder")
    # any input counts, not only DATA: a probabilities file inside --out
    np.save(rep / "probs.npy", np.full((2000, 4), 0.25))
    refused(["scan", data, "--pred-probs", rep / "probs.npy", "-o", rep], capsys, rep, match="--pred-probs")


def test_train_refuses_out_dot_beside_its_data(noisy_parquet, tmp_path, capsys, monkeypatch):
    path, _ = noisy_parquet
    monkeypatch.chdir(path.parent)
    refused(["train", path.name, "--out", "."], capsys, path, match="inside the output folder")
    assert not (path.parent / "dynamics").exists()


def test_fix_refuses_its_input_as_output_by_any_name(noisy_parquet, report, tmp_path, capsys):
    path, _ = noisy_parquet
    rep, _ = report
    refused(["fix", path, "--out", path, "--force"], capsys, path, match="is the input")
    (tmp_path / "alias.parquet").symlink_to(path)
    refused(["fix", tmp_path / "alias.parquet", "--out", path, "--force"], capsys, path, match="is the input")
    os.link(path, tmp_path / "hard.parquet")
    refused(["fix", path, "--out", tmp_path / "hard.parquet", "--force"], capsys, path, match="is the input")
    # the report's own files are inputs too
    refused(["fix", path, "--report", rep, "--out", rep / "issues.parquet", "--force"], capsys, rep, path,
            match="--report")


def test_the_github_step_summary_is_never_an_input(noisy_parquet, tmp_path, capsys, monkeypatch):
    path, _ = noisy_parquet
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    refused(["scan", path, "-o", tmp_path / "rep", "--format", "github"], capsys, path,
            match="$GITHUB_STEP_SUMMARY")
    assert not (tmp_path / "rep").exists()


# ------------------------------------------------------------------ 2. exact text


def _classes_csv(tmp_path: Path) -> Path:
    """300 rows of classes 1, 01, 2 (prob_ columns in that order), every 10th label contradicted by the model,
    and a zip column whose text a number reader would change."""
    rng = np.random.default_rng(0)
    names = ["1", "01", "2"]
    codes = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), codes] = 0.9
    wrong = np.arange(300) % 10 == 0
    given = np.where(wrong, (codes + 1) % 3, codes)
    zips = np.array(["00003", "007", "1e5", "12345", "NA"])[np.arange(300) % 5]
    lines = ["id,label,zip,prob_1,prob_01,prob_2"]
    lines += [f"{i:04d},{names[g]},{z},{p[0]},{p[1]},{p[2]}" for i, (g, z, p) in enumerate(zip(given, zips, probs))]
    path = tmp_path / "classes.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_labels_and_ids_keep_their_text(tmp_path):
    import labelqa

    path = _classes_csv(tmp_path)
    data = labelqa.load(path, id_col="id")
    assert data.classes == ("1", "01", "2")  # three classes, from the prob_ column names
    raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"label": pa.string()}))
    assert [data.classes[c] for c in data.labels] == raw.column("label").to_pylist()
    assert data.ids[:3].tolist() == ["0000", "0001", "0002"]
    same = labelqa.load(path, classes="1,01,2")
    assert np.array_equal(same.labels, data.labels)


def test_fix_writes_untouched_csv_cells_as_read(tmp_path, capsys):
    path = _classes_csv(tmp_path)
    before = digest(path)
    code, _, err = run(["fix", path, "--out", tmp_path / "fixed.csv", "--id-col", "id", "-q"], capsys)
    assert code == 0, err
    assert digest(path) == before
    read = pacsv.ConvertOptions(column_types={n: pa.string() for n in ("id", "label", "zip", "prob_1", "prob_01",
                                                                         "prob_2", "label_original")},
                                strings_can_be_null=False)
    src = pacsv.read_csv(path, convert_options=read)
    out = pacsv.read_csv(tmp_path / "fixed.csv", convert_options=read)
    for col in ("id", "zip", "prob_1", "prob_01", "prob_2"):
        assert out.column(col).to_pylist() == src.column(col).to_pylist(), col  # 00003, 007, 1e5, NA untouched
    assert out.column("label_original").to_pylist() == src.column("label").to_pylist()
    assert set(out.column("label").to_pylist()) <= {"1", "01", "2"}
    actions = out.column("fix_action").to_pylist()
    assert actions.count("relabel") >= 20  # the contradicted labels were fixed, with their text
    relabelled = [i for i, a in enumerate(actions) if a == "relabel"]
    assert all(out.column("label")[i].as_py() != out.column("label_original")[i].as_py() for i in relabelled)


def test_fix_keeps_parquet_columns_type_and_value(noisy_parquet, tmp_path, capsys):
    path, _ = noisy_parquet
    code, _, err = run(["fix", path, "--out", tmp_path / "f.parquet", "-q"], capsys)
    assert code == 0, err
    src, out = pq.read_table(path), pq.read_table(tmp_path / "f.parquet")
    for name in src.column_names:
        if name != "label":
            assert out.column(name).equals(src.column(name)), name
    assert out.column("label_original").equals(src.column("label"))
    assert out.schema.metadata[b"labelqa.classes"] == src.schema.metadata[b"labelqa.classes"]


def test_fix_writes_json_lines_as_read(tmp_path, capsys):
    given, _, probs, _ = noisy_dataset(n=600, k=3, noise=0.15, seed=6)
    names = ["x", "y", "z"]
    lines = [f'{{"id": "{i:05d}", "label": "{names[g]}", "w": 1e5, "z": 0.10, "n": -0, '
             f'"pred_probs": [{", ".join(repr(float(v)) for v in p)}]}}' for i, (g, p) in enumerate(zip(given, probs))]
    lines[3] = lines[3][:-1] + ', "only_here": {"a": [], "b": {}}}'
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for strategy in ("relabel", "drop"):
        out = tmp_path / f"{strategy}.jsonl"
        code, _, err = run(["fix", path, "-o", out, "--strategy", strategy, "--id-col", "id", "-q"], capsys)
        assert code == 0, err
        written = out.read_text().splitlines()
        kept = [json.loads(line)["id"] for line in written]
        assert (len(written) < len(lines)) == (strategy == "drop")
        for line in written:
            row = json.loads(line)
            source = lines[int(row["id"])]
            # every key but the label and the provenance keys is the same text as read
            rest = line.split(', "label_original"')[0] + "}"
            assert rest.replace(f'"label": "{row["label"]}"', f'"label": "{row["label_original"]}"') == source
            assert row["fix_action"] in ("keep", "relabel", "flag")
        if strategy == "relabel":
            assert any(json.loads(line)["fix_action"] == "relabel" for line in written)
        assert len(set(kept)) == len(kept)


def test_csv_numbers_spelled_two_ways_stay_two_labels(tmp_path):
    from labelqa.data import read_table

    path = tmp_path / "f.csv"
    path.write_text("label,id,whole,prob_1.0,prob_1\n1.0,7,2.0,0.9,0.1\n1,8,3.0,0.2,0.8\n")
    table = read_table(path)
    assert table.column("label").to_pylist() == ["1.0", "1"]
    assert table.column("id").to_pylist() == [7, 8]  # plain integers stay integers
    assert table.column("whole").to_pylist() == [2.0, 3.0]  # one spelling per number: still numbers
    assert table.column("prob_1").type == pa.float64()


def test_csv_truth_values_spelled_two_ways_stay_two_labels(tmp_path):
    from labelqa.data import read_table

    path = tmp_path / "b.csv"
    path.write_text("label,flag,prob_True,prob_true\nTrue,true,0.9,0.1\ntrue,false,0.2,0.8\nTrue,true,0.7,0.3\n")
    table = read_table(path)
    assert table.column("label").to_pylist() == ["True", "true", "True"]  # two classes, as spelled
    assert table.column("flag").to_pylist() == [True, False, True]  # one spelling per value: still booleans


def test_csv_null_words_are_labels_not_missing_values(tmp_path):
    import labelqa

    path = tmp_path / "na.csv"
    path.write_text("label,prob_NA,prob_null\n" + "NA,0.9,0.1\nnull,0.2,0.8\n" * 20)
    data = labelqa.load(path)
    assert data.classes == ("NA", "null") and data.labels.tolist() == [0, 1] * 20


# ------------------------------------------------------------------ 3. class order


def test_sorted_labels_taken_as_column_order_are_caught(tmp_path, capsys):
    table = pq.read_table(DIGITS).replace_schema_metadata(None)  # no labelqa.classes: sorted labels assumed
    path = tmp_path / "nometa.parquet"
    pq.write_table(table, path)
    line = refused(["scan", path, "-o", tmp_path / "rep"], capsys, path, match="class order")
    assert "--classes" in line and "--trust-class-order" in line and "sorted unique labels" in line
    assert not (tmp_path / "rep").exists()
    refused(["fix", path, "-o", tmp_path / "f.parquet"], capsys, path, match="class order")
    assert not (tmp_path / "f.parquet").exists()
    names = json.loads(pq.read_schema(DIGITS).metadata[b"labelqa.classes"])
    code, _, err = run(["scan", path, "-o", tmp_path / "rep", "-q", "--classes", ",".join(names)], capsys)
    assert code == 0, err
    code, _, err = run(["scan", path, "-o", tmp_path / "rep2", "-q", "--trust-class-order", "--exit-zero"], capsys)
    assert code == 0, err


def test_integer_labels_read_as_positions_of_named_columns(tmp_path, capsys):
    given, _, probs, _ = noisy_dataset(n=1000, k=3, noise=0.05, seed=1)
    # columns named for classes 0, 1, 2 but stored as prob_2, prob_0, prob_1: integer labels read as positions
    path = tmp_path / "named.parquet"
    pq.write_table(pa.table({"label": given, "prob_c": probs[:, 2], "prob_a": probs[:, 0], "prob_b": probs[:, 1]}),
                   path)
    refused(["scan", path, "-o", tmp_path / "rep"], capsys, path, match="class order")


# ------------------------------------------------------------------ 4. reports validated


def _tamper(rep: Path, column: str, values) -> None:
    t = pq.read_table(rep / "issues.parquet")
    t = t.set_column(t.column_names.index(column), column, pa.array(values))
    pq.write_table(t, rep / "issues.parquet")


def test_fix_refuses_a_suggested_label_outside_the_classes(report, tmp_path, capsys):
    rep, data = report
    _tamper(rep, "suggested_label", ["=cmd|calc"] * 2000)
    refused(["fix", data, "--report", rep, "--out", tmp_path / "f.parquet"], capsys, data, rep,
            match="not one of the report's 4 classes")
    refused(["report", rep], capsys, rep / "issues.parquet", rep / "summary.json", match="suggested_label")
    assert not (tmp_path / "f.parquet").exists()


@pytest.mark.parametrize("edit", [
    lambda s: s.update(classes="ant"),
    lambda s: s.update(classes=["ant", "bee"]),  # n_classes is 4
    lambda s: s.pop("rows"),
    lambda s: s.update(per_class=[1, 2], gate=5),
    lambda s: s.update(detectors=[]),
])
def test_report_refuses_a_modified_summary(report, capsys, edit):
    rep, _ = report
    summary = json.loads((rep / "summary.json").read_text())
    edit(summary)
    (rep / "summary.json").write_text(json.dumps(summary))
    refused(["report", rep], capsys, rep / "summary.json", rep / "issues.parquet", match="")


@pytest.mark.parametrize("damage", ["garbage", "drop_column", "retype", "nulls"])
def test_report_and_fix_refuse_a_damaged_issues_table(report, tmp_path, capsys, damage):
    rep, data = report
    t = pq.read_table(rep / "issues.parquet")
    if damage == "garbage":
        (rep / "issues.parquet").write_bytes(b"PAR1" + os.urandom(100))
    else:
        if damage == "drop_column":
            t = t.drop_columns(["suggested_confidence"])
        elif damage == "retype":
            t = t.set_column(t.column_names.index("is_label_issue"), "is_label_issue",
                             pa.array(["yes"] * t.num_rows))
        else:
            t = t.set_column(t.column_names.index("is_label_issue"), "is_label_issue",
                             pa.array([None] * t.num_rows, pa.bool_()))
        pq.write_table(t, rep / "issues.parquet")
    refused(["report", rep], capsys, rep / "issues.parquet", match="issues.parquet")
    refused(["fix", data, "--report", rep, "-o", tmp_path / "f.parquet"], capsys, data, match="issues.parquet")


def test_a_stale_report_of_other_data_is_refused(report, tmp_path, capsys):
    rep, _ = report
    given, _, probs, _ = noisy_dataset(n=2000, seed=9)
    other = write_parquet(tmp_path / "other.parquet", np.array(["ant", "bee", "cat", "dog"])[given], probs,
                          classes=["ant", "bee", "cat", "dog"])
    refused(["fix", other, "--report", rep, "-o", tmp_path / "f.parquet"], capsys, other,
            match="does not match the data")


# ------------------------------------------------------------------ 5. readers


def test_deeply_nested_json_lines_is_refused_not_a_crash(tmp_path):
    path = tmp_path / "deep.jsonl"
    deep = "[" * 200_000 + "]" * 200_000
    path.write_text('{"label": "a", "pred_probs": [0.9, 0.1]}\n'
                    f'{{"label": "b", "pred_probs": [0.2, 0.8], "x": {deep}}}\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in (["scan", path, "-o", tmp_path / "rep"], ["fix", path, "-o", tmp_path / "f.csv"]):
        proc = subprocess.run([sys.executable, "-m", "labelqa", *map(str, argv)], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "line 2 nests" in proc.stderr


def test_nesting_within_strings_and_across_chunks_is_counted_per_line(tmp_path):
    from labelqa.data.readers import check_json_depth

    path = tmp_path / "ok.jsonl"
    path.write_text('{"a": [[1]]}\n' * 10 + '{"s": "[[[["}\n')
    check_json_depth(str(path), limit=5)
    with pytest.raises(LabelqaError, match="line 11 nests"):
        check_json_depth(str(path), limit=4)  # brackets in strings count: an overstatement, never an understatement


def test_a_fifo_is_refused_instead_of_hanging(tmp_path, capsys):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    refused(["scan", fifo, "-o", tmp_path / "rep"], capsys, match="FIFO")
    refused(["fix", fifo, "-o", tmp_path / "f.csv"], capsys, match="FIFO")


def test_csv_header_problems(tmp_path, capsys):
    dup = tmp_path / "dup.csv"
    dup.write_text("label,label,prob_a,prob_b\na,b,0.9,0.1\n")
    refused(["scan", dup, "-o", tmp_path / "rep"], capsys, dup, match="more than once")
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(100_001)) + "\n" + ",".join("0" * 100_001) + "\n")
    refused(["scan", wide, "-o", tmp_path / "rep"], capsys, wide, match="at most 100,000 columns")
    # a header wider than pyarrow's default 1 MiB block still reads
    ok = tmp_path / "ok.csv"
    names = [f"feature_column_{i:06d}" for i in range(60_000)]
    ok.write_text(",".join(names + ["label", "prob_a", "prob_b"]) + "\n"
                  + ("," * len(names) + "a,0.9,0.1\n" + "," * len(names) + "b,0.2,0.8\n") * 3)
    code, _, err = run(["scan", ok, "-o", tmp_path / "rep", "-q", "--exit-zero"], capsys)
    assert code == 0, err


def test_formats_that_do_not_fit_the_file(noisy_parquet, tmp_path, capsys):
    import gzip

    import labelqa

    path, _ = noisy_parquet
    with pytest.raises(LabelqaError, match="is a parquet file"):
        labelqa.load(path, input_format="csv")
    refused(["scan", path, "--input-format", "jsonl", "-o", tmp_path / "rep"], capsys, path, match="parquet file")
    gz = tmp_path / "noisy.parquet.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    refused(["scan", gz, "-o", tmp_path / "rep"], capsys, gz, match="compressed .parquet")
    (tmp_path / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    refused(["scan", tmp_path / "gone.csv", "-o", tmp_path / "rep"], capsys, match="symbolic link")


def test_too_many_classes_for_memory_are_refused_up_front():
    with pytest.raises(LabelqaError, match=r"20,000 classes need about 23.8 GiB .*at most about 11,585"):
        check_classes_fit(20_000, "x", available=8 << 30)
    check_classes_fit(20_000, "x", available=64 << 30)
    check_classes_fit(1_000, "x", available=1)  # small K never asks


# ------------------------------------------------------------------ 6. properties: random bytes, schemas, CSV text


SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet", ".arrow", ".csv.gz")
NAMES = st.sampled_from(["label", "pred_probs", "id", "prob_a", "prob_b", "prob_1", "prob_01", "x", "label"])
CELLS = st.one_of(st.sampled_from(["a", "b", "1", "01", "0.5", "1e5", "", "NA", "[0.5, 0.5]", "[1]", "\"q\"",
                                   "-0", "nan", "inf", "true", "ü", "=1+1"]),
                  st.text(alphabet="ab01.,\"[] e-\t", max_size=6))


@st.composite
def csv_texts(draw) -> bytes:
    if draw(st.booleans()):  # near-valid: labels and two probability columns, cells sometimes odd
        names = ["label", "prob_a", "prob_b"] + draw(st.lists(NAMES, max_size=2))
        good = st.sampled_from([["a", "0.9", "0.1"], ["b", "0.2", "0.8"], ["a", "0.6", "0.4"], ["b", "0", "1"]])
        rows = [r + draw(st.lists(CELLS, min_size=len(names) - 3, max_size=len(names) - 3))
                for r in draw(st.lists(st.one_of(good, good, good, st.lists(CELLS, min_size=3, max_size=3)),
                                       min_size=1, max_size=12))]
    else:
        names = draw(st.lists(NAMES, min_size=1, max_size=6))
        rows = draw(st.lists(st.lists(CELLS, min_size=len(names), max_size=len(names)), max_size=8))
    sep = draw(st.sampled_from([",", ",", ",", "\t", ";"]))
    lines = [sep.join(names)] + [sep.join(r) for r in rows]
    return ("\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))).encode()


@st.composite
def random_tables(draw) -> tuple[pa.Table, str]:
    n = draw(st.integers(0, 6))
    floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
    label_kind = draw(st.sampled_from(["int", "str", "float", "bool", "list", "null"]))
    label_values = {
        "int": st.integers(-3, 3), "str": st.sampled_from(["a", "b", "01", "1", ""]), "float": floats,
        "bool": st.booleans(), "list": st.lists(st.sampled_from(["a", "b"]), max_size=2), "null": st.none(),
    }[label_kind]
    cols: dict[str, pa.Array] = {"label": pa.array(draw(st.lists(label_values, min_size=n, max_size=n)),
                                                  type=pa.null() if label_kind == "null" else None)}
    layout = draw(st.sampled_from(["list", "columns", "none"]))
    if layout == "list":
        width = st.integers(0, 3) if draw(st.booleans()) else st.just(2)
        cols["pred_probs"] = pa.array(draw(st.lists(st.one_of(st.none(), st.lists(floats, min_size=0, max_size=3)
                                                              .filter(lambda v: True)), min_size=n, max_size=n))
                                      if draw(st.booleans()) else
                                      [[0.5] * draw(width)] * n, type=pa.list_(pa.float32()))
    elif layout == "columns":
        for name in draw(st.lists(st.sampled_from(["prob_a", "prob_b", "prob_1", "prob_0"]), unique=True,
                                  max_size=3)):
            cols[name] = pa.array(draw(st.lists(st.one_of(floats, st.none()), min_size=n, max_size=n)),
                                  type=pa.float64())
    if draw(st.booleans()):
        cols["id"] = pa.array(draw(st.lists(st.sampled_from(["7", "007", "x", None]), min_size=n, max_size=n)),
                              type=pa.string())
    table = pa.table(cols)
    if draw(st.booleans()):
        table = table.replace_schema_metadata({"labelqa.classes": draw(st.sampled_from(
            ['["a", "b"]', "[]", "not json", '[1, 1]', '{"a": 1}', '["1", "01"]']))})
    return table, draw(st.sampled_from([".parquet", ".arrow", ".jsonl", ".csv"]))


def _write_table(table: pa.Table, path: Path) -> None:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".arrow":
        import pyarrow.feather as feather

        feather.write_feather(table, path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in table.to_pylist()))
    else:
        from labelqa.report.textlists import lists_to_text

        pacsv.write_csv(lists_to_text(table), path)


def _check_run(folder: Path, data: Path, command: str) -> None:
    """Run ``command`` on ``data``: exit 0/1/2, one clear line on error, input unchanged, nothing left behind."""
    import contextlib
    import io

    before = digest(data)
    out = folder / ("rep" if command == "scan" else "fixed.csv")
    argv = [command, str(data), "-o", str(out), "-q"] + (["--exit-zero"] if command == "scan" else [])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = err.getvalue()
    assert code in (0, 1, 2), (code, text)
    if code == 2:
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("labelqa: error: "), text
        # not the last line of defence ("unexpected ValueError: ..."; a codec's "unexpected end of data" is fine)
        assert not text.startswith("labelqa: error: unexpected ") and "Traceback" not in text, text
        assert not out.exists()  # nothing written on an error
    else:
        assert out.exists(), text
    assert digest(data) == before
    left = {p.name for p in folder.iterdir()} - {data.name, out.name}
    assert not left, left  # no temp files
    if out.is_dir():
        assert all(not p.name.startswith(".") for p in out.iterdir())


PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
PROPERTY_SLOW = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


def _random_bytes_case(blob: bytes, suffix: str, magic: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        path.write_bytes(magic + blob + (magic if magic else b""))
        _check_run(Path(d), path, command)


def _csv_case(text: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.csv"
        path.write_bytes(text)
        _check_run(Path(d), path, command)


def _table_case(case: tuple[pa.Table, str], command: str) -> None:
    table, suffix = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        _write_table(table, path)
        _check_run(Path(d), path, command)


BYTES = (st.binary(max_size=300), st.sampled_from(SUFFIXES), st.sampled_from([b"", b"PAR1", b"ARROW1\x00\x00"]),
         st.sampled_from(["scan", "fix"]))


@PROPERTY
@given(*BYTES)
def test_random_bytes_never_crash_the_readers(blob, suffix, magic, command):
    _random_bytes_case(blob, suffix, magic, command)


@PROPERTY
@given(csv_texts(), st.sampled_from(["scan", "fix"]))
def test_random_csv_text_gets_a_result_or_one_clear_line(text, command):
    _csv_case(text, command)


@PROPERTY
@given(random_tables(), st.sampled_from(["scan", "fix"]))
def test_random_schemas_get_a_result_or_one_clear_line(case, command):
    _table_case(case, command)


@pytest.mark.slow
@PROPERTY_SLOW
@given(*BYTES)
def test_random_bytes_many(blob, suffix, magic, command):
    _random_bytes_case(blob, suffix, magic, command)


@pytest.mark.slow
@PROPERTY_SLOW
@given(csv_texts(), st.sampled_from(["scan", "fix"]))
def test_random_csv_text_many(text, command):
    _csv_case(text, command)


@pytest.mark.slow
@PROPERTY_SLOW
@given(random_tables(), st.sampled_from(["scan", "fix"]))
def test_random_schemas_many(case, command):
    _table_case(case, command)
