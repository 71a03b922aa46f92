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


# --- provenance: its name, the old name, and a damaged file ------------------------------------------

import json  # noqa: E402

from cnnexp.results import existing_meta_path, read_meta, write_meta  # noqa: E402


def test_provenance_is_named_from_the_whole_file_name(tmp_path):
    assert meta_path(tmp_path / "k.csv").name == "k.csv.meta.json"
    assert meta_path(tmp_path / "k.csv") != meta_path(tmp_path / "k.txt")  # the collision of the old names


def test_the_old_name_is_read_and_the_new_one_written(tmp_path):
    csv_path = tmp_path / "k.csv"
    (tmp_path / "k.meta.json").write_text(json.dumps({"fingerprint": "old"}))
    assert existing_meta_path(csv_path) == tmp_path / "k.meta.json"
    assert read_meta(csv_path) == {"fingerprint": "old"}
    write_meta(csv_path, {"fingerprint": "new"})
    assert json.loads((tmp_path / "k.csv.meta.json").read_text()) == {"fingerprint": "new"}
    assert read_meta(csv_path) == {"fingerprint": "new"}  # the new name wins from now on


@pytest.mark.parametrize("text, words", [
    ("[1, 2]", ["it holds a list, expected an object"]),
    ('"text"', ["it holds a string, expected an object"]),
    ("{", ["not JSON"]),
    ('{"fingerprint": 5}', ["fingerprint is a number, expected a string"]),
    ('{"columns": "block"}', ["columns is a string, expected a list"]),
    ('{"columns": [1, 2]}', ["columns is a list, expected a list"]),
    ('{"environment": []}', ["environment is a list, expected an object"]),
    ('{"environment": {"threads": "4"}}', ["environment.threads is a string, expected an integer or null"]),
    ('{"environment": {"threads": true}}', ["environment.threads is a boolean"]),
    ('{"invocations": [1]}', ["invocations is a list, expected a list"]),
    ('{"finished": 3}', ["finished is a number, expected a string or null"]),
    ("[" * 100_000 + "]" * 100_000, ["not JSON"]),
])
def test_a_damaged_provenance_file_is_one_line(tmp_path, text, words):
    (tmp_path / "k.csv.meta.json").write_text(text)
    with pytest.raises(ResultsError) as e:
        read_meta(tmp_path / "k.csv")
    message = str(e.value)
    assert message.startswith(str(tmp_path / "k.csv.meta.json")) and "\n" not in message and len(message) < 300
    assert all(w in message for w in words), message


def test_a_provenance_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "k.csv.meta.json")
    with pytest.raises(ResultsError, match="FIFO"):
        read_meta(tmp_path / "k.csv")


# --- verified rows: what a resume keeps --------------------------------------------------------------

KEYS = {"block": {"plain", "residual"}, "d": {"4", "8"}}


@pytest.mark.parametrize("body, words", [
    ("plain,99,0.5\n", ["line 2: d '99' is not a value this sweep writes"]),
    ("PLAIN,4,0.5\n", ["line 2: block 'PLAIN'"]),
    ("plain,4,0.5\nplain,4,0.5\n", ["line 3 repeats the configuration of an earlier row"]),
    ("plain,4,5e-1\n", ["line 2: loss '5e-1' is not a number as cnnexp writes it"]),
    ("plain,4,oops\n", ["line 2: loss 'oops'"]),
    ("plain,4,0.50\n", ["loss '0.50'"]),
    ("junk\n", ["line 2 has 1 cells, expected 3"]),
    ("plain,4,0.5\n\nresidual,4\n", ["line 4 has 2 cells"]),
    ('plain,4,"0.5\n', ["line 2: loss '0.5\\n'"]),  # an unclosed quote runs to the end of the file
])
def test_hand_edits_are_refused_naming_the_line(tmp_path, body, words):
    path = tmp_path / "r.csv"
    path.write_text("block,d,loss\n" + body)
    with pytest.raises(ResultsError) as e:
        read_rows(path, COLUMNS, keys=KEYS, numbers=("loss",))
    assert str(e.value).startswith(f"{path}: ") and all(w in str(e.value) for w in words), str(e.value)


def test_rows_as_written_pass_the_checks(tmp_path):
    path = tmp_path / "r.csv"
    with ResultsFile(path, COLUMNS).start() as f:
        for block, d, loss in [("plain", 4, 0.1 + 0.2), ("residual", 4, float("nan")), ("plain", 8, float("inf")),
                               ("residual", 8, 1e-300)]:
            f.append({"block": block, "d": d, "loss": loss})
    rows = read_rows(path, COLUMNS, keys=KEYS, numbers=("loss",))
    assert [r["loss"] for r in rows] == ["0.30000000000000004", "nan", "inf", "1e-300"]
