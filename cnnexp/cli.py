"""The `cnnexp` command line: each command parses, calls one library function and renders.

    $ cnnexp sweep configs/init.yaml
    $ cnnexp run --d 256 --batch 64 --small-init 1e-4 --seed 123

Results go to stdout, progress and errors to stderr. A `CnnexpError` from the library becomes one line on
stderr and exit status 2. Heavy libraries (torch, pandas, matplotlib) are imported inside the commands that
need them, so `conv-shape` starts as fast as Typer itself.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from cnnexp.errors import CnnexpError

app = typer.Typer(
    help="Experiment runner for the residual gradient study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
out = Console()
err = Console(stderr=True)


def command(name: str | None = None, **kwargs):
    """Register a command whose `CnnexpError`s become one line on stderr and exit status 2."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*args, **kw):
            try:
                return fn(*args, **kw)
            except CnnexpError as e:
                err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

        return app.command(name, **kwargs)(guarded)

    return register


def main() -> None:
    app()
