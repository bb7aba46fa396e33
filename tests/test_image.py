"""Image loading, conversion, resizing and saving (stylelab.image). No VGG needed; every test is fast."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from stylelab import image as si
from stylelab.image import ImageError, open_image, resize_long_edge, save_image, tensor_to_pil, to_tensor

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


def noise_rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB")


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A tiny PNG whose IHDR declares `width` x `height` RGB pixels (no real pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b""))
    return path


def truncated(path: Path, fmt: str) -> Path:
    noise_rgb().save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


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


def test_bomb_rejected_quickly(tmp_path):
    import time

    path = bomb_png(tmp_path / "bomb.png", 60_000, 50_000)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="too large"):
        to_tensor(path)
    assert time.perf_counter() - start < 2.0  # refused from the header, nothing allocated


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
