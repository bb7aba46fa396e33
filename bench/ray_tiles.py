"""Tiles on Ray actors: a tiled step's time on 1 and 2 single-thread actors against the same step in this process
on one thread, and whether a whole run on Ray has the local run's pixels.

    PYTHONPATH=src .venv/bin/python bench/ray_tiles.py [--size 768] [--tile 256] [--reps 2]

The step: one objective and gradient of the default mix (Adam's, so every sweep runs) on a 4:3 image drawn by
stylelab.samples, in tiles of --tile px; median of --reps after one warm-up; its gradient compared bit for bit
with the local one. A bare pass = one VGG19 forward to relu5_1 + input-gradient backward at 512x384 on one
thread, timed in this process (median of 3). Then one `stylize` run (two scales, the second tiled, 2 Adam steps
each) locally and on the 2 actors, wall time and `numpy.array_equal` of the pixels. The driver runs on one thread
throughout, as each actor does: the same sums in the same order.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import ray
import torch
from tiles import bare_pass  # bench/tiles.py: one bare VGG19 pass at 512x384

import stylelab
from stylelab import Config, samples
from stylelab.engine.optimize import build_model, build_style_losses, compute_tiled_targets, objective
from stylelab.engine.ray_tiles import RayTiles
from stylelab.engine.tiles import LocalTiles, TileRunner
from stylelab.image import to_tensor


def step(model, runner: TileRunner, content, style, config: Config, reps: int) -> tuple[float, torch.Tensor]:
    losses = build_style_losses(config)
    targets = compute_tiled_targets(runner, content, [style], config, losses, content, config.tile)
    x = (content + 0.05 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    times, grad = [], None
    for _ in range(reps + 1):
        leaf = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        total, _ = objective(model, leaf, targets, config, losses)
        total.backward()
        times.append(time.perf_counter() - t0)
        grad = leaf.grad
    assert grad is not None
    return statistics.median(times[1:]), grad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    w, h = args.size, args.size * 3 // 4
    content_img, style_img = samples.landscape(w, h), samples.swirls(args.size // 2, args.size // 2, seed=1)
    content, style = to_tensor(content_img), to_tensor(style_img)
    config = Config(size=args.size, optimizer="adam", multiscale=False, tile=args.tile)
    model = build_model(None, "max", torch.device("cpu"))
    bare = bare_pass(model, reps=3)
    print(f"# {w}x{h} px in tiles of {args.tile} px, default mix; bare pass (1 thread) {bare:.2f} s; "
          f"torch {torch.__version__}")
    print("| where | step (s) | bare passes | speed-up | gradient as local |")
    print("|---|---|---|---|---|")
    local_s, local_g = step(model, LocalTiles(model), content, style, config, args.reps)
    print(f"| this process, 1 thread | {local_s:.1f} | {local_s / bare:.1f} | 1.00x | - |", flush=True)
    one = None
    for actors in (1, 2):
        with RayTiles(config, actors=actors, threads=1) as runner:
            s, g = step(model, runner, content, style, config, args.reps)
        one = one or s
        print(f"| Ray, {actors} actor{'s' if actors > 1 else ''} x 1 thread | {s:.1f} | {s / bare:.1f} | "
              f"{local_s / s:.2f}x ({one / s:.2f}x one actor's) | {bool(torch.equal(g, local_g))} |", flush=True)
    run = Config(size=args.size, scales=((args.size // 2, 2), (args.size, 2)), optimizer="adam", tile=args.tile)
    t0 = time.perf_counter()
    local = np.asarray(stylelab.stylize(content_img, style_img, run))
    local_wall = time.perf_counter() - t0
    with RayTiles(run, actors=2, threads=1) as runner:
        t0 = time.perf_counter()
        remote = np.asarray(stylelab.stylize(content_img, style_img, run, tile_runner=runner))
        remote_wall = time.perf_counter() - t0
    print(f"\nrun {run.scales}: this process {local_wall:.0f} s, 2 actors {remote_wall:.0f} s "
          f"({local_wall / remote_wall:.2f}x); identical pixels: {bool(np.array_equal(local, remote))}")
    ray.shutdown()


if __name__ == "__main__":
    main()
