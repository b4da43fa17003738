"""The typer application and the entry point that maps errors to exit codes.

Exit codes: 0 passed, 1 quality gate failed, 2 usage or input error (an
operating-system failure included: read-only or full disk, a bad path), 130
/ 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP (temporary files and
staging folders removed first).
"""

from __future__ import annotations

import os
import traceback

import typer

from labelqa._version import __version__
from labelqa.cli.console import EXIT_OK, EXIT_USAGE, error_line, os_error_text
from labelqa.errors import LabelqaError
from labelqa.runtime import Terminated, exit_now, keep_freed_memory, prefer_small_pages, signals_unwind

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


def _register() -> None:
    from labelqa.cli import evaluate_cmd, export_cmd, fix_cmd, report_cmd, scan_cmd, train_cmd

    app.command("scan")(scan_cmd.scan)
    app.command("fix")(fix_cmd.fix)
    app.command("report")(report_cmd.report)
    app.command("train")(train_cmd.train)
    app.command("evaluate")(evaluate_cmd.evaluate)
    app.command("export")(export_cmd.export)


_register()


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
    command = typer.main.get_command(app)
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
