"""Flicker of video stylisation: (a) every frame stylised on its own vs (b) stylelab video (warm start from the
warped previous output + Ruder et al.'s temporal loss), on a clip made by a camera move over a still image.

    PYTHONPATH=src python bench/video.py CONTENT STYLE [--frames 24 --size 128 --steps 60 --frame-steps 15]

Measured, per method:
  - temporal warping error: mean over consecutive frame pairs of the mean squared difference between output frame
    t and output frame t-1 warped by the DIS flow of the *content* frames, on the pixels the consistency mask
    keeps (stylelab.video.flow.warping_error); also the content clip's own error, the floor a faithful video has;
  - seconds per frame (wall time of the whole clip / frames); (a) keeps the style statistics between frames (a
    style cache, as `stylelab batch` does), so only the warm start and fewer steps separate (b) from it;
  - style distance: the independent evaluator's (bench/_evaluator.py) normalised Gram and sliced-W2 distances of
    each output frame to the style, references built per content frame (1 = the content frame itself), mean.
Writes a strip of consecutive frames of (a) and (b) with their warped differences, a side-by-side mp4 and a JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evaluator import STYLE_LAYERS, Net, gram, sorted_projections, sw2

from stylelab import Config, stylize, stylize_video
from stylelab.image import to_tensor
from stylelab.jobs.spec import StyleCache
from stylelab.video.flow import FlowEstimator, consistency, warp, warping_error
from stylelab.video.io import write_video


def camera_clip(path: str, n: int, size: int, pan: float = 1.0, zoom: float = 0.005) -> list[Image.Image]:
    """n frames (size x 3/4 size) of a camera panning `pan` output px right and down 0.5 px per frame while
    zooming in by `zoom` per frame, over the image at `path` (crops resampled with Lanczos)."""
    im = Image.open(path).convert("RGB")
    w, h = size, round(size * 3 / 4)
    scale = 0.5 * min(im.width / w, im.height / h)  # source px per output px: the window is half the image
    frames = []
    for k in range(n):
        s = scale * (1 - zoom) ** k
        cx = im.width * 0.1 + w * scale / 2 + scale * pan * k
        cy = im.height * 0.15 + h * scale / 2 + scale * 0.5 * k
        box = (cx - w * s / 2, cy - h * s / 2, cx + w * s / 2, cy + h * s / 2)
        if box[0] < 0 or box[1] < 0 or box[2] > im.width or box[3] > im.height:
            raise SystemExit(f"the camera leaves the image at frame {k}: fewer --frames or a larger image")
        frames.append(im.resize((w, h), Image.Resampling.LANCZOS, box=box))
    return frames


@torch.no_grad()
def style_distances(net: Net, out: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> tuple[float, float]:
    """(gram, sw2) of `out`, each layer divided by the content frame's value, mean over the five layers."""
    fo, fc, fs = (net.features(x, STYLE_LAYERS) for x in (out, content, style))
    g = np.mean([float(((gram(fo[lay]) - gram(fs[lay])) ** 2).sum() / ((gram(fc[lay]) - gram(fs[lay])) ** 2).sum())
                 for lay in STYLE_LAYERS])
    w = np.mean([sw2(sorted_projections(fo[lay], lay), sorted_projections(fs[lay], lay))
                 / sw2(sorted_projections(fc[lay], lay), sorted_projections(fs[lay], lay)) for lay in STYLE_LAYERS])
    return float(g), float(w)


def strip(rows: list[tuple[str, list[torch.Tensor]]], path: Path) -> None:
    tiles = [[Image.fromarray((t[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8))
              for t in frames] for _, frames in rows]
    w, h = tiles[0][0].size
    label = 16
    sheet = Image.new("RGB", (w * len(tiles[0]), (h + label) * len(tiles)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, ((name, _), row) in enumerate(zip(rows, tiles)):
        draw.text((4, r * (h + label) + 2), name, fill="black")
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * w, r * (h + label) + label))
    sheet.save(path, quality=90)


def flicker(frames: list[torch.Tensor], contents: list[np.ndarray], est: FlowEstimator, t: int) -> torch.Tensor:
    """|frame t − warp(frame t−1)| on consistent pixels, ×4 so it shows (inconsistent pixels grey)."""
    backward, forward = est.pair(contents[t], contents[t - 1])
    mask = torch.from_numpy(consistency(forward, backward))
    d = ((frames[t] - warp(frames[t - 1], backward)).abs() * 4).clamp(0, 1)
    return d * mask + 0.5 * (1 - mask)


def clip_arguments(ap: argparse.ArgumentParser, steps: int, frame_steps: int) -> argparse.ArgumentParser:
    """The clip and schedule arguments this benchmark and bench/video_ray.py share."""
    ap.add_argument("content", nargs="?", default="../shared/data/content/tubingen.jpg")
    ap.add_argument("style", nargs="?", default="../shared/data/styles/starry_night.jpg")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--frame-steps", type=int, default=frame_steps)
    return ap


def main() -> None:
    ap = clip_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), steps=60, frame_steps=15)
    ap.add_argument("--temporal-weight", type=float, nargs="+", default=[100.0],
                    help="one (b) run per weight; the strip and mp4 show the first")
    ap.add_argument("--out", default="docs/images/video")
    args = ap.parse_args()

    pil = camera_clip(args.content, args.frames, args.size)
    contents = [to_tensor(p) for p in pil]
    uint8 = [np.asarray(p) for p in pil]
    style = to_tensor(args.style)
    config = Config(size=args.size, steps=args.steps)
    est = FlowEstimator()

    t0 = time.perf_counter()
    cache = StyleCache(4)  # (a) at its fastest: the style's statistics computed once, as `stylelab batch` does
    independent = [to_tensor(stylize(p, style, config, style_cache=cache)) for p in pil]
    sec_a = (time.perf_counter() - t0) / len(pil)
    runs = []
    for weight in args.temporal_weight:
        t0 = time.perf_counter()
        frames = [f.image for f in stylize_video(uint8, [style], config, frame_steps=args.frame_steps,
                                                 temporal_weight=weight)]
        runs.append((f"video_tw{weight:g}", frames, (time.perf_counter() - t0) / len(pil)))
    temporal = runs[0][1]

    net = Net.load("max")
    style_ref = torch.nn.functional.interpolate(style, scale_factor=args.size / max(style.shape[-2:]),
                                                mode="bicubic", antialias=True).clamp(0, 1)
    result: dict = {"frames": args.frames, "size": list(contents[0].shape[-2:]), "steps": args.steps,
                    "frame_steps": args.frame_steps, "content_warping_error": warping_error(contents, uint8, est)}
    for name, frames, sec in (("independent", independent, sec_a), *runs):
        d = [style_distances(net, f, c, style_ref) for f, c in zip(frames, contents)]
        result[name] = {"warping_error": warping_error(frames, uint8, est), "seconds_per_frame": sec,
                        "gram": float(np.mean([x[0] for x in d])), "sw2": float(np.mean([x[1] for x in d]))}
        if name != "independent":
            a, b = result["independent"], result[name]
            b["error_over_independent"] = b["warping_error"] / a["warping_error"]
            b["error_over_content"] = b["warping_error"] / result["content_warping_error"]
            b["seconds_over_independent"] = b["seconds_per_frame"] / a["seconds_per_frame"]
    print(json.dumps(result, indent=2))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ks = range(args.frames // 2, args.frames // 2 + 4)
    strip([("content", [contents[k] for k in ks]),
           ("(a) independent frames", [independent[k] for k in ks]),
           ("(a) |x_t - warp(x_t-1)| x4", [flicker(independent, uint8, est, k) for k in ks]),
           (f"(b) stylelab video, tw {args.temporal_weight[0]:g}", [temporal[k] for k in ks]),
           ("(b) |x_t - warp(x_t-1)| x4", [flicker(temporal, uint8, est, k) for k in ks])], out / "strip.jpg")
    side = [torch.cat([c, a_, b_], dim=-1) for c, a_, b_ in zip(contents, independent, temporal)]
    write_video(side, out / "content_independent_video.mp4", 12)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
