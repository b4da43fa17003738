"""Single source of the package version (pyproject.toml reads it from here).

A literal, not ``importlib.metadata.version()``: that costs ~15 ms at every
start of the command-line tool.
"""

__version__ = "0.1.0"
