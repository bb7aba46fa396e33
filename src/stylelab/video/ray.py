"""`stylelab video --ray`: a clip stylised on Ray, in parallel (needs the optional extra `stylelab[ray]`).

    for frame in stylize_video_ray("clip.mp4", ["style.jpg"], Config(size=256), chunks=4, overlap=2):
        ...                                          # VideoFrames in order, as stylize_video yields them

1. The optical flow of every frame pair the temporal loss needs, forward and backward: one Ray task per pair, all
   at once (they depend on the content frames only).
2. The frames cut into `chunks` consecutive ranges, each stylised by `stylize_video` in its own task, all at once.
   A chunk starts `overlap` frames before its range (a warm-up, not kept) so that by its first own frame its
   chain of warm starts has settled; still, its first frame is not warped from the previous chunk's last one, so
   the pair at each border is less consistent than the rest (bench/video.py measures by how much).
Frames travel as uint8 arrays through the object store: the workers need no shared filesystem.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from ..config import Config, ConfigError
from ..engine.optimize import load_inputs
from ..image import ImageLike
from .flow import FlowEstimator, as_uint8
from .temporal import (
    DEFAULT_TEMPORAL_WEIGHT,
    LONG_TERM,
    FrameSource,
    VideoFrame,
    check_video_config,
    content_frames,
    stylize_video,
)

__all__ = ["chunk_plan", "stylize_video_ray"]


def chunk_plan(n: int, chunks: int, overlap: int, start: int = 0) -> list[tuple[int, int, int]]:
    """(warm-up start, own start, end) of each chunk: frames `start`..n-1 in `chunks` consecutive ranges as equal
    as can be, each run from `overlap` frames before its own (never before frame 0)."""
    if chunks < 1 or overlap < 0:
        raise ConfigError(f"chunks must be >= 1 and overlap >= 0, got {chunks} and {overlap}")
    chunks = max(1, min(chunks, n - start))
    bounds = [start + round(k * (n - start) / chunks) for k in range(chunks + 1)]
    return [(max(0, a - overlap), a, b) for a, b in itertools.pairwise(bounds) if b > a]


def stylize_video_ray(
    frames_or_path: FrameSource,
    styles: ImageLike | Sequence[ImageLike],
    config: Config = Config(),
    *,
    chunks: int | None = None,
    overlap: int = 2,
    start: int = 0,
    address: str | None = None,
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
    frame_steps: int | None = None,
    long_term: bool = False,
    flow_preset: str = "medium",
    previous: torch.Tensor | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Iterator[VideoFrame]:
    """Like `stylize_video` (same settings), on Ray: yields frames `start`.. in order, a chunk at a time.
    `chunks`: default the cluster's CPUs; each chunk task takes 1 CPU and 1 torch thread. `address` as for
    `RayActors` (None: a local Ray, or the one this process joined). `previous`: the stylised frame start-1 of a
    resumed run, which the first chunk then goes on from (warped) instead of warming up. on_chunk(done, total)
    after each chunk."""
    from ..jobs.executors import _ray

    check_video_config(config, temporal_weight, frame_steps)
    if chunks is not None:
        chunk_plan(1, chunks, overlap)  # refused before any work
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    contents = [as_uint8(c) for c in content_frames(frames_or_path, config)]
    _, style_ts = load_inputs(None, styles)
    config.blend_weights(len(style_ts))
    n = len(contents)
    if start >= n:
        return
    plan = chunk_plan(n, chunks if chunks is not None else int(ray.cluster_resources().get("CPU", 1)), overlap,
                      start)
    first = None
    if previous is not None and start > 0:  # the first chunk goes on from the kept frame before it
        first = previous.detach().float().cpu()
        plan[0] = (start - 1, start, plan[0][2])
    frame_refs = [ray.put(c) for c in contents]
    flow_task = ray.remote(num_cpus=1)(_flow_pair)
    back = LONG_TERM if long_term else (1,)
    pairs = sorted({(t, j) for w, _, end in plan for t in range(w + 1, end) for j in back if t - j >= w})
    flows = {(t, j): flow_task.remote(frame_refs[t], frame_refs[t - j], flow_preset) for t, j in pairs}
    chunk_task = ray.remote(num_cpus=1)(_chunk)
    kwargs = {"temporal_weight": temporal_weight, "frame_steps": frame_steps, "long_term": long_term}
    refs = [chunk_task.remote([frame_refs[t] for t in range(w, end)], style_ts, config, kwargs,
                              {(t - w, j): ref for (t, j), ref in flows.items() if w <= t - j and t < end}, a - w,
                              first if k == 0 else None)
            for k, (w, a, end) in enumerate(plan)]
    for k, ((_, a, _), ref) in enumerate(zip(plan, refs)):
        try:
            outputs = ray.get(ref)
        except ray.exceptions.RayError as exc:
            for r in refs[k + 1:]:
                ray.cancel(r, force=True)
            raise RuntimeError("a Ray video chunk failed: " + " ".join(str(exc).split())[:300]) from None
        for i, (image, loss, seconds, steps, step_seconds) in enumerate(outputs):
            yield VideoFrame(a + i, torch.from_numpy(image.copy()), loss, seconds, steps=steps,
                             step_seconds=step_seconds)
        if on_chunk is not None:
            on_chunk(k + 1, len(plan))


def _flow_pair(frame: np.ndarray, previous: np.ndarray, preset: str) -> tuple[np.ndarray, np.ndarray]:
    """(backward, forward) flow between a frame and an earlier one (stylelab.flow.FlowEstimator.pair)."""
    return FlowEstimator(preset).pair(frame, previous)


def _chunk(frame_refs: list, styles: list[torch.Tensor], config: Config, kwargs: dict, flow_refs: dict,
           own_from: int, first: torch.Tensor | None) -> list[tuple[np.ndarray, float | None, float, int, float]]:
    """One chunk, in a Ray task: `stylize_video` of its frames with the precomputed flows (and `first`, when
    given, as its frame 0, already stylised); the frames from `own_from` on (the rest was warm-up) as (float32
    image (1, 3, H, W), loss, seconds, steps, step seconds)."""
    import ray

    torch.set_num_threads(1)
    frames = ray.get(frame_refs)
    flows = dict(zip(flow_refs, ray.get(list(flow_refs.values()))))
    out = []
    done = None if first is None else (lambda t: first if t == 0 else None)
    for f in stylize_video(frames, styles, config, flows=flows, done=done, **kwargs):
        if f.index >= own_from:
            out.append((f.image.numpy(), f.loss, f.seconds, f.steps, f.step_seconds))
    return out
