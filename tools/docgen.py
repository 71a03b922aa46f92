"""The manual's generator: every command output and figure in README.md and docs/*.md comes from the command
written beside it, through cog (cogapp), so the docs cannot drift from the program.

A page holds blocks like this one; cog runs the Python between the markers and puts its output below them:

    <!-- [[[cog sh("cnnexp fit results/laws.csv --x small_init") ]]] -->
    ```
    $ cnnexp fit results/laws.csv --x small_init
    ...the output, written by cog...
    ```
    <!-- [[[end]]] -->

    python tools/docgen.py            # make docs: regenerate every block and figure in place
    python tools/docgen.py --check    # make docs-check: regenerate into a temporary place; exit 1 naming each
                                      # file and block that differs from what is committed

Commands run with bash in a scratch folder holding a copy of configs/ (and an empty results/ and docs/), with
the virtual environment's `cnnexp` first on PATH, a fixed terminal width and no colour, so what they print is
the same on every machine and names only relative paths. The folder lives for one run: results written by one
block (e.g. the demo's results/init.csv) are there for the blocks after it, in README.md and then docs/*.md in
name order. Figures are drawn there too: `make docs` copies them into docs/, `make docs-check` compares them
with the committed ones by `matplotlib.testing.compare.compare_images` with a tolerance (never by bytes).

Blocks whose output cannot be reproduced here (timings, a cluster started by hand, a GPU) are plain fenced
blocks, not cog blocks, each introduced by a line saying where and when it was measured; the check skips them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtual environment's bin: its cnnexp is the one documented
WIDTH = 120  # the terminal width every command sees (wide enough for the fit table)
FIGURE_TOLERANCE = 5.0  # compare_images' RMS tolerance (0-255 grey levels): fonts and antialiasing may vary

# The state of one run: the scratch folder, the commands already run there, the figures drawn, and the
# commands started in the background.
_work: Path | None = None
_done: set[str] = set()
_figures: list[str] = []
_background: dict[str, subprocess.Popen] = {}

# Results that several pages read and no page shows being made: a whole run starts them in the background at
# once, so they compute while the first pages are generated (the pages' ensure() waits for them).
SHARED = ["cnnexp sweep configs/depth.yaml --per-layer results/depth.layers.csv"]  # 216 rows, depths to 50


# --- a warm cnnexp: most of a command's time is importing torch, scipy and matplotlib, so a run of the docs
# starts one server process that imports them once and forks a child per `cnnexp` command; the `cnnexp` first on
# the commands' PATH is a stub that hands the server its arguments, folder, environment and stdin/stdout/stderr,
# and exits with the child's status. The child runs the installed program's own command line (cnnexp.cli.invoke,
# what its entry point main runs), so it prints what `cnnexp` prints. DOCGEN_SERVER=0 runs every command as a
# process of its own instead.

STUB = """#!{python} -S
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({sock!r})
msg = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(s, [len(msg).to_bytes(8, "big") + msg], [0, 1, 2])
code = s.recv(16)
sys.exit(int(code) if code else 1)
"""


def serve(sock: str) -> None:
    """The server behind the stub: import what the commands import, then fork a child per request."""
    import importlib
    import pkgutil
    import signal
    import socket
    import traceback

    import cnnexp
    import cnnexp.cli

    # every module of cnnexp and what its commands import lazily (torch, pandas, scipy, matplotlib)
    for m in pkgutil.walk_packages(cnnexp.__path__, "cnnexp."):
        if not m.name.endswith("__main__"):  # importing it would run the command line
            importlib.import_module(m.name)
    for name in ("scipy.stats", "matplotlib.pyplot", "pandas", "torch"):
        importlib.import_module(name)

    import threading

    parent = os.getppid()

    def orphaned() -> None:  # the run that started this server has ended: end too
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock)
    srv.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    while True:
        conn, _ = srv.accept()
        if os.fork():
            conn.close()
            continue
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command may wait for processes of its own
        srv.close()
        code = 1
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            size, data = int.from_bytes(data[:8], "big"), data[8:]
            while len(data) < size:
                data += conn.recv(1 << 20)
            req = json.loads(data)
            for i, fd in enumerate(fds):
                os.dup2(fd, i)
                os.close(fd)
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            sys.argv = [str(BIN / "cnnexp"), *req["argv"]]
            from rich.console import Console

            cnnexp.cli.out = Console(markup=False)  # a console reads COLUMNS when it is made
            cnnexp.cli.err = Console(stderr=True, markup=False)
            try:
                code = cnnexp.cli.invoke()  # (main() would end this child before it reports the status)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(str(code).encode())
        finally:
            os._exit(0)


_server: subprocess.Popen | None = None
# A sweep writing to a log prints a progress line every few seconds; when one comes depends on the machine's
# speed, so the examples leave them out.
PROGRESS = re.compile(r"^\S+: \d+ of \d+ rows, [\d.,e+]+ rows/s, at ")


def _start_server() -> None:
    global _server
    if os.environ.get("DOCGEN_SERVER") == "0":
        return
    sock = str(_work / ".cnnexp.sock")
    (_work / ".bin").mkdir()
    stub = _work / ".bin" / "cnnexp"
    stub.write_text(STUB.format(python=sys.executable, sock=sock))
    stub.chmod(0o755)
    _server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", sock], env=_base_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(sock):
        if _server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("docs: the cnnexp server did not start")
        time.sleep(0.05)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE", "COLUMNS", "LINES")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS=str(WIDTH), LINES="50", TERM="dumb",
               NO_COLOR="1", PYTHONUNBUFFERED="1", TZ="UTC", LC_ALL="C.UTF-8", PYTHONHASHSEED="0", MPLBACKEND="Agg")
    return env


def _env() -> dict[str, str]:
    """The environment of the pages' commands: _base_env, with the stub first on PATH while the server runs."""
    env = _base_env()
    if _server is not None:
        env["PATH"] = f"{_work / '.bin'}{os.pathsep}{env['PATH']}"
    return env


def start(root: Path = REPO) -> Path:
    """A fresh scratch folder with a copy of ROOT's configs/, where the blocks' commands run."""
    global _work
    _work = Path(tempfile.mkdtemp(prefix="cnnexp-docs-"))
    shutil.copytree(root / "configs", _work / "configs")
    (_work / "results").mkdir()
    (_work / "docs").mkdir()
    _start_server()
    _done.clear()
    _figures.clear()
    _background.clear()
    return _work


def background(*cmds: str) -> None:
    """Start commands for ensure() to wait for later (each writes its own files: they must not depend on one
    another or on what the pages run)."""
    if _work is None:
        start()
    for cmd in cmds:
        log = tempfile.TemporaryFile("w+")
        _background[cmd] = subprocess.Popen(["bash", "-c", cmd], cwd=_work, env=_env(), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, text=True)
        _background[cmd].log = log


def finish() -> None:
    global _work, _server
    if _server is not None:  # the server, its children and their worker processes: one process group
        try:
            os.killpg(_server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _server.wait()
        _server = None
    for p in _background.values():
        p.kill()
        p.wait()
    _background.clear()
    if _work is not None:
        shutil.rmtree(_work, ignore_errors=True)
    _work = None


def _run(cmd: str, cwd: str = ".") -> tuple[str, int]:
    if _work is None:
        start()
    (_work / cwd).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-c", cmd], cwd=_work / cwd, env=_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if os.environ.get("DOCGEN_TIMES"):  # which commands make the check slow
        print(f"docgen: {time.monotonic() - t0:6.2f} s  {cmd}", file=sys.stderr)
    out = p.stdout.replace(str(_work) + "/", "").replace(str(_work), ".")
    out = "\n".join(line.rstrip() for line in out.splitlines() if not PROGRESS.match(line)).rstrip("\n")
    return out, p.returncode


def run_text(*cmds: str, status: bool = False, cwd: str = ".", parallel: bool = False) -> str:
    """Each command after a `$ ` prompt, followed by what it printed (stdout and stderr, as in a terminal) and,
    with STATUS, `[exit N]` when it exited non-zero. PARALLEL: the commands do not depend on one another."""
    if parallel:  # independent commands (refusals, reads): run side by side, shown in order
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
            results = list(pool.map(lambda c: _run(c, cwd), cmds))
    else:
        results = [None] * len(cmds)
    parts = []
    for cmd, result in zip(cmds, results):
        out, code = result or _run(cmd, cwd)
        _done.add(f"{cwd}:{cmd}")
        parts.append(f"$ {cmd}" + (f"\n{out}" if out else "") + (f"\n[exit {code}]" if status and code else ""))
    return "\n".join(parts)


def _out(text: str) -> None:
    import cog  # the module cogapp hands to the code of a block

    cog.out(text)


def sh(*cmds: str, status: bool = False, cwd: str = ".", parallel: bool = False, lang: str = "") -> None:
    """A fenced block: each command after a `$ ` prompt and what it printed (see run_text); CWD is a folder
    of the scratch folder to run them in."""
    _out(f"```{lang}\n{run_text(*cmds, status=status, cwd=cwd, parallel=parallel)}\n```\n")


def output(cmd: str, lang: str = "") -> None:
    """A fenced block holding only what CMD printed (the command is written in the text beside it)."""
    out, _ = _run(cmd)
    _done.add(f".:{cmd}")
    _out(f"```{lang}\n{out}\n```\n")


def ensure(*cmds: str, cwd: str = ".") -> None:
    """Run commands silently, each once per run (results that later blocks read); a failure stops the run."""
    for cmd in cmds:
        if f"{cwd}:{cmd}" in _done:
            continue
        if cwd == "." and cmd in _background:
            p = _background.pop(cmd)
            code = p.wait()
            p.log.seek(0)
            out = p.log.read()
        else:
            out, code = _run(cmd, cwd)
        if code != 0:
            raise RuntimeError(f"docs: `{cmd}` exited {code}:\n{out}")
        _done.add(f"{cwd}:{cmd}")


def write(name: str, text: str, show: bool = True) -> None:
    """Write an example file into the scratch folder; show it as `$ cat NAME` when SHOW."""
    if _work is None:
        start()
    (_work / name).parent.mkdir(parents=True, exist_ok=True)
    (_work / name).write_text(text)
    if show:
        _out(f"```\n$ cat {name}\n{text.rstrip()}\n```\n")


def figure(cmd: str, path: str, show: bool = True) -> None:
    """Draw the figure PATH (relative to the repository) with CMD; show the command and what it printed."""
    if show:
        sh(cmd)
    else:
        ensure(cmd)
    if not (_work / path).is_file():
        raise RuntimeError(f"docs: `{cmd}` did not write {path}")
    _figures.append(path)


def python(source: str) -> None:
    """A fenced block of an interactive Python session run in the scratch folder: each line of SOURCE after
    `>>> ` and what it printed (one-line statements only)."""
    script = (
        "import code, sys\n"
        "console = code.InteractiveConsole()\n"
        "for line in sys.stdin.read().splitlines():\n"
        "    print('>>> ' + line, flush=True)\n"
        "    console.push(line)\n"
        "    sys.stdout.flush()\n"
    )
    if _work is None:
        start()
    p = subprocess.run([sys.executable, "-c", script], cwd=_work, env=_env(), input=source.strip() + "\n",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = "\n".join(line.rstrip() for line in p.stdout.splitlines()).rstrip("\n")
    _out(f"```python\n{out}\n```\n")


def edit(src: str, dst: str, change) -> None:
    """Write DST (in the scratch folder) as SRC's lines passed through CHANGE (a function of the list of lines,
    without their newlines): the hand-edited files that some examples refuse."""
    if _work is None:
        start()
    lines = (_work / src).read_text().splitlines()
    (_work / dst).write_text("\n".join(change(lines)) + "\n")


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
        doc = ast.get_docstring(ast.parse(f.read_text())) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        first = first.split(". ")[0].rstrip(".").replace("|", "\\|")
        rows.append(f"| `{f.relative_to(REPO).as_posix()}` | {first} |")
    _out("\n".join(rows) + "\n")


# --- regenerate and check ----------------------------------------------------------------------------------

PROLOGUE = "from docgen import sh, output, ensure, write, figure, python, edit, set_cell, commands, layout"
BLOCK = re.compile(r"\[\[\[cog(.*?)\]\]\]", re.S)


def pages(root: Path = REPO) -> list[Path]:
    """README.md, then docs/*.md in name order: the files that may hold generated blocks."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _cog():
    from cogapp import Cog

    c = Cog()
    c.options.prologue = PROLOGUE
    c.options.include_path = [str(REPO / "tools")]
    if str(REPO / "tools") not in sys.path:
        sys.path.insert(0, str(REPO / "tools"))
    return c


def _blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, code, output) of each cog block of TEXT."""
    found = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if "[[[cog" in lines[i]:
            start_line = i + 1
            code = []
            while "]]]" not in lines[i]:
                code.append(lines[i])
                i += 1
            code.append(lines[i])
            i += 1
            body = []
            while i < len(lines) and "[[[end]]]" not in lines[i]:
                body.append(lines[i])
                i += 1
            found.append((start_line, "".join(code).strip(), "".join(body)))
        i += 1
    return found


def _differences(name: str, old: str, new: str) -> list[str]:
    """One message per block whose output differs, naming the file, the block's line and its code."""
    msgs = []
    for (line, code, a), (_, _, b) in zip(_blocks(old), _blocks(new)):
        if a != b:
            diff = difflib.unified_diff(a.splitlines(), b.splitlines(), "committed", "generated", lineterm="", n=1)
            short = re.sub(r"\s+", " ", BLOCK.search(code).group(1).strip() if BLOCK.search(code) else code)
            msgs.append(f"{name}:{line}: block `{short[:100]}` differs from what its command prints now:\n"
                        + "\n".join(list(diff)[:20]))
    if not msgs and old != new:
        msgs.append(f"{name}: its generated blocks differ from what is committed")
    return msgs


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
    for key in ("diff", "actual"):  # compare_images leaves a *-failed-diff.png beside the files
        Path(result.get(key, "")).unlink(missing_ok=True) if result.get(key) else None
    return f"differs from a fresh drawing (RMS {result['rms']:.2f} > tolerance {result['tol']})"


def generate(root: Path = REPO, files: list[Path] | None = None, check: bool = False) -> list[str]:
    """Regenerate every block of FILES (default: README.md and docs/*.md under ROOT) and the figures their
    commands draw. CHECK: write nothing, return one message per file/block/figure that differs; else write the
    files and figures in place and return []."""
    whole = files is None
    files = pages(root) if files is None else files
    problems = []
    start(root)
    if whole:
        background(*SHARED)
    try:
        c = _cog()
        for path in files:
            old = path.read_text()
            if "[[[cog" not in old:
                continue
            name = str(path.relative_to(root))
            new = c.process_string(old, fname=name)
            if check:
                problems += _differences(name, old, new)
            elif new != old:
                path.write_text(new)
                print(f"docs: regenerated {name}", file=sys.stderr)
        for fig in _figures:
            if check:
                why = compare_figure(root / fig, _work / fig)
                if why:
                    problems.append(f"{fig}: {why}")
            else:
                shutil.copyfile(_work / fig, root / fig)
    finally:
        finish()
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate (or --check) the outputs and figures of the docs.")
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary place and compare")
    ap.add_argument("files", nargs="*", type=Path, help="pages (default: README.md and docs/*.md)")
    ap.add_argument("--serve", metavar="SOCKET", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
    t0 = time.monotonic()
    files = [f.resolve() for f in args.files] or None
    problems = generate(REPO, files, check=args.check)
    for p in problems:
        print(f"docs-check: {p}", file=sys.stderr)
    took = time.monotonic() - t0
    if problems:
        print(f"docs-check: {len(problems)} difference(s); run `make docs` and commit the result", file=sys.stderr)
        return 1
    print(f"docs{'-check' if args.check else ''}: ok ({took:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
