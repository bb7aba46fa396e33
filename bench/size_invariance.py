"""Size invariance: does one style weight mean the same at 256 px and at 512 px (multi-scale), and 512 vs 1024?

    .venv/bin/python bench/size_invariance.py [--content C] [--style S] [--out docs/images/bench] [--no-1024]

Two runs with the default settings and an explicit coarse-to-fine schedule, each of whose first scale is itself a
default single-scale run (the same pixels as `Config(size=first)`), so two runs give four outputs:

    512 px run, 256:200 then 512:100    -> the 256 px output (its first scale) and the 512 px multi-scale output
    1024 px run, 512:200 then 1024:100  -> the 512 px output (its first scale) and the 1024 px multi-scale output

Each output (float, clamped to [0,1], before 8-bit rounding, which alone adds ~0.005 to L̂s at relu1_1) is
measured by stylelab's evaluator (`compare.evaluator`) at its own size: the normalised Gram style distance, its
five layers one by one (each layer's L̂, 1 at the content image), and the content distance. Prints markdown tables
and writes the 256 px and 512 px multi-scale outputs side by side (the 256 px one enlarged).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from PIL import Image
from torch import Tensor

from stylelab import Config
from stylelab.analysis.compare import evaluator
from stylelab.config import DEFAULT_STYLE_LAYERS
from stylelab.engine.optimize import transfer
from stylelab.image import tensor_to_pil, to_tensor

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def run(content: Tensor, styles: list[Tensor], config: Config) -> dict[str, tuple[int, Tensor]]:
    """One coarse-to-fine run -> {label: (size, image)} for its first scale's result and its final output."""
    first_size, first_steps = config.scales[0]
    first = {}

    def keep_first(step) -> None:
        if step.scale == 0 and step.i == step.n:
            first["image"] = step.image.detach().clamp(0, 1).cpu().clone()

    start = time.perf_counter()
    out = transfer(content, styles, config, keep_first)
    schedule = " then ".join(f"{s}:{n}" for s, n in config.scales)
    print(f"{schedule}: {time.perf_counter() - start:.0f} s", flush=True)
    return {f"{first_size} px, {first_steps} steps": (first_size, first["image"]),
            f"{config.size} px, {schedule}": (config.size, out)}


def measure(content: Tensor, styles: list[Tensor], outputs: dict[str, tuple[int, Tensor]]
            ) -> dict[str, dict[str, float]]:
    """label -> {'style', 'content', and one L̂ per style layer} at the output's own size."""
    result: dict[str, dict[str, float]] = {label: {} for label in outputs}
    for size in sorted({size for size, _ in outputs.values()}):
        base = Config(size=size)
        whole = evaluator(content, styles, base, ["gram"])
        layers = {layer: evaluator(content, styles, dataclasses.replace(base, style_layers=(layer,)), ["gram"])
                  for layer in DEFAULT_STYLE_LAYERS}
        for label, (own, image) in outputs.items():
            if own != size:
                continue
            d = whole(image)
            result[label] = {"style": d["gram"], "content": d["content"],
                             **{layer: f(image)["gram"] for layer, f in layers.items()}}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    p.add_argument("--out", default=str(ROOT / "docs" / "images" / "bench"))
    p.add_argument("--no-1024", action="store_true", help="only the 256 vs 512 px comparison (5 min, not 25)")
    args = p.parse_args()
    content, styles = to_tensor(args.content), [to_tensor(args.style)]
    outputs = run(content, styles, Config(size=512, scales=((256, 200), (512, 100))))
    if not args.no_1024:
        outputs.update(run(content, styles, Config(size=1024, scales=((512, 200), (1024, 100)))))
    values = measure(content, styles, outputs)

    print("\n| output | L̂s (all layers) | " + " | ".join(DEFAULT_STYLE_LAYERS) + " | L̂c |")
    print("|---|---|" + "---|" * len(DEFAULT_STYLE_LAYERS) + "---|")
    for label, v in values.items():
        print(f"| {label} | {v['style']:.4f} | " + " | ".join(f"{v[layer]:.4f}" for layer in DEFAULT_STYLE_LAYERS)
              + f" | {v['content']:.3f} |")
    labels = list(values)
    pairs = [(labels[0], labels[1])] + ([(labels[2], labels[3])] if len(labels) == 4 else [])
    print()
    for small, big in pairs:
        ratio = values[big]["style"] / values[small]["style"]
        print(f"style distance ratio ({big}) / ({small}): {ratio:.3f} ({abs(ratio - 1) * 100:.0f}% apart)")

    a, b = (tensor_to_pil(image) for _, image in list(outputs.values())[:2])
    sheet = Image.new("RGB", (b.width * 2 + 8, b.height), "white")  # the 256 px output enlarged to 512 px, left
    sheet.paste(a.resize(b.size, Image.BICUBIC), (0, 0))
    sheet.paste(b, (b.width + 8, 0))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sheet.save(Path(args.out) / "size_invariance.png")


if __name__ == "__main__":
    main()
