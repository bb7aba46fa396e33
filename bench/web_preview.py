"""How much the web app's JPEG previews cost: encode time of one preview vs one optimisation step, per size.

    PYTHONPATH=src python bench/web_preview.py [--sizes 64,256,512] [--steps 4] [--device cpu]

The web runner encodes a preview every N steps with N = ceil(median encode / (0.05 * median step)) (at least 1), so the
previews cost < 5% of the optimisation; this prints both times, their ratio and the N the rule picks.
"""

from __future__ import annotations

import argparse
import io
import math
import time

from stylelab import Config, samples, stylize
from stylelab.engine.events import ScaleEnd
from stylelab.image import tensor_to_pil
from stylelab.web.worker import PREVIEW_QUALITY, PREVIEW_SHARE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,256,512")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print("size  step_s  encode_s  encode/step  N")
    for size in (int(s) for s in args.sizes.split(",")):
        steps, encodes = [], []

        def on_step(step, steps=steps, encodes=encodes):
            if isinstance(step, ScaleEnd):
                return
            steps.append(step.seconds)
            t0 = time.perf_counter()
            buf = io.BytesIO()
            tensor_to_pil(step.image).save(buf, format="JPEG", quality=PREVIEW_QUALITY)
            encodes.append(time.perf_counter() - t0)

        content, style = samples.landscape(size, size * 3 // 4), samples.swirls(size, size, seed=1)
        stylize(content, style, Config(size=size, steps=args.steps, device=args.device, multiscale=False), on_step)
        step_s, enc_s = sorted(steps)[len(steps) // 2], sorted(encodes)[len(encodes) // 2]
        n = max(1, math.ceil(enc_s / (PREVIEW_SHARE * step_s)))
        print(f"{size:4d}  {step_s:6.3f}  {enc_s:8.5f}  {enc_s / step_s:10.2%}  {n}")


if __name__ == "__main__":
    main()
