"""Size invariance: does one style weight mean the same at 256 px and at 512 px (multi-scale)?

    .venv/bin/python bench/size_invariance.py [--content C] [--style S] [--out docs/images/bench]

Runs the default settings at 256 px (single scale) and at 512 px with the coarse-to-fine schedule 256:200,512:100,
then measures each output (float, before 8-bit rounding, which alone adds ~0.005 to L̂s at relu1_1) by its
normalised Gram style distance and content distance with stylelab's evaluator (`compare.evaluator`) at its own
size and, for a like-for-like check, both at 256 px. Prints a markdown table and writes the two outputs side
by side.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image

from stylelab import Config
from stylelab.compare import evaluator
from stylelab.image import tensor_to_pil, to_tensor
from stylelab.optimize import transfer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--out", default=str(ROOT / "docs" / "images" / "bench"))
    args = p.parse_args()
    runs = {
        "256 px, 200 steps": Config(size=256),
        "512 px, 256:200 then 512:100": Config(size=512, scales=((256, 200), (512, 100))),
    }
    content, styles = to_tensor(args.content), [to_tensor(args.style)]
    outputs = {}
    for label, config in runs.items():
        start = time.perf_counter()
        outputs[label] = transfer(content, styles, config)  # (1, 3, H, W) float in [0,1]
        print(f"{label}: {time.perf_counter() - start:.0f} s", flush=True)
    measure = {size: evaluator(content, styles, Config(size=size), ["gram"]) for size in (256, 512)}
    print("\n| run | L̂s at own size | L̂c at own size | L̂s at 256 px | L̂c at 256 px |")
    print("|---|---|---|---|---|")
    values = []
    for (label, config), image in zip(runs.items(), outputs.values()):
        own = measure[config.size](image)
        small = measure[256](image)
        values.append(own["gram"])
        print(f"| {label} | {own['gram']:.4f} | {own['content']:.3f} | {small['gram']:.4f} | {small['content']:.3f} |")
    print(f"\nstyle distance ratio 512/256 at own size: {values[1] / values[0]:.3f} "
          f"({abs(values[1] / values[0] - 1) * 100:.0f}% apart)")
    a, b = (tensor_to_pil(x) for x in outputs.values())
    sheet = Image.new("RGB", (b.width * 2 + 8, b.height), "white")  # the 256 px output enlarged to 512 px, left
    sheet.paste(a.resize(b.size, Image.BICUBIC), (0, 0))
    sheet.paste(b, (b.width + 8, 0))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sheet.save(Path(args.out) / "size_invariance.png")


if __name__ == "__main__":
    main()
