"""Transparency (stylelab.image): load_alpha, and saving with an alpha channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    TOL,
    assert_one_line_error,
    assert_px,
    check_rgb,
    noise_rgb,
    palette_image,
)
from PIL import Image

from stylelab.image import (
    ImageError,
    load_alpha,
    open_image,
    save_image,
    to_tensor,
)

# ------------------------------------------------------------------------------------------------------ alpha


def _rgba_png(tmp_path) -> tuple[Path, list[float]]:
    im = Image.new("RGBA", (4, 1))
    im.putdata([(10, 20, 30, 0), (10, 20, 30, 255), (255, 0, 0, 128), (0, 0, 0, 1)])
    path = tmp_path / "rgba.png"
    im.save(path)
    return path, [0.0, 1.0, 128 / 255, 1 / 255]


def test_load_alpha_rgba(tmp_path):
    path, expected = _rgba_png(tmp_path)
    a = load_alpha(path)
    assert a.shape == (1, 1, 1, 4) and a.dtype == torch.float32
    assert a[0, 0, 0].tolist() == pytest.approx(expected)
    with Image.open(path) as opened:
        for source in (str(path), opened, open_image(path)):
            assert torch.equal(load_alpha(source), a)


def test_load_alpha_la_and_palette(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putdata([(5, 0), (5, 255)])
    la.save(tmp_path / "la.png")
    assert load_alpha(tmp_path / "la.png")[0, 0, 0].tolist() == [0.0, 1.0]
    palette_image().save(tmp_path / "pal.png", transparency=1)
    assert load_alpha(tmp_path / "pal.png")[0, 0, 0].tolist() == [1.0, 0.0, 1.0]
    palette_image().save(tmp_path / "pal.gif", transparency=1)
    assert load_alpha(tmp_path / "pal.gif")[0, 0, 0].tolist() == [1.0, 0.0, 1.0]


def test_load_alpha_rgb_colour_key(tmp_path):
    im = Image.new("RGB", (3, 1))
    im.putdata([(1, 2, 3), (4, 5, 6), (1, 2, 3)])
    im.save(tmp_path / "key.png", transparency=(1, 2, 3))
    assert load_alpha(tmp_path / "key.png")[0, 0, 0].tolist() == [0.0, 1.0, 0.0]
    check_rgb(to_tensor(tmp_path / "key.png"), 1, 3)
    assert_px(to_tensor(tmp_path / "key.png"), 0, 0, [1.0, 1.0, 1.0])  # keyed pixels are composited too


def test_load_alpha_none(tmp_path):
    noise_rgb(4, 3).save(tmp_path / "rgb.png")
    Image.new("RGBA", (4, 3), (1, 2, 3, 255)).save(tmp_path / "opaque.png")
    palette_image().save(tmp_path / "pal.png")
    Image.new("L", (4, 3)).save(tmp_path / "grey.jpg")
    for name in ("rgb.png", "opaque.png", "pal.png", "grey.jpg"):
        assert load_alpha(tmp_path / name) is None, name
    assert load_alpha(torch.rand(1, 3, 4, 4)) is None  # tensors are RGB by contract
    assert load_alpha(torch.rand(1, 4, 4, 4)) is None


def test_load_alpha_follows_exif_orientation(tmp_path):
    im = Image.new("RGBA", (4, 2), (0, 0, 255, 255))
    im.putpixel((0, 0), (0, 0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 clockwise: stored top-left -> top-right
    im.save(tmp_path / "o6.png", exif=exif)
    a = load_alpha(tmp_path / "o6.png")
    assert a.shape == (1, 1, 4, 2)
    assert a[0, 0, 0, 1] == 0.0 and a.sum() == 7.0


@pytest.mark.parametrize("bad", [42, None, b"x.png"])
def test_load_alpha_errors(tmp_path, bad):
    with pytest.raises(ImageError) as info:
        load_alpha(bad, "content image")
    assert_one_line_error(info, "content image")
    with pytest.raises(ImageError, match="not found"):
        load_alpha(tmp_path / "nope.png")


# -------------------------------------------------------------------------------------- saving with alpha

ALPHA_EXTS = [".png", ".tif", ".webp"]


@pytest.mark.parametrize("ext", ALPHA_EXTS)
def test_save_alpha_round_trip(tmp_path, ext):
    t = to_tensor(noise_rgb(12, 8))
    alpha = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, 1, 8, 12)) / 255.0).float()
    out = save_image(t, tmp_path / f"a{ext}", alpha=alpha)
    with Image.open(out) as im:
        assert im.mode == "RGBA"
    assert torch.allclose(load_alpha(out), alpha, atol=1e-6)  # alpha is lossless, WebP's too
    if ext != ".webp":
        assert torch.allclose(to_tensor(out), t * alpha + (1 - alpha), atol=1e-6)


def test_save_alpha_resized_to_the_image(tmp_path):
    alpha = torch.zeros(1, 1, 4, 6)
    alpha[..., 3:] = 1.0  # left half transparent, right half opaque
    out = save_image(torch.rand(1, 3, 8, 12), tmp_path / "a.png", alpha=alpha)
    a = load_alpha(out)
    assert a.shape == (1, 1, 8, 12)
    assert (a[..., :4] == 0).all() and (a[..., -4:] == 1).all()
    assert ((a[..., 5:7] > 0) & (a[..., 5:7] < 1)).all()  # bilinear across the edge
    half = save_image(torch.rand(1, 3, 3, 5), tmp_path / "b.png", alpha=torch.full((1, 1, 30, 50), 0.5))
    assert torch.allclose(load_alpha(half), torch.full((1, 1, 3, 5), 0.5), atol=TOL)  # antialiased shrink


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_save_alpha_composited_over_white_without_alpha_channel(tmp_path, ext):
    t = torch.zeros(1, 3, 8, 8)
    alpha = torch.ones(1, 1, 8, 8)
    alpha[..., :4] = 0.0
    alpha[..., 4:6] = 0.5
    out = save_image(t, tmp_path / f"a{ext}", alpha=alpha)
    with Image.open(out) as im:
        assert im.mode == "RGB"
    back = to_tensor(out)
    tol = 3 / 255 if ext == ".jpg" else TOL
    assert_px(back, 1, 4, [1.0] * 3, tol=tol)  # transparent black -> white
    assert_px(back, 6, 4, [0.0] * 3, tol=tol)  # opaque black stays black
    assert abs(back[0, 0, 4, 4].item() - 0.5) <= 1.5 * tol


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_save_rgba_pil_image_without_alpha_format(tmp_path, ext):
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = save_image(im, tmp_path / f"p{ext}")
    assert to_tensor(out).min() > 0.98  # transparent -> white, not an error nor black


def test_save_pil_image_keeps_its_mode_and_alpha(tmp_path):
    path, expected = _rgba_png(tmp_path)
    with Image.open(path) as opened:
        out = save_image(opened, tmp_path / "copy.png")
    assert load_alpha(out)[0, 0, 0].tolist() == pytest.approx(expected)
    grey = save_image(Image.new("L", (3, 3), 7), tmp_path / "grey.png")
    with Image.open(grey) as im:
        assert im.mode == "L"


@pytest.mark.parametrize("bad", [
    torch.rand(1, 3, 4, 4), torch.rand(4, 4), torch.ones(1, 1, 4, 4, dtype=torch.uint8),
    torch.full((1, 1, 4, 4), float("nan")), np.ones((1, 1, 4, 4)),
], ids=["3ch", "2d", "uint8", "nan", "numpy"])
def test_save_alpha_rejects_bad_alpha(tmp_path, bad):
    with pytest.raises(ImageError) as info:
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "a.png", alpha=bad)
    assert_one_line_error(info, "alpha")
    assert list(tmp_path.iterdir()) == []
