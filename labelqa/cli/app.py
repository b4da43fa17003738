"""The typer application and the entry point that maps errors to exit codes.

Exit codes: 0 passed, 1 quality gate failed, 2 usage or input error (an
operating-system failure included: read-only or full disk, a bad path), 130
/ 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP (temporary files and
staging folders removed first).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from labelqa._version import __version__
from labelqa.cli.console import EXIT_OK, EXIT_USAGE, error_line, os_error_text
from labelqa.errors import LabelqaError
from labelqa.runtime import (
    Terminated,
    exit_now,
    keep_freed_memory,
    one_malloc_arena,
    prefer_small_pages,
    signals_unwind,
)

app = typer.Typer(
    name="labelqa",
    help="Find label errors in ML datasets, export cleaned labels, and gate CI on label quality.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"labelqa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
) -> None:
    if debug:
        os.environ["LABELQA_DEBUG"] = "1"


#: The commands in the order help lists them: name -> the module of :mod:`labelqa.cli` holding the function
#: of that name (imported when the command is registered).
COMMANDS = {"scan": "scan_cmd", "fix": "fix_cmd", "report": "report_cmd", "train": "train_cmd",
            "evaluate": "evaluate_cmd", "export": "export_cmd"}


def register(names: list[str] | None = None) -> typer.Typer:
    """Add the commands ``names`` (default: all) to :data:`app` once each, kept in :data:`COMMANDS` order.

    :func:`main` registers only the command it runs (building every command's options took ~11 ms of
    each start, one command's ~3.5 ms), and all of them for help, ``--version`` or an unknown name.
    """
    import importlib

    have = {c.name for c in app.registered_commands}
    for name, module in COMMANDS.items():
        if (names is None or name in names) and name not in have:
            app.command(name)(getattr(importlib.import_module(f"labelqa.cli.{module}"), name))
    order = list(COMMANDS)
    app.registered_commands.sort(key=lambda c: order.index(c.name) if c.name in COMMANDS else len(order))
    return app


def invoked_command(argv: list[str]) -> str | None:
    """The command named on the command line: the first argument not an option (the root's options take
    no value), when it is one of :data:`COMMANDS`."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _click_exception_type() -> type[Exception]:
    """The ClickException class typer's parser raises.

    typer up to 0.25 uses the click package; later versions ship their own
    copy of click (``typer._click``), whose exceptions are different classes.
    Found through the public ``typer.BadParameter`` so either works.
    """
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException":
            return cls
    import click  # pragma: no cover - every typer so far has it in the MRO

    return click.ClickException


_CLICK_EXCEPTION = _click_exception_type()
# typer.Exit/Abort are click's classes for typers built on click, and what the vendored copy raises otherwise
_EXIT_TYPES = (typer.Exit,)
_ABORT_TYPES = (typer.Abort,)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as the console script, exits with) the exit code.

    Applies the process tricks of :mod:`labelqa.runtime`, where each is explained and measured.
    """
    prefer_small_pages()
    keep_freed_memory()
    one_malloc_arena()
    name = invoked_command(sys.argv[1:] if argv is None else list(argv))
    command = typer.main.get_command(register(None if name is None else [name]))
    with signals_unwind() as stopped:
        code = _run(command, argv)
        if stopped.signum is not None and code == 130:  # typer turned the interruption into Exit(130)
            code = _interrupted(Terminated(stopped.signum))
    if argv is None:  # the console script: every output is complete and closed by now
        exit_now(code)
    return code


def _run(command: object, argv: list[str] | None) -> int:
    """Run the command; map every error to one line on stderr and an exit code."""
    from labelqa.atomic import remove_live

    try:
        code = command.main(args=argv, prog_name="labelqa", standalone_mode=False)  # type: ignore[attr-defined]
        code = code if isinstance(code, int) else EXIT_OK
    except LabelqaError as exc:
        error_line(str(exc))
        code = EXIT_USAGE
    except _EXIT_TYPES as exc:
        code = exc.exit_code
    except _CLICK_EXCEPTION as exc:  # usage errors: click's own message and usage line
        exc.show()
        code = EXIT_USAGE
    except _ABORT_TYPES:
        error_line("aborted")
        code = EXIT_USAGE
    except KeyboardInterrupt as exc:
        code = _interrupted(exc)
    except OSError as exc:
        if os.environ.get("LABELQA_DEBUG"):
            traceback.print_exc()
        error_line(os_error_text(exc))
        code = EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("LABELQA_DEBUG"):
            traceback.print_exc()
        error_line(f"unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback)")
        code = EXIT_USAGE
    finally:
        remove_live()
    return code


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Remove the temporaries, say what stopped the command; 128 + the signal number."""
    from labelqa.atomic import remove_live
    from labelqa.runtime import run_stop_callbacks

    remove_live()
    run_stop_callbacks()
    signum = exc.signum if isinstance(exc, Terminated) else 2
    error_line(f"{'interrupted' if signum == 2 else f'terminated by {exc}'}: nothing was written")
    return 128 + signum
