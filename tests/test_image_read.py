"""Image loading, conversion, resizing and saving (stylelab.image). No VGG needed; every test is fast."""

from __future__ import annotations

import http.server
import io
import json
import os
import stat
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import bomb_png, noise_rgb, png_chunk, truncated
from PIL import Image, ImageCms, JpegImagePlugin, features

from stylelab import image as si
from stylelab.image import (
    ImageError,
    Picture,
    check_output_path,
    is_url,
    load_alpha,
    open_image,
    read_image,
    read_metadata,
    resize_long_edge,
    save_image,
    tensor_to_pil,
    to_tensor,
)

# --------------------------------------------------------------------------------------------------- helpers

TOL = 1.0 / 255.0 + 1e-6  # one 8-bit level


def check_rgb(t: torch.Tensor, h: int, w: int) -> None:
    """The common contract: (1, 3, H, W) float32 RGB in [0, 1], finite."""
    assert isinstance(t, torch.Tensor)
    assert t.shape == (1, 3, h, w)
    assert t.dtype == torch.float32
    assert torch.isfinite(t).all()
    assert t.min() >= 0.0 and t.max() <= 1.0


def px(t: torch.Tensor, x: int, y: int) -> list[float]:
    """RGB of the pixel at column x, row y of a (1, 3, H, W) tensor."""
    return t[0, :, y, x].tolist()


def assert_px(t: torch.Tensor, x: int, y: int, expected, tol: float = 1e-6) -> None:
    got = px(t, x, y)
    assert got == pytest.approx(list(expected), abs=tol), f"pixel ({x},{y}): got {got}, expected {expected}"


def load(im: Image.Image, tmp_path: Path, name: str, **save_kwargs) -> torch.Tensor:
    """Write `im` to a file and load it back through the public path-based loader."""
    path = tmp_path / name
    im.save(path, **save_kwargs)
    return to_tensor(path)


def temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


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


def _palette_image() -> Image.Image:
    im = Image.new("P", (3, 1))
    palette = [255, 0, 0, 0, 0, 255, 12, 34, 56] + [0] * (256 * 3 - 9)
    im.putpalette(palette)
    im.putdata([0, 1, 2])
    return im


def test_palette_P(tmp_path):
    t = load(_palette_image(), tmp_path, "pal.png")
    check_rgb(t, 1, 3)
    assert_px(t, 0, 0, [1.0, 0.0, 0.0])
    assert_px(t, 1, 0, [0.0, 0.0, 1.0])
    assert_px(t, 2, 0, [12 / 255.0, 34 / 255.0, 56 / 255.0])


def test_palette_P_with_transparency(tmp_path):
    path = tmp_path / "pal_t.png"
    _palette_image().save(path, transparency=1)  # palette index 1 (blue) is transparent
    assert Image.open(path).mode == "P"
    t = to_tensor(path)
    check_rgb(t, 1, 3)
    assert_px(t, 0, 0, [1.0, 0.0, 0.0])
    assert_px(t, 1, 0, [1.0, 1.0, 1.0])  # the transparent index becomes white, not blue
    assert_px(t, 2, 0, [12 / 255.0, 34 / 255.0, 56 / 255.0])


def test_palette_P_with_transparency_gif(tmp_path):
    path = tmp_path / "pal_t.gif"
    _palette_image().save(path, transparency=1)
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


# ----------------------------------------------------------------------------------------- open_image errors


def _missing(tmp_path):
    return tmp_path / "nope.png"


def _directory(tmp_path):
    d = tmp_path / "folder.png"
    d.mkdir()
    return d


def _text(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n" * 20)
    return p


def _text_txt(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    return p


def _empty(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    return p


def _truncated_png(tmp_path):
    return truncated(tmp_path / "cut.png", "PNG")


def _truncated_jpeg(tmp_path):
    return truncated(tmp_path / "cut.jpg", "JPEG")


def _png_header_only(tmp_path):
    p = tmp_path / "header.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return p


def _bomb(tmp_path):
    return bomb_png(tmp_path / "bomb.png")


def _cut16(tmp_path, name):
    path = save_image(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), tmp_path / name,
                      bit_depth=16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_png16(tmp_path):
    return _cut16(tmp_path, "cut16.png")


def _truncated_tiff16(tmp_path):
    return _cut16(tmp_path, "cut16.tif")


def _png16_bad_crc(tmp_path):
    path = save_image(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), tmp_path / "crc.png",
                      bit_depth=16)
    data = bytearray(path.read_bytes())
    data[data.index(b"IDAT") + 10] ^= 0xFF  # one flipped byte inside the compressed pixels
    path.write_bytes(bytes(data))
    return path


ERROR_CASES = {
    "missing": (_missing, "not found"),
    "directory": (_directory, "directory"),
    "text-as-png": (_text, "not an image"),
    "text-file": (_text_txt, "not an image"),
    "zero-byte": (_empty, "empty"),
    "truncated-png": (_truncated_png, "truncated"),
    "truncated-jpeg": (_truncated_jpeg, "truncated"),
    "garbage-after-png-signature": (_png_header_only, ""),
    "decompression-bomb": (_bomb, "too large"),
    "truncated-png16": (_truncated_png16, "truncated"),
    "truncated-tiff16": (_truncated_tiff16, "truncated"),
    "png16-bad-crc": (_png16_bad_crc, "corrupt"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_open_image_errors(tmp_path, case):
    make, phrase = ERROR_CASES[case]
    path = make(tmp_path)
    for call in (lambda: open_image(path, "content image"), lambda: to_tensor(path, "content image")):
        with pytest.raises(ImageError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and msg.strip() == msg and msg
        assert msg.startswith("content image")  # names what it was
        assert path.name in msg  # and which file
        assert phrase in msg


def test_image_error_is_a_stylelab_error_and_value_error():
    from stylelab.errors import StylelabError

    assert issubclass(ImageError, StylelabError)
    assert issubclass(ImageError, ValueError)


def test_bomb_between_pillow_and_stylelab_limits(tmp_path, monkeypatch):
    """With Pillow's own guard off, stylelab's MAX_PIXELS still refuses a large image at open."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    side = int(si.MAX_PIXELS**0.5) + 10
    path = bomb_png(tmp_path / "big.png", side, side)
    with pytest.raises(ImageError, match="too large") as info:
        open_image(path)
    assert "\n" not in str(info.value)


def test_image_under_max_pixels_is_not_called_too_large(tmp_path):
    """96M px is over Pillow's bomb-warning limit (~89.5M) but under MAX_PIXELS (100M): not 'too large'.
    The header-only file then fails as truncated/corrupt. (Regression: it used to say 'over 100,000,000 pixels'.)"""
    assert 10_000 * 9_600 < si.MAX_PIXELS
    path = bomb_png(tmp_path / "big.png", 10_000, 9_600)
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert "too large" not in str(info.value), str(info.value)


def test_bomb_rejected_from_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)  # refused from the header, nothing allocated
    path = bomb_png(tmp_path / "bomb.png", 60_000, 50_000)
    with pytest.raises(ImageError, match="too large"):
        to_tensor(path)


# ----------------------------------------------------------------------------------------------- save_image


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_save_image_atomic_and_normal_permissions(tmp_path, umask022):
    t = to_tensor(noise_rgb(10, 6))
    out = save_image(t, tmp_path / "out.png")
    assert out == tmp_path / "out.png"
    assert out.is_file()
    assert temp_leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode != 0o600
    assert mode == 0o644  # 0666 & ~umask, like any normally created file
    back = to_tensor(out)
    assert torch.equal(back, t)  # PNG is lossless and t is exactly on the 8-bit grid


def test_save_image_overwrites_existing(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    save_image(Image.new("RGB", (5, 4), (1, 2, 3)), out)
    with Image.open(out) as im:
        assert im.size == (5, 4) and im.getpixel((0, 0)) == (1, 2, 3)
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".PNG", ".JPG"])
def test_save_image_formats(tmp_path, ext):
    if ext == ".webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    out = save_image(to_tensor(noise_rgb(12, 8)), tmp_path / f"out{ext}")
    with Image.open(out) as im:
        assert im.size == (12, 8)
        assert im.format == si.SAVE_FORMATS[ext.lower()]
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.gif", "out.xyz", "out", "out.png.bak"])
def test_save_image_refuses_unknown_extension(tmp_path, name):
    with pytest.raises(ImageError) as info:
        save_image(Image.new("RGB", (4, 4)), tmp_path / name)
    assert "\n" not in str(info.value)
    assert ".png" in str(info.value)  # lists the valid choices
    assert list(tmp_path.iterdir()) == []


def test_save_image_refuses_missing_folder(tmp_path):
    with pytest.raises(ImageError, match="does not exist") as info:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "no" / "such" / "out.png")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_save_image_refuses_directory_target(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(ImageError, match="directory"):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    assert temp_leftovers(tmp_path) == []


def test_save_image_refuses_unwritable_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root, so this cannot be tested for real")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImageError, match="not writable") as info:
            save_image(Image.new("RGB", (4, 4)), folder / "out.png")
        assert "\n" not in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_save_image_refuses_unwritable_folder_simulated(tmp_path, monkeypatch):
    """Runs as root too: the access check itself is simulated, the rest is real."""
    monkeypatch.setattr(si.os, "access", lambda path, mode: False)
    with pytest.raises(ImageError, match="not writable") as info:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _failing_save(exc):
    def save(self, fp, *args, **kwargs):
        if hasattr(fp, "write"):
            fp.write(b"partial data")  # a real failure may leave half a file behind
        raise exc

    return save


def test_save_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", _failing_save(OSError(28, "No space left on device")))
    with pytest.raises(ImageError) as info:
        save_image(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    msg = str(info.value)
    assert "\n" not in msg
    assert "out.png" in msg and "No space left on device" in msg
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file


def test_save_failure_keeps_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "out.png"
    Image.new("RGB", (3, 3), (9, 9, 9)).save(out)
    before = out.read_bytes()
    monkeypatch.setattr(Image.Image, "save", _failing_save(OSError(5, "Input/output error")))
    with pytest.raises(ImageError):
        save_image(Image.new("RGB", (4, 4)), out)
    assert out.read_bytes() == before  # the old image survives intact
    assert temp_leftovers(tmp_path) == []


def test_save_interrupted_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", _failing_save(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


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


# ---------------------------------------------------------------------------------------------- URL inputs


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.routes` {path: (body, send_length)}; /slow answers after a second; anything else is 404."""

    def do_GET(self):
        try:
            if self.path == "/slow.png":
                time.sleep(1.0)
            body, send_length = self.server.routes.get(self.path, (None, True))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            if send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes = {}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def serve(http_server, monkeypatch):
    """serve(path, body) -> the URL of `body` on a local server (proxies from the environment switched off)."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    def add(path: str, body: bytes = b"", send_length: bool = True) -> str:
        http_server.routes[path] = (body, send_length)
        return f"http://127.0.0.1:{http_server.server_port}{path}"

    return add


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("s, expected", [
    ("http://example.com/a.png", True), ("https://example.com/a.jpg", True), ("HTTPS://X.ORG/A", True),
    ("ftp://example.com/a.png", False), ("file:///tmp/a.png", False), ("/tmp/http://a.png", False),
    ("http:/a.png", False), ("style.png", False), (Path("http://a.png"), False), (b"http://a.png", False),
])
def test_is_url(s, expected):
    assert is_url(s) is expected


def test_url_loads_like_the_file(serve, tmp_path):
    im = noise_rgb(9, 7)
    url = serve("/noise.png", png_bytes(im))
    path = tmp_path / "noise.png"
    im.save(path)
    t = to_tensor(url, "style image")
    check_rgb(t, 7, 9)
    assert torch.equal(t, to_tensor(path))
    assert open_image(url).size == (9, 7)


def test_url_without_content_length(serve):
    url = serve("/nolength.png", png_bytes(noise_rgb(5, 4)), send_length=False)
    check_rgb(to_tensor(url), 4, 5)


def test_url_alpha_and_metadata(serve, tmp_path):
    t = to_tensor(noise_rgb(6, 4))
    alpha = torch.linspace(0, 1, 24).reshape(1, 1, 4, 6)
    path = save_image(t, tmp_path / "a.png", alpha=alpha, metadata={"k": "v"})
    url = serve("/alpha.png", path.read_bytes())
    assert torch.allclose(load_alpha(url), alpha, atol=TOL / 2)
    assert read_metadata(url) == {"k": "v"}


def assert_one_line_error(info, *phrases):
    msg = str(info.value)
    assert msg and "\n" not in msg and msg.strip() == msg
    for phrase in phrases:
        assert phrase in msg, msg


def test_url_404(serve):
    url = serve("/exists.png", b"x").replace("/exists.png", "/missing.png")
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "cannot download style image from", url, "404")


def test_url_connection_refused():
    with pytest.raises(ImageError) as info:
        open_image("http://127.0.0.1:1/x.png", "style image")
    assert_one_line_error(info, "cannot download style image from http://127.0.0.1:1/x.png: ")


def test_url_timeout(serve, monkeypatch):
    monkeypatch.setattr(si, "DOWNLOAD_TIMEOUT_S", 0.2)
    url = serve("/slow.png", png_bytes(noise_rgb(4, 4)))  # answers after a second, after the 0.2 s timeout
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "cannot download style image", "timed out")


def test_url_not_an_image(serve):
    url = serve("/page.html", b"<html><body>hello</body></html>")
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "style image is not an image file", url)


def test_url_empty(serve):
    url = serve("/empty.png", b"")
    with pytest.raises(ImageError) as info:
        to_tensor(url)
    assert_one_line_error(info, "empty", url)


@pytest.mark.parametrize("send_length", [True, False], ids=["declared", "streamed"])
def test_url_too_large(serve, monkeypatch, send_length):
    monkeypatch.setattr(si, "MAX_DOWNLOAD_BYTES", 100)
    url = serve(f"/big{send_length}.png", png_bytes(noise_rgb(20, 20)), send_length)
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "style image at", "larger than")


def test_url_truncated_image(serve):
    data = png_bytes(noise_rgb(30, 30))
    url = serve("/cut.png", data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        to_tensor(url)
    assert_one_line_error(info, "truncated", url)


# ------------------------------------------------------------------------------------------------ ICC profiles

_D50 = (0.9642, 1.0, 0.8249)
_SRGB_PRIMARIES_D50 = ((0.4360747, 0.2225045, 0.0139322), (0.3850649, 0.7168786, 0.0971045),
                       (0.1430804, 0.0606169, 0.7141733))  # sum to D50: neutral stays neutral


def icc_profile(gamma: float, grey: bool = False) -> bytes:
    """A minimal ICC v2 display profile: sRGB's primaries with a pure power-law curve (or a grey one), so with
    gamma 1 it is linear-light sRGB and the conversion to sRGB has a closed form."""
    def s15(x):
        return struct.pack(">i", round(x * 65536))

    def xyz(v):
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    text = b"test gamma profile\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * (12 + 67)
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz(_D50))]
    if grey:
        tags.append((b"kTRC", curve))
    else:
        tags += [(b"rXYZ", xyz(_SRGB_PRIMARIES_D50[0])), (b"gXYZ", xyz(_SRGB_PRIMARIES_D50[1])),
                 (b"bXYZ", xyz(_SRGB_PRIMARIES_D50[2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    header = (struct.pack(">I", offset + len(body)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntr"
              + (b"GRAY" if grey else b"RGB ") + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24
              + b"".join(s15(c) for c in _D50))
    return header.ljust(128, b"\0") + table + body


def srgb_encode(x: float) -> float:
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


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
    _palette_image().save(tmp_path / "pal.png", transparency=1)
    assert load_alpha(tmp_path / "pal.png")[0, 0, 0].tolist() == [1.0, 0.0, 1.0]
    _palette_image().save(tmp_path / "pal.gif", transparency=1)
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
    _palette_image().save(tmp_path / "pal.png")
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


# ------------------------------------------------------------------------------------------------- 16 bits


def gradient16(h: int = 256, w: int = 256) -> np.ndarray:
    """(h, w, 3) uint16: every channel takes h*w distinct values (all 65536 of them at 256 x 256)."""
    ramp = np.arange(h * w, dtype=np.int64) * 65535 // (h * w - 1)
    r = ramp.reshape(h, w)
    return np.dstack([r, r[::-1, ::-1], r.T if h == w else r[:, ::-1]]).astype(np.uint16)


def from16(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint16 -> (1, C, H, W) float32 in [0, 1]."""
    return torch.from_numpy(pixels.transpose(2, 0, 1) / 65535.0).float()[None]


MAX16 = 1.5 / 65535  # the promised round-trip error: well under one 16-bit level
EXTS16 = [".png", ".tif", ".tiff", ".PNG"]


@pytest.mark.parametrize("ext", EXTS16)
def test_16bit_round_trip_keeps_all_levels(tmp_path, ext):
    pixels = gradient16()
    out = save_image(from16(pixels), tmp_path / f"g{ext}", bit_depth=16)
    t = to_tensor(out)
    check_rgb(t, 256, 256)
    assert (t - from16(pixels)).abs().max() < MAX16
    assert len(torch.unique(t[0, 0])) == 65536  # 8 bits would give 256
    with Image.open(out) as im:  # a real 16-bit file that Pillow reads too (at 8 bits)
        assert im.format == si.SAVE_FORMATS[ext.lower()] and im.mode == "RGB" and im.size == (256, 256)
        if im.format == "TIFF":
            assert im.tag_v2[258] == (16, 16, 16)
    if ext.lower() == ".png":
        assert out.read_bytes()[24:26] == bytes([16, 2])  # IHDR: bit depth 16, colour type 2 (RGB)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgba_round_trip(tmp_path, ext):
    pixels = gradient16(64, 128)
    alpha = from16(gradient16(64, 128)[..., 1:2])
    out = save_image(from16(pixels), tmp_path / f"a{ext}", bit_depth=16, alpha=alpha)
    a = load_alpha(out)
    assert a.shape == (1, 1, 64, 128)
    assert (a - alpha).abs().max() < MAX16
    assert len(torch.unique(a)) > 4096
    rgb = from16(pixels)
    assert (to_tensor(out) - (rgb * alpha + 1 - alpha)).abs().max() < 2 * MAX16  # composited over white
    with Image.open(out) as im:
        assert im.mode == "RGBA"
        if im.format == "TIFF":
            assert im.tag_v2[258] == (16, 16, 16, 16) and im.tag_v2[338] == (2,)  # unassociated alpha
        else:
            assert out.read_bytes()[24:26] == bytes([16, 6])


def test_read_image_keeps_16_bits_and_saves_them(tmp_path):
    pixels = gradient16(32, 64)
    alpha = from16(gradient16(32, 64)[..., 2:3])
    first = save_image(from16(pixels), tmp_path / "a.png", bit_depth=16, alpha=alpha)
    picture = read_image(first)
    assert isinstance(picture, Picture) and picture.size == (64, 32)
    second = save_image(picture, tmp_path / "b.tif", bit_depth=16)  # colour and alpha, both at 16 bits
    assert (load_alpha(second) - alpha).abs().max() < MAX16
    assert (load_alpha(picture) - alpha).abs().max() < MAX16
    rgb = from16(pixels) * alpha + 1 - alpha
    assert (to_tensor(second) - rgb).abs().max() < 2 * MAX16
    assert (to_tensor(picture) - rgb).abs().max() < 2 * MAX16


def test_open_image_is_pillows_8bit_reading(tmp_path):
    pixels = gradient16(32, 64)
    im = open_image(save_image(from16(pixels), tmp_path / "a.png", bit_depth=16))
    assert isinstance(im, Image.Image) and im.mode == "RGB"
    err = (to_tensor(im) - from16(pixels)).abs().max()
    assert 0.5 / 255 - 1e-6 < err <= TOL  # the high bytes (Pillow's 8 bits), not the 16-bit pixels


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp", ".bmp"])
def test_16bit_only_png_and_tiff(tmp_path, ext):
    with pytest.raises(ImageError) as info:
        save_image(torch.rand(1, 3, 4, 4), tmp_path / f"x{ext}", bit_depth=16)
    assert_one_line_error(info, "16-bit", ".png", ".tif")
    with pytest.raises(ImageError):
        check_output_path(tmp_path / f"x{ext}", 16)  # the CLI can fail before any work
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bits", [0, 1, 12, 32, "16"])
def test_bit_depth_must_be_8_or_16(tmp_path, bits):
    with pytest.raises(ImageError) as info:
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "x.png", bit_depth=bits)
    assert_one_line_error(info, "8 or 16")
    assert list(tmp_path.iterdir()) == []


def png_filter(rows: np.ndarray, bpp: int, ftypes: list[int]) -> bytes:
    """Reference PNG filtering, byte by byte as the spec writes it: rows (H, stride) uint8 -> filtered data."""
    def paeth(a, b, c):
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else b if pb <= pc else c

    out, prev = bytearray(), [0] * rows.shape[1]
    for row, f in zip(rows.tolist(), ftypes):
        out.append(f)
        for i, x in enumerate(row):
            a, b, c = (row[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
            out.append((x - [0, a, b, (a + b) // 2, paeth(a, b, c)][f]) % 256)
        prev = row
    return bytes(out)


def crafted_png16(pixels: np.ndarray, ctype: int, ftypes: list[int], extra: bytes = b"") -> bytes:
    """A 16-bit PNG as another encoder may write it: the given row filters, `extra` chunks before IDAT."""
    h, w, c = pixels.shape
    rows = pixels.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    idat = zlib.compress(png_filter(rows, c * 2, ftypes))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


FILTERS = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 4, 3]  # every PNG filter, in runs and next to each other


@pytest.mark.parametrize("ctype, channels", [(2, 3), (6, 4), (4, 2)], ids=["rgb", "rgba", "grey-alpha"])
def test_16bit_png_all_filters(tmp_path, ctype, channels):
    pixels = np.random.default_rng(ctype).integers(0, 65536, (len(FILTERS), 9, channels), dtype=np.uint16)
    path = tmp_path / "filtered.png"
    path.write_bytes(crafted_png16(pixels, ctype, FILTERS))
    t, a = to_tensor(path), load_alpha(path)
    x = from16(pixels)
    rgb = x[:, :3] if channels >= 3 else x[:, :1].expand(1, 3, -1, -1)
    if channels in (2, 4):
        assert (a - x[:, -1:]).abs().max() < MAX16
        rgb = rgb * x[:, -1:] + 1 - x[:, -1:]
    assert (t - rgb).abs().max() < 2 * MAX16


def test_16bit_png_colour_key_is_alpha(tmp_path):
    pixels = np.array([[[1, 2, 3], [4, 5, 6], [1, 2, 3]]], dtype=np.uint16)
    trns = png_chunk(b"tRNS", struct.pack(">3H", 1, 2, 3))
    path = tmp_path / "key16.png"
    path.write_bytes(crafted_png16(pixels, 2, [0], extra=trns))
    assert load_alpha(path)[0, 0, 0].tolist() == [0.0, 1.0, 0.0]


def _exif_chunk(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return png_chunk(b"eXIf", exif.tobytes()[6:])  # PNG stores the TIFF data without the "Exif\0\0" prefix


ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
          8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", sorted(ORIENT))
def test_16bit_png_exif_orientation_keeps_precision(tmp_path, orientation):
    pixels = gradient16(16, 24)
    path = tmp_path / "o.png"
    path.write_bytes(crafted_png16(pixels, 2, [0] * 16, extra=_exif_chunk(orientation)))
    t = to_tensor(path)
    expected = from16(np.ascontiguousarray(ORIENT[orientation](pixels)))
    assert t.shape == expected.shape
    assert (t - expected).abs().max() < MAX16
    with Image.open(path) as opened:  # Pillow's own 8-bit reading (high bytes) agrees
        assert (to_tensor(opened) - t).abs().max() <= TOL


def test_16bit_png_with_icc_profile_converted(tmp_path):
    pixels = np.full((2, 2, 3), 128 * 257, dtype=np.uint16)
    iccp = png_chunk(b"iCCP", b"linear\0\0" + zlib.compress(icc_profile(1.0)))
    path = tmp_path / "icc16.png"
    path.write_bytes(crafted_png16(pixels, 2, [0, 0], extra=iccp))
    assert_px(to_tensor(path), 0, 0, [srgb_encode(128 / 255)] * 3, tol=1.5 / 255)  # colour first, at 8 bits


def test_16bit_interlaced_png_keeps_precision(tmp_path):
    """An Adam7 (interlaced) 16-bit PNG, which Pillow reads at 8 bits, keeps its 16."""
    pixels = np.array([[[0, 1000, 65535], [300, 40000, 2]], [[65535, 0, 0], [12345, 54321, 32768]]], np.uint16)
    be = pixels.astype(">u2")
    # 2 x 2 in Adam7: pass 1 has pixel (0,0), pass 6 pixel (1,0), pass 7 row 1; each reduced row has a filter byte
    raw = b"".join(b"\0" + part.tobytes() for part in (be[0, :1], be[0, 1:], be[1]))
    ihdr = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 1)
    path = tmp_path / "adam7.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
                     + png_chunk(b"IEND", b""))
    assert (to_tensor(path) - from16(pixels)).abs().max() < MAX16


@pytest.mark.parametrize("byteorder", ["<", ">"], ids=["II", "MM"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_16bit_tiff_from_another_writer(tmp_path, byteorder, compression):
    """TIFFs as other tools write them: either byte order (big-endian "MM" too), compressed or not."""
    pixels = gradient16(3, 5)
    path = tmp_path / "other.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", byteorder=byteorder, compression=compression)
    assert path.read_bytes()[:2] == (b"II" if byteorder == "<" else b"MM")
    assert (to_tensor(path) - from16(pixels)).abs().max() < MAX16


@pytest.mark.parametrize("extra, straight", [("unassalpha", True), ("assocalpha", False), ("unspecified", None)])
def test_16bit_tiff_extra_samples(tmp_path, extra, straight):
    """A 4th sample is straight alpha, premultiplied alpha (divided out) or, unspecified, no alpha at all."""
    rgb = gradient16(4, 6)
    a = np.full((4, 6, 1), 32768, np.uint16)
    stored = rgb if straight is not False else np.round(rgb * (32768 / 65535)).astype(np.uint16)
    path = tmp_path / "extra.tif"
    tifffile.imwrite(path, np.dstack([stored, a]), photometric="rgb", extrasamples=(extra,))
    alpha = load_alpha(path)
    if straight is None:
        assert alpha is None
        assert (to_tensor(path) - from16(rgb)).abs().max() < MAX16
        return
    assert (alpha - 32768 / 65535).abs().max() < MAX16
    x, w = from16(rgb), 32768 / 65535
    tol = MAX16 if straight else 2.5 / 65535  # premultiplied: one rounding of the stored value, doubled by 1/a
    assert (to_tensor(path) - (x * w + 1 - w)).abs().max() < tol + MAX16


def test_corrupt_16bit_files_print_nothing(tmp_path, capfd):
    """OpenCV logs decoder errors to stderr; the library must not print, only raise."""
    for path in (_truncated_png16(tmp_path), _truncated_tiff16(tmp_path), _png16_bad_crc(tmp_path)):
        with pytest.raises(ImageError):
            to_tensor(path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ----------------------------------------------------------------------------------------------- metadata

META = {"stylelab": json.dumps({"steps": 300, "style": "Stürme über 東京 — ✓"}), "Comment": "naïve café"}


@pytest.mark.parametrize("bits", [8, 16])
def test_metadata_png_round_trip(tmp_path, bits):
    out = save_image(torch.rand(1, 3, 4, 5), tmp_path / "m.png", bit_depth=bits, metadata=META)
    assert read_metadata(out) == META
    assert read_metadata(str(out)) == META
    with Image.open(out) as im:
        assert {k: str(v) for k, v in im.text.items()} == META  # plain iTXt that Pillow reads too
    assert json.loads(read_metadata(out)["stylelab"])["steps"] == 300


def test_metadata_pil_image_png(tmp_path):
    out = save_image(noise_rgb(5, 4), tmp_path / "m.png", metadata={"a": "1"})
    assert read_metadata(out) == {"a": "1"}


@pytest.mark.parametrize("ext", [".jpg", ".webp", ".tif", ".bmp"])
def test_metadata_ignored_by_other_formats(tmp_path, ext):
    out = save_image(torch.rand(1, 3, 4, 5), tmp_path / f"m{ext}", metadata=META)
    assert read_metadata(out) == {}


def test_read_metadata_png_without_text(tmp_path):
    noise_rgb(4, 4).save(tmp_path / "plain.png")
    assert read_metadata(tmp_path / "plain.png") == {}


@pytest.mark.parametrize("case", ["missing", "directory", "text-as-png", "zero-byte", "decompression-bomb"])
def test_read_metadata_errors(tmp_path, case):
    make, phrase = ERROR_CASES[case]
    path = make(tmp_path)
    with pytest.raises(ImageError) as info:
        read_metadata(path, "replay image")
    assert_one_line_error(info, "replay image", path.name, phrase)


@pytest.mark.parametrize("bad", [
    {"": "x"}, {"k" * 80: "x"}, {"a\nb": "x"}, {" lead": "x"}, {"two  spaces": "x"}, {"東京": "x"},
    {"k": "nul\0"}, {"k": 42}, {3: "x"}, [("k", "v")],
], ids=["empty", "long", "newline", "leading-space", "double-space", "non-latin1", "nul", "int-value",
       "int-key", "list"])
def test_metadata_rejects_bad_keys(tmp_path, bad):
    with pytest.raises(ImageError) as info:
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "m.png", metadata=bad)
    assert_one_line_error(info, "metadata")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ JPEG / WebP settings


def test_jpeg_quality_95_full_chroma(tmp_path):
    out = save_image(to_tensor(noise_rgb(32, 16)), tmp_path / "q.jpg")
    ref = tmp_path / "ref.jpg"
    noise_rgb(32, 16).save(ref, quality=95, subsampling=0)
    with Image.open(out) as im, Image.open(ref) as expected:
        assert im.format == "JPEG"
        assert im.quantization == expected.quantization  # the tables quality 95 makes
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4


def test_webp_is_lossy(tmp_path):
    if not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    out = save_image(to_tensor(noise_rgb(32, 16)), tmp_path / "q.webp")
    data = out.read_bytes()
    assert data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8 "  # VP8 (lossy), not VP8L (lossless)
    with Image.open(out) as im:
        assert im.format == "WEBP"


# ---------------------------------------------------------------------------------- atomic hand-written files


@pytest.mark.parametrize("ext, bits", [(".png", 8), (".png", 16), (".tif", 16), (".jpg", 8)])
def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch, ext, bits):
    old = tmp_path / f"old{ext}"
    Image.new("RGB", (3, 3), (9, 9, 9)).save(old)
    before = old.read_bytes()

    def fsync(fd):  # the data is written, then the disk reports it full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(si.os, "fsync", fsync)
    for target in (tmp_path / f"new{ext}", old):
        with pytest.raises(ImageError) as info:
            save_image(torch.rand(1, 3, 8, 8), target, bit_depth=bits, metadata={"a": "b"})
        assert_one_line_error(info, target.name, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name]
    assert old.read_bytes() == before


def test_16bit_save_interrupted_leaves_nothing(tmp_path, monkeypatch):
    def fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(si.os, "fsync", fsync)
    with pytest.raises(KeyboardInterrupt):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.tif", bit_depth=16)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_nan_tensor(tmp_path):
    with pytest.raises(ImageError) as info:
        save_image(torch.full((1, 3, 4, 4), float("nan")), tmp_path / "x.png")
    assert_one_line_error(info, "output image", "NaN")
    assert list(tmp_path.iterdir()) == []
