"""The path checks every input and output passes: special files, missing folders, formats, foreign files.

Device nodes are made in the test's own folder (a copy of /dev/null's numbers), never the real /dev/null."""
import os
import stat
import threading

import pytest

from cnnexp.errors import ConfigError, ResultsError
from cnnexp.paths import CSV, check_input, check_output, csv_header, read_text


@pytest.fixture
def device(tmp_path):
    """A character device like /dev/null, in a temp folder (root only; skipped otherwise)."""
    path = tmp_path / "null.csv"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


def test_an_output_onto_a_device_or_fifo_is_refused_and_left_alone(device, fifo):
    for path, kind in ((device, "character device"), (fifo, "FIFO")):
        before = os.stat(path)
        with pytest.raises(ResultsError, match=f"--out {path}: is a {kind}"):
            check_output(path, "--out", CSV)
        after = os.stat(path)
        assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)


def test_inputs_must_be_regular_files_and_are_refused_without_blocking(fifo, tmp_path):
    done = []  # opening a FIFO for reading would block until a writer comes: refused before opening
    worker = threading.Thread(target=lambda: done.append(pytest.raises(ResultsError, check_input, fifo)))
    worker.start()
    worker.join(timeout=5)
    assert done and "FIFO (named pipe), not a regular file" in str(done[0].value)
    assert check_input(tmp_path / "missing.csv") is None
    with pytest.raises(ResultsError, match="is a directory"):
        check_input(tmp_path)


def test_a_missing_folder_is_refused_not_made(tmp_path):
    with pytest.raises(ResultsError, match="the folder .*new does not exist"):
        check_output(tmp_path / "new" / "r.csv", "--out", CSV)
    assert not (tmp_path / "new").exists()
    assert check_output(tmp_path / "new" / "r.csv", "--out", CSV, create_parent=True) == tmp_path / "new" / "r.csv"


@pytest.mark.parametrize("name, words", [
    ("r.parquet", "unknown or unwritten format '.parquet' (.parquet is Parquet)"),
    ("s.json", "(.json is JSON); this command writes .csv (e.g. s.csv)"),
    ("r", "format '(no extension)'"),
    ("r.txt", "format '.txt'"),
])
def test_an_extension_of_another_format_is_refused(tmp_path, name, words):
    with pytest.raises(ResultsError, match=None) as e:
        check_output(tmp_path / name, "--out", CSV)
    assert words in str(e.value)
    assert check_output(tmp_path / "R.CSV", "--out", CSV).name == "R.CSV"


def test_a_file_not_ours_needs_overwrite(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("block,d\nplain,1\n")
    ours = lambda p: "n" in csv_header(p)  # noqa: E731
    with pytest.raises(ResultsError, match="was not written by this command; use overwrite"):
        check_output(path, "--out", CSV, ours=ours)
    assert check_output(path, "--out", CSV, ours=ours, overwrite=True) == path
    path.write_text("d,n\n1,2\n")
    assert check_output(path, "--out", CSV, ours=ours) == path
    path.write_text("")  # an empty file holds nothing to lose
    assert check_output(tmp_path / "r.csv", "--out", CSV, ours=lambda p: False) == path


def test_read_text_is_bounded_and_names_the_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"x" * 101)
    with pytest.raises(ConfigError, match="larger than 100 bytes"):
        read_text(path, 100, "YAML file", error=ConfigError)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_text(path, 100, error=ConfigError)
    with pytest.raises(ResultsError, match="NUL byte"):
        check_input(str(tmp_path / "a\0b"))
