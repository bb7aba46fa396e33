"""Where the time of one stylelab step goes: torch.profiler over a few steps (CPU, single scale).

    .venv/bin/python bench/profile_step.py [--size 512] [--steps 4]

Prints the operators by self CPU time and a coarse split: convolution forward, convolution backward, the style
statistics and losses (matrix products, reductions), the optimiser and the rest.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

import stylelab
from stylelab import Config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GROUPS = {  # operator name fragment -> group (first match wins)
    "convolution_backward": "conv backward", "conv": "conv forward",
    "avg_pool2d_backward": "pool/relu backward", "threshold_backward": "pool/relu backward",
    "relu": "relu/pool forward", "pool": "relu/pool forward",
    "mm": "style statistics (matmul)", "addmm": "style statistics (matmul)",
    "lbfgs": "optimizer", "dot": "optimizer", "add_": "elementwise", "mul": "elementwise", "sub": "elementwise",
}


def group(name: str) -> str:
    for key, label in GROUPS.items():
        if key in name.lower():
            return label
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args()
    warm = Config(size=args.size, steps=2, multiscale=False)
    stylelab.stylize(args.content, args.style, warm)  # loads weights, warms allocator and kernels
    steps: list[stylelab.Step] = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        stylelab.stylize(args.content, args.style, Config(size=args.size, steps=args.steps, multiscale=False),
                         steps.append)
    step_time = sum(s.seconds for s in steps)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    split: dict[str, float] = defaultdict(float)
    for e in events:
        split[group(e.key)] += e.self_cpu_time_total
    print(f"{args.size} px, {args.steps} profiled steps, {step_time / args.steps:.3f} s/step inside the steps "
          f"(profiled run includes targets and set-up)\n")
    print("| group | share of self CPU time |")
    print("|---|---|")
    for label, t in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {100 * t / total:.1f}% |")
    print("\n| operator | calls | self CPU s | share |")
    print("|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:14]:
        print(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e6:.2f} | "
              f"{100 * e.self_cpu_time_total / total:.1f}% |")


if __name__ == "__main__":
    main()
