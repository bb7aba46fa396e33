"""What one optimiser step costs, per style loss, optimiser and size: against a Gram step and against bare passes.

    .venv/bin/python bench/step_cost.py [--losses "gram|gram:0.5,sliced-wasserstein:0.5|..."] [--sizes 256,512]
        [--optimizers lbfgs,adam] [--steps 6] [--rounds 3]
    NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" .venv/bin/python bench/step_cost.py ...   # no AVX-512

A bare pass = one VGG19 forward to relu5_1 + input-gradient backward, the least any method pays per step. For each
size and round, every (loss, optimiser) runs a short single-scale stylelab run in this process (`steps` steps
after one warm-up step, which is not counted), one after the other, and bare passes at that size and at 512x384
are timed between runs; so the losses are interleaved and a busy machine slows them alike. Prints the median step
over all rounds: in seconds, over a Gram step with the same optimiser, over a bare pass at the same size, and in
512x384 bare passes (the unit of bench/passes.py); and the mean step (under Adam, the first use of each of
sliced-W2's direction sets costs more: the mean counts those steps, the median does not).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image

import stylelab
from stylelab import Config
from stylelab.engine.events import Report, Step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evaluator import Net
from quality import bare_pass_seconds

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_LOSSES = ("gram|gram:0.5,sliced-wasserstein:0.5|sliced-wasserstein|histogram"
                  "|sliced-wasserstein(bins=0)|histogram(bins=0)")


def output_shape(content: str, size: int) -> tuple[int, int]:
    """(H, W) of an output whose long edge is `size`, in the content's aspect ratio."""
    w, h = Image.open(content).size
    scale = size / max(w, h)
    return max(1, round(h * scale)), max(1, round(w * scale))


def step_seconds(content: str, style: str, spec: str, optimizer: str, size: int, steps: int) -> list[float]:
    config = Config(size=size, steps=steps + 1, style_loss=spec, optimizer=optimizer, scales=((size, steps + 1),))
    seconds: list[float] = []

    def on_report(report: Report) -> None:  # steps after the first: its pass is the warm-up
        if isinstance(report, Step) and report.i > 1:
            seconds.append(report.seconds)

    stylelab.stylize(content, style, config, callback=on_report)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--losses", default=DEFAULT_LOSSES, help="specs separated by |")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--optimizers", default="lbfgs")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    net = Net.load("avg")
    specs = args.losses.split("|")
    optimizers = args.optimizers.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    print("| style loss | optimiser | size | s/step | / Gram step | / bare pass at this size | 512x384 bare passes "
          "| mean s/step |\n|---|---|---|---|---|---|---|---|")
    for size in map(int, args.sizes.split(",")):
        hw = output_shape(args.content, size)
        steps: dict[tuple[str, str], list[float]] = defaultdict(list)
        bare, bare512 = [], []
        for _ in range(args.rounds):
            for optimizer in optimizers:
                for spec in specs:
                    steps[spec, optimizer] += step_seconds(args.content, args.style, spec, optimizer, size, args.steps)
                    bare.append(bare_pass_seconds(net, hw, reps=2))
                    bare512.append(bare_pass_seconds(net, (384, 512), reps=2))
        b, b512 = statistics.median(bare), statistics.median(bare512)
        for optimizer in optimizers:
            gram = statistics.median(steps["gram", optimizer]) if ("gram", optimizer) in steps else float("nan")
            for spec in specs:
                s, mean = statistics.median(steps[spec, optimizer]), statistics.mean(steps[spec, optimizer])
                print(f"| {spec} | {optimizer} | {size} ({hw[1]}x{hw[0]}) | {s:.3f} | {s / gram:.2f} | {s / b:.2f} "
                      f"| {s / b512:.3f} | {mean:.3f} |", flush=True)
        print(f"| bare pass | | {size} | {b:.3f} | | 1 | {b / b512:.3f} | |", flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
