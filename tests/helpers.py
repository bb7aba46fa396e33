"""Helpers shared by the test modules (their fixtures live in the conftest.py files): small inputs drawn by
stylelab.samples, hand-made broken files for the loaders, pixel checks, command-line checks and short video clips.
The tests import them as `from helpers import ...` (pytest puts tests/ on the path).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylelab
from stylelab import samples
from stylelab.cli import main
from stylelab.image import save_image, to_tensor

# ---------------------------------------------------------------------------------------------------- inputs


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


def noise_png(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    """Seeded blocks of colour (8 x 8 px) saved at `path`."""
    rng = np.random.default_rng(seed)
    # smooth-ish noise: blocks of colour, so the style has some structure
    small = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    Image.fromarray(small).resize((w, h), Image.NEAREST).save(path)
    return path


# ----------------------------------------------------------------------------------------------- broken files


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


def truncated_png16(tmp_path):
    return _cut16(tmp_path, "cut16.png")


def truncated_tiff16(tmp_path):
    return _cut16(tmp_path, "cut16.tif")


def png16_bad_crc(tmp_path):
    path = save_image(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), tmp_path / "crc.png",
                      bit_depth=16)
    data = bytearray(path.read_bytes())
    data[data.index(b"IDAT") + 10] ^= 0xFF  # one flipped byte inside the compressed pixels
    path.write_bytes(bytes(data))
    return path


# what makes a broken input in a folder -> a phrase of the one-line error it gives (open_image, read_metadata)
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
    "truncated-png16": (truncated_png16, "truncated"),
    "truncated-tiff16": (truncated_tiff16, "truncated"),
    "png16-bad-crc": (png16_bad_crc, "corrupt"),
}


# ------------------------------------------------------------------------------------------------ pixel checks


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


def palette_image() -> Image.Image:
    im = Image.new("P", (3, 1))
    palette = [255, 0, 0, 0, 0, 255, 12, 34, 56] + [0] * (256 * 3 - 9)
    im.putpalette(palette)
    im.putdata([0, 1, 2])
    return im


def assert_one_line_error(info, *phrases):
    msg = str(info.value)
    assert msg and "\n" not in msg and msg.strip() == msg
    for phrase in phrases:
        assert phrase in msg, msg


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


# ---------------------------------------------------------------------------------------------- command line


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def expect_error(capsys, folder: Path, argv: list[str], phrase: str = "", prefix: str = "stylelab: error:") -> str:
    """Run main(argv); assert exit 2, one clean line on stderr, nothing on stdout, no new file in `folder`."""
    before = snapshot(folder)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert "Traceback" not in err
    assert err.startswith(prefix), err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert phrase.lower() in err.lower(), f"{phrase!r} not in {err!r}"
    assert out == ""
    assert snapshot(folder) == before, "a file was created"
    return err


def child_env() -> dict[str, str]:
    """The environment for a child Python that imports this checkout's stylelab, wherever it runs from."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(stylelab.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}


# ------------------------------------------------------------------------------------------------------ video

SR = 16000  # audio sample rate of the test clips


def moving_frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """A textured background panned 2 px per frame plus a bright bar: real structure for the flow and the VGG."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (h // 4 + 2, (w + 2 * n) // 4 + 2, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 4, small.shape[0] * 4), Image.BILINEAR))
    frames = []
    for k in range(n):
        a = big[:h, 2 * k:2 * k + w].copy()
        a[h // 3:h // 3 + 6, :] = 255
        frames.append(a)
    return frames


def make_clip(path: Path, n: int = 6, w: int = 64, h: int = 48, fps: int = 12, audio: bool = True) -> Path:
    """An H.264 mp4 of `n` frames at `fps`, with a 440 Hz AAC tone as long as the video when `audio`."""
    import av

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio:
            a = out.add_stream("aac", rate=SR)
            a.layout = "mono"
        for frame in moving_frames(n, w, h):
            for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if audio:
            total = SR * n // fps
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / SR)).astype(np.float32)
            for i in range(0, total, 1024):
                f = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="flt", layout="mono")
                f.sample_rate, f.pts = SR, i
                for p in a.encode(f):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


def streams(path: Path) -> dict[str, tuple[str, float]]:
    """type -> (codec, duration in seconds)."""
    import av

    with av.open(str(path)) as c:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base) if s.duration else 0.0)
                for s in c.streams}


def unknown_codec_clip(path: Path) -> Path:
    """A Matroska file whose video track names a codec FFmpeg has no decoder for (the H.264 codec id replaced by
    another of the same length, so the container stays valid)."""
    data = make_clip(path.with_name("h264.mkv"), n=3, audio=False).read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_STYLELAB/NONE"))
    path.with_name("h264.mkv").unlink()
    return path


def die_after_saving(monkeypatch, n: int):
    """The video CLI's frame saves, patched to act like a kill (KeyboardInterrupt) once `n` frames are saved.
    Returns (the saved paths, the real save_frame to patch back)."""
    import stylelab.cli.video as videocli

    saved, real = [], videocli.save_frame

    def save_then_die(image, path, **kw):
        if len(saved) == n:
            raise KeyboardInterrupt
        saved.append(path)
        return real(image, path, **kw)

    monkeypatch.setattr(videocli, "save_frame", save_then_die)
    return saved, real
