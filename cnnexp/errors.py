"""The one exception family of cnnexp.

The CLI catches `CnnexpError` in one place, prints its message as one line on stderr and exits 2.
Anything else that escapes is a bug and keeps its traceback.

A message names the parameter at fault with `param`: a Python caller reads the parameter's name, the CLI
spells it as the flag a user typed (its one table, `cli.FLAGS`).

    >>> e = ConfigError(f"{param('dpi')} 0: must be a positive number of dots per inch")
    >>> str(e)
    'dpi 0: must be a positive number of dots per inch'
    >>> e.message(lambda name: "--" + name)
    '--dpi 0: must be a positive number of dots per inch'
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PARAMETER = re.compile("\x02([a-z_]+)\x03")  # a parameter's name between two control characters no user types


def param(name: str) -> str:
    """The parameter `name`, marked in a message so that each reader sees it under its own name."""
    return f"\x02{name}\x03"


def spell(text: str, name_of: Callable[[str], str] = str) -> str:
    """`text` with each parameter `param` marked spelled by `name_of` (by default, as its Python name)."""
    return _PARAMETER.sub(lambda m: name_of(m.group(1)), text)


class CnnexpError(Exception):
    """Bad input from the user (a file, key or value that cnnexp cannot use), or a fault that stopped a run."""

    exit_code = 2

    def __str__(self) -> str:
        return spell(super().__str__())

    def message(self, name_of: Callable[[str], str]) -> str:
        """The message with its parameters spelled by `name_of` (the CLI: as flags)."""
        return spell(super().__str__(), name_of)


class ConfigError(CnnexpError, ValueError):
    """A sweep file, an override or a flag names an unknown key or an invalid value."""


class ResultsError(CnnexpError, ValueError):
    """A results file is missing, is not a cnnexp results file, or belongs to another sweep."""


class ShapeError(CnnexpError, ValueError):
    """A layer chain that PyTorch would refuse (an empty output, a bad padding, ...)."""


class Interrupted(CnnexpError):
    """Ctrl-C during a run: the rows written so far are kept, and the same command resumes."""

    exit_code = 130
