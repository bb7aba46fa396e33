"""L-BFGS history size vs result: total loss after 25/50/100 steps at 256 px for history 20 and 50.

    .venv/bin/python bench/lbfgs_history.py [--content C] [--style S]

The history costs 2 image-sized float32 vectors per entry (at 2048x1536: 75 MB each), so a shorter one is worth
it if the loss does not suffer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import stylelab
from stylelab import Config

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    args = p.parse_args()
    print("| history | loss at step 25 | 50 | 100 |\n|---|---|---|---|")
    for history in (20, 50):
        steps: list[stylelab.Step] = []
        stylelab.stylize(args.content, args.style, Config(size=256, steps=100, lbfgs_history=history), steps.append)
        print(f"| {history} | " + " | ".join(f"{steps[k - 1].loss:.4f}" for k in (25, 50, 100)) + " |", flush=True)


if __name__ == "__main__":
    main()
