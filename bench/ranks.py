"""Ranks of every row on the CPU: torch.sort, stylelab's NumPy sort, and the sort-free histogram ranks.

    .venv/bin/python bench/ranks.py [--rows 64] [--cols 196608] [--reps 7]
    NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" .venv/bin/python bench/ranks.py   # NumPy without AVX-512

The shape is what sliced-W2 ranks every step at relu1_1 of a 512x384 output: 64 projections x 196,608 positions.
Prints the median seconds of: torch's argsort; stylelab.losses.ranks.argsort_rows (NumPy's argsort split over
torch's threads); and two whole 1-D transport losses, value and gradient, on the same rows against a target of
sorted rows: by the sort (ranks.sorted_match + backward) and by histogram ranks (binned.transport + backward).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from stylelab.losses import binned
from stylelab.losses.ranks import argsort_rows, sorted_match
from stylelab.losses.transport import quantiles


def median_seconds(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--cols", type=int, default=196_608)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.cols, generator=g)
    q = (torch.randn(args.rows, args.cols, generator=g) * 1.5 + 0.3).sort(dim=1).values

    def by_sort() -> None:
        leaf = x.clone().requires_grad_(True)
        sorted_match(leaf, q).backward()

    def by_histogram() -> None:
        leaf = x.clone().requires_grad_(True)
        binned.transport(leaf, lambda c: quantiles(q, c)).backward()

    torch_s = median_seconds(lambda: x.argsort(dim=1), args.reps)
    numpy_s = median_seconds(lambda: argsort_rows(x), args.reps)
    sort_loss = median_seconds(by_sort, args.reps)
    hist_loss = median_seconds(by_histogram, args.reps)
    core = np._core._multiarray_umath  # the targets NumPy was built for, less those turned off at run time
    dispatch = [t for t in core.__cpu_dispatch__ if core.__cpu_features__.get(t)] or ["baseline"]
    print(f"| ({args.rows}, {args.cols}), {torch.get_num_threads()} threads, NumPy {np.__version__} "
          f"{' '.join(dispatch)} | torch argsort {torch_s:.3f} s | NumPy argsort {numpy_s:.3f} s "
          f"| loss by sort {sort_loss:.3f} s | loss by histogram {hist_loss:.3f} s |")


if __name__ == "__main__":
    main()
