"""The default 512 px run's cost in bare VGG19 passes, counted in CPU time (robust to a busy machine).

    .venv/bin/python bench/passes.py [CONTENT STYLE] [-- extra `stylelab run` flags]

A bare pass = one VGG19 forward to relu5_1 + input-gradient backward at 512x384 (the least any method pays per
step at 512 px), timed in this process: median of 5, in CPU seconds (time.process_time) and wall seconds. The run
is `stylelab run CONTENT STYLE -o OUT` in a fresh process (start-up, weights, inputs included): its CPU seconds
(user + system, from the child's rusage) and wall seconds. On a quiet machine the two ratios agree up to the
single-threaded parts of start-up (imports, decoding), which CPU time counts once and wall time as a full pass
share; on a loaded machine only the CPU-time ratio means anything.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evaluator import Net

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def bare_pass(net: Net, hw: tuple[int, int] = (384, 512), reps: int = 5) -> tuple[float, float]:
    x = torch.rand(1, 3, *hw)
    cpu, wall = [], []
    for _ in range(reps + 1):
        leaf = x.clone().requires_grad_(True)
        c0, w0 = time.process_time(), time.perf_counter()
        f = net.features(leaf, ("relu5_1",), inplace=True)["relu5_1"]
        torch.autograd.grad(f.sum(), leaf)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu[1:]), statistics.median(wall[1:])


def main() -> None:
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    pos = argv[: argv.index("--")] if "--" in argv else argv
    content, style = pos if pos else (str(DATA / "content/tubingen.jpg"), str(DATA / "styles/starry_night.jpg"))
    net = Net.load("max")
    cpu_before, wall_before = bare_pass(net)
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stylelab", "run", content, style, "-o", f"{tmp}/out.png", "-q",
                        *flags], check=True)
        wall = time.perf_counter() - w0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu_after, wall_after = bare_pass(net)
    cpu_pass, wall_pass = (cpu_before + cpu_after) / 2, (wall_before + wall_after) / 2
    print("| run | CPU s | wall s | bare pass CPU s | bare pass wall s | passes (CPU) | passes (wall) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| `stylelab run C S -o OUT {' '.join(flags)}` | {cpu:.1f} | {wall:.1f} | {cpu_pass:.3f} | {wall_pass:.3f} "
          f"| {cpu / cpu_pass:.0f} | {wall / wall_pass:.0f} |", flush=True)


if __name__ == "__main__":
    main()
