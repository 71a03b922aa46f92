"""The shipped examples by name: listed, used by name from any folder, copied out, and in a built package."""
import subprocess
import sys
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from cnnexp import examples
from cnnexp.cli import app

ROOT = Path(__file__).parents[1]
runner = CliRunner(env={"COLUMNS": "200"})


def test_the_examples_are_the_repositorys_configs():
    assert examples.sweeps() == {p.stem: p.resolve() for p in sorted((ROOT / "configs").glob("*.yaml"))}
    assert examples.nets() == {p.stem: p.resolve() for p in sorted((ROOT / "configs/nets").glob("*.yaml"))}
    assert examples.describe(examples.sweeps()["init"]).startswith("The notebook's experiment")


def test_sweeps_and_nets_are_usable_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dry = runner.invoke(app, ["sweep", "init", "--dry-run"])
    assert dry.exit_code == 0 and "init: 3 configurations x 2 blocks = 6 rows" in dry.stdout
    shape = runner.invoke(app, ["conv-shape", "--from", "resnet18"])
    assert shape.exit_code == 0 and "11,689,512" in shape.stdout
    missing = runner.invoke(app, ["sweep", "nosuch"])
    assert missing.exit_code == 2 and "nosuch" in missing.stderr


def test_examples_lists_them_and_copies_one_out_never_over_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = runner.invoke(app, ["examples"])
    assert listed.exit_code == 0 and all(name in listed.stdout for name in [*examples.sweeps(), *examples.nets()])
    assert runner.invoke(app, ["examples", "init"]).exit_code == 0
    assert (tmp_path / "init.yaml").read_text() == (ROOT / "configs/init.yaml").read_text()
    again = runner.invoke(app, ["examples", "init"])
    assert again.exit_code == 2 and "init.yaml: already exists" in again.stderr
    assert runner.invoke(app, ["examples", "resnet20", "--to", "mine.yaml"]).exit_code == 0
    unknown = runner.invoke(app, ["examples", "resnet21"])
    assert unknown.exit_code == 2 and "no shipped example of that name" in unknown.stderr


def test_a_built_package_holds_the_examples(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("cnnexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"cnnexp/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")} <= names
    assert "cnnexp/configs/nets/resnet20.yaml" in names and "cnnexp/examples.py" in names
