"""Benchmark: what ending the process with os._exit (cli._leave) saves over Python's normal exit.

    .venv/bin/python bench/bench_exit.py          (or: make bench)

Once torch is imported, a normal interpreter exit tears down its modules (and those of pandas, scipy,
matplotlib); `cnnexp` skips that by ending with os._exit once its files are closed and its output flushed.
Whole process, interleaved, medians: `cnnexp run` and a small sweep, each as the installed command (os._exit)
and as the same command line ended by a normal `SystemExit` (cnnexp.cli.invoke, what main() runs before leaving).
Nothing here asserts.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from timing import interleaved  # bench/timing.py: this script's folder is on sys.path

NORMAL_EXIT = "import sys; from cnnexp.cli import invoke; sys.argv[0] = 'cnnexp'; raise SystemExit(invoke())"


def main(repeats: int = 9) -> None:
    folder = Path(tempfile.mkdtemp())
    (folder / "s.yaml").write_text("name: s\nsweep:\n  d: [16, 64]\n  seed: {range: [0, 10]}\n")
    cnnexp = str(Path(sys.executable).with_name("cnnexp"))
    commands = {"run": ["run", "--d", "8"],
                "sweep (40 rows)": ["sweep", str(folder / "s.yaml"), "--out", str(folder / "s.csv"), "--overwrite"]}
    print(f"{'command':<18} {'os._exit':>9} {'normal exit':>12} {'saved':>8}   (medians of {repeats}, seconds)")
    for name, args in commands.items():
        def quick(args=args) -> None:
            subprocess.run([cnnexp, *args], check=True, capture_output=True)

        def normal(args=args) -> None:
            subprocess.run([sys.executable, "-c", NORMAL_EXIT, *args], check=True, capture_output=True)

        m = interleaved({"quick": quick, "normal": normal}, repeats)
        print(f"{name:<18} {m['quick']:>9.3f} {m['normal']:>12.3f} {m['normal'] - m['quick']:>8.3f}")


if __name__ == "__main__":
    main()
