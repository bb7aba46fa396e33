"""Optical flow, warping and the consistency mask on a synthetic clip whose true flow is known.

The clip: an analytic texture (sum of sinusoids, so it can be sampled anywhere exactly) seen by a camera that pans
4 px right, 1 px down and zooms in by 2% between the two frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")

from stylelab.video.flow import FlowEstimator, consistency, warp, warping_error

H, W = 96, 128
CENTRE = np.array([(W - 1) / 2, (H - 1) / 2])
PAN = (4.0, 1.0)
ZOOM = 1.02
MARGIN = 8  # px left out at each border when comparing with the true flow


def texture(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = 24
    freq, angle = rng.uniform(0.015, 0.1, k), rng.uniform(0, 2 * np.pi, k)
    phase, amp = rng.uniform(0, 2 * np.pi, (k, 3)), rng.uniform(0.5, 1.0, k)
    u, v = np.cos(angle) * freq, np.sin(angle) * freq
    arg = 2 * np.pi * (u[:, None, None] * x + v[:, None, None] * y)  # (k, H, W)
    out = np.stack([(amp[:, None, None] * np.sin(arg + phase[:, c, None, None])).sum(0) for c in range(3)], -1)
    return ((out / np.abs(out).max() * 0.5 + 0.5) * 255).round().astype(np.uint8)


def camera(scale: float, offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates seen at each pixel by a camera zoomed by 1/scale about the centre and moved by offset."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    return scale * (xs - CENTRE[0]) + CENTRE[0] + offset[0], scale * (ys - CENTRE[1]) + CENTRE[1] + offset[1]


def clip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame0, frame1, true backward flow frame1 -> frame0)."""
    frame0 = texture(*camera(1.0, (0.0, 0.0)))
    wx, wy = camera(1 / ZOOM, PAN)
    frame1 = texture(wx, wy)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    return frame0, frame1, np.stack([wx - xs, wy - ys], -1).astype(np.float32)  # frame0 camera is the identity


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def flows():
    frame0, frame1, truth = clip()
    backward, forward = FlowEstimator("medium").pair(frame1, frame0)
    return frame0, frame1, truth, backward, forward


def interior(a: np.ndarray) -> np.ndarray:
    return a[MARGIN:-MARGIN, MARGIN:-MARGIN]


def test_dis_flow_is_close_to_the_true_flow(flows):
    _, _, truth, backward, _ = flows
    endpoint = np.sqrt(((backward - truth) ** 2).sum(-1))
    # measured: mean 0.05 px, p95 0.10 px (medium preset); the flow itself is 4-5 px
    assert interior(endpoint).mean() < 0.2
    assert np.percentile(interior(endpoint), 95) < 0.4


def test_forward_flow_is_the_inverse_motion(flows):
    _, _, _, _, forward = flows
    # frame0 -> frame1 moves pixels by -PAN (plus the zoom), the opposite of the backward flow at the centre
    centre = forward[H // 2 - 4:H // 2 + 4, W // 2 - 4:W // 2 + 4].reshape(-1, 2).mean(0)
    assert np.allclose(centre, [-PAN[0] * ZOOM, -PAN[1] * ZOOM], atol=0.2)


def test_identity_and_integer_shift_warps_are_exact():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((1, 3, 20, 30), dtype=np.float32))
    zero = np.zeros((20, 30, 2), np.float32)
    assert torch.allclose(warp(image, zero), image, atol=1e-6)
    shift = zero.copy()
    shift[..., 0], shift[..., 1] = 3.0, -2.0  # read each pixel at (x + 3, y - 2)
    out = warp(image, shift)
    assert torch.allclose(out[..., 2:, :-3], image[..., :-2, 3:], atol=1e-6)
    # border padding: the columns read beyond the right edge repeat the last column
    assert torch.allclose(out[..., 2:, -1], image[..., :-2, -1], atol=1e-6)


def test_half_pixel_shift_is_the_mean_of_neighbours():
    image = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)
    flow = np.zeros((3, 4, 2), np.float32)
    flow[..., 0] = 0.5
    out = warp(image, flow)
    assert torch.allclose(out[..., :-1], (image[..., :-1] + image[..., 1:]) / 2)


def test_warped_previous_frame_matches_the_frame_where_consistent(flows):
    frame0, frame1, _, backward, forward = flows
    mask = consistency(forward, backward)
    prev, cur = as_tensor(frame0), as_tensor(frame1)
    diff = (warp(prev, backward) - cur).abs().mean(1)[0].numpy()
    unwarped = (prev - cur).abs().mean(1)[0].numpy()
    kept = mask > 0
    # measured: 0.0027 (0.0018 with the true flow: bilinear resampling), against 0.10 without warping
    assert diff[kept].mean() < 0.01
    assert unwarped[kept].mean() > 10 * diff[kept].mean()
    assert warping_error([prev, cur], [frame0, frame1], FlowEstimator("medium")) < 1e-3


def test_mask_marks_the_band_the_pan_reveals(flows):
    _, _, truth, backward, forward = flows
    mask = consistency(forward, backward)
    ys, xs = np.mgrid[0:H, 0:W]
    tx, ty = xs + truth[..., 0], ys + truth[..., 1]
    revealed = (tx > W - 1) | (ty > H - 1)  # seen in frame 1, outside frame 0: the right and bottom band
    assert revealed.sum() > 2 * H  # a band at least two columns wide
    assert (mask[revealed] == 0).mean() > 0.9
    assert (mask[~revealed] == 1).mean() > 0.97
    assert interior(mask).min() == 1


def test_mask_marks_forward_backward_disagreement_and_motion_boundaries():
    h, w = 40, 40
    backward = np.zeros((h, w, 2), np.float32)
    backward[:, :, 0] = 2.0
    forward = -backward.copy()
    assert consistency(forward, backward)[:, : w - 3].min() == 1  # a consistent pan: only the revealed band is 0
    forward[10:20, 10:20] = 0.0  # forward says these did not move: an occlusion
    mask = consistency(forward, backward)
    assert mask[10:20, 8:18].max() == 0  # read at p + 2: the pixels that land in the square disagree
    assert mask[10:20, 18:30].min() == 1
    assert mask[30:, :30].min() == 1
    boundary = np.zeros((h, w, 2), np.float32)
    boundary[:, 20:, 0] = 3.0  # the right half moves: a motion boundary at x = 19 / 20
    mask = consistency(-boundary, boundary)
    assert mask[:, 19].max() == 0
    assert mask[:, :15].min() == 1
