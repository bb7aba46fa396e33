"""Style transfer by optimising pixels: targets once, then L-BFGS or Adam steps on the image.

    stylize(content, styles, config, callback) -> PIL image       (the public API)
      = load inputs -> resize -> targets (once) -> initial image -> optimise, reporting each `Step`

The objective is  α·L̂_content + β·Σ_l w_l L̂_style,l + λ·L_tv  where every style layer is divided by its value
between the content and style images (METHOD.md §2.11): at the content image each layer's L̂ is exactly 1, so
one β means the same for any image size, layer and style loss.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor

from .config import Config
from .errors import StylelabError
from .features import VGG19, Weights, load_weights, pools_before
from .image import ImageLike, resize_long_edge, tensor_to_pil, to_tensor
from .losses import Stats, StyleLoss, at_least_float32, content_loss, flatten, tv_loss


class DeviceError(StylelabError, RuntimeError):
    """The requested device is not available."""


class OptimizationError(StylelabError, RuntimeError):
    """The optimisation diverged (the loss became NaN or infinite)."""


@dataclass(frozen=True)
class Step:
    """Progress report after one optimiser step (one forward + backward pass)."""

    scale: int  # index of the scale being optimised (0 for a single-scale run)
    i: int  # step number at this scale, 1-based
    n: int  # steps planned at this scale
    loss: float  # weighted total, the value differentiated
    terms: dict[str, float]  # unweighted: 'content', 'style', 'tv', and 'style/<layer>' per style layer
    seconds: float  # wall time of this step
    image: Tensor  # current image (1, 3, H, W) RGB in [0,1]; a detached view: copy before changing it


Callback = Callable[[Step], None]


@dataclass(frozen=True)
class Targets:
    """What the output is compared with, computed once per scale under no_grad."""

    content: dict[str, Tensor]  # layer -> content activation (1, C, H, W), float32
    content_power: dict[str, Tensor]  # layer -> mean(F_c²), the content loss's normaliser
    style: dict[str, dict[str, Stats]]  # loss label -> layer -> blended style statistics
    style_ref: dict[str, dict[str, Tensor]]  # loss label -> layer -> raw loss content vs style (the normaliser)


StyleLosses = dict[str, tuple[StyleLoss, float]]  # label -> (loss, weight in the mix; weights sum to 1)


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    config: Config = Config(),
    callback: Callback | None = None,
) -> Image.Image:
    """Stylise `content` with one or more `styles` (paths, PIL images or (1,3,H,W) tensors in [0,1])."""
    content_t, style_ts = load_inputs(content, styles)
    config.blend_weights(len(style_ts))  # validate the blend against the number of styles before any work
    init = None if config.init in ("content", "noise") else to_tensor(config.init, "init image")
    return tensor_to_pil(transfer(content_t, style_ts, config, callback, init_image=init))


def load_inputs(content: ImageLike, styles: ImageLike | Sequence[ImageLike]) -> tuple[Tensor, list[Tensor]]:
    """One content and one or more style images (a single one need not be in a list) -> (1,3,H,W) tensors."""
    if isinstance(styles, (str, Image.Image, Tensor)) or not isinstance(styles, Sequence):
        styles = [styles]
    if not styles:
        raise StylelabError("give at least one style image")
    content_t = to_tensor(content, "content image")
    style_ts = [to_tensor(s, "style image" if len(styles) == 1 else f"style image {k + 1}")
                for k, s in enumerate(styles)]
    return content_t, style_ts


def prepare(content: Tensor, styles: Sequence[Tensor], config: Config) -> tuple[VGG19, Tensor, list[Tensor]]:
    """The network and the inputs resized for a run of `config`, on its device (checked big enough)."""
    device = pick_device(config.device)
    model = build_model(config.weights, config.pooling, device)
    content = resize_long_edge(content, config.size)
    styles = [resize_long_edge(s, config.style_size or config.size) for s in styles]
    check_size(content, (*config.content_layers, *config.style_layers), "content image")
    for s in styles:
        check_size(s, config.style_layers, "style image")
    return model, content.to(device), [s.to(device) for s in styles]


def transfer(
    content: Tensor,
    styles: Sequence[Tensor],
    config: Config,
    callback: Callback | None = None,
    init_image: Tensor | None = None,
) -> Tensor:
    """Tensor-level core of `stylize`: returns the output (1, 3, H, W) in [0,1] on the CPU."""
    model, content, styles = prepare(content, styles, config)
    losses = build_style_losses(config)
    targets = compute_targets(model, content, styles, config, losses)
    x = initial_image(config, content, init_image)
    x = optimize(model, x, targets, config, losses, callback)
    return x.detach().clamp(0, 1).cpu()


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available (torch {torch.__version__})")
        try:
            index = int(name.split(":")[1]) if ":" in name else 0
        except ValueError:
            raise DeviceError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, cuda:N, mps") from None
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name!r} requested but MPS is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, cuda:N, mps") from None


@functools.lru_cache(maxsize=2)
def _cached_weights(path: str | None) -> Weights:
    return load_weights(path)


def build_model(weights_path: str | None, pooling: str, device: torch.device) -> VGG19:
    return VGG19(_cached_weights(weights_path), pooling).to(device)


def check_size(image: Tensor, layers: Sequence[str], what: str) -> None:
    """Each pool halves the image; the deepest layer needs at least one feature position."""
    deepest = max(layers, key=pools_before)
    need = 2 ** pools_before(deepest)
    h, w = image.shape[-2:]
    if min(h, w) < need:
        raise StylelabError(
            f"{what} is {w}x{h} px after resizing; layer {deepest} needs at least {need} px on the short edge"
        )


def build_style_losses(config: Config) -> StyleLosses:
    # Losses that sample keep their draws fixed under L-BFGS (it needs one objective) and redraw per step under Adam.
    resample = config.optimizer == "adam"
    return {term.label: (term.build(config.seed, resample), term.weight) for term in config.style_loss_terms()}


@torch.no_grad()
def compute_targets(
    model: VGG19, content: Tensor, styles: Sequence[Tensor], config: Config, losses: StyleLosses
) -> Targets:
    style_layers = config.style_layers
    content_feats = model(content, {*config.content_layers, *style_layers})
    per_style = [{layer: flatten(a) for layer, a in model(s, style_layers).items()} for s in styles]
    blend_w = config.blend_weights(len(styles))
    style, ref = {}, {}
    for label, (loss, _) in losses.items():
        style[label] = {layer: loss.blend([loss.stats(f[layer]) for f in per_style], blend_w) for layer in style_layers}
        # Normaliser: the loss of the content image itself (METHOD.md §2.11). Guard against a style
        # identical to the content, where it is 0 and any output is already perfect.
        ref[label] = {layer: loss.loss(flatten(content_feats[layer]), style[label][layer]).clamp_min(1e-12)
                      for layer in style_layers}
    content_t = {layer: at_least_float32(content_feats[layer]) for layer in config.content_layers}
    power = {layer: (t**2).mean().clamp_min(1e-12) for layer, t in content_t.items()}
    return Targets(content_t, power, style, ref)


def objective(
    model: VGG19, x: Tensor, targets: Targets, config: Config, losses: StyleLosses
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its unweighted terms; the total is exactly what gets differentiated."""
    feats = model(x, {*config.content_layers, *config.style_layers})
    content = sum(
        w * content_loss(feats[layer], targets.content[layer], targets.content_power[layer])
        for layer, w in config.content_layer_weight_map().items()
    )
    layer_w = config.style_layer_weight_map()
    flat = {layer: flatten(feats[layer]) for layer in config.style_layers}
    normalised = {  # label -> layer -> L̂ (1 at the content image)
        label: {layer: loss.loss(flat[layer], targets.style[label][layer]) / targets.style_ref[label][layer]
                for layer in config.style_layers}
        for label, (loss, _) in losses.items()
    }
    per_layer = {layer: sum(pi * normalised[label][layer] for label, (_, pi) in losses.items())
                 for layer in config.style_layers}
    style = sum(w * per_layer[layer] for layer, w in layer_w.items())
    tv = tv_loss(x)
    total = config.content_weight * content + config.style_weight * style + config.tv_weight * tv
    terms = {"content": content, "style": style, "tv": tv, **{f"style/{k}": v for k, v in per_layer.items()}}
    if len(losses) > 1:  # each member of a mix on its own, for reporting
        terms.update({f"style:{label}": sum(w * normalised[label][layer] for layer, w in layer_w.items())
                      for label in losses})
    return total, terms


def initial_image(config: Config, content: Tensor, init_image: Tensor | None = None) -> Tensor:
    if config.init == "content":
        return content.clone()
    if config.init == "noise":
        g = torch.Generator().manual_seed(config.seed)
        return torch.rand(content.shape, generator=g).to(content.device)  # white noise (Gatys et al. 2016)
    if init_image is None:
        init_image = to_tensor(config.init, "init image")
    size = tuple(content.shape[-2:])
    init = torch.nn.functional.interpolate(init_image, size=size, mode="bicubic", antialias=True)
    return init.clamp(0, 1).to(content.device)


def optimize(
    model: VGG19, x: Tensor, targets: Targets, config: Config, losses: StyleLosses,
    callback: Callback | None = None, scale: int = 0,
) -> Tensor:
    """Run `config.steps` optimiser steps on the pixels of `x`; each step is one forward + backward."""
    x = x.detach().clone().requires_grad_(True)
    lr = config.learning_rate
    if config.optimizer == "lbfgs":
        # max_iter=1: one closure evaluation per step() (no line search), history kept across calls.
        opt = torch.optim.LBFGS([x], lr=lr, max_iter=1, history_size=config.lbfgs_history)
    else:
        opt = torch.optim.Adam([x], lr=lr, betas=(0.9, 0.99))
    last: dict[str, object] = {}

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        total, terms = objective(model, x, targets, config, losses)
        total.backward()
        last["total"], last["terms"] = total.detach(), terms
        return total

    for i in range(1, config.steps + 1):
        start = time.perf_counter()
        opt.step(closure)
        if config.optimizer == "adam":
            with torch.no_grad():
                x.clamp_(0, 1)  # L-BFGS is not clamped in the loop: it breaks its curvature pairs (METHOD.md §7.6)
        names = list(last["terms"])
        values = torch.stack([last["total"], *(last["terms"][k].detach() for k in names)]).tolist()  # one sync
        if not math.isfinite(values[0]):
            raise OptimizationError(
                f"the loss became {values[0]} at step {i}; try a smaller --lr or --optimizer adam"
            )
        if callback is not None:
            seconds = time.perf_counter() - start
            callback(Step(scale, i, config.steps, values[0], dict(zip(names, values[1:])), seconds, x.detach()))
    return x.detach()
