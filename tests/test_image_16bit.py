"""16-bit images (stylelab.image): PNG and TIFF read and written at full precision."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
import torch
from helpers import (
    TOL,
    assert_one_line_error,
    assert_px,
    check_rgb,
    icc_profile,
    png16_bad_crc,
    png_chunk,
    srgb_encode,
    truncated_png16,
    truncated_tiff16,
)
from PIL import Image

from stylelab import image as si
from stylelab.image import (
    ImageError,
    Picture,
    check_output_path,
    load_alpha,
    open_image,
    read_image,
    save_image,
    to_tensor,
)

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
    for path in (truncated_png16(tmp_path), truncated_tiff16(tmp_path), png16_bad_crc(tmp_path)):
        with pytest.raises(ImageError):
            to_tensor(path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
