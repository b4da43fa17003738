"""Configuration files: discovery, validation, and command-line precedence."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import pytest

from labelqa.config import LabelqaConfig, apply_config, explicit_params, find_config, load_config, merge_cli
from labelqa.errors import LabelqaError


def test_no_config(tmp_path):
    assert find_config(cwd=tmp_path) is None
    assert load_config(cwd=tmp_path) == LabelqaConfig()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_config(cwd=tmp_path) is None  # a pyproject without [tool.labelqa] is not a config


def test_pyproject_tool_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.labelqa.scan]\ndetectors = ['cl', 'nrg']\nfilter-by = 'both'\nout = 'reports/lq'\n"
        "[tool.labelqa.gate]\nmax_issue_rate = 0\nmax_issues = 10\ngate_detectors = 'cl'\n"
    )
    cfg = load_config(cwd=tmp_path)
    assert cfg.path == tmp_path / "pyproject.toml"
    assert cfg.section("scan") == {"detectors": "cl,nrg", "filter_by": "both", "out": tmp_path / "reports/lq"}
    assert cfg.section("gate") == {"max_issue_rate": 0.0, "max_issues": 10, "gate_detectors": "cl"}
    assert isinstance(cfg.section("gate")["max_issue_rate"], float)
    assert cfg.section("evaluate") == {}


def test_labelqa_toml_wins_and_is_top_level(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.labelqa.gate]\nmax_issues = 1\n")
    (tmp_path / "labelqa.toml").write_text("[gate]\nmax_issues = 2\n")
    assert load_config(cwd=tmp_path).section("gate") == {"max_issues": 2}


def test_explicit_path(tmp_path):
    other = tmp_path / "ci" / "lq.toml"
    other.parent.mkdir()
    other.write_text("[scan]\nclasses_file = 'classes.txt'\nnum_to_remove_per_class = [1, 0, 2]\n")
    cfg = load_config(other, cwd=tmp_path)
    assert cfg.section("scan") == {"classes_file": tmp_path / "ci" / "classes.txt", "num_to_remove_per_class": "1,0,2"}
    with pytest.raises(LabelqaError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bare = tmp_path / "sub" / "pyproject.toml"
    bare.parent.mkdir()
    bare.write_text("[project]\nname = 'x'\n")
    with pytest.raises(LabelqaError, match=r"no \[tool.labelqa\] table"):
        load_config(bare)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[gate]\nmax_rate = 0.1\n", "unknown key 'max_rate' in \\[gate\\]"),
        ("[report]\nx = 1\n", "unknown key report"),
        ("[gate]\nmax_issue_rate = 'high'\n", "should be a number"),
        ("[gate]\nmax_issues = 1.5\n", "should be an integer"),
        ("[scan]\nrenormalize = 1\n", "true or false"),
        ("[scan]\ndetectors = []\n", "non-empty list"),
        ("[scan]\nnum_to_remove_per_class = ['a']\n", "list of integers"),
        ("gate = 3\n", "must be a table"),
        ("[gate\n", "not valid TOML"),
        ("[gate]\nmax-issues = 1\nmax_issues = 2\n", "given twice"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path, text, match):
    path = tmp_path / "labelqa.toml"
    path.write_text(text)
    with pytest.raises(LabelqaError, match=match) as info:
        load_config(cwd=tmp_path)
    assert str(path) in str(info.value)


def test_unknown_key_in_pyproject_is_named_with_prefix(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.labelqa]\nmax_issue_rate = 0.1\n")
    with pytest.raises(LabelqaError, match="unknown key tool.labelqa.max_issue_rate"):
        load_config(cwd=tmp_path)


class Fmt(str, Enum):
    human = "human"
    json = "json"


def test_merge_cli_with_explicit_sources():
    cli = {"filter_by": "both", "top": 10, "output_format": Fmt.human, "out": Path("a")}
    config = {"filter_by": "prune_by_class", "top": 5, "format": "json", "out": "b", "unused": 1}
    merged = merge_cli(config, cli, explicit={"filter_by"})
    assert merged == {"filter_by": "both", "top": 5, "output_format": Fmt.json, "out": Path("b")}
    with pytest.raises(LabelqaError, match="format = 'xml'"):
        merge_cli({"format": "xml"}, cli, explicit=set())


def test_merge_cli_by_defaults():
    defaults = {"filter_by": "prune_by_noise_rate", "top": 10}
    cli = {"filter_by": "prune_by_noise_rate", "top": 3}
    merged = merge_cli({"filter_by": "both", "top": 7}, cli, defaults)
    assert merged == {"filter_by": "both", "top": 3}  # the default value yields, the changed one wins


def test_explicit_params_outside_a_command(tmp_path, monkeypatch):
    assert explicit_params() is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labelqa.toml").write_text("[scan]\ntop = 4\nfilter_by = 'both'\n")
    values, cfg = apply_config({"top": 10, "filter_by": "x"}, None, ["scan"])
    assert values == {"top": 10, "filter_by": "x"}  # outside click with no defaults: given values win
    values, _ = apply_config({"top": 10, "filter_by": "x"}, None, ["scan"], defaults={"top": 10, "filter_by": "y"})
    assert values == {"top": 4, "filter_by": "x"}


def test_explicit_params_inside_a_typer_command(tmp_path, monkeypatch):
    import typer

    seen = {}
    app = typer.Typer()

    @app.command()
    def cmd(top: int = 10, name: str = "a", flag: bool = False) -> None:
        seen["explicit"] = explicit_params()

    @app.callback()
    def _root() -> None:
        pass

    command = typer.main.get_command(app)
    command.main(args=["cmd", "--top", "10", "--flag"], standalone_mode=False)
    assert seen["explicit"] == {"top", "flag"}  # --top given, even at its default value
