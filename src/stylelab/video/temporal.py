"""Video style transfer with temporal consistency (Ruder, Dosovitskiy & Brox, "Artistic style transfer for
videos", GCPR 2016).

    for frame in stylize_video("clip.mp4", ["style.jpg"], Config(size=256)):
        frame.image      # (1, 3, H, W) in [0,1], frame.index from 0

Frame 0 is a normal `transfer` (the whole schedule of `config`). Each later frame t starts from the previous
stylised frame warped by the optical flow from t to t-1 (`stylelab.video.flow`) and minimises the usual objective plus
the short-term temporal loss

    temporal_weight · (1/D) Σ c · (x − warp(x_{t−1}))²        (D = 3·H·W; c = Ruder's consistency mask)

for `frame_steps` steps (fewer than frame 0: the warm start is most of the way there). With `long_term` the
frames t−2 and t−4 join in with Ruder's long-term weights c_j − Σ_{k<j} c_k (clamped at 0), so a region occluded
for a frame keeps its look when it comes back. The VGG19, the style losses and the style statistics are made once
for the clip; only the content targets change per frame. The normalisers of the style loss (its value at the
content image) are those of frame 0 for every frame, so the weights mean the same across the clip.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..config import Config, ConfigError
from ..engine.events import Report, ScaleEnd
from ..engine.optimize import (
    StopRule,
    Targets,
    build_model,
    build_style_losses,
    compute_targets,
    conv_precision,
    load_inputs,
    optimize,
    pick_device,
    set_content,
    style_edge,
    transfer,
)
from ..image import ImageLike, resize, resize_long_edge, to_tensor
from ..losses.spec import GUIDED_LOSSES
from .defaults import DEFAULT_TEMPORAL_WEIGHT
from .flow import FlowEstimator, as_uint8, consistency, warp

__all__ = [
    "LONG_TERM",
    "FrameSource",
    "VideoFrame",
    "check_video_config",
    "content_frames",
    "default_frame_steps",
    "stylize_video",
]

LONG_TERM = (1, 2, 4)  # frames back the long-term loss looks at (Ruder et al.'s J)

FrameSource = str | os.PathLike | Sequence[np.ndarray | Image.Image | Tensor]


@dataclass(frozen=True)
class VideoFrame:
    """One stylised frame, as `stylize_video` yields it."""

    index: int  # from 0, within the frames given
    image: Tensor  # (1, 3, H, W) RGB in [0,1], on the CPU
    loss: float | None  # the objective at the output (temporal term included); None for a resumed frame
    seconds: float  # wall time of this frame (flow, targets, steps)
    resumed: bool = False  # taken from `done`, not computed
    steps: int = 0  # optimiser steps taken for this frame
    step_seconds: float = 0.0  # of `seconds`, in those steps and the final report


def default_frame_steps(config: Config) -> int:
    """Steps for frames after the first: a quarter of the first frame's (warm starts converge fast)."""
    return max(1, config.steps // 4)


def stylize_video(
    frames_or_path: FrameSource,
    styles: ImageLike | Sequence[ImageLike],
    config: Config = Config(),
    *,
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
    frame_steps: int | None = None,
    long_term: bool = False,
    callback: Callable[[int, Report], None] | None = None,
    done: Callable[[int], ImageLike | None] | None = None,
    flow_preset: str = "medium",
    flows: Mapping[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Iterator[VideoFrame]:
    """Stylise a clip frame by frame with temporal consistency; yields a `VideoFrame` per frame, in order.

    frames_or_path: a video file or folder/glob of frames (read with `stylelab.video.io.read_video` at
    `config.size`), or a sequence of frames (uint8 (H, W, 3) arrays, PIL images or (1, 3, H, W) tensors).
    callback(index, step) sees every optimiser step. done(index) may return an already stylised frame (resuming a
    run): it is yielded as it is and the next frame is warped from it. `flows`: precomputed (backward, forward)
    flows by (t, j), frame t against frame t-j (stylelab.video.ray computes them in parallel); others are computed."""
    check_video_config(config, temporal_weight, frame_steps)
    frame_steps = default_frame_steps(config) if frame_steps is None else frame_steps
    contents = content_frames(frames_or_path, config)
    _, style_ts = load_inputs(None, styles)
    config.blend_weights(len(style_ts))
    estimator = FlowEstimator(flow_preset)
    device = pick_device(config.device)
    model = build_model(config.weights, config.pooling, device)
    model.low_memory = config.low_memory
    losses = build_style_losses(config)
    hw = tuple(contents[0].shape[-2:])
    uint8 = [as_uint8(c) for c in contents]  # what the flow sees
    base: Targets | None = None  # style statistics and normalisers of frame 0's size, made once
    outputs: dict[int, Tensor] = {}  # stylised frames still needed for warping (t-1, t-2, t-4)

    for t, content in enumerate(contents):
        previous = done(t) if done is not None else None
        if previous is not None:
            outputs[t] = resize(to_tensor(previous, f"stylised frame {t}"), hw).clamp(0, 1)
            yield VideoFrame(t, outputs[t], None, 0.0, resumed=True)
            _forget(outputs, t)
            continue
        t0 = time.perf_counter()
        last: dict[str, float] = {}

        last["steps"], last["step_seconds"] = 0, 0.0

        def on_step(step: Report, t: int = t, last: dict[str, float] = last) -> None:
            last["step_seconds"] += step.seconds
            if isinstance(step, ScaleEnd):
                last["loss"] = step.loss
            else:
                last["steps"] += 1
            if callback is not None:
                callback(t, step)

        back = [j for j in (LONG_TERM if long_term else (1,)) if t - j in outputs]
        if not back:  # the first frame (or the first after a gap): a normal run, the whole schedule
            out = transfer(content, style_ts, config, on_step)
        else:
            if base is None:
                s_k = [resize_long_edge(s, style_edge(config, config.size)).to(device) for s in style_ts]
                base = compute_targets(model, contents[0].to(device), s_k, config, losses)
            targets = _content_targets(base, model, content.to(device), config)
            warped, weights = _temporal_terms(estimator, uint8, outputs, t, back, device, flows)
            extra = _temporal_loss(warped, weights, temporal_weight)
            x, _ = optimize(model, warped[0], targets, config, losses, frame_steps, on_step,
                            stop=StopRule(None, config.tol), extra_loss=extra)
            out = x.detach().clamp(0, 1).cpu()
        outputs[t] = out
        yield VideoFrame(t, out, last.get("loss"), time.perf_counter() - t0, steps=int(last["steps"]),
                         step_seconds=last["step_seconds"])
        _forget(outputs, t)


def check_video_config(config: Config, temporal_weight: float, frame_steps: int | None) -> None:
    """Settings a video run cannot honour, refused before any work."""
    if config.masks:
        raise ConfigError("masks are not supported for video (a mask would not follow the motion)")
    if config.color != "none":
        raise ConfigError(f"color {config.color!r} is not supported for video; use none")
    if config.tileable:
        raise ConfigError("tileable is not supported for video")
    guided = [t.label for t in config.style_loss_terms() if t.name in GUIDED_LOSSES]
    if guided:
        raise ConfigError(f"style loss {guided[0]!r} is not supported for video yet (its targets follow each "
                          "frame's layout, and a video keeps one style side per clip); use another style loss")
    if isinstance(temporal_weight, bool) or not isinstance(temporal_weight, (int, float)) \
            or not np.isfinite(temporal_weight) or temporal_weight < 0:
        raise ConfigError(f"temporal weight must be a finite number >= 0, got {temporal_weight!r}")
    if frame_steps is not None and (isinstance(frame_steps, bool) or not isinstance(frame_steps, int)
                                    or frame_steps < 1):
        raise ConfigError(f"frame steps must be an integer >= 1, got {frame_steps!r}")


def content_frames(source: FrameSource, config: Config) -> list[Tensor]:
    if isinstance(source, (str, os.PathLike)):
        from .io import read_video

        source = read_video(source, size=config.size).frames
    frames = [resize_long_edge(_frame_tensor(f, k), config.size) for k, f in enumerate(source)]
    if not frames:
        raise ConfigError("no frames to stylise")
    if any(f.shape != frames[0].shape for f in frames):
        raise ConfigError("the frames of a video must all have the same size")
    return frames


def _frame_tensor(frame: np.ndarray | Image.Image | Tensor, k: int) -> Tensor:
    if isinstance(frame, np.ndarray):
        a = frame if frame.dtype == np.uint8 else (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)
        return (torch.from_numpy(np.array(a[..., :3])).permute(2, 0, 1)[None].float() / 255).contiguous()
    return to_tensor(frame, f"frame {k}")


@torch.no_grad()
def _content_targets(base: Targets, model, content: Tensor, config: Config) -> Targets:
    """`base` with the content targets of this frame (the style side is the clip's; `base` is never deferred)."""
    assert base.pending is None
    with conv_precision(config, content.device):
        acts = model(content, set(base.content))
    targets = dataclasses.replace(base, content={}, content_power={}, content_self={})
    set_content(targets, acts)
    return targets


def _temporal_terms(estimator: FlowEstimator, frames: list[np.ndarray], outputs: dict[int, Tensor], t: int,
                    back: Sequence[int], device: torch.device,
                    flows: Mapping[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = None
                    ) -> tuple[list[Tensor], list[Tensor]]:
    """Per j in `back`: the stylised frame t-j warped to frame t, and its weights (1, 1, H, W): the consistency
    mask, and for j > 1 Ruder's long-term weights max(c_j − Σ_{k<j} c_k, 0)."""
    warped, masks = [], []
    for j in back:
        known = (flows or {}).get((t, j))
        backward, forward = known if known is not None else estimator.pair(frames[t], frames[t - j])
        warped.append(warp(outputs[t - j], backward).clamp(0, 1).to(device))
        masks.append(torch.from_numpy(consistency(forward, backward))[None, None].to(device))
    weights = [(m - sum(masks[:k], torch.zeros_like(m))).clamp_min(0) for k, m in enumerate(masks)]
    return warped, weights


def _temporal_loss(warped: list[Tensor], weights: list[Tensor], weight: float) -> Callable[[Tensor], Tensor]:
    def loss(x: Tensor) -> Tensor:
        return weight * sum(((c * (x - w) ** 2).mean() for w, c in zip(warped, weights)), start=x.new_zeros(()))
    return loss


def _forget(outputs: dict[int, Tensor], t: int) -> None:
    for k in [k for k in outputs if k <= t - max(LONG_TERM)]:
        del outputs[k]
