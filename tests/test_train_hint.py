"""Scanning data without probabilities prints a `labelqa train` command built from its real columns, and that
command runs as printed (then the scan it prints runs too)."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from labelqa.cli.app import main
from labelqa.data.schema import feature_hint


def noisy_blobs(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(scale=4.0, size=(3, d))[y] + rng.normal(size=(n, d))
    return x, np.array(["cat", "dog", "owl"])[y]


def hinted_command(capsys, argv):
    """Scan ``argv`` (data without probabilities): exit 2, and the command of the hint."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    found = re.search(r"make them with `(labelqa train [^`]*)`", err)
    assert found, err
    return found.group(1)


def run_printed(capsys, command):
    """Run a printed `labelqa ...` command line as a shell would split it; return its stdout and stderr."""
    argv = shlex.split(command)
    assert argv[0] == "labelqa"
    code = main(argv[1:])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out + out.err


def train_then_scan(capsys, command):
    printed = run_printed(capsys, command)
    scan = re.search(r"Next: (labelqa scan .*)", printed)
    assert scan, printed
    assert main([*shlex.split(scan.group(1))[1:], "-q", "--exit-zero"]) == 0


def test_prefixed_feature_columns_become_one_pattern_that_runs(tmp_path, monkeypatch, capsys):
    """px_0..px_3 plus an id, a text note and the label in a CSV: the hint is `--feature-cols 'px_*'`, keeps the
    id column out, and trains."""
    monkeypatch.chdir(tmp_path)
    x, labels = noisy_blobs()
    frame = pd.DataFrame(x, columns=[f"px_{i}" for i in range(4)])
    frame.insert(0, "item", np.arange(len(frame)) + 1000)
    frame["note"] = "seen"
    frame["animal"] = labels
    frame.to_csv("my data.csv", index=False)
    command = hinted_command(capsys, ["scan", "my data.csv", "--label-col", "animal", "--id-col", "item"])
    assert command == "labelqa train 'my data.csv' --label-col animal --id-col item --feature-cols 'px_*' --out trained"
    train_then_scan(capsys, command)
    written = pd.read_parquet(tmp_path / "trained" / "data.parquet")
    assert len(written) == len(frame) and written["item"].tolist() == frame["item"].tolist()


def test_unrelated_numeric_names_are_listed(tmp_path, monkeypatch, capsys):
    """scikit-learn's wine columns share no prefix: they are listed by name, the id column left out."""
    from sklearn.datasets import load_wine

    monkeypatch.chdir(tmp_path)
    wine = load_wine(as_frame=True).frame.rename(columns={"target": "label"}).iloc[::2].reset_index(drop=True)
    wine["row"] = np.arange(len(wine))
    wine.to_parquet("wine.parquet")
    command = hinted_command(capsys, ["scan", "wine.parquet", "--id-col", "row"])
    features = shlex.split(command)[shlex.split(command).index("--feature-cols") + 1].split(",")
    assert features == [c for c in wine.columns if c not in ("label", "row")]
    train_then_scan(capsys, command)


def test_a_prefix_that_would_also_match_a_text_column_is_not_used(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    x, labels = noisy_blobs()
    frame = pd.DataFrame(x, columns=["f_a", "f_b", "f_c", "f_d"]).assign(f_text="x", label=labels)
    frame.to_parquet("d.parquet")
    command = hinted_command(capsys, ["scan", "d.parquet"])
    assert "--feature-cols f_a,f_b,f_c,f_d " in command  # 'f_*' would take the text column and fail
    train_then_scan(capsys, command)


def test_embeddings_or_text_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    x, labels = noisy_blobs()
    pa_table = pa.table({"vec": pa.array(x.tolist(), pa.list_(pa.float32())), "label": labels})
    import pyarrow.parquet as pq

    pq.write_table(pa_table, "emb.parquet")
    command = hinted_command(capsys, ["scan", "emb.parquet"])
    assert "--features-col vec " in command
    train_then_scan(capsys, command)

    words = np.array(["purr whiskers", "bark fetch", "hoot night"])
    pd.DataFrame({"text": words[pd.Series(labels).map({"cat": 0, "dog": 1, "owl": 2})], "label": labels}).to_csv(
        "text.csv", index=False)
    command = hinted_command(capsys, ["scan", "text.csv"])
    assert "--text-cols text " in command
    run_printed(capsys, command)


def test_no_features_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"label": ["a", "b"] * 5}).to_csv("bare.csv", index=False)
    assert main(["scan", "bare.csv"]) == 2
    assert "bare.csv has no feature columns" in capsys.readouterr().err


def test_in_memory_data_get_a_find_issues_call_that_runs():
    import labelqa

    x, labels = noisy_blobs()
    df = pd.DataFrame(x, columns=["w", "h", "d", "m"]).assign(key=np.arange(120) * 7, label=labels)
    with pytest.raises(labelqa.LabelqaError) as info:
        labelqa.scan(df, id_col="key")
    call = re.search(r"`(labelqa\.find_issues\(data, [^`]*)`", str(info.value)).group(1)
    assert "feature_cols='w,h,d,m'" in call and "id_col='key'" in call
    result = eval(call, {"labelqa": labelqa, "data": df})  # noqa: S307 -- the printed call, as a user would run it
    assert len(result.issues_df()) == 120


def test_feature_hint_skips_label_id_index_and_unusable_names():
    schema = pa.schema([("label", pa.int64()), ("id", pa.int64()), ("__index_level_0__", pa.int64()),
                        ("a,b", pa.float64()), ("x_1", pa.float64()), ("x_2", pa.float32()), ("x_3", pa.int8())])
    assert feature_hint(schema, ["label", "id"]) == ("--feature-cols", ["x_*"])
    assert feature_hint(schema, ["label", None]) == ("--feature-cols", ["id", "x_1", "x_2", "x_3"])
    assert feature_hint(pa.schema([("label", pa.string())]), ["label"]) is None
