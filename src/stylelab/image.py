"""Loading, converting, resizing and saving images. Tensors are RGB, float32 in [0,1], shape (1, 3, H, W).

Inputs are files or http(s) URLs; colours tagged with an ICC profile are converted to sRGB. Pillow decodes and
encodes everything except 16-bit RGB(A) PNG and TIFF, which it reads at 8 bits and cannot write: those are decoded
by OpenCV (`read_image`, `to_tensor`, `load_alpha` keep all 16 bits) and written by OpenCV (PNG) and tifffile
(TIFF). Every failure raises `ImageError` with a one-line message naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import os
import sys
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeGuard, Union

import numpy as np
from PIL import (
    ExifTags,
    Image,
    ImageCms,
    ImageOps,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
)

from .errors import StylelabError
from .files import WriteError, write_atomic

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "ALPHA_FORMATS",
    "DOWNLOAD_TIMEOUT_S",
    "FORMATS_16BIT",
    "MAX_DOWNLOAD_BYTES",
    "MAX_PIXELS",
    "SAVE_FORMATS",
    "ImageError",
    "ImageLike",
    "Picture",
    "check_input_file",
    "check_output_path",
    "decode_image",
    "encode_image",
    "is_tensor",
    "is_url",
    "load_alpha",
    "open_image",
    "output_format",
    "pil_to_tensor",
    "read_image",
    "read_metadata",
    "resize",
    "resize_long_edge",
    "save_image",
    "tensor_to_pil",
    "to_tensor",
]
# torch is imported by the functions that make tensors, not here: reading, checking and writing files need none
# (the command line answers usage and file errors before torch loads).

MAX_PIXELS = 100_000_000  # refuse larger inputs: a decompression bomb, or more than this tool can use
MAX_DOWNLOAD_BYTES = 200 * 2**20  # a URL may send no more than this
DOWNLOAD_TIMEOUT_S = 30.0  # per connect or read: a server silent this long is given up on
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                ".tiff": "TIFF", ".bmp": "BMP"}
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")  # formats that store an alpha channel; the others get white behind
FORMATS_16BIT = ("PNG", "TIFF")

_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ICC_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK")  # what LittleCMS can take from Pillow
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# EXIF orientation -> the numpy operation on (H, W, C) pixels that ImageOps.exif_transpose does to a PIL image
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1),
           6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


class ImageError(StylelabError, ValueError):
    """An input or output image problem, with a one-line message."""


@dataclass(frozen=True)
class Picture:
    """A decoded image at its full precision (`read_image`): sRGB colour `rgb` (H, W, 3) and straight alpha
    `alpha` (H, W) or None, float32 in [0,1]. `to_tensor`, `load_alpha` and `save_image` take it like a PIL image."""

    rgb: np.ndarray
    alpha: np.ndarray | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL's."""
        return self.rgb.shape[1], self.rgb.shape[0]


ImageLike = Union[str, os.PathLike, Image.Image, "Tensor", Picture]  # "Tensor": torch loads lazily


def is_tensor(x: object) -> TypeGuard[Tensor]:
    """True for a torch tensor; False without importing torch (nothing can be a tensor before torch loads)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


# ------------------------------------------------------------------------------------------------- reading


def is_url(source: object) -> TypeGuard[str]:
    """True for a string starting with http:// or https:// (any case): an input to download, not a path."""
    return isinstance(source, str) and source[:8].lower().startswith(("http://", "https://"))


def open_image(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Open a file or http(s) URL, decode it fully, apply its EXIF orientation and convert an ICC-tagged image to
    sRGB. Returns a PIL image in its own mode (RGB/RGBA after an ICC conversion); Pillow reads 16-bit RGB(A) at 8
    bits: `read_image` keeps all 16."""
    source, name = _fetch(path, what)
    with _opened(source, name, what) as im:
        return _to_srgb(ImageOps.exif_transpose(_loaded(im)))


def read_image(path: str | os.PathLike, what: str = "image") -> Picture:
    """Like `open_image`, at full precision: 16-bit RGB(A) PNG and TIFF keep all 16 bits (16-bit greys, float
    images and 8-bit ones have theirs through Pillow). The source is read (or downloaded) once."""
    source, name = _fetch(path, what)
    return _picture(source, name, what)


def decode_image(data: bytes, name: str | os.PathLike, what: str = "image") -> Picture:
    """`read_image` of a file's bytes, already read (a batch worker's input); errors name `name`, the file."""
    return _picture(io.BytesIO(data), str(name), what)


def _picture(source: Path | io.BytesIO, name: str | Path, what: str) -> Picture:
    with _opened(source, name, what) as im:
        pixels = _decode16(im, source)
        if pixels is None:
            return Picture(*_arrays(ImageOps.exif_transpose(_loaded(im))))  # _arrays converts to sRGB
        x = np.ascontiguousarray(_ORIENT.get(_orientation(im), lambda a: a)(pixels)).astype(np.float32) / 65535.0
        rgb = x[..., :3] if x.shape[2] >= 3 else np.repeat(x[..., :1], 3, axis=2)
        return Picture(rgb, x[..., -1] if x.shape[2] in (2, 4) else None)


def read_metadata(path: str | os.PathLike, what: str = "image") -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file or URL as {keyword: text}; {} for other formats or none."""
    source, name = _fetch(path, what)
    with _opened(source, name, what) as im:
        return {str(k): str(v) for k, v in im.text.items()} if isinstance(im, PngImagePlugin.PngImageFile) else {}


def _fetch(path: object, what: str) -> tuple[Path | io.BytesIO, str | Path]:
    """Check a path (exists, a file, not empty) or download a URL; returns what Pillow should open and its name."""
    if is_url(path):
        return io.BytesIO(_download(path, what)), path
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError(f"{what} must be a path or an http(s) URL, got {type(path).__name__}")
    p = check_input_file(path, what)
    return p, p


def check_input_file(path: str | os.PathLike, what: str = "image") -> Path:
    """A local input that exists, is a file and is not empty (checked before any work; decoding comes later)."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{what} not found: {p}")
    if p.is_dir():
        raise ImageError(f"{what} is a directory, not an image file: {p}")
    if p.stat().st_size == 0:
        raise ImageError(f"{what} is an empty file: {p}")
    return p


def _download(url: str, what: str) -> bytes:
    """GET `url` into memory, or a one-line ImageError saying why not."""
    try:
        data = _get(url)
    except urllib.error.HTTPError as exc:
        reason: object = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        reason = exc.reason
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, malformed URLs
        reason = exc
    else:
        if data is None:
            raise ImageError(f"{what} at {url} is larger than {MAX_DOWNLOAD_BYTES / 2**20:g} MB")
        if not data:
            raise ImageError(f"{what} is empty (0 bytes downloaded): {url}")
        return data
    raise ImageError(f"cannot download {what} from {url}: {_one_line(reason) or type(reason).__name__}")


def _get(url: str) -> bytes | None:
    """The body of `url`; None if it is over MAX_DOWNLOAD_BYTES. Waits DOWNLOAD_TIMEOUT_S per connect or read."""
    # Some hosts block generic clients such as urllib's default "Python-urllib/3.x" (Wikimedia, home of many
    # paintings, asks for an identifying User-Agent).
    request = urllib.request.Request(url, headers={"User-Agent": "stylelab (Python urllib)"})
    # A fresh opener reads the environment's proxy settings now; urlopen's is fixed at the first download.
    with urllib.request.build_opener().open(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_DOWNLOAD_BYTES:
            return None
        data = response.read(MAX_DOWNLOAD_BYTES + 1)
    return None if len(data) > MAX_DOWNLOAD_BYTES else data


def _one_line(reason: object) -> str:
    return " ".join(str(reason).split())


@contextlib.contextmanager
def _opened(source: Path | io.BytesIO, name: str | Path, what: str) -> Iterator[Image.Image]:
    """Image.open with our pixel limit, turning Pillow's and the codecs' exceptions into one-line ImageErrors."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit (~89M px); we apply ours (MAX_PIXELS) in _check_pixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                _check_pixels(im, name, what)
                yield im
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{what} is too large (over {MAX_PIXELS:,} pixels): {name}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not an image file Pillow can read: {name}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated / corrupt data surfaces as these
        raise ImageError(f"{what} is truncated or corrupt ({_one_line(exc)}): {name}") from None


def _check_pixels(im: Image.Image, name: str | Path, what: str) -> None:
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{what} is too large ({w}x{h} px, limit {MAX_PIXELS:,} pixels): {name}")
    if w < 1 or h < 1:
        raise ImageError(f"{what} has no pixels: {name}")


def _loaded(im: Image.Image) -> Image.Image:
    im.load()
    return im


def _decode16(im: Image.Image, source: Path | io.BytesIO) -> np.ndarray | None:
    """The (H, W, C) uint16 RGB(A) pixels of a 16-bit RGB(A) PNG or TIFF, decoded by OpenCV; None for any other
    image (Pillow's) and for one whose ICC profile is to be converted (LittleCMS converts RGB at 8 bits in Pillow).
    Damaged data raises OSError (which `_opened` words)."""
    import cv2  # imported where used: the command line starts without them

    if not _is_16bit_rgb(im, source) or _profile_to_convert(im) is not None:
        return None
    if im.format == "PNG":
        # Pillow decodes it first (at 8 bits) to check it: it reports damaged data in one line, where the libpng
        # inside OpenCV prints its errors to stderr, past OpenCV's log level.
        im.load()
    with _quiet_opencv():
        pixels = cv2.imdecode(np.frombuffer(_read(source), np.uint8), cv2.IMREAD_UNCHANGED)  # no EXIF rotation
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[:2] != (im.height, im.width):
        raise OSError("OpenCV cannot decode its 16-bit pixels")
    pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]  # OpenCV's BGR(A) -> RGB(A); grey+alpha comes as BGRA
    if isinstance(im, TiffImagePlugin.TiffImageFile) and pixels.shape[2] == 4:
        extra = _seq(im.tag_v2.get(338, 0))[0]  # ExtraSamples: 0 unspecified, 1 associated, 2 straight
        if extra == 0:  # an unspecified 4th sample is not alpha
            return pixels[..., :3]
        if extra == 1:  # associated (premultiplied) alpha -> straight
            a = pixels[..., 3:].astype(np.float64)
            rgb = np.where(a > 0, pixels[..., :3] * 65535.0 / np.maximum(a, 1), 0)
            pixels = np.dstack([np.clip(np.round(rgb), 0, 65535).astype(np.uint16), pixels[..., 3:]])
    return pixels


def _is_16bit_rgb(im: Image.Image, source: Path | io.BytesIO) -> bool:
    """What Pillow reads at 8 bits: a PNG of 16-bit RGB, RGBA or grey+alpha (its IHDR's bit depth and colour type;
    16-bit greys Pillow reads in full), or a TIFF of 16-bit unsigned RGB(A) samples."""
    if im.format == "PNG":
        head = _read(source, 29)
        return head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6)
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        tags = im.tag_v2
        c = tags.get(277, 1)  # SamplesPerPixel
        return (c in (3, 4) and tuple(_seq(tags.get(258, 1))) == (16,) * c and tags.get(262) == 2  # BitsPerSample, RGB
                and set(_seq(tags.get(339, 1))) == {1})  # SampleFormat: unsigned integers
    return False


def _seq(value: object) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs decoder warnings and errors to stderr; the library never prints, it raises or falls back."""
    import cv2  # imported where used: the command line starts without them

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened, not yet decoded image. A PNG's eXIf chunk is looked for before the
    pixels only (where libpng writes it): Pillow would decode the whole image to search past them."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return int(im.getexif().get(ExifTags.Base.Orientation, 1))


def _read(source: Path | io.BytesIO, n: int = -1) -> bytes:
    if isinstance(source, io.BytesIO):
        return source.getvalue()[: n if n >= 0 else None]
    with open(source, "rb") as f:
        return f.read(n)


def _to_srgb(im: Image.Image) -> Image.Image:
    """Convert the colours of an image tagged with a non-sRGB ICC profile to sRGB (perceptual intent), keeping
    alpha. A profile that cannot be read, or does not fit the image, is ignored: the pixels are taken as sRGB, as
    web browsers do. 16-bit images are converted at 8 bits (Pillow's LittleCMS transforms are 8-bit for RGB)."""
    profile = _profile_to_convert(im)
    if profile is None:
        return im
    try:
        colour, alpha = _split_alpha(im)
        # profileToProfile's default intent, perceptual: for matrix profiles (most RGB ones) it is the same as
        # relative colorimetric; LUT profiles (CMYK, some wide-gamut RGB) map out-of-gamut colours smoothly.
        out = ImageCms.profileToProfile(colour, profile, _srgb_profile(), outputMode="RGB")
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return im
    if out is None:  # only with inPlace=True
        return im
    if alpha is not None:
        out.putalpha(alpha)
    out.info = {k: v for k, v in im.info.items() if k not in ("icc_profile", "transparency")}
    return out


def _profile_to_convert(im: Image.Image) -> ImageCms.ImageCmsProfile | None:
    """The ICC profile of `im` if its colours are to be converted to sRGB: readable, not sRGB, a mode LittleCMS
    takes. None for untagged images, sRGB ones and unusable profiles (the pixels are then taken as sRGB)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in _ICC_MODES:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return None if _is_srgb(profile) else profile
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    """By name, as browsers do: "sRGB IEC61966-2.1", "sRGB built-in", ... (converting them would be ±1 noise)."""
    core = profile.profile
    return core.xcolor_space.strip() == "RGB" and "srgb" in (core.profile_description or "").lower()


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _split_alpha(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(colour as L, RGB or CMYK, alpha as L or None)."""
    if not _has_alpha(im):
        return (im.convert("RGB") if im.mode == "P" else im), None
    full = im.convert("LA" if im.mode in ("L", "LA") else "RGBA")
    return full.convert(full.mode[:-1]), full.getchannel("A")


def _has_alpha(im: Image.Image) -> bool:
    palette_alpha = im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA"
    return im.mode in _ALPHA_MODES or "transparency" in im.info or palette_alpha


def _arrays(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any PIL mode -> (H, W, 3) sRGB colour and (H, W) straight alpha (None without alpha), float32 in [0,1].
    16-bit and float greys keep their precision; CMYK goes through Pillow."""
    im = _to_srgb(im)
    if im.mode in _INT_MODES:
        # 'I' holds 16-bit PNG greys (0..65535) in Pillow; treat anything larger as 16-bit overflow and clip.
        grey = np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2), None
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        grey = np.clip(a if a.max(initial=0.0) <= 1.0 else a / 255.0, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2), None
    if _has_alpha(im):
        x = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        return x[..., :3], x[..., 3]
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0, None


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """rgb·a + (1 − a): (H, W, 3) and (H, W) -> (H, W, 3)."""
    a = alpha[..., None]
    return rgb * a + (1.0 - a)


def pil_to_tensor(im: Image.Image) -> Tensor:
    """Any PIL mode -> (1, 3, H, W) float32 sRGB in [0,1], transparency composited over white. 16-bit and float
    images keep their precision; ICC-tagged colours are converted to sRGB; CMYK and palettes go through Pillow."""
    return _composited(*_arrays(im))


def _composited(rgb: np.ndarray, alpha: np.ndarray | None) -> Tensor:
    """(H, W, 3) colour and (H, W) alpha or None -> (1, 3, H, W) float32, over white where there is alpha."""
    import torch

    if alpha is not None:
        rgb = _over_white(rgb, alpha)
    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))
    return t.unsqueeze(0)  # (1, 3, H, W)


def to_tensor(image: ImageLike, what: str = "image") -> Tensor:
    """A path, http(s) URL, PIL image, `Picture` or tensor -> (1, 3, H, W) float32 RGB in [0,1]."""
    import torch

    if is_tensor(image):
        t = image.detach()
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
            raise ImageError(f"{what} tensor must have shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        if not t.is_floating_point():
            raise ImageError(f"{what} tensor must be floating point in [0,1], got {t.dtype}")
        if not torch.isfinite(t).all():
            raise ImageError(f"{what} tensor contains NaN or infinity")
        return t.expand(1, 3, *t.shape[2:]).float().clamp(0, 1).cpu().contiguous()
    if isinstance(image, Image.Image):
        return pil_to_tensor(ImageOps.exif_transpose(image))
    if isinstance(image, Picture):
        return _composited(image.rgb, image.alpha)
    if isinstance(image, (str, os.PathLike)):
        return to_tensor(read_image(image, what))
    raise ImageError(f"{what} must be a path, a URL, a PIL image or a tensor, got {type(image).__name__}")


def load_alpha(source: ImageLike, what: str = "image") -> Tensor | None:
    """The alpha of a path, URL, PIL image or `Picture` as (1, 1, H, W) float32 in [0,1] (oriented like
    `to_tensor`); None if it has none or it is fully opaque. Tensors are RGB by contract (`to_tensor`), so a tensor
    gives None."""
    import torch

    if is_tensor(source):
        return None
    if isinstance(source, Image.Image):
        _, alpha = _arrays(ImageOps.exif_transpose(source))
    elif isinstance(source, Picture):
        alpha = source.alpha
    elif isinstance(source, (str, os.PathLike)):
        alpha = read_image(source, what).alpha
    else:
        raise ImageError(f"{what} must be a path, a URL, a PIL image or a tensor, got {type(source).__name__}")
    if alpha is None or alpha.min() >= 1.0:
        return None
    return torch.from_numpy(np.ascontiguousarray(alpha))[None, None]  # (1, 1, H, W)


# ---------------------------------------------------------------------------------------- resize / convert


def resize(image: Tensor, hw: Sequence[int]) -> Tensor:
    """(B, C, H, W) -> (B, C, *hw), antialiased bicubic (not clamped: bicubic may overshoot [0,1] slightly)."""
    import torch.nn.functional as F

    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    return F.interpolate(image, size=tuple(hw), mode="bicubic", align_corners=False, antialias=True)


def resize_long_edge(image: Tensor, long_edge: int) -> Tensor:
    """Resize (1, 3, H, W) so max(H, W) == long_edge, keeping the aspect ratio (antialiased bicubic)."""
    h, w = image.shape[-2:]
    scale = long_edge / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return image
    return resize(image, size).clamp(0, 1)


def tensor_to_pil(image: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0,1] -> 8-bit RGB PIL image (rounded, clipped)."""
    import torch

    t = image.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    a = (t.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(a, mode="RGB")


# ------------------------------------------------------------------------------------------------- writing


def output_format(path: str | os.PathLike, bit_depth: int = 8) -> str:
    """Pillow's format name for an output called `path` (its suffix) at `bit_depth` bits, or a one-line error."""
    p = Path(path)
    if p.suffix.lower() not in SAVE_FORMATS:
        raise ImageError(
            f"cannot tell the output format from {p.name!r}; use one of: {', '.join(sorted(SAVE_FORMATS))}"
        )
    if bit_depth not in (8, 16):
        raise ImageError(f"bit depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and SAVE_FORMATS[p.suffix.lower()] not in FORMATS_16BIT:
        raise ImageError(f"16-bit output needs a .png, .tif or .tiff file, not {p.name!r}")
    return SAVE_FORMATS[p.suffix.lower()]


def check_output_path(path: str | os.PathLike, bit_depth: int = 8) -> Path:
    """Fail early (before any work) if `path` cannot be written as an image of `bit_depth` bits per channel."""
    p = Path(path)
    output_format(p, bit_depth)
    if p.is_dir():
        raise ImageError(f"output is a directory: {p}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ImageError(f"output is not writable: {p}")
    return p


def save_image(image: Image.Image | Tensor | Picture, path: str | os.PathLike, *, bit_depth: int = 8,
               alpha: Tensor | None = None, metadata: Mapping[str, str] | None = None) -> Path:
    """Write a (1, 3, H, W) tensor in [0,1], a PIL image or a `Picture` atomically (a temporary file beside `path`,
    renamed over it: a failed or interrupted save never leaves a partial image). Format from the suffix; JPEG and WebP
    at quality 95. `alpha` (1, 1, h, w) in [0,1] is resized (bilinear, antialiased) to H x W and stored by PNG,
    WebP and TIFF; JPEG and BMP get the image composited over white. `bit_depth` 16: PNG and TIFF only.
    `metadata` {keyword: text} becomes PNG iTXt chunks (UTF-8); other formats do not store it."""
    p = check_output_path(path, bit_depth)
    fmt = SAVE_FORMATS[p.suffix.lower()]
    text = _check_metadata(metadata)
    if bit_depth == 16:
        data = _encode16(image, alpha, fmt, text)
        _write_atomic(p, lambda f: f.write(data))
    else:  # Pillow encodes straight into the file (encode_image is the same into memory)
        im = _image8(image, alpha, fmt)
        options = _save_options(fmt, text)
        _write_atomic(p, lambda f: im.save(f, format=fmt, **options))
    return p


def encode_image(image: Image.Image | Tensor | Picture, name: str | os.PathLike, *, bit_depth: int = 8,
                 alpha: Tensor | None = None, metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes `save_image(image, name, ...)` writes, without a file (a batch worker's output): the format from
    `name`'s suffix."""
    fmt = output_format(name, bit_depth)
    text = _check_metadata(metadata)
    if bit_depth == 16:
        return _encode16(image, alpha, fmt, text)
    buffer = io.BytesIO()
    _image8(image, alpha, fmt).save(buffer, format=fmt, **_save_options(fmt, text))
    return buffer.getvalue()


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Keywords: 1-79 Latin-1 printable characters without edge or double spaces (the PNG rule); text: no NUL."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ImageError(f"metadata must be a dict of strings, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ImageError(f"metadata keys and values must be strings, got {key!r}: {type(value).__name__}")
        if (not 1 <= len(key) <= 79 or not key.isprintable() or max(map(ord, key)) > 255
                or key != key.strip() or "  " in key):
            raise ImageError(f"metadata key {key!r} is not a PNG keyword (1-79 Latin-1 characters, single spaces)")
        if "\0" in value:
            raise ImageError(f"metadata text for {key!r} contains a NUL character")
    return dict(metadata)


def _output_arrays(image: Image.Image | Tensor | Picture, alpha: Tensor | None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """The image to write as (H, W, 3) colour and (H, W) alpha or None, floats in [0,1]; `alpha` replaces any
    alpha of a PIL image or a Picture."""
    if is_tensor(image):
        rgb, own = to_tensor(image, "output image")[0].permute(1, 2, 0).numpy(), None
    elif isinstance(image, Image.Image):
        rgb, own = _arrays(image)
    elif isinstance(image, Picture):
        rgb, own = image.rgb, image.alpha
    else:
        raise ImageError(f"output image must be a tensor or a PIL image, got {type(image).__name__}")
    return rgb, own if alpha is None else _resized_alpha(alpha, rgb.shape[:2])


def _resized_alpha(alpha: Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1, 1, h, w) float alpha -> (H, W) in [0,1]: bilinear, antialiased when shrinking."""
    import torch
    import torch.nn.functional as F

    if not (is_tensor(alpha) and alpha.dim() == 4 and alpha.shape[:2] == (1, 1)
            and alpha.is_floating_point()):
        got = f"{tuple(alpha.shape)} {alpha.dtype}" if is_tensor(alpha) else type(alpha).__name__
        raise ImageError(f"alpha must be a float tensor of shape (1, 1, H, W), got {got}")
    a = alpha.detach().float().cpu()
    if not torch.isfinite(a).all():
        raise ImageError("alpha tensor contains NaN or infinity")
    if tuple(a.shape[-2:]) != tuple(size):
        a = F.interpolate(a, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return a.clamp(0, 1)[0, 0].numpy()


def _image8(image: Image.Image | Tensor | Picture, alpha: Tensor | None, fmt: str) -> Image.Image:
    """The 8-bit PIL image to save: a PIL image as given where the format takes it, else RGB or RGBA."""
    if (isinstance(image, Image.Image) and alpha is None
            and (fmt in ALPHA_FORMATS or (image.mode in ("RGB", "L") and not _has_alpha(image)))):
        return image  # as given: its own mode, alpha and ICC profile
    rgb, a = _output_arrays(image, alpha)
    if a is not None and fmt not in ALPHA_FORMATS:
        rgb, a = _over_white(rgb, a), None
    x = rgb if a is None else np.dstack([rgb, a])
    return Image.fromarray(np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8))


def _save_options(fmt: str, text: dict[str, str]) -> dict:
    if fmt == "JPEG":
        return {"quality": 95, "subsampling": 0}  # 4:4:4: 4:2:0 would blur the fine colour detail styles add
    if fmt == "WEBP":
        return {"quality": 95}  # lossy like JPEG, for the web; PNG and TIFF are the lossless choices
    if fmt == "PNG" and text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
        return {"pnginfo": info}
    return {}


def _encode16(image: Image.Image | Tensor | Picture, alpha: Tensor | None, fmt: str, text: dict[str, str]) -> bytes:
    """16 bits per channel RGB(A): PNG by OpenCV (zlib level 6, `text` as iTXt chunks), TIFF by tifffile (Deflate,
    alpha marked unassociated)."""
    import cv2
    import tifffile  # imported where used: the command line starts without them

    rgb, a = _output_arrays(image, alpha)
    x = rgb if a is None else np.dstack([rgb, a])
    pixels = np.round(np.clip(x, 0.0, 1.0) * 65535.0).astype(np.uint16)
    if fmt == "TIFF":
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, pixels, photometric="rgb", compression="zlib",
                         extrasamples=("unassalpha",) if a is not None else None)
        return buffer.getvalue()
    with _quiet_opencv():
        ok, encoded = cv2.imencode(".png", pixels[..., [2, 1, 0, 3][: pixels.shape[2]]],  # RGB(A) -> BGR(A)
                                   [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ImageError("OpenCV could not encode the 16-bit PNG")
    data = encoded.tobytes()
    # OpenCV writes no text chunks: add them right after IHDR (8-byte signature + 25-byte IHDR chunk). iTXt:
    # keyword NUL, not compressed (0, 0), empty language tag NUL, empty translated keyword NUL, UTF-8 text.
    chunks = [_png_chunk(b"iTXt", k.encode("latin-1") + b"\0\0\0\0\0" + v.encode("utf-8")) for k, v in text.items()]
    return data[:33] + b"".join(chunks) + data[33:]


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + tag + body + zlib.crc32(tag + body).to_bytes(4, "big")


def _write_atomic(p: Path, write: Callable[[BinaryIO], object]) -> None:
    """files.write_atomic, its errors and those of Pillow's encoders worded as ImageErrors."""
    try:
        write_atomic(p, write)
    except ImageError:
        raise
    except WriteError as exc:
        raise ImageError(str(exc)) from None
    except (ValueError, KeyError) as exc:  # Pillow's encoders
        raise ImageError(f"cannot write {p}: {_one_line(exc)}") from None
