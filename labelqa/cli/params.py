"""Typer commands generated from the option declarations (:mod:`labelqa.options`).

:func:`command` builds a command function whose ``__signature__`` lists one
``Annotated[type, typer.Option(...)]`` parameter per declared option (typer
reads ``inspect.signature``), so flags, help panels, short flags and
repeatable options all come from the declarations. When it runs it keeps the
flags given on the command line (click's parameter source), reads the
configuration, and resolves every option (flag > configuration > default)
with :func:`labelqa.options.resolve`, which checks each value once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import labelqa.options as opts

_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "path": Path, "names": str, "values": str,
          "ints": str}
_KW = inspect.Parameter.KEYWORD_ONLY


def explicit_params(ctx: Any) -> set[str]:
    """Names of the parameters given on the command line (or by environment variable).

    Uses ``Context.get_parameter_source`` (click's, or the copy of click that
    typer >= 0.17 vendors, compared by name); defaults do not count.
    """
    given = {"COMMANDLINE", "ENVIRONMENT", "PROMPT"}
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, src in sources.items() if src is not None and src.name in given}


def typer_parameter(opt: opts.Option) -> inspect.Parameter:
    """The typer parameter of one declared option (as its command takes it)."""
    base: Any = _TYPES[opt.kind]
    if opt.repeatable:
        base = list[base]  # type: ignore[valid-type]
    annotation = Optional[base] if opt.default is None and not opt.required else base  # noqa: UP007 - typer
    metavar = opt.metavar
    if metavar is None and opt.choices and opt.kind == "str":
        metavar = "[" + "|".join(opt.choices) + "]"
    elif metavar is None and opt.interval is not None:
        metavar = f"<{opt.kind} {_range(opt.interval)}>"
    if opt.positional:
        info: Any = typer.Argument(help=opt.help, show_default=False, metavar=metavar)
    else:
        decls = [opt.flag, *opt.aliases, *([opt.short] if opt.short else [])]
        panel = opts.panel_of(opt)
        info = typer.Option(*decls, help=opt.help, rich_help_panel=None if panel == "Options" else panel,
                            show_default=opt.default is not None, metavar=metavar)
    default = inspect.Parameter.empty if opt.required else opt.default
    return inspect.Parameter(opt.name, _KW, default=default, annotation=Annotated[annotation, info])


def _range(iv: opts.Interval) -> str:
    """``[0, 1]``, ``[0, 1)``, ``>=1``, ``>0``."""
    if iv.low is not None and iv.high is not None:
        return f"{'(' if iv.open_low else '['}{iv.low:g}, {iv.high:g}{')' if iv.open_high else ']'}"
    if iv.low is not None:
        return f"{'>' if iv.open_low else '>='}{iv.low:g}"
    return f"{'<' if iv.open_high else '<='}{iv.high:g}"


def _help_order(opt: opts.Option) -> int:
    """Arguments, then the command's own flags (--quiet, --config), then output options, then the rest."""
    return 0 if opt.positional else 1 if opt.cli_only else 2 if opt.group == "output" else 3


def command(name: str, run: Callable[[opts.Settings], int], doc: str) -> Callable[..., int]:
    """A typer command function for ``name``: parses, resolves (flag > config > default), calls ``run``.

    Args:
        name: A command of :data:`labelqa.options.COMMANDS`.
        run: Does the work with the resolved :class:`~labelqa.options.Settings`; returns the exit code.
        doc: The command's help text.
    """
    declared = opts.options_for(name)

    positional = [n for n, o in declared.items() if o.positional]

    def cmd(*args: Any, ctx: Any = None, **values: Any) -> int:
        # typer passes ctx and every parameter by name; a direct call (report(folder, quiet=True)) passes
        # the arguments it means, positionals in order
        values.update(zip(positional, args))
        explicit = explicit_params(ctx) if ctx is not None else set(values)
        given = {k: v for k, v in values.items() if k in explicit}
        config = None
        if "config" in declared:
            from labelqa.config import load_config

            config = load_config(values.get("config"))
        return run(opts.resolve(name, given=given, config=config, source=opts.FLAG))

    params = [inspect.Parameter("ctx", _KW, annotation=typer.Context)]
    params += [typer_parameter(opt) for opt in sorted(declared.values(), key=_help_order)]
    cmd.__signature__ = inspect.Signature(params, return_annotation=int)  # type: ignore[attr-defined]
    cmd.__annotations__ = {p.name: p.annotation for p in params} | {"return": int}
    cmd.__name__ = cmd.__qualname__ = name
    cmd.__doc__ = doc
    return cmd
