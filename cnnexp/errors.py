"""The one exception family of cnnexp.

The CLI catches `CnnexpError` in one place, prints its message as one line on stderr and exits 2.
Anything else that escapes is a bug and keeps its traceback.
"""


class CnnexpError(Exception):
    """Bad input from the user (a file, key or value that cnnexp cannot use), or a fault that stopped a run."""

    exit_code = 2


class ConfigError(CnnexpError, ValueError):
    """A sweep file, an override or a flag names an unknown key or an invalid value."""


class ResultsError(CnnexpError, ValueError):
    """A results file is missing, is not a cnnexp results file, or belongs to another sweep."""


class ShapeError(CnnexpError, ValueError):
    """A layer chain that PyTorch would refuse (an empty output, a bad padding, ...)."""


class Interrupted(CnnexpError):
    """Ctrl-C during a run: the rows written so far are kept, and the same command resumes."""

    exit_code = 130
