"""The floor: one bare frozen VGG19 forward to relu5_1 plus the input-gradient backward, timed per pass.

    python bench/_floor_worker.py CONTENT --size H W --passes 20 --warmup 2 --threads T --pooling avg [--channels-last]

Uses the independent network of `_evaluator` (no losses, no optimiser, weights frozen, only the input needs a
gradient, ReLUs in place as in stylelab's network: their backward needs only their output). `--channels-last`
converts the input to NHWC inside the timed pass, as stylelab does; compare.py takes the faster of the two
layouts as the floor. Prints one JSON line: {"seconds": [per-pass wall times]}.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _evaluator import STYLE_LAYERS, Net, load_rgb
from torch import Tensor


def one_pass(net: Net, x: Tensor, layer: str, channels_last: bool = False) -> None:
    inp = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    out = net.features(inp, (layer,), inplace=True)[layer]  # in-place ReLUs: less memory traffic
    torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("content")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), required=True)
    p.add_argument("--passes", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--pooling", default="avg")
    p.add_argument("--channels-last", action="store_true", help="NHWC input (and so NHWC activations)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    net = Net.load(args.pooling)
    # NCHW-contiguous leaf, as stylelab's image is: PIL-loaded pixels come NHWC-strided, and a leaf in that layout
    # made both layouts' passes ~13% slower at 512 px (docs/benchmarks.md, levers): a floor that flattered us.
    x = load_rgb(args.content, size=tuple(args.size)).contiguous().requires_grad_(True)
    deepest = STYLE_LAYERS[-1]  # relu5_1: also deeper than the content layer relu4_2
    for _ in range(args.warmup):
        one_pass(net, x, deepest, args.channels_last)
    seconds = []
    for _ in range(args.passes):
        start = time.perf_counter()
        one_pass(net, x, deepest, args.channels_last)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
