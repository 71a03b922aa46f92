"""cnnexp.errors: one exception family, whose messages name the parameter at fault under each reader's name."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from cnnexp.cli import app, flag
from cnnexp.errors import CnnexpError, ConfigError, ResultsError, param, spell
from cnnexp.plot import plot_results


def test_a_python_caller_reads_parameter_names_and_the_cli_flags():
    e = ConfigError(f"{param('scheduler_file')} s.json and {param('overrides')} seed: give one")
    assert str(e) == "scheduler_file s.json and overrides seed: give one"
    assert e.message(flag) == "--scheduler-file s.json and --set seed: give one"
    assert spell(f"plain {param('x')}") == "plain x" and spell("no parameter") == "no parameter"


def test_a_library_error_names_the_parameter_of_the_function_called(tmp_path):
    with pytest.raises(ResultsError) as caught:
        plot_results(tmp_path / "missing.csv", dpi=0, out=tmp_path / "f.png")
    assert str(caught.value).startswith("dpi 0: ") and "--" not in str(caught.value)
    assert caught.value.message(flag).startswith("--dpi 0: ")
    assert isinstance(caught.value, CnnexpError)


def test_every_parameter_the_library_names_is_a_flag_of_the_cli():
    """cli.FLAGS maps the library's parameter names to the options a user types: each name spelled by the
    CLI is an option of some command (so no message points a user at a flag that does not exist)."""
    named = set()
    for source in (Path(__file__).parents[1] / "cnnexp").rglob("*.py"):
        named |= set(re.findall(r"param\(['\"](\w+)['\"]\)", source.read_text()))
    options = {opt for command in typer.main.get_command(app).commands.values() for p in command.params
               for opt in getattr(p, "opts", [])}
    assert len(named) > 20
    assert {name: flag(name) for name in named if flag(name) not in options} == {}
