"""Loading, converting, resizing and saving images. Tensors are RGB, float32 in [0,1], shape (1, 3, H, W).

Every failure raises `ImageError` with a one-line message naming the file and what is wrong with it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import StylelabError

ImageLike = Union[str, os.PathLike, Image.Image, Tensor]

MAX_PIXELS = 100_000_000  # refuse larger inputs: a decompression bomb, or more than this tool can use
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                ".tiff": "TIFF", ".bmp": "BMP"}


class ImageError(StylelabError, ValueError):
    """An input or output image problem, with a one-line message."""


def open_image(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Open, fully decode and orient an image file; returns a PIL image in its own mode."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{what} not found: {p}")
    if p.is_dir():
        raise ImageError(f"{what} is a directory, not an image file: {p}")
    if p.stat().st_size == 0:
        raise ImageError(f"{what} is an empty file: {p}")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit (~89M px); we apply ours (MAX_PIXELS) in _check_pixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                _check_pixels(im, p, what)
                im.load()
                return ImageOps.exif_transpose(im)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{what} is too large (over {MAX_PIXELS:,} pixels): {p}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not an image file Pillow can read: {p}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data surfaces as these
        raise ImageError(f"{what} is truncated or corrupt ({exc}): {p}") from None


def _check_pixels(im: Image.Image, path: Path, what: str) -> None:
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{what} is too large ({w}x{h} px, limit {MAX_PIXELS:,} pixels): {path}")
    if w < 1 or h < 1:
        raise ImageError(f"{what} has no pixels: {path}")


def pil_to_tensor(im: Image.Image) -> Tensor:
    """Any PIL mode -> (1, 3, H, W) float32 RGB in [0,1]. 16-bit and float greys keep their precision;
    transparency is composited over white; CMYK and palettes go through Pillow's conversions."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        # 'I' holds 16-bit PNG greys (0..65535) in Pillow; treat anything larger as 16-bit overflow and clip.
        grey = np.clip(a / 65535.0, 0.0, 1.0)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        grey = np.clip(a if a.max(initial=0.0) <= 1.0 else a / 255.0, 0.0, 1.0)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, rgba)
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()
    return t.unsqueeze(0)  # (1, 3, H, W)


def to_tensor(image: ImageLike, what: str = "image") -> Tensor:
    """A path, PIL image or tensor -> (1, 3, H, W) float32 RGB in [0,1]."""
    if isinstance(image, Tensor):
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
    if isinstance(image, (str, os.PathLike)):
        return pil_to_tensor(open_image(image, what))
    raise ImageError(f"{what} must be a path, a PIL image or a tensor, got {type(image).__name__}")


def resize_long_edge(image: Tensor, long_edge: int) -> Tensor:
    """Resize (1, 3, H, W) so max(H, W) == long_edge, keeping the aspect ratio (antialiased bicubic)."""
    h, w = image.shape[-2:]
    scale = long_edge / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return image
    out = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0, 1)


def tensor_to_pil(image: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0,1] -> 8-bit RGB PIL image (rounded, clipped)."""
    t = image.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    a = (t.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(a, mode="RGB")


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early (before any work) if `path` cannot be written as an image."""
    p = Path(path)
    if p.suffix.lower() not in SAVE_FORMATS:
        raise ImageError(
            f"cannot tell the output format from {p.name!r}; use one of: {', '.join(sorted(SAVE_FORMATS))}"
        )
    if p.is_dir():
        raise ImageError(f"output is a directory: {p}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ImageError(f"output is not writable: {p}")
    return p


def save_image(image: Image.Image | Tensor, path: str | os.PathLike) -> Path:
    """Write atomically: save to a temporary file beside `path`, then rename over it.
    An interrupted or failed save never leaves a partial image at `path`."""
    p = check_output_path(path)
    im = tensor_to_pil(image) if isinstance(image, Tensor) else image
    fmt = SAVE_FORMATS[p.suffix.lower()]
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the output normal permissions
        with os.fdopen(fd, "wb") as f:
            im.save(f, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ImageError(f"cannot write {p}: {exc.strerror or exc}") from None
        raise
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
