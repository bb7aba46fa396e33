"""The run controls through the API: multi-scale, time budget, plateau stop, style scale, textures and
tiling, masks, colour modes, checkpoints. Real VGG19 weights, 48-128 px, few steps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import stylelab
import stylelab.engine.optimize as opt
from stylelab import Config, samples
from stylelab.config import ConfigError, Region
from stylelab.engine.checkpoint import Checkpoint, CheckpointError
from stylelab.engine.color import rgb_to_yuv
from stylelab.engine.events import ScaleEnd, Step
from stylelab.image import to_tensor
from stylelab.losses.base import StyleLoss
from stylelab.losses.moments import gram, gram_distance
from stylelab.losses.spec import STYLE_LOSSES, style_loss

FAST = Config(size=64, steps=20)


def steps_of(fn, *args, **kwargs):
    """The image and the optimiser steps reported (without the final report of each scale's output)."""
    steps: list[opt.Step] = []
    image = fn(*args, callback=steps.append, **kwargs)
    finals = [k for k, s in enumerate(steps) if isinstance(s, ScaleEnd)]
    # each end of a scale comes right after that scale's last step
    assert all(steps[k - 1].i == steps[k].i and isinstance(steps[k - 1], Step) for k in finals)
    return image, [s for s in steps if isinstance(s, Step)]


# ------------------------------------------------------------------------------------------------- schedule


def test_automatic_schedule_starts_at_most_256_and_doubles():
    assert Config(size=256).schedule() == [(256, 80)]
    assert Config(size=512).schedule() == [(256, 80), (512, 20)]
    assert Config(size=1024, steps=300).schedule() == [(256, 300), (512, 75), (1024, 75)]
    assert Config(size=600).schedule() == [(150, 80), (300, 20), (600, 20)]
    assert Config(size=1024, multiscale=False).schedule() == [(1024, 80)]
    assert Config(size=512, scales=((256, 30), (512, 10))).schedule() == [(256, 30), (512, 10)]


@pytest.mark.parametrize("scales", [((256, 10), (512, 5)), ((128, 0),), ()])
def test_bad_scales_are_config_errors(scales):
    with pytest.raises(ConfigError):
        Config(size=1024, scales=scales)


def test_multiscale_runs_coarse_to_fine_and_starts_from_the_previous_result(content_image, style_image):
    config = Config(size=96, scales=((48, 15), (96, 8)))
    image, steps = steps_of(stylelab.stylize, content_image, style_image, config)
    assert [s.scale for s in steps] == [0] * 15 + [1] * 8
    assert max(steps[0].image.shape[-2:]) == 48 and max(steps[-1].image.shape[-2:]) == 96
    assert max(image.size) == 96
    # Targets are recomputed per scale (L̂ = 1 at the content image there), and the upsampled coarse result,
    # not the content, starts the fine scale: its style loss is far below 1 at its first step.
    assert steps[0].terms["style"] > 0.5
    assert steps[15].terms["style"] < 0.5
    assert steps[15].terms["content"] > 0.05


@pytest.fixture
def fake_clock(monkeypatch):
    """A clock that moves only when the optimiser evaluates the objective, by 0.25 s per 4096 output pixels: the
    time-budget rule is then checked exactly, whatever else the machine is doing."""
    now = [0.0]
    real = opt.objective

    def objective(model, x, *args, **kwargs):
        now[0] += 0.25 * x.shape[-1] * x.shape[-2] / 4096
        return real(model, x, *args, **kwargs)

    monkeypatch.setattr(opt, "objective", objective)
    monkeypatch.setattr(opt.time, "perf_counter", lambda: now[0])
    return now


def test_time_budget_finishes_in_time(content_image, style_image, fake_clock):
    config = dataclasses.replace(FAST, steps=100_000, time_budget=4.0)
    _, steps = steps_of(stylelab.stylize, content_image, style_image, config)
    assert 5 < len(steps) < 100_000
    assert fake_clock[0] <= 4.0  # the next step would have passed the deadline, so it was not taken
    assert fake_clock[0] + steps[-1].seconds > 4.0  # and no step that fitted was left out


def test_time_budget_is_shared_between_scales(content_image, style_image, fake_clock):
    config = Config(size=96, scales=((48, 100_000), (96, 100_000)), time_budget=4.0)
    _, steps = steps_of(stylelab.stylize, content_image, style_image, config)
    scales = [s.scale for s in steps]
    assert scales.count(0) > 3 and scales.count(1) > 1
    assert fake_clock[0] <= 4.0


def test_tol_stops_on_a_plateau(content_image, style_image):
    _, steps = steps_of(stylelab.stylize, content_image, style_image, dataclasses.replace(FAST, steps=400, tol=0.01))
    assert 11 <= len(steps) < 400
    losses = [s.loss for s in steps]
    assert losses[-11] - losses[-1] < 0.01 * losses[-1]  # it stopped because of the rule, not before


def test_style_scale_resizes_the_style_images(content_image, style_image, monkeypatch):
    seen = []
    real = opt.compute_targets

    def spy(model, content, styles, *args, **kwargs):
        seen.append([max(s.shape[-2:]) for s in styles])
        return real(model, content, styles, *args, **kwargs)

    monkeypatch.setattr(opt, "compute_targets", spy)
    for factor in (0.5, 2.0):
        stylelab.stylize(content_image, style_image, dataclasses.replace(FAST, steps=1, style_scale=factor))
    stylelab.stylize(content_image, style_image, Config(size=96, scales=((48, 1), (96, 1)), style_scale=1.5))
    assert seen == [[32], [128], [72], [144]]


# ------------------------------------------------------------------------------------------------- textures


def seam_and_interior(x: torch.Tensor) -> tuple[float, float]:
    """Mean squared difference across the wrap-around seams vs across interior neighbours."""
    dy = (x[..., 1:, :] - x[..., :-1, :]) ** 2
    dx = (x[..., :, 1:] - x[..., :, :-1]) ** 2
    seam_y = ((x[..., 0, :] - x[..., -1, :]) ** 2).mean()
    seam_x = ((x[..., :, 0] - x[..., :, -1]) ** 2).mean()
    return float((seam_y + seam_x) / 2), float((dy.mean() + dx.mean()) / 2)


def test_texture_has_the_size_and_the_style(style_image):
    image, steps = steps_of(stylelab.synthesize, style_image, (80, 48), Config(size=80, steps=30, init="noise"))
    assert image.size == (80, 48)
    assert all(s.terms["content"] == 0 for s in steps)
    assert steps[0].terms["style"] == pytest.approx(1.0, rel=0.3)  # normalised at a noise image
    assert steps[-1].terms["style"] < 0.1


def straight_edges(x: torch.Tensor, run: float = 0.5) -> float:
    """How straight the image's strongest edge is: the largest mean *signed* brightness step across one row (or
    column) boundary over a run of `run` x the side, over the mean absolute step. Texture averages out along a
    run; a straight line through the image does not."""
    g = x[0].mean(0)
    out = []
    for d in (g[1:] - g[:-1], (g[:, 1:] - g[:, :-1]).T):
        win = int(d.shape[1] * run)
        c = torch.nn.functional.pad(d.cumsum(1), (1, 0))
        out.append(float(((c[:, win:] - c[:, :-win]).abs() / win).max() / d.abs().mean()))
    return max(out)


def swirls_under_flat_sky(w: int = 120, h: int = 80) -> Image.Image:
    """Swirls below a wavy line, flat colour above: no straight edge inside, but its top and bottom differ, so
    wrapping it around would join them along a straight line."""
    swirls = np.asarray(samples.swirls(w, h, seed=1), dtype=np.float64)
    y, x = np.mgrid[0:h, 0:w]
    below = y / h > 0.5 + 0.2 * np.sin(x / w * 3 * np.pi)
    return Image.fromarray(np.where(below[..., None], swirls, [225.0, 215.0, 190.0]).astype(np.uint8))


def test_tileable_texture_has_no_seam_and_no_straight_edges():
    # a little TV so the texture is smooth enough that a seam would stand out against its interior
    style = swirls_under_flat_sky()
    config = Config(size=96, steps=80, init="noise", tileable=True, tv_weight=1.0)
    tiled = to_tensor(stylelab.synthesize(style, (96, 96), config))
    plain = to_tensor(stylelab.synthesize(style, (96, 96), dataclasses.replace(config, tileable=False)))
    seam, interior = seam_and_interior(tiled)
    assert seam <= 1.2 * interior
    seam_plain, interior_plain = seam_and_interior(plain)
    assert seam_plain > 1.5 * interior_plain  # without wrap-around padding the seam shows: the check can fail
    # Inside the tile, no more straight edges than in the plain run (measured 1.5 vs 2.6; with the style image
    # wrapped around as well, 4.3: straight lines where the swirls' bottom met the sky's top).
    assert straight_edges(tiled) < straight_edges(plain)


def test_style_statistics_do_not_wrap_around(style_image):
    # A tileable output pads by wrapping around; the style image must not: wrapping it joins its top to its bottom,
    # straight edges the picture lacks, which the texture then paints as straight lines through the tile.
    config = Config(size=64, tileable=True)
    style = to_tensor(style_image)
    losses = opt.build_style_losses(config)
    stats = {}
    for padding in ("circular", "zeros"):
        model = opt.build_model(None, config.pooling, torch.device("cpu"), padding)
        targets = opt.compute_targets(model, None, [style], config, losses, reference=torch.rand_like(style))
        stats[padding] = targets.regions[0].stats
    torch.testing.assert_close(stats["circular"], stats["zeros"], rtol=0, atol=0)


def test_tileable_sizes_round_to_multiples_of_16(style_image):
    image = stylelab.synthesize(style_image, (70, 41), Config(size=70, steps=1, init="noise", tileable=True))
    assert image.size == (64, 48)


# ------------------------------------------------------------------------------------------------- masks


def half_masks(tmp_path, w=96, h=64):
    left = Image.new("L", (w, h), 0)
    left.paste(255, (0, 0, w // 2, h))
    right = Image.eval(left, lambda v: 255 - v)
    left.save(tmp_path / "left.png")
    right.save(tmp_path / "right.png")
    return str(tmp_path / "left.png"), str(tmp_path / "right.png")


def solid_style(rgb, seed):
    """A textured style image whose colours centre on `rgb`."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(rgb).view(1, 3, 1, 1)
    x = (base + 0.15 * torch.randn(1, 3, 8, 8, generator=g)).clamp(0, 1)
    return torch.nn.functional.interpolate(x, size=(64, 64), mode="nearest")


@pytest.mark.parametrize("loss", ["gram", "mmd-linear", "bn", "w2"])
def test_masks_put_each_style_in_its_region(tmp_path, content_image, loss):
    left, right = half_masks(tmp_path)
    red, blue = solid_style([0.9, 0.2, 0.1], 1), solid_style([0.1, 0.2, 0.9], 2)
    config = Config(size=96, steps=40, style_loss=loss, masks=(Region(left, 0), Region(right, 1)))
    out = to_tensor(stylelab.stylize(content_image, [red, blue], config))
    w = out.shape[-1]
    left_rgb, right_rgb = out[..., : w // 2 - 4].mean(dim=(0, 2, 3)), out[..., w // 2 + 4:].mean(dim=(0, 2, 3))
    assert left_rgb[0] - left_rgb[2] > 0.1  # red side
    assert right_rgb[2] - right_rgb[0] > 0.1  # blue side


def test_style_mask_selects_part_of_the_style_image(tmp_path, content_image):
    both = torch.cat([solid_style([0.9, 0.2, 0.1], 1), solid_style([0.1, 0.2, 0.9], 2)], dim=-1)  # red | blue
    _, right = half_masks(tmp_path, 128, 64)
    full = str(tmp_path / "full.png")
    Image.new("L", (96, 64), 255).save(full)
    config = Config(size=96, steps=40, masks=(Region(full, 0, right),))
    out = to_tensor(stylelab.stylize(content_image, both, config)).mean(dim=(0, 2, 3))
    assert out[2] - out[0] > 0.1  # took only the blue half of the style


def test_loss_without_mask_support_is_a_clear_error(tmp_path, content_image, style_image, monkeypatch):
    # Every built-in loss takes weights today; a registered loss without them must be refused, not run unmasked.
    monkeypatch.setitem(STYLE_LOSSES, "plain-gram", lambda: StyleLoss(stats=gram, loss=gram_distance))
    assert not style_loss("plain-gram").weighted
    left, _ = half_masks(tmp_path)
    config = Config(size=64, steps=1, style_loss="plain-gram", masks=(Region(left, 0),))
    with pytest.raises(ConfigError, match="'plain-gram' does not support masks; use one of: gram"):
        stylelab.stylize(content_image, style_image, config)


def test_mask_naming_a_missing_style_is_an_error(tmp_path, content_image, style_image):
    left, _ = half_masks(tmp_path)
    with pytest.raises(ConfigError, match="only 1 style"):
        stylelab.stylize(content_image, style_image, Config(size=64, steps=1, masks=(Region(left, 1),)))


# ------------------------------------------------------------------------------------------------- colour


def chroma(x: torch.Tensor) -> torch.Tensor:
    return rgb_to_yuv(x.double())[:, 1:]


@pytest.mark.parametrize("mode", ["keep-luminance", "transfer"])
def test_color_modes_keep_the_content_chroma(content_image, style_image, mode):
    out = to_tensor(stylelab.stylize(content_image, style_image, dataclasses.replace(FAST, color=mode)))
    content = to_tensor(content_image.resize((out.shape[-1], out.shape[-2]), Image.BICUBIC))
    inside = ((out > 0.02) & (out < 0.98)).all(dim=1, keepdim=True).expand(1, 2, *out.shape[-2:])
    diff = (chroma(out) - chroma(content)).abs()[inside]
    assert diff.numel() > 0.5 * inside.numel()
    assert float(diff.mean()) < 0.01  # 8-bit rounding only
    plain = to_tensor(stylelab.stylize(content_image, style_image, FAST))
    assert float((chroma(plain) - chroma(content)).abs().mean()) > 3 * float(diff.mean())


def test_color_match_recolours_the_style_before_optimising(content_image, style_image, monkeypatch):
    seen = []
    real = opt.compute_targets
    monkeypatch.setattr(opt, "compute_targets", lambda m, c, s, *a, **k: seen.append(s) or real(m, c, s, *a, **k))
    stylelab.stylize(content_image, style_image, dataclasses.replace(FAST, steps=1, color="match"))
    style = seen[0][0].reshape(3, -1).double()
    content = to_tensor(content_image).reshape(3, -1).double()
    assert torch.allclose(style.mean(dim=1), content.mean(dim=1), atol=0.03)


def test_palette_only_recolours_without_optimising(content_image, style_image, monkeypatch):
    monkeypatch.setattr(opt, "optimize", lambda *a, **k: pytest.fail("palette-only must not optimise"))
    out = to_tensor(stylelab.stylize(content_image, style_image, dataclasses.replace(FAST, color="palette-only")))
    style = to_tensor(style_image)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), style.mean(dim=(0, 2, 3)), atol=0.05)


# ------------------------------------------------------------------------------------------------- checkpoints


class Stop(Exception):
    pass


def interrupt_at(scale, i):
    def callback(step):
        if (step.scale, step.i) == (scale, i):
            raise Stop
    return callback


@pytest.mark.parametrize("config", [
    Config(size=64, steps=12),
    Config(size=96, scales=((48, 8), (96, 6))),
    # Gram alone: with Adam, sampling losses (the default mix's sliced-W2) redraw from a generator whose state
    # the checkpoint does not hold yet, so their resumed pixels differ (a known limitation, in the issue notes).
    Config(size=64, steps=12, optimizer="adam", style_loss="gram"),
    # neural neighbours: the second scale's targets depend on the image it started from, which the checkpoint keeps
    Config(size=96, scales=((48, 8), (96, 6)), style_loss="nn", content_loss="self-similarity"),
    Config(size=64, steps=12, optimizer="adam", style_loss="gram", param="pyramid"),
    # the first scale in one piece, the second in 64-px tiles (the default mix: moments and binned ranks)
    Config(size=112, scales=((56, 8), (112, 6)), tile=64),
], ids=["lbfgs", "multiscale", "adam", "nn-multiscale", "pyramid", "tiled"])
def test_resume_gives_the_uninterrupted_result(tmp_path, content_image, style_image, config):
    whole = to_tensor(stylelab.stylize(content_image, style_image, config))
    ckpt = Checkpoint(tmp_path / "ckpt", every=3)
    with pytest.raises(Stop):
        stylelab.stylize(content_image, style_image, config, interrupt_at(*((1, 4) if config.scales else (0, 8))), ckpt)
    resumed_steps = []
    image = stylelab.stylize(content_image, style_image, config, resumed_steps.append,
                             dataclasses.replace(ckpt, resume=True))
    assert resumed_steps[0].i > 1  # it continued, it did not start over
    assert torch.equal(to_tensor(image), whole)


def test_resume_refuses_a_different_run(tmp_path, content_image, style_image):
    ckpt = Checkpoint(tmp_path / "ckpt", every=2)
    stylelab.stylize(content_image, style_image, dataclasses.replace(FAST, steps=4), checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="different run"):
        stylelab.stylize(content_image, style_image, dataclasses.replace(FAST, steps=4, seed=9),
                         checkpoint=dataclasses.replace(ckpt, resume=True))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        stylelab.stylize(content_image, style_image, FAST, checkpoint=Checkpoint(tmp_path / "empty", resume=True))


def test_time_budget_says_where_it_stopped(input_files, tmp_path, fake_clock, capsys, monkeypatch):
    """A budget that ends the run early is reported (steps taken of those planned, per scale), not silent; the
    final report of each scale says why it ended."""
    from stylelab.cli import main

    c, s = input_files
    ends: list[opt.Step] = []
    real = opt.optimize

    def spy(model, x, targets, config, losses, steps, callback, **kwargs):
        def both(step):
            if isinstance(step, ScaleEnd):
                ends.append(step)
            callback(step)
        return real(model, x, targets, config, losses, steps, both, **kwargs)

    monkeypatch.setattr(opt, "optimize", spy)
    code = main(["run", str(c), str(s), "-o", str(tmp_path / "o.png"), "--scales", "48:50,96:20",
                 "--size", "96", "--time-budget", "2"])
    assert code == 0
    err = capsys.readouterr().err
    assert [e.stopped for e in ends] == ["time", "time"]
    taken = [e.i for e in ends]
    assert taken[0] < 50 and taken[1] < 20
    note = [line for line in err.splitlines() if "time budget" in line]
    assert len(note) == 1 and note[0].startswith("stylelab: note: the time budget (2 s) stopped the run after "
                                                 f"{sum(taken)} of 70 steps")
    assert f"{taken[0]} of 50 at 48x32 px" in note[0] and f"{taken[1]} of 20 at 96x64 px" in note[0]


def test_no_budget_note_when_every_step_ran(input_files, tmp_path, capsys):
    from stylelab.cli import main

    c, s = input_files
    assert main(["run", str(c), str(s), "-o", str(tmp_path / "o.png"), "--size", "48", "--steps", "2",
                 "--time-budget", "10000"]) == 0
    assert "time budget" not in capsys.readouterr().err
