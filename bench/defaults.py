"""Evidence for the defaults: style-weight sweep and L-BFGS vs Adam, on one content/style pair.

    python bench/defaults.py [--content C] [--style S] [--size 256] [--steps 200] [--out docs/images/bench]

Prints markdown tables (normalised content / style loss at several steps, median s/step) and writes a labelled
grid of the outputs. Defaults use ../shared/data (Tübingen x The Starry Night).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from PIL import Image, ImageDraw

import stylelab
from stylelab import Config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def run(content: str, style: str, config: Config) -> tuple[Image.Image, list[stylelab.Step], float]:
    steps: list[stylelab.Step] = []
    start = time.perf_counter()
    image = stylelab.stylize(content, style, config, steps.append)
    return image, steps, time.perf_counter() - start


def row(label: str, steps: list[stylelab.Step], total: float, marks: list[int]) -> str:
    cells = [f"{steps[m - 1].terms['content']:.3f} / {steps[m - 1].terms['style']:.4f}" for m in marks]
    per_step = statistics.median(s.seconds for s in steps)
    return f"| {label} | " + " | ".join(cells) + f" | {per_step:.3f} | {total:.0f} |"


def grid(images: list[tuple[str, Image.Image]], path: Path) -> None:
    w, h = images[0][1].size
    sheet = Image.new("RGB", (w * len(images), h + 18), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, im) in enumerate(images):
        sheet.paste(im, (k * w, 18))
        draw.text((k * w + 4, 3), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", default=str(ROOT / "docs" / "images" / "bench"))
    args = p.parse_args()
    base = Config(size=args.size, steps=args.steps)
    marks = sorted({m for m in (25, 50, 100, args.steps) if m <= args.steps})
    header = "| run | " + " | ".join(f"step {m}: L̂c / L̂s" for m in marks) + " | s/step | total s |"
    sep = "|---" * (len(marks) + 3) + "|"
    print(f"content={Path(args.content).name} style={Path(args.style).name} size={args.size} steps={args.steps}\n")

    print("Style weight sweep (L-BFGS, content init):\n")
    print(header + "\n" + sep)
    shots = []
    for beta in (1.0, 10.0, 100.0):
        image, steps, total = run(args.content, args.style, dataclasses.replace(base, style_weight=beta))
        print(row(f"style weight {beta:g}", steps, total, marks), flush=True)
        shots.append((f"style weight {beta:g}", image))
    grid(shots, Path(args.out) / "style_weight.png")

    print("\nOptimiser (style weight 10):\n")
    print(header + "\n" + sep)
    shots = []
    for optimizer in ("lbfgs", "adam"):
        image, steps, total = run(args.content, args.style, dataclasses.replace(base, optimizer=optimizer))
        print(row(optimizer, steps, total, marks), flush=True)
        shots.append((optimizer, image))
    grid(shots, Path(args.out) / "optimizer.png")


if __name__ == "__main__":
    main()
