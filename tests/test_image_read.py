"""Reading images into tensors (stylelab.image): every Pillow mode, EXIF orientation, to_tensor's inputs, resizing.
No VGG needed; every test is fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    TOL,
    assert_px,
    check_rgb,
    load,
    noise_rgb,
    palette_image,
    px,
)
from PIL import Image

from stylelab.image import (
    ImageError,
    open_image,
    resize_long_edge,
    tensor_to_pil,
    to_tensor,
)

# ---------------------------------------------------------------------------------------- mode conversions


def test_rgb_png_round_trip_exact(tmp_path):
    im = noise_rgb(7, 5)
    t = load(im, tmp_path, "rgb.png")
    check_rgb(t, 5, 7)
    expected = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    assert torch.equal(t, expected)


def test_greyscale_L(tmp_path):
    im = Image.new("L", (3, 2))
    im.putdata([0, 51, 255, 128, 1, 200])
    t = load(im, tmp_path, "grey.png")
    check_rgb(t, 2, 3)
    for i, v in enumerate([0, 51, 255, 128, 1, 200]):
        assert_px(t, i % 3, i // 3, [v / 255.0] * 3)


def test_LA_composited_over_white(tmp_path):
    im = Image.new("LA", (3, 1))
    im.putdata([(0, 0), (100, 255), (0, 128)])  # transparent black, opaque grey, half-transparent black
    t = load(im, tmp_path, "la.png")
    check_rgb(t, 1, 3)
    assert_px(t, 0, 0, [1.0, 1.0, 1.0])  # fully transparent -> white, whatever its grey value
    assert_px(t, 1, 0, [100 / 255.0] * 3)  # opaque keeps its grey
    assert_px(t, 2, 0, [127 / 255.0] * 3, tol=TOL)  # half-transparent black over white -> mid grey


def test_RGBA_composited_over_white(tmp_path):
    im = Image.new("RGBA", (4, 1))
    im.putdata([(10, 20, 30, 0), (10, 20, 30, 255), (255, 0, 0, 128), (0, 0, 0, 0)])
    t = load(im, tmp_path, "rgba.png")
    check_rgb(t, 1, 4)
    assert_px(t, 0, 0, [1.0, 1.0, 1.0])  # transparent pixel becomes white
    assert_px(t, 1, 0, [10 / 255.0, 20 / 255.0, 30 / 255.0])  # opaque pixel keeps its colour
    assert_px(t, 2, 0, [1.0, 127 / 255.0, 127 / 255.0], tol=TOL)  # half red over white -> pink
    assert_px(t, 3, 0, [1.0, 1.0, 1.0])  # transparent *black* is white too (not premultiplied black)


def test_RGBA_pil_image_in_memory():
    im = Image.new("RGBA", (2, 1))
    im.putdata([(0, 255, 0, 0), (0, 255, 0, 255)])
    t = to_tensor(im)
    check_rgb(t, 1, 2)
    assert_px(t, 0, 0, [1.0, 1.0, 1.0])
    assert_px(t, 1, 0, [0.0, 1.0, 0.0])


def test_palette_P(tmp_path):
    t = load(palette_image(), tmp_path, "pal.png")
    check_rgb(t, 1, 3)
    assert_px(t, 0, 0, [1.0, 0.0, 0.0])
    assert_px(t, 1, 0, [0.0, 0.0, 1.0])
    assert_px(t, 2, 0, [12 / 255.0, 34 / 255.0, 56 / 255.0])


def test_palette_P_with_transparency(tmp_path):
    path = tmp_path / "pal_t.png"
    palette_image().save(path, transparency=1)  # palette index 1 (blue) is transparent
    assert Image.open(path).mode == "P"
    t = to_tensor(path)
    check_rgb(t, 1, 3)
    assert_px(t, 0, 0, [1.0, 0.0, 0.0])
    assert_px(t, 1, 0, [1.0, 1.0, 1.0])  # the transparent index becomes white, not blue
    assert_px(t, 2, 0, [12 / 255.0, 34 / 255.0, 56 / 255.0])


def test_palette_P_with_transparency_gif(tmp_path):
    path = tmp_path / "pal_t.gif"
    palette_image().save(path, transparency=1)
    t = to_tensor(path)
    check_rgb(t, 1, 3)
    assert_px(t, 1, 0, [1.0, 1.0, 1.0])
    assert_px(t, 0, 0, [1.0, 0.0, 0.0])


def test_CMYK(tmp_path):
    im = Image.new("CMYK", (4, 1))
    im.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (0, 255, 255, 0)])
    path = tmp_path / "cmyk.tif"
    im.save(path)
    assert Image.open(path).mode == "CMYK"
    t = to_tensor(path)
    check_rgb(t, 1, 4)
    assert_px(t, 0, 0, [1.0, 1.0, 1.0])  # no ink: white
    assert_px(t, 1, 0, [0.0, 1.0, 1.0])  # full cyan
    assert_px(t, 2, 0, [0.0, 0.0, 0.0])  # full black
    assert_px(t, 3, 0, [1.0, 0.0, 0.0])  # magenta + yellow: red


def test_CMYK_jpeg_loads_as_rgb(tmp_path):
    im = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
    t = load(im, tmp_path, "cmyk.jpg", quality=100)
    check_rgb(t, 8, 16)
    assert t.min() > 0.95  # white paper stays (near) white


def test_16bit_greyscale_png_keeps_precision(tmp_path):
    a = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # as Pillow opens it (varies by version)
    t = to_tensor(path)
    check_rgb(t, 1, 4)
    assert_px(t, 0, 0, [0.0] * 3)
    assert_px(t, 1, 0, [32768 / 65535] * 3, tol=1e-6)  # mid value is ~0.5, not clipped to 1.0
    assert px(t, 1, 0)[0] == pytest.approx(0.5, abs=1e-4)
    assert_px(t, 2, 0, [1.0] * 3)
    assert_px(t, 3, 0, [1000 / 65535] * 3, tol=1e-6)  # finer than one 8-bit level: precision kept


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I"])
def test_16bit_modes_in_memory(mode):
    values = np.array([[0, 32768, 65535]])
    if mode == "I":
        im = Image.fromarray(values.astype(np.int32))
    else:
        im = Image.frombytes(mode, (3, 1), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    assert im.mode == mode
    t = to_tensor(im)
    check_rgb(t, 1, 3)
    assert_px(t, 0, 0, [0.0] * 3)
    assert_px(t, 1, 0, [32768 / 65535] * 3, tol=1e-6)
    assert_px(t, 2, 0, [1.0] * 3)


def test_1bit(tmp_path):
    im = Image.new("1", (3, 1))
    im.putdata([0, 255, 0])
    path = tmp_path / "bw.png"
    im.save(path)
    assert Image.open(path).mode == "1"
    t = to_tensor(path)
    check_rgb(t, 1, 3)
    assert_px(t, 0, 0, [0.0] * 3)
    assert_px(t, 1, 0, [1.0] * 3)
    assert_px(t, 2, 0, [0.0] * 3)


def test_float_F_unit_range(tmp_path):
    a = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(a, mode="F").save(path)
    assert Image.open(path).mode == "F"
    t = to_tensor(path)
    check_rgb(t, 1, 4)
    for x, v in enumerate(a[0]):
        assert_px(t, x, 0, [float(v)] * 3)


def test_float_F_byte_range_scaled():
    a = np.array([[0.0, 127.5, 255.0, 300.0, -5.0]], dtype=np.float32)
    t = to_tensor(Image.fromarray(a, mode="F"))
    check_rgb(t, 1, 5)
    assert_px(t, 0, 0, [0.0] * 3)
    assert_px(t, 1, 0, [0.5] * 3)
    assert_px(t, 2, 0, [1.0] * 3)
    assert_px(t, 3, 0, [1.0] * 3)  # out of range is clipped
    assert_px(t, 4, 0, [0.0] * 3)


# ----------------------------------------------------------------------------------------- EXIF orientation


def _exif_jpeg(path: Path, orientation: int) -> Path:
    """A 40x20 (wide) blue JPEG with a red 8x8 block in its stored top-left corner."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=95)
    return path


def _is_red(t: torch.Tensor, x: int, y: int) -> bool:
    r, g, b = px(t, x, y)
    return r > 0.8 and g < 0.2 and b < 0.2


def _is_blue(t: torch.Tensor, x: int, y: int) -> bool:
    r, g, b = px(t, x, y)
    return b > 0.8 and r < 0.2 and g < 0.2


@pytest.mark.parametrize(
    "orientation, red_corner",
    [
        (1, "top-left"),  # no rotation: unchanged
        (6, "top-right"),  # rotate 90 clockwise for display: stored top-left -> top-right
        (8, "bottom-left"),  # rotate 90 counter-clockwise: stored top-left -> bottom-left
        (3, "bottom-right"),  # rotate 180
    ],
)
def test_exif_orientation_applied(tmp_path, orientation, red_corner):
    path = _exif_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    assert Image.open(path).getexif().get(0x0112) == orientation
    for t in (to_tensor(path), to_tensor(Image.open(path))):  # the path and the PIL-image routes agree
        if orientation in (6, 8):
            check_rgb(t, 40, 20)  # H and W swapped: now tall
        else:
            check_rgb(t, 20, 40)
        h, w = t.shape[-2:]
        corners = {"top-left": (2, 2), "top-right": (w - 3, 2), "bottom-left": (2, h - 3),
                   "bottom-right": (w - 3, h - 3)}
        for name, (x, y) in corners.items():
            if name == red_corner:
                assert _is_red(t, x, y), f"orientation {orientation}: expected red at {name}, got {px(t, x, y)}"
            else:
                assert _is_blue(t, x, y), f"orientation {orientation}: expected blue at {name}, got {px(t, x, y)}"


def test_open_image_applies_orientation(tmp_path):
    im = open_image(_exif_jpeg(tmp_path / "o6.jpg", 6))
    assert im.size == (20, 40)


# ------------------------------------------------------------------------------------------------ to_tensor


def test_to_tensor_accepts_pil_path_and_tensors(tmp_path):
    im = noise_rgb(9, 7)
    path = tmp_path / "im.png"
    im.save(path)
    ref = to_tensor(im)
    check_rgb(ref, 7, 9)
    for source in (str(path), path, ref[0], ref, ref.clone().requires_grad_(True)):
        t = to_tensor(source)
        check_rgb(t, 7, 9)
        assert torch.equal(t, ref)
        assert not t.requires_grad


def test_to_tensor_float64_and_clamp():
    x = torch.tensor([[[-0.5, 0.5], [1.5, 1.0]]] * 3, dtype=torch.float64)
    t = to_tensor(x)
    check_rgb(t, 2, 2)
    assert t[0, 0].tolist() == [[0.0, 0.5], [1.0, 1.0]]


def test_to_tensor_does_not_alias_input():
    x = torch.full((1, 3, 4, 4), 0.5)
    t = to_tensor(x)
    t.fill_(0.0)
    assert (x == 0.5).all()


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(4, 4),  # (H, W)
        torch.rand(4, 5, 5),  # 4 channels
        torch.rand(2, 3, 5, 5),  # a batch of 2
        torch.rand(1, 2, 5, 5),  # 2 channels
        torch.rand(1, 1, 3, 5, 5),  # 5-D
        torch.rand(5),  # 1-D
        torch.full((1, 3, 4, 4), float("nan")),
        torch.tensor([[[0.5, float("nan")]]] * 3),
        torch.tensor([[[0.5, float("inf")]]] * 3),
        torch.zeros(1, 3, 4, 4, dtype=torch.uint8),  # integers: range ambiguous
    ],
    ids=["2d", "4ch", "batch2", "2ch", "5d", "1d", "all-nan", "one-nan", "inf", "uint8"],
)
def test_to_tensor_rejects_bad_tensors(bad):
    with pytest.raises(ImageError) as info:
        to_tensor(bad, "style image")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("style image")


@pytest.mark.parametrize("bad", [42, None, b"bytes.png", np.zeros((4, 4, 3)), [1, 2, 3]])
def test_to_tensor_rejects_other_types(bad):
    with pytest.raises(ImageError) as info:
        to_tensor(bad)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------- resize / convert


@pytest.mark.parametrize(
    "h, w, long_edge",
    [(48, 64, 32), (64, 48, 100), (37, 101, 50), (101, 37, 64), (50, 50, 17), (3, 200, 64), (48, 64, 64)],
)
def test_resize_long_edge(h, w, long_edge):
    x = torch.rand(1, 3, h, w)
    y = resize_long_edge(x, long_edge)
    nh, nw = y.shape[-2:]
    assert y.shape[:2] == (1, 3)
    assert max(nh, nw) == long_edge  # exactly
    assert (nh >= nw) == (h >= w)  # orientation kept
    # aspect ratio kept to within the rounding of the short edge
    short, new_short = min(h, w), min(nh, nw)
    assert abs(new_short - short * long_edge / max(h, w)) <= 0.5 + 1e-9
    assert y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1


def test_resize_long_edge_same_size_is_identity():
    x = torch.rand(1, 3, 48, 64)
    assert torch.equal(resize_long_edge(x, 64), x)


def test_resize_constant_stays_constant():
    x = torch.full((1, 3, 30, 40), 0.25)
    y = resize_long_edge(x, 17)
    assert torch.allclose(y, torch.full_like(y, 0.25), atol=1e-5)


def test_tensor_to_pil_round_trip():
    im = noise_rgb(11, 6)
    back = tensor_to_pil(to_tensor(im))
    assert back.mode == "RGB" and back.size == (11, 6)
    assert np.array_equal(np.asarray(back), np.asarray(im))
    assert tensor_to_pil(to_tensor(im)[0]).size == (11, 6)  # (3, H, W) too
