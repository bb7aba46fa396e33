"""16 bits per channel PNG and TIFF, the part Pillow lacks: it writes no 16-bit RGB(A) and reads it as 8-bit.

Pixels are (H, W, C) uint16 arrays: C = 3 (RGB) or 4 (RGBA, straight alpha); the PNG decoder also gives 1 (grey)
and 2 (grey + alpha). Malformed data raises ValueError; layouts left to Pillow make the decoders return None.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_IDAT_SIZE = 1 << 20  # split the zlib stream: any size is legal, but 1 MiB chunks stay far below the 2 GiB limit


def encode_png(pixels: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """(H, W, 3|4) uint16 -> 16-bit RGB(A) PNG bytes: filter 0 on every row, `text` as UTF-8 iTXt chunks."""
    h, w, c = pixels.shape
    raw = np.zeros((h, 1 + w * c * 2), np.uint8)  # column 0: the filter byte (0, none) of each row
    raw[:, 1:] = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(h, -1)
    idat = zlib.compress(raw.tobytes(), 6)
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0))]
    # iTXt: keyword NUL, not compressed (0, 0), empty language tag NUL, empty translated keyword NUL, UTF-8 text
    chunks += [(b"iTXt", k.encode("latin-1") + b"\0\0\0\0\0" + v.encode("utf-8")) for k, v in (text or {}).items()]
    chunks += [(b"IDAT", idat[i : i + _IDAT_SIZE]) for i in range(0, max(len(idat), 1), _IDAT_SIZE)]
    chunks += [(b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(_png_chunk(tag, data) for tag, data in chunks)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def is_png16(head: bytes) -> bool:
    """True if a PNG's first 29 bytes declare 16-bit colour or grey+alpha, not interlaced (what Pillow cuts to 8)."""
    return (len(head) >= 29 and head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16
            and head[25] in (2, 4, 6) and head[28] == 0)


def decode_png(data: bytes) -> np.ndarray | None:
    """16-bit non-interlaced PNG bytes -> (H, W, C) uint16, a tRNS colour key becoming alpha; None otherwise."""
    ihdr, idat, trns = None, [], None
    for tag, body in _png_chunks(data):
        if tag == b"IHDR":
            if len(body) != 13:
                raise ValueError("bad IHDR chunk")
            ihdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"tRNS":
            trns = body
    if ihdr is None:
        raise ValueError("no IHDR chunk")
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 16 or ctype not in _PNG_CHANNELS or interlace:
        return None
    c = _PNG_CHANNELS[ctype]
    size = h * (1 + w * c * 2)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), size)  # max_length: a bomb inflates no further
    except zlib.error as exc:
        raise ValueError(f"bad compressed data: {exc}") from None
    if len(raw) < size:
        raise ValueError("image data is truncated")
    rows = np.frombuffer(raw, np.uint8).reshape(h, -1)
    pixels = unfilter(rows[:, 0], rows[:, 1:].reshape(h, w, c * 2)).view(">u2").astype(np.uint16)
    if ctype in (0, 2) and trns is not None and len(trns) == 2 * c:
        key = np.frombuffer(trns, ">u2")
        alpha = np.where((pixels == key).all(axis=2), 0, 65535).astype(np.uint16)
        pixels = np.dstack([pixels, alpha])
    return pixels


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield (tag, body) up to IEND or the end of `data`, checking each CRC."""
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    pos = 8
    while pos + 8 <= len(data):
        n, tag = struct.unpack(">I4s", data[pos : pos + 8])
        body, crc = data[pos + 8 : pos + 8 + n], data[pos + 8 + n : pos + 12 + n]
        if len(crc) < 4:
            raise ValueError(f"{tag.decode('latin-1')} chunk is truncated")
        if zlib.crc32(tag + body) != int.from_bytes(crc, "big"):
            raise ValueError(f"bad CRC in {tag.decode('latin-1')} chunk")
        if tag == b"IEND":
            return
        yield tag, body
        pos += 12 + n


def unfilter(ftypes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Undo PNG row filters: ftypes (H,) in 0..4 and filtered bytes x (H, W, B) uint8 -> (H, W, B) uint8,
    B = bytes per pixel. out = x + pred(left a, up b, up-left c) mod 256, pred per row: 0, a, b, (a+b)//2, paeth."""
    if ftypes.max(initial=0) > 4:
        raise ValueError(f"bad PNG filter type {int(ftypes.max())}")
    if not ftypes.any():
        return np.ascontiguousarray(x)
    h, w, _ = x.shape
    out = np.zeros((h + 1, w + 1, x.shape[2]), np.int16)  # a zero row above and column to the left
    f = ftypes.astype(np.int16)[:, None]
    # Average and Paeth make each pixel depend on its left neighbour after unfiltering, so a row cannot be done
    # in one vector step; pixels on one anti-diagonal (r + col = d) only depend on earlier ones, so go by those.
    for d in range(h + w - 1):
        r = np.arange(max(0, d - w + 1), min(h, d + 1))
        col = d - r
        a, b, c = out[r + 1, col], out[r, col + 1], out[r, col]
        fr = f[r]
        pred = np.where(fr == 1, a, np.where(fr == 2, b, np.where(fr == 3, (a + b) >> 1, 0)))
        if (fr == 4).any():
            pred = np.where(fr == 4, _paeth(a, b, c), pred)
        out[r + 1, col + 1] = (x[r, col] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The PNG Paeth predictor: whichever of a, b, c is nearest to a + b - c (ties: a, then b)."""
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


# TIFF tag numbers and field types used below
_WIDTH, _LENGTH, _BITS, _COMPRESSION, _PHOTOMETRIC, _STRIP_OFFSETS = 256, 257, 258, 259, 262, 273
_SAMPLES, _ROWS_PER_STRIP, _STRIP_BYTES, _XRES, _YRES, _PLANAR, _RES_UNIT = 277, 278, 279, 282, 283, 284, 296
_PREDICTOR, _TILE_WIDTH, _EXTRA_SAMPLES, _SAMPLE_FORMAT = 317, 322, 338, 339
_SHORT, _LONG, _RATIONAL = 3, 4, 5


def encode_tiff(pixels: np.ndarray) -> bytes:
    """(H, W, 3|4) uint16 -> baseline little-endian TIFF bytes: uncompressed, one strip, alpha unassociated."""
    h, w, c = pixels.shape
    strip = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    n = 13 + (c == 4)
    bits_at = 8 + 2 + 12 * n + 4  # header, IFD, the values too long for an entry, then the strip: a cut file
    res_at = bits_at + 2 * c  # still has its IFD, so it reads as truncated rather than unknown
    strip_at = res_at + 16
    entries = [
        (_WIDTH, _LONG, 1, w), (_LENGTH, _LONG, 1, h), (_BITS, _SHORT, c, bits_at), (_COMPRESSION, _SHORT, 1, 1),
        (_PHOTOMETRIC, _SHORT, 1, 2), (_STRIP_OFFSETS, _LONG, 1, strip_at), (_SAMPLES, _SHORT, 1, c),
        (_ROWS_PER_STRIP, _LONG, 1, h), (_STRIP_BYTES, _LONG, 1, len(strip)), (_XRES, _RATIONAL, 1, res_at),
        (_YRES, _RATIONAL, 1, res_at + 8), (_PLANAR, _SHORT, 1, 1), (_RES_UNIT, _SHORT, 1, 2),
    ] + ([(_EXTRA_SAMPLES, _SHORT, 1, 2)] if c == 4 else [])
    ifd = struct.pack("<H", n) + b"".join(
        struct.pack("<HHIH2x" if typ == _SHORT and count == 1 else "<HHII", tag, typ, count, value)
        for tag, typ, count, value in entries
    ) + struct.pack("<I", 0)
    return (b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack(f"<{c}H", *[16] * c)
            + struct.pack("<4I", 72, 1, 72, 1) + strip)


def is_tiff16(tags: Mapping[int, object]) -> bool:
    """True for what `decode_tiff` reads (Pillow's parsed tags): 16-bit unsigned RGB(A) samples, chunky,
    uncompressed strips. Other 16-bit layouts (LZW, deflate, tiles, planes) stay with Pillow, at 8 bits."""
    c = tags.get(_SAMPLES, 1)
    return (c in (3, 4) and tuple(_seq(tags.get(_BITS, 1))) == (16,) * c and tags.get(_PHOTOMETRIC) == 2
            and tags.get(_COMPRESSION, 1) == 1 and tags.get(_PLANAR, 1) == 1 and _TILE_WIDTH not in tags
            and set(_seq(tags.get(_SAMPLE_FORMAT, 1))) == {1} and tags.get(_PREDICTOR, 1) == 1)


def decode_tiff(data: bytes, tags: Mapping[int, object]) -> np.ndarray:
    """TIFF bytes with `is_tiff16(tags)` -> (H, W, 3|4) uint16 straight RGB(A) of the frame the tags describe."""
    w, h, c = tags[_WIDTH], tags[_LENGTH], tags[_SAMPLES]
    strips = b"".join(data[o : o + n] for o, n in zip(_seq(tags[_STRIP_OFFSETS]), _seq(tags[_STRIP_BYTES])))
    if len(strips) < h * w * c * 2:
        raise ValueError("image data is truncated")
    order = "<" if data[:2] == b"II" else ">"
    pixels = np.frombuffer(strips, f"{order}u2", h * w * c).reshape(h, w, c).astype(np.uint16)
    extra = _seq(tags.get(_EXTRA_SAMPLES, 0))[0] if c == 4 else None
    if extra == 0:  # an unspecified 4th sample is not alpha
        return pixels[..., :3].copy()
    if extra == 1:  # associated (premultiplied) alpha -> straight
        a = pixels[..., 3:].astype(np.float64)
        rgb = np.where(a > 0, pixels[..., :3] * 65535.0 / np.maximum(a, 1), 0)
        pixels[..., :3] = np.clip(np.round(rgb), 0, 65535)
    return pixels


def _seq(value: object) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
