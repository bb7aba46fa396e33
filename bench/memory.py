"""Peak memory: stylelab.engine.memory's estimate against the measured peak RSS of a real run.

    PYTHONPATH=src .venv/bin/python bench/memory.py [--sizes 256,512,1024] [--steps 8] [extra stylelab flags]

Each size runs `stylelab run` in a fresh Python process (default settings, `--steps N`: the default
coarse-to-fine schedule with N steps at the first scale and N // 4, at least 1, at each finer one) on a 4:3
content image and a square style image drawn by stylelab.samples; the child reports its own peak resident set
size (getrusage ru_maxrss). Prints a markdown table: size, estimate, measured, error, and the child's wall
seconds; `--passes` also times a bare VGG19 pass (forward to relu5_1 + input-gradient backward at 512x384,
median of 5) in this process before and after the runs, and gives each run's wall time in those passes. `--raw`
also prints the estimate's two parts (baseline, values per pixel) used to calibrate memory.CPU_BASELINE and
memory.OVERHEAD.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stylelab import samples
from stylelab.cli import build_parser
from stylelab.engine import memory
from stylelab.flags import config_from_args


def child(argv: list[str]) -> None:
    from stylelab.cli import main

    code = main(argv)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"code": code, "peak": peak}))


def measure(folder: Path, size: int, steps: int, extra: list[str]) -> tuple[int, list[str], float]:
    argv = ["run", str(folder / "content.png"), str(folder / "style.png"), "-o", str(folder / f"out{size}.png"),
            "--size", str(size), "--steps", str(steps), "-q", *extra]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(argv)], capture_output=True, text=True,
                       check=False)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"run at {size} px failed: {r.stderr[-2000:]}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"run at {size} px exited {result['code']}: {r.stderr[-2000:]}")
    return result["peak"], argv, seconds


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--passes", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="copy each run's output image into DIR")
    args, extra = ap.parse_known_args()
    bare = _bare_pass() if args.passes else None
    if bare is not None:
        print(f"bare 512x384 pass before: {bare:.3f} s")
    print("| size | output px | estimate | measured peak RSS | error | wall s |" + (" bare passes |" if bare else ""))
    print("|---|---|---|---|---|---|" + ("---|" if bare else ""))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        content_wh, style_wh = (1024, 768), (512, 512)
        samples.landscape(*content_wh).save(folder / "content.png")
        samples.swirls(*style_wh, seed=1).save(folder / "style.png")
        for size in (int(s) for s in args.sizes.split(",")):
            peak, argv, seconds = measure(folder, size, args.steps, extra)
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(folder / f"out{size}.png", Path(args.keep) / f"out{size}.png")
            config = config_from_args(build_parser().parse_args(argv))
            est = memory.estimate(config, content_wh[::-1], [style_wh[::-1]])
            h, w = est.hw
            err = est.bytes / peak - 1
            print(f"| {size} | {w}x{h} | {memory.format_bytes(est.bytes)} | {memory.format_bytes(peak)} | "
                  f"{err:+.0%} | {seconds:.0f} |" + (f" {seconds / bare:.0f} |" if bare else ""), flush=True)
            if args.raw:
                print(f"raw {size}: baseline {memory.CPU_BASELINE} variable {est.bytes - memory.CPU_BASELINE} "
                      f"peak {peak}", flush=True)
    if bare is not None:
        print(f"bare 512x384 pass after: {_bare_pass():.3f} s (the table divides by the one before)")


def _bare_pass(reps: int = 5) -> float:
    import statistics
    import time as clock

    import torch

    from stylelab.engine.optimize import build_model

    model = build_model(None, "max", torch.device("cpu"))
    x = torch.rand(1, 3, 384, 512)
    times = []
    for _ in range(reps + 1):
        leaf = x.clone().requires_grad_(True)
        t0 = clock.perf_counter()
        torch.autograd.grad(model(leaf, {"relu5_1"})["relu5_1"].sum(), leaf)
        times.append(clock.perf_counter() - t0)
    return statistics.median(times[1:])


if __name__ == "__main__":
    main()
