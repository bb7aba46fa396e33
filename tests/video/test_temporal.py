"""`stylize_video` (stylelab.video.temporal): the temporal loss, long-term weights, kept frames."""

from __future__ import annotations

import pytest
import torch
from helpers import moving_frames

pytest.importorskip("av")
pytest.importorskip("cv2")

import stylelab.video.temporal as video
from stylelab import Config
from stylelab.engine.optimize import build_style_losses, compute_targets, objective, prepare
from stylelab.image import to_tensor
from stylelab.samples import swirls
from stylelab.video.flow import FlowEstimator, warping_error


def test_objective_adds_the_extra_loss(content_image, style_image):
    config = Config(size=48, steps=1)
    model, c, s = prepare(to_tensor(content_image), [to_tensor(style_image)], config)
    losses = build_style_losses(config)
    targets = compute_targets(model, c, s, config, losses)
    x = c.clone().requires_grad_(True)
    base, _ = objective(model, x, targets, config, losses)
    total, terms = objective(model, x, targets, config, losses, lambda y: 3.0 * (y**2).mean())
    assert torch.allclose(total, base + 3.0 * (c**2).mean()) and torch.allclose(terms["extra"], 3.0 * (c**2).mean())


def test_temporal_loss_cuts_the_flicker_and_reuses_the_style_targets(monkeypatch):
    frames = moving_frames(4, 64, 48)
    calls = []
    real = video.compute_targets
    monkeypatch.setattr(video, "compute_targets", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = Config(size=64, steps=4)

    def run(weight: float) -> list[torch.Tensor]:
        return [f.image for f in video.stylize_video(frames, [swirls(64, 64, seed=1)], config,
                                                      temporal_weight=weight, frame_steps=3)]

    steady, free = run(1000.0), run(0.0)
    assert len(calls) == 2  # once per clip, not per frame
    est = FlowEstimator()
    # weight 0 still starts each frame from the warped previous one; the temporal term holds it there
    assert warping_error(steady, frames, est) < 0.5 * warping_error(free, frames, est)
    assert all(f.shape == (1, 3, 48, 64) for f in steady)


def test_long_term_weights_never_count_a_pixel_twice():
    est = FlowEstimator()
    frames = moving_frames(5, 32, 32)
    outputs = {k: torch.rand(1, 3, 32, 32) for k in range(4)}
    warped, weights = video._temporal_terms(est, frames, outputs, 4, (1, 2, 4), torch.device("cpu"))
    assert len(warped) == 3
    total = sum(weights)
    assert total.max() <= 1 and total.min() >= 0 and weights[0].mean() > 0.5


def test_done_frames_are_yielded_not_recomputed(monkeypatch):
    frames = moving_frames(3, 64, 48)
    kept = torch.full((1, 3, 48, 64), 0.5)
    calls = []
    real = video.transfer
    monkeypatch.setattr(video, "transfer", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = list(video.stylize_video(frames, [swirls(64, 64, seed=1)], Config(size=64, steps=2), frame_steps=2,
                                   done=lambda t: kept if t == 0 else None))
    assert out[0].resumed and torch.equal(out[0].image, kept) and not out[1].resumed
    assert calls == []  # frame 1 was warped from the kept frame 0, not restarted
