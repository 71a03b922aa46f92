"""The manual's generator: every command output and figure in README.md and docs/*.md comes from the command
beside it (`<!-- [[[cog sh("cnnexp run") ]]] -->` ... `<!-- [[[end]]] -->`), through cog, so the docs cannot
drift from the program. `python tools/docgen.py` (make docs) is `cog -r` over the pages and copies the figures
in; `--check` (make docs-check) is `cog --check --diff` and a figure comparison: exit 1 naming each file and
block that differs. The helpers below are what a block calls. Commands run with bash in one scratch folder (a
copy of configs/, empty results/ and docs/), the virtual environment's `cnnexp` first on PATH, 120 columns, no
colour; results of one block are there for the blocks after it (README.md, then docs/*.md by name). Outputs
that cannot be reproduced here (timings, a cluster, a GPU) are plain fenced blocks that say where they come from.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtual environment's bin: its cnnexp is the one documented
WIDTH = 120  # the terminal width every command sees (wide enough for the fit table)
FIGURE_TOLERANCE = 5.0  # compare_images' RMS tolerance (0-255 grey levels): fonts and antialiasing may vary
PROLOGUE = "from docgen import sh, ensure, write, figure, python, edit, set_cell, commands, layout"
# A sweep writing to a log prints a progress line every few seconds, when depends on the machine: left out.
PROGRESS = re.compile(r"^\S+: \d+ of \d+ rows, [\d.,e+]+ rows/s, at ")

_work: Path | None = None  # the scratch folder of this run
_done: set[str] = set()  # the commands run there already ("cwd:cmd")
_figures: list[str] = []  # the figures drawn there


def _env() -> dict[str, str]:
    skip = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS=str(WIDTH), LINES="50", TERM="dumb",
               NO_COLOR="1", PYTHONUNBUFFERED="1", TZ="UTC", LC_ALL="C.UTF-8", PYTHONHASHSEED="0", MPLBACKEND="Agg")
    return env


def start(root: Path = REPO) -> Path:
    """A fresh scratch folder with a copy of ROOT's configs/, where the blocks' commands run."""
    global _work
    _work = Path(tempfile.mkdtemp(prefix="cnnexp-docs-"))
    shutil.copytree(root / "configs", _work / "configs")
    for folder in ("results", "docs"):
        (_work / folder).mkdir()
    _done.clear()
    _figures.clear()
    return _work


def _scratch() -> Path:
    return _work if _work is not None else start()


def finish() -> None:
    global _work
    if _work is not None:
        shutil.rmtree(_work, ignore_errors=True)
    _work = None


def _run(cmd: str, cwd: str = ".") -> tuple[str, int]:
    folder = _scratch() / cwd
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-c", cmd], cwd=folder, env=_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if os.environ.get("DOCGEN_TIMES"):  # which commands make the check slow
        print(f"docgen: {time.monotonic() - t0:6.2f} s  {cmd}", file=sys.stderr)
    out = p.stdout.replace(f"{_work}/", "").replace(str(_work), ".")
    return "\n".join(line.rstrip() for line in out.splitlines() if not PROGRESS.match(line)).rstrip("\n"), p.returncode


def _out(text: str) -> None:
    import cog  # the module cogapp hands to the code of a block

    cog.out(text)


def sh(*cmds: str, status: bool = False, cwd: str = ".", parallel: bool = False, lang: str = "") -> None:
    """A fenced block: each command after a `$ ` prompt, what it printed (stdout and stderr, as in a terminal)
    and, with STATUS, `[exit N]` when it exited non-zero. CWD: a folder of the scratch folder to run in;
    PARALLEL: the commands do not depend on one another (refusals, reads), so they run side by side."""
    with ThreadPoolExecutor(len(os.sched_getaffinity(0)) if parallel else 1) as pool:  # 1: one after another
        results = list(pool.map(lambda c: _run(c, cwd), cmds))
    parts = []
    for cmd, (out, code) in zip(cmds, results):
        _done.add(f"{cwd}:{cmd}")
        parts.append(f"$ {cmd}" + (f"\n{out}" if out else "") + (f"\n[exit {code}]" if status and code else ""))
    _out(f"```{lang}\n" + "\n".join(parts) + "\n```\n")


def ensure(*cmds: str, cwd: str = ".") -> None:
    """Run commands silently, each once per run (results that later blocks read); a failure stops the run."""
    for cmd in (c for c in cmds if f"{cwd}:{c}" not in _done):
        out, code = _run(cmd, cwd)
        if code != 0:
            raise RuntimeError(f"docs: `{cmd}` exited {code}:\n{out}")
        _done.add(f"{cwd}:{cmd}")


def write(name: str, text: str, show: bool = True) -> None:
    """Write an example file into the scratch folder; show it as `$ cat NAME` when SHOW."""
    (_scratch() / name).parent.mkdir(parents=True, exist_ok=True)
    (_scratch() / name).write_text(text)
    if show:
        _out(f"```\n$ cat {name}\n{text.rstrip()}\n```\n")


def figure(cmd: str, path: str, show: bool = True) -> None:
    """Draw the figure PATH (relative to the repository) with CMD; show the command and what it printed."""
    sh(cmd) if show else ensure(cmd)
    if not (_scratch() / path).is_file():
        raise RuntimeError(f"docs: `{cmd}` did not write {path}")
    _figures.append(path)


def python(source: str) -> None:
    """A fenced block of an interactive Python session in the scratch folder: each line of SOURCE after `>>> `
    and what it printed (one-line statements only)."""
    script = ("import code, sys\nconsole = code.InteractiveConsole()\nfor line in sys.stdin.read().splitlines():\n"
              "    print('>>> ' + line, flush=True)\n    console.push(line)\n    sys.stdout.flush()\n")
    p = subprocess.run([sys.executable, "-c", script], cwd=_scratch(), env=_env(), input=source.strip() + "\n",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _out("```python\n" + "\n".join(line.rstrip() for line in p.stdout.splitlines()).rstrip("\n") + "\n```\n")


def edit(src: str, dst: str, change: Callable[[list[str]], list[str]]) -> None:
    """Write DST as SRC's lines (without newlines) passed through CHANGE: the hand-edited files examples refuse."""
    lines = (_scratch() / src).read_text().splitlines()
    (_scratch() / dst).write_text("\n".join(change(lines)) + "\n")


def set_cell(lines: list[str], i: int, column: str, value: str) -> list[str]:
    """The lines of a CSV (lines[0] its header) with COLUMN of lines[I] replaced by VALUE."""
    cells = lines[i].split(",")
    cells[lines[0].split(",").index(column)] = value
    return [*lines[:i], ",".join(cells), *lines[i + 1:]]


def commands() -> list[str]:
    """Every command of the cnnexp CLI, in the order its --help lists them."""
    import typer.main

    from cnnexp.cli import app

    return list(typer.main.get_command(app).commands)


def layout() -> None:
    """A table of the package's modules, each with the first sentence of its docstring."""
    import ast

    rows = ["| module | what lives there |", "|---|---|"]
    for f in sorted((REPO / "cnnexp").rglob("*.py")):
        doc = " ".join((ast.get_docstring(ast.parse(f.read_text())) or "").split("\n\n")[0].split())
        first = doc.split(". ")[0].rstrip(".").replace("|", "\\|")
        rows.append(f"| `{f.relative_to(REPO).as_posix()}` | {first} |")
    _out("\n".join(rows) + "\n")


# --- regenerate and check ----------------------------------------------------------------------------------


def compare_figure(committed: Path, generated: Path) -> str | None:
    """None when the committed figure matches the freshly drawn one within the tolerance, else why not."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.testing.compare import compare_images

    if not committed.is_file():
        return "missing (run make docs)"
    try:
        result = compare_images(str(committed), str(generated), FIGURE_TOLERANCE, in_decorator=True)
    except Exception as e:  # e.g. a size mismatch: compare_images raises ImageComparisonFailure
        return str(e).splitlines()[0]
    if result is None:
        return None
    for leftover in filter(None, (result.get("diff"), result.get("actual"))):  # the *-failed-diff.png it leaves
        Path(leftover).unlink(missing_ok=True)
    return f"differs from a fresh drawing (RMS {result['rms']:.2f} > tolerance {result['tol']})"


def _named(diff: str, root: Path) -> list[str]:
    """cog's --diff output, one message per differing block: `FILE:LINE: block `CODE` ...` and its hunk."""
    problems = []
    for section in re.split(r"^--- current ", diff, flags=re.M)[1:]:
        name = section.split("\n", 1)[0]
        text = (root / name).read_text().splitlines()
        for first, hunk in re.findall(r"^@@ -(\d+)(?:,\d+)? \+\S+ @@.*\n((?:[-+ ].*\n?)*)", section, re.M):
            changed = int(first) - 1 + next(i for i, line in enumerate(hunk.splitlines()) if line[:1] in "-+")
            at = max(i for i in range(changed + 1) if "[[[cog" in text[i])
            code = " ".join(" ".join(text[at:at + 3]).split("[[[cog", 1)[1].split("]]]")[0].split())
            problems.append(f"{name}:{at + 1}: block `{code[:100]}` differs from what its command prints now:\n"
                            + hunk.rstrip("\n"))
    return problems


def generate(root: Path = REPO, files: list[Path] | None = None, check: bool = False) -> list[str]:
    """Regenerate every block of FILES (default: README.md and docs/*.md under ROOT) and the figures their
    commands draw. CHECK: write nothing, return one message per block or figure that differs; else write the
    pages and figures in place and return []."""
    from cogapp import Cog

    files = files or [root / "README.md", *sorted((root / "docs").glob("*.md"))]  # README, then docs/ by name
    names = [str(p.resolve().relative_to(root.resolve())) for p in files]
    start(root)
    cog, printed = Cog(), io.StringIO()
    cog.set_output(stdout=printed, stderr=printed)
    try:
        with contextlib.chdir(root):
            code = cog.main(["cog", "-p", PROLOGUE, "-I", str(REPO / "tools"), *(["--check", "--diff"] if check
                                                                                 else ["-r"]), *names])
        if code not in (0, 5):  # 5: the check found a difference
            raise RuntimeError(f"docs: cog failed:\n{printed.getvalue()}")
        problems = _named(printed.getvalue(), root) if code == 5 else []
        for fig in _figures:
            if check and (why := compare_figure(root / fig, _scratch() / fig)):
                problems.append(f"{fig}: {why}")
            elif not check:
                shutil.copyfile(_scratch() / fig, root / fig)
    finally:
        finish()
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate (or --check) the outputs and figures of the docs.")
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary place and compare")
    ap.add_argument("files", nargs="*", type=Path, help="pages (default: README.md and docs/*.md)")
    args = ap.parse_args(argv)
    sys.modules["docgen"] = sys.modules[__name__]  # the pages' `from docgen import` must find this module's state
    t0 = time.monotonic()
    problems = generate(REPO, [f.resolve() for f in args.files] or None, check=args.check)
    for p in problems:
        print(f"docs-check: {p}", file=sys.stderr)
    if problems:
        print(f"docs-check: {len(problems)} difference(s); run `make docs` and commit the result", file=sys.stderr)
        return 1
    print(f"docs{'-check' if args.check else ''}: ok ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
