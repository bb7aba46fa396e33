"""Performance levers, each measured on its own (CPU): what helps a VGG19 step here, what doesn't.

    .venv/bin/python bench/levers.py [--content C] [--style S] [--sizes 256,512] [--passes 8]

1. memory format: a bare frozen VGG19 forward to relu5_1 + input-gradient backward (the floor), contiguous
   (NCHW) vs channels_last (NHWC), per size;
2. threads: the NCHW pass with 1 and with all cores;
3. torch.compile of the network: compile time and the pass time after it;
4. L-BFGS history 10 / 50 / 100: median seconds per full stylelab step (single scale).
Prints markdown tables of medians (seconds). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import stylelab
from stylelab import Config
from stylelab.engine.features import VGG19, load_weights
from stylelab.image import resize_long_edge, to_tensor

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def pass_time(model: torch.nn.Module, x: torch.Tensor, passes: int) -> float:
    def once() -> None:
        y = x.detach().requires_grad_(True)
        out = model(y, ("relu5_1",))["relu5_1"]
        torch.autograd.grad(out, y, torch.ones_like(out))

    once()
    once()  # warm-up
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network(weights, channels_last: bool) -> VGG19:
    model = VGG19(weights)
    model.channels_last = channels_last  # NHWC activations (stylelab's default on CPU and CUDA) or NCHW
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--passes", type=int, default=8)
    p.add_argument("--steps", type=int, default=15)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    weights = load_weights()
    content = to_tensor(args.content)
    sizes = [int(s) for s in args.sizes.split(",")]

    print("| size | NCHW pass | NHWC pass | NHWC/NCHW | 1 thread | 1 thread/all |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        x = resize_long_edge(content, size)
        model = network(weights, channels_last=False)
        nchw = pass_time(model, x, args.passes)
        nhwc = pass_time(network(weights, channels_last=True), x, args.passes)
        torch.set_num_threads(1)
        one = pass_time(model, x, max(2, args.passes // 2))
        torch.set_num_threads(cores)
        print(f"| {size} | {nchw:.3f} | {nhwc:.3f} | {nhwc / nchw:.2f} | {one:.3f} | {one / nchw:.2f} |", flush=True)

    x = resize_long_edge(content, sizes[0])
    model = network(weights, channels_last=True)
    start = time.perf_counter()
    compiled = torch.compile(model)
    first = pass_time(compiled, x, 1)  # includes the compilation
    compile_s = time.perf_counter() - start
    eager, fast = pass_time(model, x, args.passes), pass_time(compiled, x, args.passes)
    print(f"\ntorch.compile at {sizes[0]} px: first calls {compile_s:.1f} s (compiling), then {fast:.3f} s/pass "
          f"vs eager {eager:.3f} s/pass; break-even after {compile_s / max(eager - fast, 1e-9):.0f} passes"
          if fast < eager else
          f"\ntorch.compile at {sizes[0]} px: first calls {compile_s:.1f} s, then {fast:.3f} s/pass vs eager "
          f"{eager:.3f}: no gain", flush=True)
    del first

    print("\n| L-BFGS history | s/step (median) |")
    print("|---|---|")
    for history in (10, 50, 100):
        steps: list[stylelab.Step] = []
        config = Config(size=sizes[0], steps=args.steps, lbfgs_history=history, multiscale=False)
        stylelab.stylize(args.content, args.style, config, steps.append)
        print(f"| {history} | {statistics.median(s.seconds for s in steps[1:]):.3f} |", flush=True)


if __name__ == "__main__":
    main()
