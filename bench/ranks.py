"""Row sorting on the CPU: torch.sort against stylelab.losses.ranks (NumPy's argsort split over torch's threads).

    .venv/bin/python bench/ranks.py [--rows 64] [--cols 196608] [--reps 7]

The shape is what sliced-W2 sorts every step at relu1_1 of a 512x384 output: 64 projections x 196,608 positions.
Prints the median seconds of each, same input, after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stylelab.losses.ranks import argsort_rows


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
    x = torch.randn(args.rows, args.cols)
    torch_s = median_seconds(lambda: x.argsort(dim=1), args.reps)
    ours_s = median_seconds(lambda: argsort_rows(x), args.reps)
    print(f"| ({args.rows}, {args.cols}), {torch.get_num_threads()} threads | torch argsort {torch_s:.3f} s "
          f"| stylelab.losses.ranks.argsort_rows {ours_s:.3f} s | {torch_s / ours_s:.1f}x |")


if __name__ == "__main__":
    main()
