"""Configuration files: discovery, validation, and command-line precedence."""

from __future__ import annotations

import pytest
import typer

from labelqa import options
from labelqa.cli.params import explicit_params
from labelqa.config import LabelqaConfig, find_config, load_config
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
    assert cfg.section("scan") == {"detectors": ["cl", "nrg"], "filter_by": "both", "out": tmp_path / "reports/lq"}
    assert cfg.section("gate") == {"max_issue_rate": 0.0, "max_issues": 10, "gate_detectors": ["cl"]}
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
    assert cfg.section("scan") == {"classes_file": tmp_path / "ci" / "classes.txt", "num_to_remove_per_class": [1, 0, 2]}
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
        ("[gate]\nmax_issue_rate = 'high'\n", r"\[gate\] max_issue_rate must be a number, got 'high'"),
        ("[gate]\nmax_issues = 1.5\n", "must be an integer"),
        ("[gate]\nmax_issue_rate = 1.5\n", "must be a fraction between 0 and 1, got 1.5"),
        ("[scan]\nfrac-noise = -1\n", r"\[scan\] frac-noise must be a number in \[0, 1\], got -1"),
        ("[scan]\nfilter_by = 'magic'\n", "filter_by must be one of prune_by_noise_rate"),
        ("[scan]\nnrg_lambda = -0.1\n", "nrg_lambda must be a number >= 0"),
        ("[scan]\nstrategy = 'drop'\n", "unknown key 'strategy' in \\[scan\\] -- known keys: adjust_pred_probs"),
        ("[fix]\nfilter_by = 'both'\n", "unknown key 'filter_by' in \\[fix\\]"),
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


def test_every_table_key_comes_from_the_declarations(tmp_path):
    """The keys of each table are exactly the options the commands reading it take (formerly 8 scan options
    such as nrg_lambda were missing)."""
    keys = options.config_keys()
    assert {"nrg_lambda", "nrg_edge_cutoff", "nrg_backend", "nrg_index", "engine", "batch_size", "scheduler",
            "combine_models"} <= set(keys["scan"])
    assert set(keys["gate"]) == {o.name for o in options.OPTIONS.values() if o.group == "gate"}
    assert set(keys["fix"]) == {"report", "strategy", "min_confidence", "force", "decisions", "undecided",
                                "csv_formulas"}  # fix's --out is required
    assert set(keys["export"]) == {"to", "out", "top", "force", "csv_formulas"}
    assert "train_batch_size" in keys["train"] and "batch_size" not in keys["train"]
    (tmp_path / "labelqa.toml").write_text("[scan]\nnrg_lambda = 0.1\nnrg-index = 'brute'\n[train]\nepochs = 3\n")
    cfg = load_config(cwd=tmp_path)
    assert cfg.section("scan") == {"nrg_lambda": 0.1, "nrg_index": "brute"}
    assert cfg.section("train") == {"epochs": 3}


def test_tables_apply_to_their_commands(tmp_path):
    (tmp_path / "labelqa.toml").write_text(
        "[scan]\nfilter_by = 'both'\ntop = 3\nformat = 'json'\nengine = 'memory'\n"
        "[gate]\nmax_issues = 5\n[fix]\nstrategy = 'drop'\n[evaluate]\nformat = 'markdown'\n"
        "[train]\nlabel_col = 'y'\n")
    cfg = load_config(cwd=tmp_path)
    scan = options.resolve("scan", config=cfg)
    assert (scan["filter_by"], scan["top"], scan["format"], scan["max_issues"]) == ("both", 3, "json", 5)
    fix = options.resolve("fix", config=cfg)
    assert (fix["filter_by"], fix["strategy"]) == ("both", "drop") and "top" not in fix and "engine" not in fix
    evaluate = options.resolve("evaluate", config=cfg)
    assert (evaluate["filter_by"], evaluate["format"]) == ("both", "markdown")  # not [scan] format
    train = options.resolve("train", config=cfg)
    assert train["label_col"] == "y" and options.resolve("scan", config=cfg)["label_col"] == "label"
    flagged = options.resolve("scan", given={"filter_by": "prune_by_class"}, config=cfg, source=options.FLAG)
    assert flagged["filter_by"] == "prune_by_class" and flagged.sources["top"].kind == "config"
    assert flagged.name("filter_by") == "--filter-by" and flagged.name("top").endswith("[scan] top")


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "ci"
    sub.mkdir()
    (sub / "lq.toml").write_text("[scan]\npred_probs = ['a.npy', '/abs/b.npy']\nembeddings = 'e.npy'\n"
                                 "[fix]\nreport = 'rep'\n")
    cfg = load_config(sub / "lq.toml")
    assert cfg.section("scan") == {"pred_probs": [sub / "a.npy", options.Path("/abs/b.npy")],
                                   "embeddings": sub / "e.npy"}
    assert cfg.section("fix") == {"report": sub / "rep"}


def test_path_or_column_values_are_relative_when_the_file_is_beside_the_config(tmp_path, monkeypatch):
    sub = tmp_path / "ci"
    (sub / "dynamics").mkdir(parents=True)
    (sub / "lq.toml").write_text("[scan]\nlogits_by_epoch = 'dynamics'\nthreshold_samples = 'is_threshold'\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(sub / "lq.toml")
    assert cfg.section("scan") == {"logits_by_epoch": str(sub / "dynamics"), "threshold_samples": "is_threshold"}


def test_explicit_params_inside_a_typer_command():
    seen = {}
    app = typer.Typer()

    @app.command()
    def cmd(ctx: typer.Context, top: int = 10, name: str = "a", flag: bool = False) -> None:
        seen["explicit"] = explicit_params(ctx)

    @app.callback()
    def _root() -> None:
        pass

    command = typer.main.get_command(app)
    command.main(args=["cmd", "--top", "10", "--flag"], standalone_mode=False)
    assert seen["explicit"] == {"top", "flag"}  # --top given, even at its default value
