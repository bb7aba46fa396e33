"""How long the command line takes to answer before any work: `--version`, `--help`, a usage error, a missing file.

    .venv/bin/python bench/startup.py [--runs 7]

Each case is `stylelab ...` in a fresh process (the console script of this venv), timed wall-clock from spawn to
exit; the table gives the median and the slowest of --runs runs, next to a bare `python -c pass` (the interpreter's
own start-up, the floor) and `python -c "import torch"` (what every answer cost while the CLI imported torch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wall(cmd: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args()
    stylelab = str(BIN / "stylelab")
    cases = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "stylelab --version": [stylelab, "--version"],
        "stylelab --help": [stylelab, "--help"],
        "stylelab run --help": [stylelab, "run", "--help"],
        "usage error (--size abc)": [stylelab, "run", "a.png", "b.png", "-o", "c.png", "--size", "abc"],
        "missing content file": [stylelab, "run", "/missing.jpg", "b.png", "-o", "c.png"],
    }
    with tempfile.TemporaryDirectory() as cwd:
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"{'case':32s} {'median s':>9s} {'max s':>7s}")
        for name, cmd in cases.items():
            wall(cmd, cwd)  # warm the page cache
            times = [wall(cmd, cwd) for _ in range(args.runs)]
            print(f"{name:32s} {statistics.median(times):9.3f} {max(times):7.3f}")


if __name__ == "__main__":
    main()
