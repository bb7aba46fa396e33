"""Run `stylelab.engine.optimize.stylize` once, reporting every step on stdout and saving snapshots.

    python bench/_stylelab_worker.py CONTENT STYLE --size 256 --steps 100 --threads T --launched T0
        [--pooling avg] [--single-scale] [--lbfgs-history H] [--style-weight B] [--every K --out DIR]

After each step it prints one flushed line  `step I SINCE_START SINCE_FIRST LOSS`, I counting steps over all
scales (1, 2, ...):
  SINCE_START  wall seconds since the parent launched this process (`--launched`, a time.time() stamp), so it
               includes the interpreter and torch start-up, model loading and the targets;
  SINCE_FIRST  wall seconds since step 1 began;
both minus the time spent saving earlier snapshots. With `--every K` it saves the image after every K-th step,
and the returned output after the run, as DIR/stylelab_IIII.png (8-bit PNG, as the CLI writes), after printing
the step's line. Layers relu1_1..relu5_1 / relu4_2, L-BFGS, content init and CPU are set; everything else is
stylelab's own default (style weight unless --style-weight, L-BFGS history unless --lbfgs-history, scale
schedule unless --single-scale, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from _evaluator import CONTENT_LAYER, STYLE_LAYERS
from PIL import Image

from stylelab import Config
from stylelab.engine.optimize import Step, stylize
from stylelab.image import tensor_to_pil


class Reporter:
    """The callback: one line per step; snapshots timed and excluded from the reported times."""

    def __init__(self, launched: float, every: int, out: Path | None) -> None:
        self.launched, self.every, self.out = launched, every, out
        self.count = 0  # steps so far, over all scales
        self.first_start: float | None = None  # perf_counter() when step 1 began
        self.saving = 0.0  # seconds spent writing snapshots so far

    def __call__(self, step: Step) -> None:
        now_wall, now = time.time(), time.perf_counter()
        self.count += 1
        if self.first_start is None:
            self.first_start = now - step.seconds
        since_start = now_wall - self.launched - self.saving
        since_first = now - self.first_start - self.saving
        print(f"step {self.count} {since_start:.6f} {since_first:.6f} {step.loss:.6g}", flush=True)
        if self.every and self.count % self.every == 0:
            self.save(tensor_to_pil(step.image))

    def save(self, image: Image.Image) -> None:
        start = time.perf_counter()
        image.save(self.out / f"stylelab_{self.count:04d}.png")
        self.saving += time.perf_counter() - start


def build_config(args: argparse.Namespace) -> Config:
    config = Config(size=args.size, steps=args.steps, optimizer="lbfgs", init="content", pooling=args.pooling,
                    device="cpu", style_layers=STYLE_LAYERS, content_layers=(CONTENT_LAYER,))
    fields = {f.name for f in dataclasses.fields(Config)}
    if args.single_scale and "multiscale" in fields:  # older stylelab versions have one scale only
        config = dataclasses.replace(config, multiscale=False)
    if args.lbfgs_history is not None:
        config = dataclasses.replace(config, lbfgs_history=args.lbfgs_history)
    if args.style_weight is not None:
        config = dataclasses.replace(config, style_weight=args.style_weight)
    return config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("content")
    p.add_argument("style")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--launched", type=float, required=True, help="time.time() when the parent started us")
    p.add_argument("--pooling", default="avg")
    p.add_argument("--single-scale", action="store_true", help="no coarse-to-fine schedule")
    p.add_argument("--lbfgs-history", type=int, help="L-BFGS memory (default: stylelab's)")
    p.add_argument("--style-weight", type=float, help="normalised style weight (default: stylelab's)")
    p.add_argument("--every", type=int, default=0, help="save a snapshot every K steps (0: none)")
    p.add_argument("--out", type=Path, help="folder for the snapshots")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reporter = Reporter(args.launched, args.every, args.out)
    image = stylize(args.content, args.style, build_config(args), reporter)
    if args.every and reporter.count % args.every:
        reporter.save(image)


if __name__ == "__main__":
    main()
