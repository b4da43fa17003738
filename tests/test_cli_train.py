"""`labelqa train` through a local typer app, and the full train -> AUM path on the digits example."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv  # noqa: F401  (pa.csv)
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from labelqa.cli.train_cmd import train
from labelqa.errors import LabelqaError

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "examples" / "digits" / "digits_noisy.parquet"


def invoke(args: list[str]):
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(train)
    return CliRunner().invoke(app, [str(a) for a in args])


def _codes(table: pa.Table, col: str, classes: list) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in table.column(col).to_pylist()])


def _auroc(is_positive: np.ndarray, suspicion: np.ndarray) -> float:
    """P(a positive row is more suspect than a negative one), ties half (Mann-Whitney)."""
    from scipy.stats import rankdata

    ranks = rankdata(suspicion)
    n_pos, n_neg = is_positive.sum(), (~is_positive).sum()
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _small_table(tmp_path: Path, n=240, k=3, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(scale=3, size=(k, 4))[y] + rng.normal(size=(n, 4))
    names = np.array(["ant", "bee", "cat"])[y]
    table = pa.table({"label": names, "f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2], "f3": x[:, 3].astype(np.float32),
                      "embedding": pa.array(list(x.astype(np.float32)), type=pa.list_(pa.float32()))})
    path = tmp_path / "small.parquet"
    pq.write_table(table, path)
    np.save(tmp_path / "feats.npy", x)
    return path


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("train") / "out"
    before = hashlib.sha256(DIGITS.read_bytes()).hexdigest()
    result = invoke([DIGITS, "--out", out, "--features-col", "features", "--seed", "0"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert hashlib.sha256(DIGITS.read_bytes()).hexdigest() == before  # DATA untouched
    return out, result


def test_digits_train_then_aum_flags_injected_noise(digits_run):
    import dataclasses

    import labelqa
    from labelqa.data.dynamics import load_dynamics
    from labelqa.detectors.aum import AreaUnderMargin

    out, result = digits_run
    assert f"--logits-by-epoch {out / 'dynamics'}" in result.output
    # what `labelqa scan out/data.parquet --logits-by-epoch out/dynamics` does
    data = labelqa.load(out / "data.parquet")
    dyn = load_dynamics(out / "dynamics", data.n_rows, data.n_classes, classes=data.classes, labels=data.labels)
    data = dataclasses.replace(data, logits_by_epoch=dyn)
    scan = labelqa.scan(data, detectors=[AreaUnderMargin()])
    res = scan.results["aum"]
    table = pq.read_table(DIGITS, columns=["label", "true_label"])
    classes = list(data.classes)
    given, true = _codes(table, "label", classes), _codes(table, "true_label", classes)
    np.testing.assert_array_equal(given, data.labels)
    probs = data.pred_probs
    assert probs.shape == (1797, 10)
    assert np.mean(probs.argmax(axis=1) == true) > 0.9  # CV probabilities recover the truth well
    noisy = given != true
    precision = noisy[res.issues].mean()
    recall = res.issues[noisy].mean()
    auroc = _auroc(noisy, -res.extra["aum"])
    # measured with seed 0: precision 0.80, recall 0.99, AUROC 0.999 (bounds leave room for
    # platform-level float differences)
    assert precision > 0.65, precision
    assert recall > 0.9, recall
    assert auroc > 0.97, auroc
    assert res.summary["rule"] == "threshold_samples" and res.summary["epochs"] == [30, 30]
    # flagged rows are mostly given their true label back
    assert np.mean(res.suggested[res.issues & noisy] == true[res.issues & noisy]) > 0.85


def test_train_is_deterministic(digits_run, tmp_path):
    out, _ = digits_run
    again = tmp_path / "again"
    result = invoke([DIGITS, "--out", again, "--features-col", "features", "--seed", "0", "-q"])
    assert result.exit_code == 0 and result.output == ""
    for f in ("run0/logits.npy", "run1/logits.npy", "run0/threshold.npy", "dynamics.json"):
        assert (again / "dynamics" / f).read_bytes() == (out / "dynamics" / f).read_bytes(), f
    a = pq.read_table(again / "data.parquet").column("pred_probs").to_pylist()
    assert a == pq.read_table(out / "data.parquet").column("pred_probs").to_pylist()


@pytest.mark.parametrize("features", [["--feature-cols", "f0,f1,f2,f3"], ["--features-col", "embedding"], [],
                                      ["--features", "FEATS"]])
def test_feature_sources(tmp_path, features):
    pytest.importorskip("torch")
    data = _small_table(tmp_path)
    features = [str(tmp_path / "feats.npy") if f == "FEATS" else f for f in features]
    out = tmp_path / "out"
    result = invoke([data, "--out", out, "--epochs", "3", "--hidden", "0", "--folds", "3", "--verbose", *features])
    assert result.exit_code == 0, (result.output, result.exception)
    table = pq.read_table(out / "data.parquet")
    assert table.column_names[-1] == "pred_probs" and table.num_rows == 240
    if not features:
        assert "using features column 'embedding'" in result.output
    assert json.loads(table.schema.metadata[b"labelqa.classes"]) == ["ant", "bee", "cat"]
    assert np.load(out / "dynamics" / "run0" / "logits.npy").shape == (3, 240, 4)


def test_without_torch_probabilities_are_made_and_dynamics_skipped(tmp_path, monkeypatch):
    data = _small_table(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    result = invoke([data, "--out", tmp_path / "out", "--feature-cols", "f0,f1"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Note: no AUM training dynamics: torch is not installed" in result.output
    assert "--index-url https://download.pytorch.org/whl/cpu" in result.output
    assert (tmp_path / "out" / "data.parquet").exists() and not (tmp_path / "out" / "dynamics").exists()
    assert "--logits-by-epoch" not in result.output


@pytest.mark.parametrize("args", [["--dynamics", "on"], ["--model", "torch"]])
def test_missing_torch_exits_with_install_hint_when_asked_for(tmp_path, monkeypatch, args):
    data = _small_table(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)
    result = invoke([data, "--out", tmp_path / "out", "--feature-cols", "f0,f1", *args])
    assert isinstance(result.exception, LabelqaError)  # the real CLI prints it and exits 2
    assert "labelqa train needs torch" in str(result.exception)
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in str(result.exception)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--features-col", "nope"], "no features column 'nope'"),
    (["--feature-cols", "f0,label"], "'label' is string, not numeric"),
    (["--features-col", "f0"], "not a list<float> column"),
    (["--features-col", "embedding", "--feature-cols", "f0"], "only one of"),
    (["--label-col", "y"], "no label column 'y'"),
    (["--classes", "ant,bee", "--feature-cols", "f0"], "label 'cat'"),
    (["--features", "BADFEATS"], r"shape \(5, 2\), expected \(240, D\)"),
])
def test_input_errors(tmp_path, args, message):
    pytest.importorskip("torch")
    data = _small_table(tmp_path)
    np.save(tmp_path / "bad.npy", np.zeros((5, 2)))
    args = [str(tmp_path / "bad.npy") if a == "BADFEATS" else a for a in args]
    result = invoke([data, "--out", tmp_path / "out", *args])
    assert isinstance(result.exception, LabelqaError), (result.output, result.exception)
    assert re.search(message, str(result.exception)), str(result.exception)


def test_no_feature_columns_found(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"label": ["a", "b"] * 10, "x": np.arange(20.0)}), path)
    result = invoke([path, "--out", tmp_path / "out"])
    assert isinstance(result.exception, LabelqaError)
    assert "--features-col COL" in str(result.exception)


def test_help_lists_the_options():
    result = invoke(["--help"])
    assert result.exit_code == 0
    for option in ("--features-col", "--features", "--feature-cols", "--epochs", "--hidden", "--seed", "--folds",
                   "--model", "--cv-model", "--text-cols", "--group-col", "--dynamics", "--label-sep", "--id-col",
                   "--runs", "--threads", "--out"):
        assert option in result.output


# --------------------------------------------------------------------------- scikit-learn models, patterns, text, groups
def run_cli(argv: list[str]) -> int:
    from labelqa.cli.app import main

    return main([str(a) for a in argv])


def next_command(output: str) -> list[str]:
    """The printed ``Next: labelqa scan ...`` command, as argv (as a shell would split it)."""
    import shlex

    line = next(l for l in output.splitlines() if l.startswith("Next: "))
    argv = shlex.split(line[len("Next: "):])
    assert argv[:2] == ["labelqa", "scan"]
    return argv[1:]


@pytest.mark.parametrize("model", ["logreg", "hgb", "knn", "mlp"])
def test_sklearn_models_with_glob_feature_columns(tmp_path, model):
    data = _small_table(tmp_path)
    out = tmp_path / "out"
    result = invoke([data, "--out", out, "--feature-cols", "f*", "--model", model, "--dynamics", "off", "--folds", "3",
                     "--verbose"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "4 features (columns f0,f1,f2,f3)" in result.output
    table = pq.read_table(out / "data.parquet")
    probs = np.array(table.column("pred_probs").to_pylist())
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    y = _codes(table, "label", ["ant", "bee", "cat"])
    assert np.mean(probs.argmax(axis=1) == y) > 0.85
    assert f"{model}, accuracy vs given labels" in result.output
    assert not (out / "dynamics").exists()


def test_several_patterns_and_a_pattern_that_matches_nothing(tmp_path):
    data = _small_table(tmp_path)
    result = invoke([data, "--out", tmp_path / "o", "--feature-cols", "f0, f[23]", "--dynamics", "off", "-v"])
    assert result.exit_code == 0 and "3 features (columns f0,f2,f3)" in result.output
    result = invoke([data, "--out", tmp_path / "o2", "--feature-cols", "f*,px_*", "--dynamics", "off"])
    assert isinstance(result.exception, LabelqaError)
    assert "no column matches 'px_*' for --feature-cols" in str(result.exception)


def test_next_command_runs_as_printed(tmp_path, monkeypatch):
    """Own label and id columns, a folder with a space: the printed scan command works as it is."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(scale=3, size=(2, 3))[y] + rng.normal(size=(200, 3))
    path = tmp_path / "my data.csv"
    pa.csv.write_csv(pa.table({"rid": [f"r{i}" for i in range(200)], "y": np.array(["no", "yes"])[y],
                               "px_0": x[:, 0], "px_1": x[:, 1], "px_2": x[:, 2]}), path)
    monkeypatch.chdir(tmp_path)
    result = invoke([path, "--label-col", "y", "--id-col", "rid", "--feature-cols", "px_*", "--out", "out dir",
                     "--dynamics", "off"])
    assert result.exit_code == 0, (result.output, result.exception)
    argv = next_command(result.output)
    assert argv == ["scan", "out dir/data.parquet", "--label-col", "y", "--id-col", "rid"]
    assert run_cli(argv + ["-q"]) == 0
    summary = json.loads((tmp_path / "labelqa-report" / "summary.json").read_text())
    assert summary["rows"] == 200
    issues = pq.read_table(tmp_path / "labelqa-report" / "issues.parquet")
    assert sorted(issues.column("id").to_pylist())[:3] == ["r0", "r1", "r10"]  # the ids of --id-col


def _multilabel_rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    names = np.array(["red", "green", "blue"])
    Y = rng.random((n, 3)) < 0.35
    x = Y @ rng.normal(scale=3, size=(3, 5)) + rng.normal(size=(n, 5))
    return [list(names[r]) for r in Y], x


@pytest.mark.parametrize("layout", ["list column", "delimited strings"])
def test_multilabel_trains_one_vs_rest_and_scan_reads_it(tmp_path, monkeypatch, layout):
    sets, x = _multilabel_rows()
    labels = sets if layout == "list column" else ["|".join(s) for s in sets]
    cols = {"tags": labels, **{f"f{i}": x[:, i] for i in range(5)}}
    path = tmp_path / "ml.parquet"
    pq.write_table(pa.table(cols), path)
    extra = [] if layout == "list column" else ["--label-sep", "|"]
    monkeypatch.chdir(tmp_path)
    result = invoke([path, "--label-col", "tags", "--feature-cols", "f*", "--out", "out", *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "one-vs-rest" in result.output and "--logits-by-epoch" not in result.output
    table = pq.read_table(tmp_path / "out" / "data.parquet")
    classes = json.loads(table.schema.metadata[b"labelqa.classes"])
    assert classes == ["blue", "green", "red"]
    probs = np.array(table.column("pred_probs").to_pylist())
    truth = np.array([[c in s for c in classes] for s in sets])
    assert probs.shape == (300, 3) and np.mean((probs >= 0.5) == truth) > 0.85
    assert not np.allclose(probs.sum(axis=1), 1)  # independent per class, not a softmax
    argv = next_command(result.output)
    assert argv[2:] == ["--label-col", "tags", *extra]
    assert run_cli(argv + ["-q"]) == 0
    summary = json.loads((tmp_path / "labelqa-report" / "summary.json").read_text())
    assert summary["task"] == "multilabel"


def test_multilabel_refuses_torch(tmp_path):
    sets, x = _multilabel_rows(60)
    path = tmp_path / "ml.parquet"
    pq.write_table(pa.table({"label": sets, "f0": x[:, 0]}), path)
    result = invoke([path, "--feature-cols", "f0", "--model", "torch", "--out", tmp_path / "o"])
    assert isinstance(result.exception, LabelqaError) and "multiclass models only" in str(result.exception)
    result = invoke([path, "--feature-cols", "f0", "--dynamics", "on", "--out", tmp_path / "o"])
    assert isinstance(result.exception, LabelqaError) and "multiclass data only" in str(result.exception)


def test_text_columns_become_tfidf_features(tmp_path):
    rng = np.random.default_rng(0)
    words = {"sport": ["goal", "match", "team", "score", "league"], "food": ["soup", "bread", "spice", "oven", "salt"],
             "tech": ["chip", "code", "server", "cloud", "robot"]}
    topics = rng.choice(list(words), 240)
    texts = [" ".join(rng.choice(words[t], 4)) + " the a of" for t in topics]
    texts[5] = None  # a missing text is the empty document
    path = tmp_path / "text.parquet"
    pq.write_table(pa.table({"topic": topics, "body": texts, "n_words": np.full(240, 7.0)}), path)
    for args, desc in ((["--text-cols", "body"], "TF-IDF of body"),
                       (["--text-cols", "bo*", "--feature-cols", "n_words"], "columns n_words + TF-IDF of body")):
        out = tmp_path / desc.replace(" ", "_")
        result = invoke([path, "--label-col", "topic", "--out", out, "--dynamics", "off", "-v", *args])
        assert result.exit_code == 0, (result.output, result.exception)
        assert desc in result.output
        table = pq.read_table(out / "data.parquet")
        probs = np.array(table.column("pred_probs").to_pylist())
        assert np.mean(probs.argmax(axis=1) == _codes(table, "topic", ["food", "sport", "tech"])) > 0.95
    result = invoke([path, "--label-col", "topic", "--text-cols", "n_words", "--out", tmp_path / "x"])
    assert isinstance(result.exception, LabelqaError) and "'n_words' is double, not text" in str(result.exception)


def test_group_column_keeps_copies_in_one_fold(tmp_path):
    """Every row three times with the same (sometimes flipped) label: knn on plain folds trusts the copies;
    with --group-col the flipped rows get low probability for their label."""
    rng = np.random.default_rng(3)
    y0 = rng.integers(0, 2, 100)
    x0 = rng.normal(scale=6, size=(2, 3))[y0] + rng.normal(size=(100, 3))
    flipped = np.arange(0, 100, 10)
    y0[flipped] = 1 - y0[flipped]
    x = np.repeat(x0, 3, axis=0) + rng.normal(scale=1e-3, size=(300, 3))
    table = pa.table({"label": np.repeat(np.array(["a", "b"])[y0], 3), "src": np.repeat(np.arange(100), 3),
                      **{f"x{i}": x[:, i] for i in range(3)}})
    path = tmp_path / "dups.parquet"
    pq.write_table(table, path)
    bad = np.isin(np.repeat(np.arange(100), 3), flipped)
    given = {}
    for name, extra in (("plain", []), ("grouped", ["--group-col", "src"])):
        out = tmp_path / name
        result = invoke([path, "--feature-cols", "x*", "--model", "knn", "--dynamics", "off", "--out", out, *extra])
        assert result.exit_code == 0, (result.output, result.exception)
        probs = np.array(pq.read_table(out / "data.parquet").column("pred_probs").to_pylist())
        given[name] = probs[np.arange(300), np.repeat(y0, 3)]
    assert given["plain"][bad].mean() > 0.9
    assert given["grouped"][bad].mean() < 0.2
    result = invoke([path, "--feature-cols", "x*", "--group-col", "nope", "--out", tmp_path / "o"])
    assert isinstance(result.exception, LabelqaError) and "no column 'nope' for --group-col" in str(result.exception)


def test_base_install_without_torch_trains_and_scans(tmp_path):
    """A fresh interpreter in which torch cannot be imported: train, then the printed scan command."""
    import shlex
    import subprocess

    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(  # as if torch were not installed: `import torch` finds nothing
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n")
    data = _small_table(tmp_path)
    env = {**__import__("os").environ, "PYTHONPATH": f"{block}{__import__('os').pathsep}{REPO}"}

    def labelqa(*argv):
        return subprocess.run([sys.executable, "-m", "labelqa", *map(str, argv)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr  # torch really is unimportable there
    done = labelqa("train", data, "--feature-cols", "f*", "--model", "hgb", "--out", "trained out")
    assert done.returncode == 0, done.stderr
    assert "no AUM training dynamics: torch is not installed" in done.stdout
    line = next(l for l in done.stdout.splitlines() if l.startswith("Next: "))
    argv = shlex.split(line[len("Next: "):])
    scanned = labelqa(*argv[1:])
    assert scanned.returncode == 0, scanned.stderr
    assert (tmp_path / "labelqa-report" / "summary.json").exists()


def test_scan_command_quotes_and_never_starts_with_a_dash():
    from pathlib import Path as P

    from labelqa.train.pipeline import scan_command

    argv = scan_command(P("-odd dir/data.parquet"), label_col="my label", id_col="id", label_sep=";",
                        pred_probs_col="probs", dynamics=P("-odd dir/dynamics"))
    assert argv == ["labelqa", "scan", "./-odd dir/data.parquet", "--label-col", "my label", "--id-col", "id",
                    "--label-sep", ";", "--pred-probs-col", "probs", "--logits-by-epoch", "-odd dir/dynamics"]
