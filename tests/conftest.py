"""Shared fixtures and helpers: small inputs drawn by stylelab.samples (no files from outside the repo), and the
hand-made broken files that several test modules feed to the loaders (`from conftest import bomb_png, ...`)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylelab import samples


@pytest.fixture(scope="session")
def content_image() -> Image.Image:
    return samples.landscape(120, 80)


@pytest.fixture(scope="session")
def style_image() -> Image.Image:
    return samples.swirls(120, 80, seed=1)


@pytest.fixture(scope="session")
def style_image2() -> Image.Image:
    return samples.swirls(100, 100, seed=2).rotate(90)


@pytest.fixture
def input_files(tmp_path, content_image, style_image) -> tuple[Path, Path]:
    """The content and style images saved as tmp_path/c.png and tmp_path/s.png, for CLI tests."""
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    content_image.save(c)
    style_image.save(s)
    return c, s


def batch_folder(folder: Path, contents: int, turn: float, styles: int = 1) -> Path:
    """A folder of small content images (the landscape turned by `turn` degrees more each) and swirl styles:
    c0.png, c1.png, ..., style.png, style2.png, ..."""
    folder.mkdir()
    for k in range(contents):
        samples.landscape(64, 48).rotate(turn * k).save(folder / f"c{k}.png")
    for k in range(styles):
        samples.swirls(56, 56, seed=k + 1).save(folder / ("style.png" if k == 0 else f"style{k + 1}.png"))
    return folder


def noise_rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    """Seeded uniform RGB noise."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB")


def png_chunk(tag: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, tag, data, CRC."""
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A tiny PNG whose IHDR declares `width` x `height` RGB pixels (no real pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b""))
    return path


def truncated(path: Path, fmt: str = "PNG") -> Path:
    """Noise saved as `fmt` at `path`, then cut to its first half."""
    noise_rgb().save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
