"""What a step costs in "bare passes" at 512 px, per style loss and scale: the units of the ≤ 65-pass target.

    .venv/bin/python bench/step_cost.py [--losses gram,gram:0.5,sliced-wasserstein:0.5] [--sizes 128,256,512]

A bare pass = one VGG19 forward to relu5_1 + input-gradient backward at 512x384, the least any method pays per
step at 512 px. For each loss and size, runs a short stylelab run in this process (after one warm-up step) and
times bare passes in between, so a busy machine slows both alike. Prints the median step time in bare passes;
a schedule's cost is then Σ steps x cost(size), plus start-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

import stylelab
from stylelab import Config
from stylelab.engine.events import Step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evaluator import Net
from quality import bare_pass_seconds

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--losses", default="gram|gram:0.5,sliced-wasserstein:0.5")
    p.add_argument("--sizes", default="128,256,512")
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args()
    net = Net.load("avg")
    print("| style loss | size | s/step | bare pass s (around it) | step in 512-px bare passes |\n"
          "|---|---|---|---|---|")
    for spec in args.losses.split("|"):
        for size in map(int, args.sizes.split(",")):
            seconds: list[float] = []
            before = bare_pass_seconds(net, (384, 512), reps=3)
            config = Config(size=size, steps=args.steps + 1, style_loss=spec, scales=((size, args.steps + 1),))

            def on_step(s, seconds=seconds) -> None:  # steps after the first (its pass is warm-up), no reports
                if isinstance(s, Step) and s.i > 1:
                    seconds.append(s.seconds)

            stylelab.stylize(args.content, args.style, config, callback=on_step)
            after = bare_pass_seconds(net, (384, 512), reps=3)
            bare = (before + after) / 2
            step = statistics.median(seconds)
            print(f"| {spec} | {size} | {step:.3f} | {bare:.3f} | {step / bare:.3f} |", flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
