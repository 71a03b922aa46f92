"""The results CSV: exact floats, flushed rows, repair of a truncated last line, refusal of foreign files."""
import csv

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnexp.errors import ResultsError
from cnnexp.results import ResultsFile, fingerprint, format_value, meta_path, read_rows

COLUMNS = ("block", "d", "loss")


@given(st.floats(allow_nan=False))
def test_floats_read_back_exactly(value):
    assert float(format_value(value)) == value


def test_rows_are_on_disk_as_soon_as_appended(tmp_path):
    path = tmp_path / "r.csv"
    with ResultsFile(path, COLUMNS).start() as f:
        f.append({"block": "plain", "d": 4, "loss": 0.1 + 0.2})
        # another reader sees the row before the file is closed
        assert list(csv.reader(path.open())) == [list(COLUMNS), ["plain", "4", "0.30000000000000004"]]


def test_truncated_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("block,d,loss\nplain,4,0.5\nresidual,4,0.2")  # killed mid-row
    assert read_rows(path, COLUMNS) == [{"block": "plain", "d": "4", "loss": "0.5"}]
    with ResultsFile(path, COLUMNS).start() as f:
        f.append({"block": "residual", "d": 4, "loss": 0.25})
    assert path.read_text() == "block,d,loss\nplain,4,0.5\nresidual,4,0.25\n"


def test_truncated_header_is_rewritten(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("block,d,lo")
    assert read_rows(path, COLUMNS) == []
    with ResultsFile(path, COLUMNS).start() as f:
        f.append({"block": "plain", "d": 1, "loss": 1.0})
    assert path.read_text() == "block,d,loss\nplain,1,1.0\n"


def test_fresh_starts_the_file_afresh(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("block,d,loss\nplain,4,0.5\n")
    ResultsFile(path, COLUMNS).start(fresh=True).close()
    assert path.read_text() == "block,d,loss\n"


def test_foreign_and_damaged_files_are_refused(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match="columns"):
        read_rows(path, COLUMNS)
    path.write_text("block,d,loss\nplain,4\n")
    with pytest.raises(ResultsError, match="line 2 has 2 cells"):
        read_rows(path, COLUMNS)


def test_meta_path_and_fingerprint(tmp_path):
    assert meta_path(tmp_path / "init.csv") == tmp_path / "init.csv.meta.json"
    assert fingerprint({"a": [1, 2]}) == fingerprint({"a": [1, 2]}) != fingerprint({"a": [1, 3]})


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsError, match="cannot write"):
        ResultsFile(tmp_path / "file" / "r.csv", COLUMNS)  # a file where a directory should be


def test_opening_changes_nothing_until_started(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("block,d,loss\nplain,4,0.5\nresidual,4,0.2")  # a torn last line
    f = ResultsFile(path, COLUMNS)
    assert path.read_text() == "block,d,loss\nplain,4,0.5\nresidual,4,0.2" and f.size == len(path.read_bytes())
    f.start(fresh=True).close()
    assert path.read_text() == "block,d,loss\n"


def test_a_long_torn_tail_is_cut_at_the_last_newline(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("block,d,loss\nplain,4,0.5\n" + "x" * 200_000)  # longer than one chunk of the tail search
    ResultsFile(path, COLUMNS).start().close()
    assert path.read_text() == "block,d,loss\nplain,4,0.5\n"
