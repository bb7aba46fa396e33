"""Embedded ICC profiles (stylelab.image): converted to sRGB once, on every route."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import (
    assert_px,
    check_rgb,
    icc_profile,
    noise_rgb,
    srgb_encode,
)
from PIL import Image, ImageCms

from stylelab.image import (
    load_alpha,
    open_image,
    to_tensor,
)

# ------------------------------------------------------------------------------------------------ ICC profiles


ICC_COLOURS = [(128, 128, 128), (255, 0, 0), (0, 0, 0), (255, 255, 255), (64, 64, 64)]


def _icc_test_image(mode: str = "RGB", block: int = 1) -> Image.Image:
    """The ICC_COLOURS side by side, each a block x block square (JPEG needs 8 x 8 to keep colours apart)."""
    im = Image.new(mode, (block * len(ICC_COLOURS), block))
    for i, c in enumerate(ICC_COLOURS):
        im.paste(c + ((100 if i == 4 else 255,) if mode == "RGBA" else ()), (i * block, 0, (i + 1) * block, block))
    return im


@pytest.mark.parametrize("fmt, tol", [("png", 1.5 / 255), ("jpg", 4 / 255), ("tif", 1.5 / 255)])
def test_icc_linear_profile_converted_to_srgb(tmp_path, fmt, tol):
    path = tmp_path / f"linear.{fmt}"
    options = {"quality": 100, "subsampling": 0} if fmt == "jpg" else {}
    _icc_test_image(block=8).save(path, icc_profile=icc_profile(1.0), **options)
    t = to_tensor(path)
    check_rgb(t, 8, 40)
    mid = srgb_encode(128 / 255)  # linear 0.502 is sRGB 0.737: the profile makes the grey lighter
    assert_px(t, 4, 4, [mid] * 3, tol=tol)
    assert_px(t, 12, 4, [1.0, 0.0, 0.0], tol=tol)  # same primaries: pure red stays pure red
    assert_px(t, 20, 4, [0.0] * 3, tol=tol)
    assert_px(t, 28, 4, [1.0] * 3, tol=tol)
    assert_px(t, 36, 4, [srgb_encode(64 / 255)] * 3, tol=tol)


def test_icc_converted_once_on_every_route(tmp_path):
    path = tmp_path / "linear.png"
    _icc_test_image().save(path, icc_profile=icc_profile(1.0))
    im = open_image(path)
    assert im.mode == "RGB" and "icc_profile" not in im.info  # its pixels are sRGB now
    ref = to_tensor(path)
    assert torch.equal(to_tensor(im), ref)  # not converted a second time
    with Image.open(path) as opened:
        assert torch.equal(to_tensor(opened), ref)  # a PIL image the caller opened is converted too
    assert ref[0, 0, 0, 0] > 0.7


def test_icc_srgb_profile_left_alone(tmp_path):
    path = tmp_path / "srgb.png"
    im = noise_rgb(8, 6)
    im.save(path, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert torch.equal(to_tensor(path), to_tensor(im))


@pytest.mark.parametrize("blob", [b"garbage", b"\0" * 200, icc_profile(1.0)[:100], icc_profile(1.0, grey=True)],
                         ids=["garbage", "zeros", "cut", "grey-profile-on-rgb"])
def test_icc_unusable_profile_ignored_without_warning(tmp_path, blob):
    path = tmp_path / "bad_icc.png"
    im = noise_rgb(8, 6)
    im.save(path, icc_profile=blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_tensor(path)
    assert torch.equal(t, to_tensor(im))  # taken as sRGB, like a web browser does


def test_icc_rgba_keeps_alpha(tmp_path):
    path = tmp_path / "linear_rgba.png"
    _icc_test_image("RGBA").save(path, icc_profile=icc_profile(1.0))
    alpha = load_alpha(path)
    assert alpha[0, 0, 0].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 100 / 255])
    t = to_tensor(path)
    assert_px(t, 0, 0, [srgb_encode(128 / 255)] * 3, tol=1.5 / 255)
    a = 100 / 255  # the last pixel: converted colour, then composited over white
    assert_px(t, 4, 0, [srgb_encode(64 / 255) * a + 1 - a] * 3, tol=1.5 / 255)


def test_icc_grey_profile(tmp_path):
    path = tmp_path / "grey.png"
    im = Image.new("L", (2, 1))
    im.putdata([128, 255])
    im.save(path, icc_profile=icc_profile(1.0, grey=True))
    t = to_tensor(path)
    assert_px(t, 0, 0, [srgb_encode(128 / 255)] * 3, tol=1.5 / 255)
    assert_px(t, 1, 0, [1.0] * 3, tol=1.5 / 255)
