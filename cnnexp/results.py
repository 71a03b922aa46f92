"""Results files: the tidy CSV and its provenance. Only this module writes them.

    results/init.csv         block, d, batch, small_init, seed, loss, x_grad_norm, ...   (one row per block
                                                                                      and configuration)
    results/init.csv.meta.json   the resolved sweep, its fingerprint, versions, host, times, command lines
                                 (named from the whole file name; the older results/init.meta.json is
                                 still read, and the next write moves it to the new name)

Rows are appended and flushed one at a time, so a kill loses at most the row in flight; a truncated last
line left by a kill is cut off before appending again. Floats are written with `repr`, the shortest text
that reads back to the same float.

    >>> format_value(1e-4), format_value(0.1 + 0.2), format_value(64)
    ('0.0001', '0.30000000000000004', '64')
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import IO, Any

from cnnexp.errors import ResultsError, param
from cnnexp.paths import check_input, check_output, read_text

META_SUFFIX = ".meta.json"
MAX_META_BYTES = 16 << 20  # a provenance file is a few kB; grown by one entry per invocation


def meta_path(csv_path: Path) -> Path:
    """The provenance file beside a results CSV, named from its whole name: results/init.csv ->
    results/init.csv.meta.json (so init.csv and init.txt never share one)."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + META_SUFFIX)


def legacy_meta_path(csv_path: Path) -> Path:
    """The name provenance had before: results/init.csv -> results/init.meta.json (read, never written)."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + META_SUFFIX)


def existing_meta_path(csv_path: Path) -> Path | None:
    """The provenance file of a results CSV that is there: its own name first, then the old one."""
    for candidate in (meta_path(csv_path), legacy_meta_path(csv_path)):
        if os.path.lexists(candidate):
            return candidate
    return None


def format_value(value: object) -> str:
    """A CSV cell: floats as repr (round-trips exactly), None (no value, e.g. a fit never reached) as an empty
    cell, everything else as str."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def row_key(row: dict[str, Any], key_columns: tuple[str, ...]) -> tuple[str, ...]:
    """The identity of a row: its configuration cells, as the CSV text."""
    return tuple(format_value(row[c]) for c in key_columns)


def fingerprint(definition: dict[str, Any]) -> str:
    """A short hash of a sweep definition; a CSV only ever holds rows of one definition."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# The fields of a provenance file a reader relies on, and their types (None: may be null). Any may be absent
# (files of older releases lack some); present, each must have its type.
META_FIELDS: dict[str, tuple[type, ...]] = {
    "cnnexp": (str,), "fingerprint": (str,), "sweep": (dict,), "columns": (list,), "per_layer": (str, type(None)),
    "command": (str,), "started": (str,), "finished": (str, type(None)), "environment": (dict,),
    "invocations": (list,),
}
ENVIRONMENT_FIELDS: dict[str, tuple[type, ...]] = {"threads": (int, type(None)), "dtype": (str, list)}


def read_meta(path: Path) -> dict[str, Any] | None:
    """The provenance beside a results CSV (under its own name, else the old one), checked; None when there
    is none.

    Raises:
        ResultsError: the provenance file is not a regular file, not JSON, not an object, or a field a
            reader relies on has the wrong type; one line naming the file and the field.
    """
    where = existing_meta_path(path)
    if where is None:
        return None
    try:
        meta = json.loads(read_text(where, MAX_META_BYTES, "provenance file"))
    except ResultsError as e:
        raise ResultsError(f"unreadable provenance file: {e.args[0]}") from None
    except (ValueError, RecursionError) as e:
        raise ResultsError(f"{where}: unreadable provenance file: not JSON ({' '.join(str(e).split())[:80]})") from None
    _check_meta(meta, where)
    checked: dict[str, Any] = meta
    return checked


def _check_meta(meta: object, where: Path) -> None:
    def wrong(field: str, value: object, types: tuple[type, ...]) -> ResultsError:
        names = " or ".join("null" if t is type(None) else {dict: "an object", list: "a list", str: "a string",
                                                             int: "an integer"}[t] for t in types)
        return ResultsError(f"{where}: damaged provenance file: {field} is {_json_kind(value)}, expected {names}; "
                            "restore it (or rerun the sweep with --overwrite to start its results afresh)")

    if not isinstance(meta, dict):
        raise ResultsError(f"{where}: damaged provenance file: it holds {_json_kind(meta)}, expected an object; "
                           f"restore it (or rerun the sweep with {param('overwrite')} to start its results afresh)")
    for fields, data, prefix in ((META_FIELDS, meta, ""), (ENVIRONMENT_FIELDS, meta.get("environment") or {},
                                                           "environment.")):
        for field, types in fields.items():
            if field in data and (not isinstance(data[field], types) or isinstance(data[field], bool)):
                raise wrong(prefix + field, data[field], types)
    if not all(isinstance(c, str) for c in meta.get("columns", [])):
        raise wrong("columns", meta["columns"], (list,))
    if not all(isinstance(i, dict) for i in meta.get("invocations", [])):
        raise wrong("invocations", meta["invocations"], (list,))


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Write the provenance beside `path` atomically (a kill leaves the old file or the new, never half)."""
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    write_atomically(meta_path(path), write)


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then move it into place in one step, so a
    reader (or a kill) never sees half a file. Creates the parent folder.

    Raises:
        ResultsError: `path` is a directory, or cannot be written.
    """
    path = Path(path)
    check_output(path, param("out"), None, create_parent=True)  # never onto a device or a folder
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise ResultsError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):  # nothing to clean up where nothing could be written
            tmp.unlink(missing_ok=True)
    return path


def read_rows(
    path: Path,
    columns: tuple[str, ...],
    *,
    keys: dict[str, Container[str]] | None = None,
    numbers: tuple[str, ...] = (),
) -> list[dict[str, str]]:
    """The complete rows of an existing results CSV, as text; [] when it is missing or empty.

    A last line without its newline (left by a kill) is ignored here and cut off by `ResultsFile`. With
    `keys` and `numbers` every row is verified as cnnexp wrote it, so a hand edit is caught before a resume
    builds on it.

    Args:
        path: the CSV.
        columns: its header, exactly.
        keys: key column -> the texts it may hold (the sweep's values, written as cnnexp writes them); the
            key of a row (these columns, in order) must be unique.
        numbers: columns that must hold a float in cnnexp's own form (repr: `0.01`, not `1e-2`; `nan`, `inf`).

    Raises:
        ResultsError: the file is not a regular file, the header is not `columns`, or a complete row has the
            wrong number of cells, a key outside `keys`, a key seen before, or a number not in canonical form;
            the message names the file and the line.
    """
    try:
        if check_input(path) is None:
            return []
        data = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: cannot read: {e}") from None
    lines = data[: data.rfind("\n") + 1]  # complete lines only
    if not lines:
        return []
    reader = csv.reader(io.StringIO(lines))
    try:
        header = tuple(next(reader))
        if header != columns:
            raise ResultsError(f"{path}: its columns ({_short(', '.join(header))}) are not this file's "
                               f"({', '.join(columns)}); use {param('overwrite')} to start it afresh or "
                               f"{param('out')} for another file")
        rows, seen = [], set()
        for cells in reader:
            number = reader.line_num
            if not cells:  # a blank line (an editor's trailing newline): no row
                continue
            if len(cells) != len(columns):
                raise ResultsError(f"{path}: line {number} has {len(cells)} cells, expected {len(columns)}; "
                                   f"the file is damaged or was edited (restore it, or use {param('overwrite')} to "
                                   "start afresh)")
            row = dict(zip(columns, cells))
            if keys is not None:
                for column, allowed in keys.items():
                    if row[column] not in allowed:
                        raise ResultsError(f"{path}: line {number}: {column} {_short(row[column])!r} is not a value "
                                           "this sweep writes (edited by hand?); restore the file, or use "
                                           f"{param('overwrite')} to start afresh")
                key = tuple(row[c] for c in keys)
                if key in seen:
                    raise ResultsError(f"{path}: line {number} repeats the configuration of an earlier row; "
                                       f"remove the copy, or use {param('overwrite')} to start afresh")
                seen.add(key)
            for column in numbers:
                if not _canonical_number(row[column]):
                    raise ResultsError(f"{path}: line {number}: {column} {_short(row[column])!r} is not a number as "
                                       "cnnexp writes it (edited by hand?); restore the file, or use "
                                       f"{param('overwrite')}")
            rows.append(row)
    except csv.Error as e:
        raise ResultsError(f"{path}: line {reader.line_num}: not CSV ({e})") from None
    return rows


def _canonical_number(text: str) -> bool:
    """Whether a cell is a float exactly as `format_value` writes it."""
    try:
        return format_value(float(text)) == text
    except (ValueError, OverflowError):
        return False


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def keep_rows(path: Path, columns: tuple[str, ...], key_columns: tuple[str, ...],
              keys: set[tuple[Any, ...]]) -> bool:
    """Rewrite a results CSV keeping only the complete rows whose key is in `keys` (atomically); returns
    whether anything was dropped."""
    rows = read_rows(path, columns)
    kept = [r for r in rows if row_key(r, key_columns) in keys]
    if len(kept) == len(rows):  # (a torn last line is cut when the file is started)
        return False
    write_atomically(path, lambda tmp: _write_rows(tmp, columns, kept))
    return True


def write_table(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    """Write a whole results-style CSV at once (header, then the rows' cells as `format_value` writes them),
    atomically: e.g. the curve file of `cnnexp run --curve`."""
    text = [{c: format_value(r[c]) for c in columns} for r in rows]
    return write_atomically(path, lambda tmp: _write_rows(tmp, columns, text))


def _write_rows(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    """A whole results CSV: the header, then the rows (as text)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([r[c] for c in columns] for r in rows)


class ResultsFile:
    """Appends rows to a results CSV, one flushed line at a time, holding an exclusive lock on it.

    Opening creates the file if needed and takes the lock (a second sweep writing the same file is refused,
    not interleaved), and changes nothing else; `start` then empties it if `fresh`, cuts a torn last line and
    writes the header if the file is empty. Between the two, every other check can still refuse the sweep
    with the file as it was.
    """

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path, self.columns = path, columns
        self.created = not path.exists()
        self._written = 0  # the file's size as this object left it: anything else is someone else's doing
        self._open()

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab+", buffering=0)  # unbuffered: a failed write leaves nothing pending
        except OSError as e:
            raise ResultsError(f"{self.path}: cannot write: {e.strerror or e}") from None
        try:
            _lock(self._file, self.path)
        except BaseException:
            self._file.close()
            raise

    @property
    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def start(self, *, fresh: bool = False) -> ResultsFile:
        """Empty the file if `fresh`, cut a torn last line, and write the header if the file is empty."""
        if fresh:
            self._file.truncate(0)
        _cut_partial_line(self._file)
        if self._file.seek(0, os.SEEK_END) == 0:
            self._write(self.columns)
        self._written = self.size  # and from here on, the bytes this object appended
        return self

    def complete_rows(self) -> int:
        """The complete rows in the file now (its lines with a newline, less the header)."""
        with open(self._file.fileno(), "rb", closefd=False) as raw:
            raw.seek(0)
            return max(sum(block.count(b"\n") for block in iter(lambda: raw.read(1 << 20), b"")) - 1, 0)

    def keep(self, keys: set[tuple[Any, ...]], key_columns: tuple[str, ...]) -> None:
        """Drop the complete rows whose key is not in `keys`: the file is rewritten atomically (a kill leaves
        the old file or the new) and locked again."""
        if keep_rows(self.path, self.columns, key_columns, keys):
            self._file.close()
            self._open()  # the new file, locked

    def finish(self, order: dict[tuple[Any, ...], int], key_columns: tuple[str, ...]) -> None:
        """Check that nobody changed the file while this sweep wrote it, then put its rows in grid order
        (`order`: a row's `key_columns` cells -> its position; a run's several per-layer rows keep their order).

        Raises:
            ResultsError: the file was deleted, replaced, truncated or appended to by someone else.
        """
        try:
            now = os.stat(self.path)
        except OSError:
            now = None
        mine = os.fstat(self._file.fileno())
        if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino) or mine.st_size != self._written:
            what = "was deleted or replaced" if now is None or now.st_ino != mine.st_ino else "was changed"
            raise ResultsError(f"{self.path}: {what} by something else while this sweep wrote it; its rows cannot "
                               f"be trusted: check the file, then rerun the same command (or use {param('overwrite')})")
        rows = read_rows(self.path, self.columns)
        ranked = sorted(rows, key=lambda r: order.get(row_key(r, key_columns), len(order)))
        if ranked != rows:
            write_atomically(self.path, lambda tmp: _write_rows(tmp, self.columns, ranked))

    def append(self, row: dict[str, Any]) -> None:
        """Write one row and flush it to the operating system."""
        self._write([format_value(row[c]) for c in self.columns])

    def _write(self, cells: Sequence[str]) -> None:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(cells)
        data = line.getvalue().encode("utf-8")
        while data:  # one row in one write, the rest if the system took only part of it
            written = self._file.write(data)
            self._written += written
            data = data[written:]

    def close(self) -> None:
        self._file.close()

    def abandon(self) -> None:
        """Close, and remove the file if this object created it (so a refused sweep leaves nothing behind)."""
        self.close()
        if self.created:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(file: IO[bytes], path: Path) -> None:
    """An exclusive, non-blocking lock on an open file, released when it is closed (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one sweep per file is then the user's care
        return
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ResultsError(f"{path}: another cnnexp sweep is writing it now; wait for it, or use {param('out')} "
                           "for another file") from None


def _cut_partial_line(file: IO[bytes], chunk: int = 1 << 16) -> None:
    """Drop a last line that has no newline (the row a kill interrupted), reading only the file's tail."""
    file.flush()
    with open(file.fileno(), "rb", closefd=False) as raw:
        size = end = raw.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - chunk)
            raw.seek(start)
            newline = raw.read(end - start).rfind(b"\n")
            if newline >= 0:
                if start + newline + 1 < size:
                    file.truncate(start + newline + 1)
                return
            end = start
    if size:
        file.truncate(0)  # not one complete line: a header torn by a kill


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock of a results file now (a dry run asks; it never waits)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when closed
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
