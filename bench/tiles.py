"""The cost of a step in tiles against the same step in one piece, in bare VGG19 passes at 512 px.

    PYTHONPATH=src .venv/bin/python bench/tiles.py [--sizes 1024,2048] [--tiles 512] [--losses gram,default]

For each output size (a 4:3 image drawn by stylelab.samples, the style a square of the same long edge, as the
default --style-size gives), each loss setting and each tile: the seconds of one optimiser step's objective and
gradient (Adam's; median of 3 after one warm-up), in one piece ("whole") and in tiles, and both in bare passes.
A bare pass = one VGG19 forward to relu5_1 + input-gradient backward at 512x384, timed in this process before and
after (median of 5 each). "whole" is skipped where it would not fit in this machine's memory (the estimate).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stylelab import Config, samples
from stylelab.engine import memory
from stylelab.engine.optimize import (
    build_model,
    build_style_losses,
    compute_targets,
    compute_tiled_targets,
    objective,
)
from stylelab.image import to_tensor

LOSSES = {"gram": "gram", "default": Config().style_loss}


def bare_pass(model, reps: int = 5) -> float:
    x = torch.rand(1, 3, 384, 512)
    times = []
    for _ in range(reps + 1):
        leaf = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        f = model(leaf, {"relu5_1"})["relu5_1"]
        torch.autograd.grad(f.sum(), leaf)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def step_seconds(model, content, style, config: Config, tile: int | None, reps: int = 3) -> float:
    losses = build_style_losses(config)
    with torch.no_grad():
        targets = (compute_tiled_targets(model, content, [style], config, losses, content, tile) if tile
                   else compute_targets(model, content, [style], config, losses))
    x = (content + 0.05 * torch.randn_like(content)).clamp(0, 1)
    times = []
    for _ in range(reps + 1):
        leaf = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        total, _ = objective(model, leaf, targets, config, losses)
        total.backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--tiles", default="512")
    ap.add_argument("--losses", default="gram,default")
    args = ap.parse_args()
    model = build_model(None, "max", torch.device("cpu"))
    before = bare_pass(model)
    print(f"torch threads: {torch.get_num_threads()}; bare pass at 512x384 before: {before:.3f} s")
    print("| output px | loss | tile | s / step | bare 512-px passes | tiled / whole |")
    print("|---|---|---|---|---|---|")
    free = memory.available("cpu") or 0
    for size in (int(s) for s in args.sizes.split(",")):
        w, h = size, size * 3 // 4
        content = to_tensor(samples.landscape(w, h))
        style = to_tensor(samples.swirls(size, size, seed=1))
        for name in args.losses.split(","):
            config = Config(size=size, style_loss=LOSSES[name], optimizer="adam")
            whole = None
            if memory.estimate(config, (h, w), [(size, size)]).bytes < free:
                whole = step_seconds(model, content, style, config, None)
                print(f"| {w}x{h} | {name} | whole | {whole:.1f} | {whole / before:.1f} | |", flush=True)
            for tile in (int(t) for t in args.tiles.split(",")):
                tiled_config = Config(size=size, style_loss=LOSSES[name], optimizer="adam", tile=tile)
                s = step_seconds(model, content, style, tiled_config, tile)
                ratio = f"{s / whole:.2f}" if whole else "(whole does not fit)"
                print(f"| {w}x{h} | {name} | {tile} | {s:.1f} | {s / before:.1f} | {ratio} |", flush=True)
    after = bare_pass(model)
    print(f"bare pass at 512x384 after: {after:.3f} s (the table divides by the one before)")


if __name__ == "__main__":
    main()
