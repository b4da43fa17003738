"""labelqa.cli.app: the entry point registers the command it runs, all of them for help; exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labelqa.cli.app import COMMANDS, app, invoked_command, main, register


@pytest.mark.parametrize(("argv", "name"), [
    (["scan", "data.parquet", "--out", "rep"], "scan"),
    (["--debug", "fix", "d.csv"], "fix"),
    (["--version"], None),
    ([], None),
    (["-h"], None),
    (["scna", "x"], None),  # unknown: every command is registered, so click can suggest one
    (["--", "scan"], None),
])
def test_invoked_command(argv, name):
    assert invoked_command(argv) == name


def test_register_keeps_the_help_order_and_registers_once():
    register(["export"])
    register(["scan"])
    register()
    register(["scan"])
    names = [c.name for c in app.registered_commands]
    assert names == list(COMMANDS)  # each once, in the order help lists them


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_a_command_imports_only_its_own_module():
    out = _fresh("import sys; from labelqa.cli.app import main; rc = main(['scan', '--help']); "
                 "print(rc, sorted(m for m in sys.modules if m.startswith('labelqa.cli.') and m.endswith('_cmd')))")
    assert out.splitlines()[-1] == "0 ['labelqa.cli.scan_cmd']"


def test_help_and_unknown_commands_list_every_command(capsys):
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in COMMANDS)
    assert main(["scna"]) == 2
    assert "Did you mean 'scan'?" in capsys.readouterr().err
