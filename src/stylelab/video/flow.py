"""Optical flow between content frames, warping, and Ruder et al.'s consistency mask (GCPR 2016).

Conventions (those of OpenCV): a flow is a float32 array (H, W, 2) of (dx, dy) in pixels, pixel centres at
integer coordinates. `flow(a, b)` maps each pixel p of `a` to where it is in `b`: a(p) ≈ b(p + flow[p]).
So with the backward flow ŵ = flow(frame_t, frame_t-1), `warp(frame_t-1, ŵ)` ≈ frame_t.

    estimator = FlowEstimator("medium")        # OpenCV DIS flow (CPU, no weights), made once, reused
    backward, forward = estimator.pair(frame_t, frame_prev)
    mask = consistency(forward, backward)      # (H, W) in {0, 1}: 1 where the warp can be trusted
    warped = warp(image_prev, backward)        # torch.grid_sample, bilinear, border padding

Needs `opencv-python-headless` (the `stylelab[video]` extra); imported only when a flow is computed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import StylelabError
from .defaults import FLOW_PRESETS

__all__ = [
    "ExtraMissing",
    "FlowEstimator",
    "as_uint8",
    "consistency",
    "pair_warping_errors",
    "sample_grid",
    "warp",
    "warping_error",
]

# DIS presets, fast to accurate. OpenCV ships ultrafast, fast and medium; "fine" is medium refined down to full
# resolution (finest scale 0, patch stride 2, 10 variational iterations), about 3x its time.
# Ruder et al. 2016, section 3.1: forward-backward disagreement and motion-boundary thresholds.
FB_RATIO, FB_OFFSET = 0.01, 0.5
MB_RATIO, MB_OFFSET = 0.01, 0.002


class ExtraMissing(StylelabError, ImportError):
    """An optional dependency of a command is not installed."""


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ExtraMissing("video needs OpenCV: pip install 'stylelab[video]'") from None
    return cv2


class FlowEstimator:
    """OpenCV's DIS optical flow (Kroeger et al. 2016) on grey frames; one instance serves every frame pair."""

    def __init__(self, preset: str = "medium") -> None:
        if preset not in FLOW_PRESETS:
            raise StylelabError(f"unknown flow preset {preset!r}; choose one of: {', '.join(FLOW_PRESETS)}")
        cv2 = _cv2()
        code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST}
        self._dis = cv2.DISOpticalFlow_create(code.get(preset, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM))
        if preset == "fine":
            self._dis.setFinestScale(0)
            self._dis.setPatchStride(2)
            self._dis.setVariationalRefinementIterations(10)
        self._cv2 = cv2

    def __call__(self, a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> np.ndarray:
        """Flow from frame `a` to frame `b` (each (H, W, 3) uint8 RGB, (H, W) grey, or a (1, 3, H, W) tensor in
        [0,1]) -> (H, W, 2) float32, a(p) ≈ b(p + flow[p])."""
        ga, gb = self._grey(a), self._grey(b)
        if ga.shape != gb.shape:
            raise StylelabError(f"frames of different sizes: {ga.shape[::-1]} and {gb.shape[::-1]}")
        return self._dis.calc(ga, gb, None).astype(np.float32, copy=False)

    def pair(self, frame: np.ndarray | Tensor, prev: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(backward, forward): flow(frame -> prev) and flow(prev -> frame)."""
        return self(frame, prev), self(prev, frame)

    def _grey(self, image: np.ndarray | Tensor) -> np.ndarray:
        a = as_uint8(image)
        if a.ndim == 3:
            a = self._cv2.cvtColor(np.ascontiguousarray(a), self._cv2.COLOR_RGB2GRAY)
        return np.ascontiguousarray(a)


def as_uint8(image: np.ndarray | Tensor) -> np.ndarray:
    """(1, 3, H, W) / (3, H, W) tensor in [0,1] or a numpy image -> numpy uint8 (H, W, 3) or (H, W)."""
    if isinstance(image, Tensor):
        t = image.detach().float().cpu()
        t = t[0] if t.dim() == 4 else t
        return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    return a


def _flow_tensor(flow: np.ndarray | Tensor, device: torch.device) -> Tensor:
    f = torch.as_tensor(flow, dtype=torch.float32, device=device)
    return f[None] if f.dim() == 3 else f  # (1, H, W, 2)


def sample_grid(flow: np.ndarray | Tensor, device: torch.device | str = "cpu") -> Tensor:
    """The grid_sample grid (1, H, W, 2) that reads each pixel p at p + flow[p]. align_corners=True: -1 and +1
    are the centres of the first and last pixels, so pixel x sits at 2x/(W-1) - 1 (identity flow = identity)."""
    f = _flow_tensor(flow, torch.device(device))
    _, h, w, _ = f.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=f.device),
                            torch.arange(w, dtype=torch.float32, device=f.device), indexing="ij")
    gx = (xs + f[..., 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + f[..., 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp(image: Tensor, flow: np.ndarray | Tensor) -> Tensor:
    """image (B, C, H, W) read at p + flow[p] for each output pixel p: bilinear, border padding (a pixel mapped
    outside the frame takes the nearest edge value; `consistency` marks it 0). Differentiable in `image`."""
    if tuple(image.shape[-2:]) != tuple(np.shape(flow)[-3:-1]):
        raise StylelabError(f"flow of {tuple(np.shape(flow)[-3:-1])} for an image of {tuple(image.shape[-2:])}")
    grid = sample_grid(flow, image.device).to(image.dtype).expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def consistency(forward: np.ndarray | Tensor, backward: np.ndarray | Tensor) -> np.ndarray:
    """Ruder et al.'s per-pixel weights for frame t (H, W) float32 in {0, 1}, from backward = flow(t -> t-1) and
    forward = flow(t-1 -> t). 0 where
      - forward and backward disagree, |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5 with w̃ = forward warped by ŵ
        (occlusions, disocclusions),
      - at motion boundaries, |∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002 (forward differences of ŵ = (û, v̂)),
      - where p + ŵ(p) leaves frame t-1 (content that entered the frame: nothing to warp from);
    1 elsewhere."""
    b = torch.as_tensor(backward, dtype=torch.float32)
    f = torch.as_tensor(forward, dtype=torch.float32)
    h, w, _ = b.shape
    f_warped = warp(f.permute(2, 0, 1)[None], b)[0].permute(1, 2, 0)  # w̃(p) = w(p + ŵ(p))
    b2 = (b**2).sum(-1)
    disagree = ((f_warped + b) ** 2).sum(-1) > FB_RATIO * ((f_warped**2).sum(-1) + b2) + FB_OFFSET
    dx = torch.zeros_like(b)
    dy = torch.zeros_like(b)
    dx[:, :-1] = b[:, 1:] - b[:, :-1]
    dy[:-1] = b[1:] - b[:-1]
    boundary = (dx**2 + dy**2).sum(-1) > MB_RATIO * b2 + MB_OFFSET
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    tx, ty = xs + b[..., 0], ys + b[..., 1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return (~(disagree | boundary | outside)).to(torch.float32).numpy()


def warping_error(frames: list[Tensor], contents: list[np.ndarray | Tensor], estimator: FlowEstimator) -> float:
    """Mean over consecutive pairs of `pair_warping_errors` (0 for fewer than two frames)."""
    errors = pair_warping_errors(frames, contents, estimator)
    return float(np.mean(errors)) if errors else 0.0


def pair_warping_errors(frames: list[Tensor], contents: list[np.ndarray | Tensor], estimator: FlowEstimator
                        ) -> list[float]:
    """Temporal warping error of each consecutive pair (t-1, t) of `frames` (each (1, 3, H, W) in [0,1]): the
    mean squared difference between frame t and frame t-1 warped by the flow of the *content* frames, over the
    pixels the consistency mask keeps (the measure of Ruder et al. and of the video style transfer literature)."""
    errors = []
    for t in range(1, len(frames)):
        backward, forward = estimator.pair(contents[t], contents[t - 1])
        mask = torch.from_numpy(consistency(forward, backward))
        diff = ((frames[t] - warp(frames[t - 1], backward)) ** 2).mean(1)[0]
        errors.append(float((diff * mask).sum() / mask.sum().clamp_min(1)))
    return errors
