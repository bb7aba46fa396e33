"""Saving images (stylelab.image.save_image): formats, atomic writes, permissions, JPEG/WebP settings, metadata."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from helpers import (
    ERROR_CASES,
    assert_one_line_error,
    noise_rgb,
)
from PIL import Image, JpegImagePlugin, features

from stylelab import image as si
from stylelab.image import (
    ImageError,
    read_metadata,
    save_image,
    to_tensor,
)


def temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


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
