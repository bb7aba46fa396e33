"""What stylising a clip in parallel chunks on Ray costs in consistency: `stylize_video` (one chain of warm
starts) against `stylize_video_ray` with 2 chunks and a few warm-up frames per chunk, on bench/video.py's clip.

    PYTHONPATH=src python bench/video_ray.py CONTENT STYLE [--frames 24 --size 128 --steps 80 --frame-steps 20
                                                           --overlap 0 2]

Per method: the temporal warping error (as bench/video.py) over all pairs, over the pairs at a chunk border (the
first own frame of a chunk against the frame before it) and over the other pairs; wall seconds per frame; the
independent evaluator's style distances. Ray: a local cluster of 2 CPUs, each chunk 1 CPU and 1 torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evaluator import Net
from video import camera_clip, clip_arguments, style_distances

from stylelab import Config, stylize_video, stylize_video_ray
from stylelab.image import to_tensor
from stylelab.video.flow import FlowEstimator, pair_warping_errors
from stylelab.video.ray import chunk_plan


def main() -> None:
    ap = clip_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), steps=80, frame_steps=20)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--overlap", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()

    import ray

    pil = camera_clip(args.content, args.frames, args.size)
    uint8 = [np.asarray(p) for p in pil]
    contents = [to_tensor(p) for p in pil]
    style = to_tensor(args.style)
    config = Config(size=args.size, steps=args.steps)
    kwargs = {"frame_steps": args.frame_steps}
    est = FlowEstimator()
    runs = {}
    t0 = time.perf_counter()
    runs["sequential"] = ([f.image for f in stylize_video(uint8, [style], config, **kwargs)], [],
                          (time.perf_counter() - t0) / args.frames)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for overlap in args.overlap:
            borders = [a for _, a, _ in chunk_plan(args.frames, args.chunks, overlap)][1:]
            t0 = time.perf_counter()
            frames = [f.image for f in stylize_video_ray(uint8, [style], config, chunks=args.chunks, overlap=overlap,
                                                         **kwargs)]
            runs[f"ray, {args.chunks} chunks, overlap {overlap}"] = (frames, borders,
                                                                    (time.perf_counter() - t0) / args.frames)
    finally:
        ray.shutdown()

    net = Net.load("max")
    style_ref = torch.nn.functional.interpolate(style, scale_factor=args.size / max(style.shape[-2:]),
                                                mode="bicubic", antialias=True).clamp(0, 1)
    result: dict = {"frames": args.frames, "size": list(contents[0].shape[-2:]), "steps": args.steps,
                    "frame_steps": args.frame_steps}
    for name, (frames, borders, sec) in runs.items():
        errors = pair_warping_errors(frames, uint8, est)
        at_border = [errors[a - 1] for a in borders]  # pair (a-1, a) is errors[a-1]
        inside = [e for t, e in enumerate(errors, 1) if t not in borders]
        d = [style_distances(net, f, c, style_ref) for f, c in zip(frames, contents)]
        result[name] = {"warping_error": float(np.mean(errors)), "border_pairs": borders,
                        "border_error": float(np.mean(at_border)) if at_border else None,
                        "other_pairs_error": float(np.mean(inside)), "seconds_per_frame": sec,
                        "gram": float(np.mean([x[0] for x in d])), "sw2": float(np.mean([x[1] for x in d]))}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
