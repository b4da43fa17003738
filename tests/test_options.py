"""Every declared option is reachable all three ways (flag, configuration, keyword) and checked the same way.

The cases are generated from :mod:`labelqa.options`, so a new option is covered by declaring it. Reachability
is shown by recording what :func:`labelqa.options.resolve` returns inside the command (flags, configuration)
and inside the library entry (keywords); the data file does not exist, so each run stops right after. A few
end-to-end cases at the bottom prove that values really change results.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labelqa
from labelqa import options
from labelqa.cli.app import main
from labelqa.errors import LabelqaError
from labelqa.evaluate_run import evaluate_detectors
from labelqa.train.pipeline import train_from_file
from tests.conftest import REPO, noisy_dataset, write_parquet

from labelqa.export import export_review  # noqa: E402

LIBRARY = {"scan": labelqa.scan, "fix": labelqa.fix, "evaluate": evaluate_detectors, "train": train_from_file,
           "export": export_review}


def cases() -> list[tuple[str, str]]:
    return [(command, name) for command in LIBRARY for name, opt in options.options_for(command).items()
            if not opt.positional and not opt.cli_only]


def sample(opt: options.Option):
    """A valid value that is not the default, in Python form."""
    if opt.kind == "bool":
        return not opt.default
    if opt.kind == "str" and opt.choices:
        return next(c for c in opt.choices if c != opt.default)
    if opt.kind == "names":
        return [opt.choices[-1]] if opt.choices else ["cl"]
    if opt.kind == "values":
        return ["a", "b"]
    if opt.kind == "ints":
        return [1, 2]
    if opt.kind == "path":
        return "x.npy"
    if opt.kind == "str":
        return "col_x"
    iv = opt.interval or options.Interval()
    if opt.kind == "int":
        value = (iv.low or 0) + 3
        return value + 1 if value == opt.default else value
    if iv.low is not None and iv.high is not None:
        value = (iv.low + iv.high) / 2
    else:
        value = (iv.low if iv.low is not None else 0) + 0.25
    return value / 2 if value == opt.default else value


def invalid(opt: options.Option):
    """A value of the right type that the declaration rejects, or None."""
    if opt.kind == "str" and opt.choices:
        return "bogus"
    if opt.kind == "names" and opt.choices:
        return ["bogus"]
    iv = opt.interval
    if iv is None or opt.kind not in ("int", "float"):
        return None
    step = 1 if opt.kind == "int" else 0.5
    return iv.low - step if iv.low is not None else iv.high + step


def flag_args(opt: options.Option, value) -> list[str]:
    if opt.kind == "bool":
        return [opt.flag] if value else []
    if isinstance(value, list):
        if opt.repeatable:
            return [f"{opt.flag}={v}" for v in value]
        return [f"{opt.flag}={','.join(map(str, value))}"]
    return [f"{opt.flag}={value}"]


def toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return repr(value) if isinstance(value, (int, float)) else json.dumps(str(value))


def as_given(opt: options.Option, value):
    return [value] if opt.repeatable and not isinstance(value, list) else value


@pytest.fixture
def recorded(monkeypatch):
    """Every Settings that options.resolve returns, with the source of its given values."""
    calls: list[tuple[str, options.Settings]] = []
    real = options.resolve

    def spy(command, **kwargs):
        settings = real(command, **kwargs)
        calls.append((kwargs.get("source", options.KWARG).kind, settings))
        return settings

    monkeypatch.setattr(options, "resolve", spy)
    return calls


def base_argv(command: str, name: str, tmp_path: Path) -> list[str]:
    argv = [command, str(tmp_path / "absent.parquet")]
    if command == "fix" and name != "out":
        argv += ["-o", str(tmp_path / "clean.parquet")]
    return argv


def seen(calls, kind: str, name: str):
    values = [(s[name], s.sources[name]) for k, s in calls if k == kind and name in s]
    assert values, f"{name} never reached a {kind} resolve"
    return values[0]


@pytest.mark.parametrize(("command", "name"), cases())
def test_reachable_by_flag_config_and_keyword(command, name, tmp_path, monkeypatch, recorded, capsys):
    opt = options.option(name, command)
    value = sample(opt)
    expected = options.check(opt, as_given(opt, value))
    monkeypatch.chdir(tmp_path)

    # the flag
    assert main(base_argv(command, name, tmp_path) + flag_args(opt, value)) == 2
    got, source = seen(recorded, "flag", name)
    assert (got, source.kind) == (expected, "flag"), capsys.readouterr().err

    # labelqa.toml and pyproject.toml, relative paths taken from the file's folder
    table = options.config_table(opt, command)
    if table is not None:
        in_config = [tmp_path / v for v in expected] if isinstance(value, str) and opt.kind == "path" and \
            opt.repeatable else tmp_path / expected if opt.kind == "path" else expected
        for file, header in (("labelqa.toml", f"[{table}]"), ("pyproject.toml", f"[tool.labelqa.{table}]")):
            (tmp_path / "labelqa.toml").unlink(missing_ok=True)
            (tmp_path / file).write_text(f"{header}\n{name.replace('_', '-')} = {toml(value)}\n")
            recorded.clear()
            assert main(base_argv(command, name, tmp_path)) == 2
            got, source = seen(recorded, "flag", name)
            assert (got, source.kind, source.file.name) == (in_config, "config", file), capsys.readouterr().err

    # the keyword argument of the library entry
    recorded.clear()
    call = LIBRARY[command]
    extra = {"out": tmp_path / "clean.parquet"} if command == "fix" and name != "out" else {}
    if not opt.api:
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
            call(tmp_path / "absent.parquet", **extra, **{name: value})
        return
    with pytest.raises(LabelqaError):  # the data file does not exist (or another input error after the options)
        call(tmp_path / "absent.parquet", **extra, **{name: value})
    got, source = seen(recorded, "kwarg", name)
    assert (got, source.kind) == (expected, "kwarg")


@pytest.mark.parametrize(("command", "name"), [c for c in cases() if invalid(options.option(c[1], c[0])) is not None])
def test_invalid_values_are_rejected_the_same_way(command, name, tmp_path, monkeypatch, capsys):
    opt = options.option(name, command)
    bad = invalid(opt)
    monkeypatch.chdir(tmp_path)
    assert main(base_argv(command, name, tmp_path) + flag_args(opt, bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"labelqa: error: {opt.flag} must be ") and err.count("\n") == 1, err
    table = options.config_table(opt, command)
    if table is not None:
        (tmp_path / "labelqa.toml").write_text(f"[{table}]\n{name} = {toml(bad)}\n")
        assert main(base_argv(command, name, tmp_path)) == 2
        err = capsys.readouterr().err
        assert f"labelqa.toml [{table}] {name} must be " in err and err.count("\n") == 1, err
        (tmp_path / "labelqa.toml").unlink()
    if opt.api:
        extra = {"out": tmp_path / "clean.parquet"} if command == "fix" and name != "out" else {}
        with pytest.raises(LabelqaError, match=f"^{name}= must be "):
            LIBRARY[command](tmp_path / "absent.parquet", **extra, **{name: bad})


def test_the_message_names_the_option_as_given(tmp_path, monkeypatch, capsys):
    assert main(["scan", str(tmp_path / "x.parquet"), "--frac-noise", "1.5"]) == 2
    assert capsys.readouterr().err == "labelqa: error: --frac-noise must be a number in [0, 1], got 1.5\n"
    with pytest.raises(LabelqaError, match=r"^nrg_lambda= must be a number >= 0, got -1"):
        labelqa.scan(tmp_path / "x.parquet", nrg_lambda=-1)
    with pytest.raises(TypeError, match="did you mean nrg_lambda"):
        labelqa.scan(tmp_path / "x.parquet", nrg_lamda=1)


# --------------------------------------------------------------------------- the declarations match the library
def test_choices_are_the_librarys():
    from labelqa.data.readers import SUPPORTED_FORMATS
    from labelqa.detectors import ensemble
    from labelqa.detectors.confident import CL_FILTER_METHODS, SCORE_METHODS
    from labelqa.detectors.multilabel import AGGREGATIONS
    from labelqa.run.engine import ENGINES
    from labelqa.fix import STRATEGIES
    from labelqa.gate import NOISE_RATE_BOUNDS
    from labelqa.models import COMBINE_METHODS
    from labelqa.scan import DETECTORS
    from labelqa.train.crossval import CV_MODELS

    o = options.OPTIONS
    assert set(o["filter_by"].choices) == set(CL_FILTER_METHODS)
    assert set(o["score_method"].choices) == set(SCORE_METHODS)
    assert set(o["aggregation"].choices) == set(AGGREGATIONS)
    assert set(o["issue_rule"].choices) == set(ensemble.ISSUE_RULES)
    assert set(o["engine"].choices) == set(ENGINES)
    assert set(o["strategy"].choices) == set(STRATEGIES)
    assert set(o["noise_rate_bound"].choices) == set(NOISE_RATE_BOUNDS)
    assert set(o["combine_models"].choices) == set(COMBINE_METHODS)
    assert set(o["model"].choices) == set(CV_MODELS)
    assert set(SUPPORTED_FORMATS) <= set(o["input_format"].choices)
    assert set(o["detectors"].choices) == set(DETECTORS)


def test_defaults_are_the_detectors_and_loaders():
    from labelqa.data import load
    from labelqa.detectors.aum import AreaUnderMargin
    from labelqa.detectors.confident import ConfidentLearning
    from labelqa.detectors.duplicates import DuplicateDetector
    from labelqa.detectors.multilabel import MultilabelConfidentLearning
    from labelqa.detectors.nrg import NeuralRelationGraph

    classes = {"cl": ConfidentLearning, "mlcl": MultilabelConfidentLearning, "aum": AreaUnderMargin,
               "nrg": NeuralRelationGraph, "dup": DuplicateDetector}
    for opt in options.OPTIONS.values():
        for det in opt.detectors:
            fields = {f.name: f.default for f in dataclasses.fields(classes[det])}
            field = opt.name
            if opt.name == "nrg_k":  # None = the detector's own default
                continue
            if (det, opt.name) == ("mlcl", "filter_by"):  # the scan default is multiclass only
                assert fields[field] == "prune_by_noise_rate"
                continue
            assert fields[field] == opt.default, opt.name
    params = inspect.signature(load).parameters
    for name, opt in options.options_for("scan").items():
        if opt.group == "load" and not opt.positional and name != "pred_probs_col":
            assert params[name].default == opt.default, name


def test_every_command_option_has_a_help_and_one_flag_meaning():
    flags: dict[str, set[str]] = {}
    for command in options.COMMANDS:
        for opt in options.options_for(command).values():
            assert opt.help and opt.group in options.GROUPS and opt.kind in options.KINDS
            if not opt.positional:
                flags.setdefault(opt.flag, set()).add(opt.name)
                for alias in opt.aliases:
                    flags.setdefault(alias, set()).add(opt.name)
    shared = {f: names for f, names in flags.items() if len(names) > 1}
    assert shared == {"--batch-size": {"batch_size", "train_batch_size"}}  # train's old spelling, kept working


# --------------------------------------------------------------------------- imports
def _imports(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labelqa"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("labelqa")]
    return out


OWN = sorted((REPO / "labelqa" / "cli").glob("*.py")) + [REPO / "labelqa" / n for n in (
    "options.py", "config.py", "scan.py", "evaluate_run.py", "train/pipeline.py")]


def test_no_import_cycles_and_no_private_names():
    pkg = REPO / "labelqa"
    mod = {p: ".".join(p.relative_to(REPO).with_suffix("").parts) for p in OWN}
    graph = {mod[p]: {m for m, _ in _imports(p) if m in mod.values()} for p in OWN}
    for p in OWN:  # `from labelqa.cli import scan_cmd` names a module too
        graph[mod[p]] |= {f"{m}.{n}" for m, names in _imports(p) for n in names if f"{m}.{n}" in graph}

    def visit(node, path):
        assert node not in path, f"import cycle: {' -> '.join(path + [node])}"
        for nxt in graph[node]:
            visit(nxt, path + [node])

    for node in graph:
        visit(node, [])
    allowed = {("labelqa.aum", "_list_column_matrix")}  # labelqa/aum.py is being split by its owners
    private = [(str(p.relative_to(pkg)), m, n) for p in OWN for m, names in _imports(p) for n in names
               if n.startswith("_") and not n.startswith("__") and (m, n) not in allowed]
    assert private == []


# --------------------------------------------------------------------------- end to end: values change results
def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fix_without_report_scans_with_the_scan_table(noisy_parquet, tmp_path, monkeypatch, capsys):
    path, _ = noisy_parquet
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labelqa.toml").write_text('[scan]\nfilter_by = "both"\n[fix]\nstrategy = "flag"\n')
    assert run(["scan", path, "-o", tmp_path / "rep", "-q"], capsys)[0] == 0
    flagged = sum(pq.read_table(tmp_path / "rep" / "issues.parquet").column("is_label_issue").to_pylist())
    code, out, err = run(["fix", path, "-o", tmp_path / "clean.parquet"], capsys)
    assert code == 0, err
    assert f"{flagged:,} flagged" in out  # the [scan] filter_by and the [fix] strategy both applied
    default = labelqa.scan(path)
    assert default.n_issues != flagged


@pytest.fixture
def with_embeddings(tmp_path):
    given, _, probs, _ = noisy_dataset(n=300, k=3, seed=4)
    emb = (probs + np.random.default_rng(0).normal(0, 0.05, probs.shape)).astype(np.float32)
    return write_parquet(tmp_path / "e.parquet", given, probs,
                         extra={"embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 3)})


def test_config_nrg_options_reach_scan_and_evaluate(with_embeddings, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    counts = {}
    for lam in (0.05, 0.5):
        (tmp_path / "labelqa.toml").write_text(f"[scan]\nnrg_lambda = {lam}\nnrg_mode = 'exact'\n")
        code, _, err = run(["scan", with_embeddings, "-o", tmp_path / f"r{lam}", "-q"], capsys)
        assert code == 0, err
        nrg = json.loads((tmp_path / f"r{lam}" / "summary.json").read_text())["detectors"]["nrg"]
        assert lam in (nrg["params"].get("nrg_lambda"), nrg["params"].get("lam"))
        code, out, err = run(["evaluate", with_embeddings, "--inject-noise", "uniform:0.1", "--format", "json"],
                             capsys)
        assert code == 0, err
        counts[lam] = json.loads(out)["detectors"]["nrg"]["flagged"]
    assert counts[0.05] != counts[0.5]  # evaluate passed the [scan] nrg option on


def test_python_keywords_gate_and_engines(noisy_parquet, tmp_path):
    path, _ = noisy_parquet
    result = labelqa.scan(path, filter_by="both", max_issues=0)
    assert result.results["cl"].params["filter_by"] == "both"
    assert result.gate.passed is False and result.summary()["gate"]["rules"] == {"max_issues": 0}
    streamed = labelqa.scan(str(path), filter_by="both", engine="stream", batch_size=500, max_issues=0)
    assert streamed.gate.as_dict() == result.gate.as_dict()
    summary = streamed.summary()
    assert summary["options"]["engine"] == "stream" and summary["issues_found"] == result.n_issues
    labelqa.write_report(streamed, tmp_path / "s")
    labelqa.write_report(result, tmp_path / "m")
    assert pq.read_table(tmp_path / "s" / "issues.parquet").equals(pq.read_table(tmp_path / "m" / "issues.parquet"))
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["gate"]["passed"] is False
    from labelqa.scan import top_issues

    assert top_issues(streamed, 5).num_rows == 5
    lower = labelqa.scan(path, detectors=[labelqa.ConfidentLearning(filter_by="both")])
    assert lower.gate is None and "gate" not in lower.summary()  # the lower-level form is not judged
