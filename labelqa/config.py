"""Project configuration: option values from a TOML file.

Where the configuration comes from, first match wins:

1. ``--config PATH`` (must exist): a file named ``pyproject.toml`` is read
   under ``[tool.labelqa]`` (which it must have); any other file
   (``labelqa.toml``, ``ci/labelqa.toml``...) holds the tables at top level;
2. ``labelqa.toml`` in the current directory (tables at top level);
3. ``pyproject.toml`` in the current directory, when it has a
   ``[tool.labelqa]`` table;
4. otherwise no configuration.

Tables (the same in both layouts; in ``pyproject.toml`` prefix them with
``tool.labelqa.``), and the commands that read them::

    [scan]       # load, detector, run and engine options: scan, fix, evaluate;
                 # scan's output options (out, format, top, csv_formulas): scan
    [gate]       # gate options: scan
    [fix]        # fix's own options (report, strategy, min_confidence, force, csv_formulas)
    [evaluate]   # evaluate's own options (truth_col, inject_noise, seed, out, format)
    [train]      # every option of train (train reads no other table)

Keys are option names (:mod:`labelqa.options`), with ``_`` or ``-``
(``filter-by`` = ``filter_by``). Every value is checked exactly like its flag
(type, choices, range), and an error names the file, the table and the key.
An unknown table or key is an error naming it, the file and the known keys.
Relative paths (``out``, ``classes_file``, ``pred_probs``, ``embeddings``,
``report``, ``features``) are taken relative to the configuration file's
folder, and so are ``logits_by_epoch`` / ``threshold_samples`` values that
name a file or folder there (otherwise they are column names). A command ignores the keys of a table it reads that are not its
options (``fix`` ignores ``[scan] top``).

Precedence: an option given on the command line > the configuration file >
the option's default (:func:`labelqa.options.resolve`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import labelqa.options as opts
from labelqa.errors import LabelqaError

__all__ = ["CONFIG_FILE", "LabelqaConfig", "find_config", "load_config"]

#: The dedicated configuration file name (tables at top level).
CONFIG_FILE = "labelqa.toml"


@dataclass(frozen=True)
class LabelqaConfig:
    """A loaded configuration.

    Attributes:
        path: The file it came from, or ``None`` when there was none.
        sections: Table name -> checked values (keys with ``_``; values in
            the canonical form of :func:`labelqa.options.check`: names and
            integer lists as lists, paths as resolved :class:`~pathlib.Path`).
        sources: Table name -> key -> where it was written (for messages).
    """

    path: Path | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, dict[str, opts.Source]] = field(default_factory=dict, compare=False)

    def section(self, name: str) -> dict[str, Any]:
        """The values of one table (empty when absent)."""
        if name not in opts.config_keys():
            raise KeyError(name)
        return dict(self.sections.get(name, {}))

    def for_command(self, command: str) -> dict[str, tuple[Any, opts.Source]]:
        """The values ``command`` reads (see the module doc), with their sources."""
        out: dict[str, tuple[Any, opts.Source]] = {}
        for table in opts.READS[command]:
            for name, value in self.sections.get(table, {}).items():
                opt = opts.OPTIONS[name]
                if command in opt.commands and opts.config_table(opt, command) == table:
                    out[name] = (value, self.sources[table][name])
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
    import tomllib  # only when a file is read: most runs have none (~2 ms of start-up)

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
    """Find (see :func:`find_config`), read and check the configuration.

    Returns:
        The configuration; empty (``path=None``) when there is no file.

    Raises:
        LabelqaError: Unreadable TOML, an unknown table or key (naming it and
            the file), or an invalid value (named like ``labelqa.toml [scan] frac_noise``).
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
    tables = opts.config_keys()
    sections: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, opts.Source]] = {}
    for name, table in doc.items():
        if name not in tables:
            raise LabelqaError(
                f"{found}: unknown key {prefix}{name!s}",
                f"labelqa reads the tables {', '.join(f'[{prefix}{t}]' for t in tables)}",
            )
        if not isinstance(table, dict):
            raise LabelqaError(f"{found}: {prefix}{name} must be a table, e.g. [{prefix}{name}]")
        sections[name], sources[name] = _check_table(found, f"{prefix}{name}", table, tables[name])
    return LabelqaConfig(path=found, sections=sections, sources=sources)


def _check_table(path: Path, where: str, table: dict[str, Any],
                 keys: dict[str, opts.Option]) -> tuple[dict[str, Any], dict[str, opts.Source]]:
    values: dict[str, Any] = {}
    sources: dict[str, opts.Source] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key not in keys:
            raise LabelqaError(f"{path}: unknown key {raw_key!r} in [{where}]", f"known keys: {', '.join(sorted(keys))}")
        if key in values:
            raise LabelqaError(f"{path}: key {key!r} given twice in [{where}] (with - and _)")
        source = opts.Source("config", path, where, raw_key)
        checked = opts.check(keys[key], value, source)
        values[key], sources[key] = _relative_to(path, checked, keys[key].group == "load"), source
    return values, sources


def _relative_to(config_file: Path, value: Any, load_text: bool = False) -> Any:
    """Paths written in a configuration file are relative to its folder.

    So is a text value of a load option that names a file or folder beside the configuration file
    (``logits_by_epoch = "dynamics"``, ``threshold_samples = "marks.npy"``: a path or a column name);
    other text (a column name) stays as written.
    """
    if isinstance(value, Path):
        return value if value.is_absolute() else config_file.parent / value
    if isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
        return [_relative_to(config_file, v) for v in value]
    if load_text and isinstance(value, str) and not os.path.isabs(value):
        beside = config_file.parent / value
        if config_file.parent.resolve() != Path.cwd().resolve() and beside.exists():
            return str(beside)
    return value
