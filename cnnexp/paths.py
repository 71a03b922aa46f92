"""The checks every file path passes before cnnexp reads or writes it. Pure Python, no torch.

Inputs (sweep files, chain files, results CSVs, provenance) must be regular files: a device such as
/dev/zero would be read forever and a FIFO would block, so both are refused at once, before opening.
Outputs (every `--out`, `--per-layer`) are checked before any work starts:

    >>> check_output("results/new.csv", "--out", CSV)            # doctest: +SKIP
    PosixPath('results/new.csv')
    >>> check_output("s.json", "--out", CSV)                     # doctest: +SKIP
    ResultsError: --out s.json: this command writes CSV; name the file .csv (e.g. s.csv)

- never onto a special file (a device node, a FIFO, a socket): it would be replaced, or block;
- never into a folder that does not exist (cnnexp does not create it: a typo should not make folders);
- never under an extension of another format (`.parquet`, `.json`, ...): the name must say what is inside;
- never over an existing file that this command did not write, unless `overwrite` (the caller says what
  its own files look like with `ours`).
"""
from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from cnnexp.errors import CnnexpError, ResultsError, param

CSV = {".csv": "csv"}  # what the CSV writers write (plot.FORMATS: what plot writes)
# A name under which a reader would expect something else: said so in the refusal.
OTHER_FORMATS = {".parquet": "Parquet", ".pq": "Parquet", ".json": "JSON", ".jsonl": "JSON lines",
                 ".tsv": "tab-separated text", ".xlsx": "Excel", ".xls": "Excel", ".feather": "Feather",
                 ".h5": "HDF5", ".hdf5": "HDF5", ".pkl": "pickle", ".pickle": "pickle", ".yaml": "YAML",
                 ".yml": "YAML", ".txt": "plain text", ".gz": "gzip", ".zip": "zip"}


def _kind_of(mode: int) -> str | None:
    """What a special file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _stat(path: Path, flag: str) -> os.stat_result | None:
    """os.stat (following links), or None when nothing is there."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):  # (a file where a folder should be: said by the caller)
        return None
    except ValueError:  # an embedded NUL byte
        raise ResultsError(f"{flag} {str(path)!r}: a file name cannot hold a NUL byte") from None
    except OSError as e:
        raise ResultsError(f"{flag} {path}: cannot use it: {e.strerror or e}") from None


def check_input(path: str | os.PathLike, what: str = "input file") -> Path | None:
    """Refuse an input path that exists but is not a regular file (a directory, a device, a FIFO).

    Returns:
        The path, or None when nothing is there (the caller says what a missing file means).

    Raises:
        ResultsError: the path names a special file or a directory, or holds a NUL byte.
    """
    path = Path(path)
    st = _stat(path, what or "input file")
    if st is None:
        return None
    kind = _kind_of(st.st_mode)
    if kind is not None:
        raise ResultsError(f"{path}: is {kind}, not a regular file; cnnexp reads only regular files")
    return path


def read_text(path: str | os.PathLike, limit: int, what: str = "", error: type[CnnexpError] = ResultsError) -> str:
    """The whole text of a regular file of at most `limit` bytes (UTF-8).

    Raises:
        `error`: the file is missing, special, a directory, larger than `limit`, or not UTF-8 text.
    """
    path = Path(path)
    try:
        if check_input(path, what) is None:
            raise error(f"{path}: no such file")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise error(f"{path}: larger than {limit:,} bytes, too large for a {what or 'file'} of cnnexp")
        return data.decode("utf-8")
    except ResultsError as e:
        if error is ResultsError:
            raise
        raise error(e.args[0]) from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None


def check_output(
    path: str | os.PathLike,
    flag: str,
    formats: dict[str, str] | None,
    *,
    ours: Callable[[Path], bool] | None = None,
    overwrite: bool = False,
    create_parent: bool = False,
) -> Path:
    """Check a path a command will write, before any work starts. The one place for these rules.

    Args:
        path: the output path as given.
        flag: the option it came from (`--out`, `--per-layer`), named in every message.
        formats: the extensions the command writes (e.g. `CSV`, `plot.FORMATS`), lower case with the dot;
            None: any (a file cnnexp names itself, e.g. a provenance file).
        ours: says whether an existing file is one this command wrote (and may replace); None: any file may
            be replaced (figures).
        overwrite: the user's --overwrite: replace an existing file even when it is not ours.
        create_parent: the folder may be made (only for cnnexp's own default, results/).

    Returns:
        The path, as a Path.

    Raises:
        ResultsError: the path is a special file or a directory, its folder does not exist, its extension
            names another format, or it would replace a file this command did not write.
    """
    path = Path(path)
    text = str(path)
    if not text or text.endswith(("/", os.sep)):
        raise ResultsError(f"{flag} {text!r}: needs a file name")
    st = _stat(path, flag)
    if st is not None:
        kind = _kind_of(st.st_mode)
        if kind == "a directory":
            raise ResultsError(f"{flag} {path}: is a directory; {flag} takes a file path (e.g. "
                               f"{path / ('results' + (next(iter(formats)) if formats else '.csv'))})")
        if kind is not None:
            raise ResultsError(f"{flag} {path}: is {kind}; {flag} takes a regular file path "
                               "(cnnexp never writes to devices or pipes)")
    suffix = path.suffix.lower()
    if formats is not None and suffix not in formats:
        other = OTHER_FORMATS.get(suffix)
        said = f" ({suffix} is {other})" if other else ""
        example = path.with_suffix(next(iter(formats))).name if suffix else path.name + next(iter(formats))
        raise ResultsError(f"{flag} {path}: unknown {'or unwritten ' if other else ''}format "
                           f"{suffix or '(no extension)'!r}{said}; this command writes "
                           f"{', '.join(formats)} (e.g. {example})")
    parent = path.parent
    parent_st = _stat(parent, flag)
    if parent_st is None:
        if not create_parent:
            raise ResultsError(f"{flag} {path}: the folder {parent} does not exist (cnnexp does not create "
                               "it; make it first, or check the path)")
    elif not stat.S_ISDIR(parent_st.st_mode):
        raise ResultsError(f"{flag} {path}: {parent} is not a folder")
    if st is not None and ours is not None and not overwrite and st.st_size and not ours(path):
        raise ResultsError(f"{flag} {path}: exists and was not written by this command; use {param('overwrite')} to "
                           "replace it, or choose another file name")
    return path


def csv_header(path: Path, limit: int = 1 << 16) -> tuple[str, ...]:
    """The cells of a CSV file's first line (read from at most `limit` bytes); () when there are none."""
    import csv
    import io

    try:
        with open(path, "rb") as f:
            head = f.read(limit)
    except OSError:
        return ()
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return tuple(next(csv.reader(io.StringIO(first)), []))
