"""Project configuration: defaults for scan options and gate rules from a TOML file.

Where the configuration comes from, first match wins:

1. ``--config PATH`` (must exist): a file named ``pyproject.toml`` is read
   under ``[tool.labelqa]`` (which it must have); any other file
   (``labelqa.toml``, ``ci/labelqa.toml``...) holds the tables at top level;
2. ``labelqa.toml`` in the current directory (tables at top level);
3. ``pyproject.toml`` in the current directory, when it has a
   ``[tool.labelqa]`` table;
4. otherwise no configuration.

Tables (the same in both layouts; in ``pyproject.toml`` prefix them with
``tool.labelqa.``)::

    [scan]                      # defaults of `labelqa scan` / `evaluate` options
    detectors = ["cl", "nrg"]   # or "cl,nrg"
    filter_by = "both"
    label_col = "label"

    [gate]                      # quality-gate rules (see labelqa.gate)
    max_issue_rate = 0.05
    max_class_issue_rate = 0.2
    max_issues = 500
    max_noise_rate = 0.1
    noise_rate_bound = "lower"  # point | lower | upper
    gate_detectors = ["cl"]

    [evaluate]                  # defaults of `labelqa evaluate`
    truth_col = "true_label"

Keys are the long option names, with ``_`` or ``-`` (``filter-by`` =
``filter_by``); ``format`` is ``--format``. An unknown table or key, or a
value of the wrong type, is an error naming the key and the file. Relative
paths (``out``, ``classes_file``, ``pred_probs``, ``embeddings``) are taken
relative to the configuration file's folder.

Precedence: an option given on the command line > the configuration file >
the option's default. :func:`explicit_params` tells which options were given
on the command line (click's parameter source), :func:`merge_cli` merges.
"""

from __future__ import annotations

import enum
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelqa.errors import LabelqaError

__all__ = [
    "CONFIG_FILE",
    "SCHEMA",
    "LabelqaConfig",
    "apply_config",
    "explicit_params",
    "find_config",
    "load_config",
    "merge_cli",
]

#: The dedicated configuration file name (tables at top level).
CONFIG_FILE = "labelqa.toml"

# value kinds: str, bool, int, float, names (list of str or "a,b" -> "a,b"), ints (list of int or "1,2" -> "1,2"), path
_SCAN = {
    "label_col": "str", "pred_probs_col": "str", "pred_probs": "path", "classes": "names", "classes_file": "path",
    "id_col": "str", "input_format": "str", "renormalize": "bool", "task": "str", "label_sep": "str",
    "embeddings_col": "str", "embeddings": "path", "logits_by_epoch": "str", "threshold_samples": "str",
    "detectors": "names", "issue_rule": "str", "filter_by": "str", "score_method": "str",
    "adjust_pred_probs": "bool", "frac_noise": "float", "min_examples_per_class": "int",
    "num_to_remove_per_class": "ints", "aggregation": "str", "ema_alpha": "float", "softmin_temperature": "float",
    "aum_cutoff": "float", "aum_percentile": "float", "nrg_mode": "str", "nrg_kernel": "str", "nrg_power": "float",
    "nrg_k": "int", "outlier_rate": "float", "out": "path", "format": "str", "top": "int",
}
_GATE = {
    "max_issue_rate": "float", "max_class_issue_rate": "float", "max_issues": "int", "max_noise_rate": "float",
    "noise_rate_bound": "str", "gate_detectors": "names", "exit_zero": "bool",
}
_EVALUATE = {"truth_col": "str", "inject_noise": "str", "seed": "int", "out": "path", "format": "str"}

#: Known tables and their keys (with the kind of value each takes).
SCHEMA: dict[str, dict[str, str]] = {"scan": _SCAN, "gate": _GATE, "evaluate": _EVALUATE}

#: Configuration keys whose command parameter has another name.
PARAM_NAMES = {"format": "output_format"}


@dataclass(frozen=True)
class LabelqaConfig:
    """A loaded configuration.

    Attributes:
        path: The file it came from, or ``None`` when there was none.
        sections: Table name -> validated values (keys with ``_``; names
            and integer lists as comma-separated strings, like the CLI
            options; paths as :class:`~pathlib.Path`, resolved).
    """

    path: Path | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """The values of one table (empty when absent)."""
        if name not in SCHEMA:
            raise KeyError(name)
        return dict(self.sections.get(name, {}))

    def values(self, names: Iterable[str]) -> dict[str, Any]:
        """The values of several tables merged, later tables winning."""
        out: dict[str, Any] = {}
        for name in names:
            out.update(self.section(name))
        return out


def find_config(path: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file to use (see the module doc), or ``None``.

    Raises:
        LabelqaError: ``path`` given but missing.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise LabelqaError(f"configuration file {p} not found", "check the --config path")
        return p
    base = Path(cwd) if cwd is not None else Path.cwd()
    dedicated = base / CONFIG_FILE
    if dedicated.is_file():
        return dedicated
    pyproject = base / "pyproject.toml"
    if pyproject.is_file() and "labelqa" in _read_toml(pyproject).get("tool", {}):
        return pyproject
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise LabelqaError(f"{path}: not valid TOML ({exc})", "fix the syntax of the file") from None
    except OSError as exc:
        raise LabelqaError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None


def load_config(
    path: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> LabelqaConfig:
    """Find (see :func:`find_config`), read and validate the configuration.

    Returns:
        The configuration; empty (``path=None``) when there is no file.

    Raises:
        LabelqaError: Unreadable TOML, an unknown table or key (naming it and
            the file), or a value of the wrong type.
    """
    found = find_config(path, cwd)
    if found is None:
        return LabelqaConfig()
    doc = _read_toml(found)
    if found.name == "pyproject.toml":
        tool = doc.get("tool", {})
        if "labelqa" not in tool:
            raise LabelqaError(f"{found} has no [tool.labelqa] table", "add one, or pass a labelqa.toml with --config")
        doc, prefix = tool["labelqa"], "tool.labelqa."
    else:
        prefix = ""
    if not isinstance(doc, dict):
        raise LabelqaError(f"{found}: {prefix.rstrip('.') or 'the file'} must be a table")
    sections: dict[str, dict[str, Any]] = {}
    for name, table in doc.items():
        if name not in SCHEMA:
            raise LabelqaError(
                f"{found}: unknown key {prefix}{name!s}",
                f"labelqa reads the tables {', '.join(f'[{prefix}{s}]' for s in SCHEMA)}",
            )
        if not isinstance(table, dict):
            raise LabelqaError(f"{found}: {prefix}{name} must be a table, e.g. [{prefix}{name}]")
        sections[name] = _validate_table(found, f"{prefix}{name}", table, SCHEMA[name])
    return LabelqaConfig(path=found, sections=sections)


def _validate_table(path: Path, where: str, table: Mapping[str, Any], schema: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key not in schema:
            raise LabelqaError(
                f"{path}: unknown key {raw_key!r} in [{where}]",
                f"known keys: {', '.join(sorted(schema))}",
            )
        if key in out:
            raise LabelqaError(f"{path}: key {key!r} given twice in [{where}] (with - and _)")
        out[key] = _convert(path, where, raw_key, value, schema[key])
    return out


def _convert(path: Path, where: str, key: str, value: Any, kind: str) -> Any:
    def bad(expected: str) -> LabelqaError:
        return LabelqaError(f"{path}: [{where}] {key} = {value!r} should be {expected}")

    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind in ("names", "ints"):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise bad("a non-empty list" if kind == "names" else "a non-empty list of integers")
        if kind == "names":
            if not all(isinstance(x, str) and x.strip() for x in items):
                raise bad("a list of non-empty strings")
            return ",".join(x.strip() for x in items)
        ints = []
        for x in items:
            if isinstance(x, str) and x.strip().lstrip("-").isdigit():
                x = int(x)
            if isinstance(x, bool) or not isinstance(x, int):
                raise bad("a list of integers")
            ints.append(x)
        return ",".join(str(x) for x in ints)
    if kind == "path":
        if not isinstance(value, str) or not value:
            raise bad("a path string")
        p = Path(value).expanduser()
        return p if p.is_absolute() else path.parent / p
    raise AssertionError(kind)  # pragma: no cover


# --------------------------------------------------------------------------- CLI precedence
def explicit_params(ctx: Any = None) -> set[str] | None:
    """Names of the parameters given on the command line (or by environment variable).

    Uses ``Context.get_parameter_source`` (click's, or the copy of click
    that typer >= 0.17 vendors); defaults (and default maps) do not count.

    Args:
        ctx: A click context (e.g. a ``typer.Context`` parameter); default the
            current one.

    Returns:
        The parameter names, or ``None`` outside a click command (then
        :func:`merge_cli` compares values with their defaults instead).
    """
    ctx = ctx if ctx is not None else _current_context()
    if ctx is None:
        return None
    given = {"COMMANDLINE", "ENVIRONMENT", "PROMPT"}  # by name: typer may vendor its own click
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, src in sources.items() if src is not None and src.name in given}


def _current_context() -> Any:
    """The running command's context: typer's vendored click (typer >= 0.17) or click."""
    import importlib

    for module in ("typer._click.globals", "click.globals"):
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except (ImportError, AttributeError):
            continue
        if ctx is not None:
            return ctx
    return None


def merge_cli(
    config_values: Mapping[str, Any],
    cli_values: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
    *,
    explicit: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Merge configuration values into command-line values.

    A configuration value replaces the command-line value unless the option
    was given explicitly: by ``explicit`` (from :func:`explicit_params`) when
    known, else when the command-line value differs from ``defaults[name]``
    (so a flag that repeats its default cannot override the file then).

    Args:
        config_values: Values from the configuration (configuration keys;
            ``format`` maps to ``output_format``).
        cli_values: The command's parameter values, by parameter name.
        defaults: The parameters' defaults (used when ``explicit`` is None).
        explicit: Names of the parameters given on the command line.

    Returns:
        ``cli_values`` with configuration values filled in; configuration
        keys the command has no parameter for are ignored. A string value
        for an enum parameter is converted to that enum (an invalid value is
        a :class:`LabelqaError` naming the key).
    """
    out = dict(cli_values)
    given = set(explicit) if explicit is not None else None
    defaults = defaults or {}
    for key, value in config_values.items():
        param = PARAM_NAMES.get(key, key)
        if param not in out:
            continue
        if given is not None:
            if param in given:
                continue
        elif param in defaults and out[param] != defaults[param]:
            continue
        elif param not in defaults:
            continue  # unknown default and unknown source: the command line wins
        out[param] = _like(value, out[param], key)
    return out


def _like(value: Any, current: Any, key: str) -> Any:
    """A configuration value in the type of the command's value (enums, paths)."""
    if isinstance(current, enum.Enum) and not isinstance(value, enum.Enum):
        try:
            return type(current)(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in type(current))
            raise LabelqaError(f"configuration {key} = {value!r} is not one of {choices}") from None
    if isinstance(current, Path) and isinstance(value, str):
        return Path(value)
    return value


def apply_config(
    cli_values: Mapping[str, Any],
    config: str | os.PathLike[str] | None,
    sections: Iterable[str],
    *,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], LabelqaConfig]:
    """Load the configuration and merge the given tables into a command's values.

    Inside a click command the options given on the command line win (see
    :func:`explicit_params`); outside one, values different from
    ``defaults`` win (with no ``defaults``, every value given wins).

    Args:
        cli_values: The command's parameter values (e.g. ``locals()`` at the
            top of the command function).
        config: The ``--config`` path, or ``None`` to look in the current
            directory.
        sections: Tables to read, later ones winning (e.g. ``("scan",
            "gate")``).
        defaults: Parameter defaults, for use outside a click command.

    Returns:
        ``(values, config)``.
    """
    cfg = load_config(config)
    explicit = explicit_params()
    if explicit is None and defaults is None:
        explicit = set(cli_values)
    return merge_cli(cfg.values(sections), cli_values, defaults, explicit=explicit), cfg
