"""Style transfer by optimising pixels: targets once per scale, then L-BFGS or Adam steps on the image.

    stylize(content, styles, config, callback) -> PIL image       (the public API; synthesize() for textures)
      = load inputs -> colour control -> for each scale (coarse to fine): resize -> targets -> initial image
        (the previous scale's result, upsampled) -> optimise, reporting each `Step` -> colour control

The objective is  α·L̂_content + β·Σ_l w_l L̂_style,l + λ·L_tv  where every style layer is divided by its value
between the content and style images (docs/method.md §3.1): at the content image each layer's L̂ is exactly 1, so
one β means the same for any image size, layer and style loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import statistics
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from PIL import Image
from torch import Tensor

from ..config import INITS, Config, ConfigError
from ..errors import StylelabError
from ..image import ImageLike, resize, resize_long_edge, tensor_to_pil, to_tensor
from ..layers import pools_before
from ..losses.base import Stats, StyleLoss, at_least_float32, flatten, weighted_sum
from ..losses.content import (
    SelfSimilarityTarget,
    content_loss,
    self_similarity_loss,
    self_similarity_target,
    tv_loss,
)
from ..losses.spec import STYLE_LOSSES, style_loss
from .checkpoint import Checkpoint, fingerprint
from .color import luminance_only, match_colors, palette_only, recolor, restore_color
from .events import Callback, ScaleEnd, Step, TileCallback, TileProgress
from .features import VGG19, Weights, load_weights
from .masks import LoadedRegion, load_regions, position_weights
from .param import image_param
from .tiles import (
    LocalTiles,
    TiledStyle,
    TileRunner,
    runner_of,
    tiled_activations,
    tiled_objective,
    tiled_style,
)

__all__ = ["Callback", "DeviceError", "OptimizationError", "RegionTargets", "Step", "StopRule", "StyleCache",
    "StyleLosses", "Targets", "build_model", "build_style_losses", "check_masks_supported", "check_size",
    "color_inputs", "color_output", "compute_targets", "compute_tiled_targets", "conv_precision",
    "initial_image", "load_inputs",
    "normalised_style", "objective", "optimize", "pick_device", "prepare", "set_content", "style_edge", "stylize",
    "synthesize", "transfer", "weights_checksum"]


class DeviceError(StylelabError, RuntimeError):
    """The requested device is not available."""


class OptimizationError(StylelabError, RuntimeError):
    """The optimisation diverged (the loss became NaN or infinite)."""

    exit_code = 1


# Blended style statistics shared between runs (stylelab.jobs.StyleCache): key -> {loss label: {layer: Stats}}.
StyleCache = MutableMapping[tuple, dict]


@dataclass(frozen=True)
class RegionTargets:
    """The style side of the objective for one region (the whole image when there are no masks)."""

    stats: dict[str, dict[str, Stats]]  # loss label -> layer -> style statistics (blended over style images)
    ref: dict[str, dict[str, Tensor]]  # loss label -> layer -> raw loss of the reference image (the normaliser)
    weights: dict[str, Tensor] | None  # layer -> (M,) weights of the output's positions; None = all alike
    share: float  # weight of this region in the style loss; shares sum to 1
    # The blended statistics before any guided loss placed its per-position targets (what a style cache keeps);
    # None when `stats` are those (no guided loss)
    style_stats: dict[str, dict[str, Stats]] | None = None


@dataclass
class Targets:
    """What the output is compared with, computed once per scale under no_grad (the content targets and the
    normalisers possibly by the first objective: `pending`)."""

    content_layers: tuple[str, ...]  # the layers the content loss compares; () for textures
    content: dict[str, Tensor]  # layer -> content activation (1, C, H, W), float32 (empty while `pending`)
    content_power: dict[str, Tensor]  # layer -> mean(F_c²), the content loss's normaliser
    regions: list[RegionTargets]
    # Deferred (compute_targets(defer=True)): the reference image whose content targets and normalisers are still
    # to come. The first objective fills them in, from its own forward pass when it is evaluated at this image
    # (a run starting from its content or noise reference), else from a pass of the reference; then None.
    pending: Tensor | None = None
    # content_loss 'self-similarity' (Config.content_loss): layer -> the content's side of that loss; empty otherwise
    content_self: dict[str, SelfSimilarityTarget] = dataclasses.field(default_factory=dict)
    content_kind: str = "features"
    seed: int = 0  # draws the self-similarity loss's positions
    # A scale computed in tiles (Config.tile): the style targets and normalisers from moments summed over tiles
    # (`regions` is then empty), and the tile's size in px
    tiled: TiledStyle | None = None
    tile: int | None = None
    # After each tile of each sweep of a tiled step: (sweep, sweeps, tiles done, tiles) (a display's hook)
    ticks: Callable[[int, int, int, int], None] | None = None
    runner: TileRunner | None = None  # where the tiles' work runs (None: in this process, on the model)


StyleLosses = dict[str, tuple[StyleLoss, float]]  # label -> (loss, weight in the mix; weights sum to 1)


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    config: Config = Config(),
    callback: Callback | None = None,
    checkpoint: Checkpoint | None = None,
    style_cache: StyleCache | None = None,
    on_tile: TileCallback | None = None,
    tile_runner: TileRunner | None = None,
) -> Image.Image:
    """Stylise `content` with one or more `styles` (paths, URLs, PIL images or (1,3,H,W) tensors in [0,1]).
    `style_cache`: a mapping kept between calls (stylelab.jobs.StyleCache) so the style side of the targets is
    computed once per (style pixels at each scale, settings); same pixels as without it. `on_tile`: a
    TileProgress after each tile of a scale computed in tiles (Config.tile). `tile_runner`: where those tiles'
    work runs (stylelab.engine.ray_tiles.RayTiles: on Ray actors); default: in this process."""
    content_t, style_ts = load_inputs(content, styles)
    config.blend_weights(len(style_ts))  # validate the blend against the number of styles before any work
    init = None if config.init in INITS else to_tensor(config.init, "init image")
    return tensor_to_pil(transfer(content_t, style_ts, config, callback, init_image=init, checkpoint=checkpoint,
                                  style_cache=style_cache, on_tile=on_tile, tile_runner=tile_runner))


def synthesize(
    styles: ImageLike | Sequence[ImageLike],
    size: tuple[int, int],
    config: Config = Config(init="noise"),
    callback: Callback | None = None,
    checkpoint: Checkpoint | None = None,
    on_tile: TileCallback | None = None,
    tile_runner: TileRunner | None = None,
) -> Image.Image:
    """A texture of `size` (W, H) px with the style of `styles` and no content (content weight 0, noise init).
    With `config.tileable` the sides are rounded to multiples of 16 px and the texture tiles without seams."""
    _, style_ts = load_inputs(None, styles)
    config.blend_weights(len(style_ts))
    w, h = size
    if config.tileable:  # every pool must halve the grid exactly, or the torus breaks at the seam
        w, h = (max(16, round(v / 16) * 16) for v in (w, h))
    if min(w, h) < 16 or max(w, h) > 16384:
        raise StylelabError(f"texture size must be between 16 and 16384 px per side, got {w}x{h}")
    texture_config = dataclasses.replace(config, content_weight=0.0,
                                         init="noise" if config.init == "content" else config.init)
    init = None if texture_config.init in INITS else to_tensor(texture_config.init, "init image")
    out = transfer(None, style_ts, texture_config, callback, init_image=init, checkpoint=checkpoint, shape=(h, w),
                   on_tile=on_tile, tile_runner=tile_runner)
    return tensor_to_pil(out)


def load_inputs(content: ImageLike | None,
                styles: ImageLike | Sequence[ImageLike]) -> tuple[Tensor | None, list[Tensor]]:
    """One content (or None) and one or more style images (a single one need not be in a list) -> tensors."""
    if isinstance(styles, (str, Image.Image, Tensor)) or not isinstance(styles, Sequence):
        styles = [styles]
    if not styles:
        raise StylelabError("give at least one style image")
    content_t = None if content is None else to_tensor(content, "content image")
    style_ts = [to_tensor(s, "style image" if len(styles) == 1 else f"style image {k + 1}")
                for k, s in enumerate(styles)]
    return content_t, style_ts


def prepare(content: Tensor, styles: Sequence[Tensor], config: Config) -> tuple[VGG19, Tensor, list[Tensor]]:
    """The network and the inputs resized for a single-scale run of `config`, on its device (checked big enough)."""
    device = pick_device(config.device)
    model = build_model(config.weights, config.pooling, device)
    content = resize_long_edge(content, config.size)
    styles = [resize_long_edge(s, style_edge(config, config.size)) for s in styles]
    check_size(content, (*config.content_layers, *config.style_layers), "content image")
    for s in styles:
        check_size(s, config.style_layers, "style image")
    return model, content.to(device), [s.to(device) for s in styles]


def style_edge(config: Config, size: int) -> int:
    """Long edge of the style images at a scale whose output long edge is `size`: the style keeps its ratio
    to the output across scales (so strokes keep their relative size), times `style_scale`."""
    base = config.style_size or config.size
    return max(16, round(base * size / config.size * config.style_scale))


def transfer(
    content: Tensor | None,
    styles: Sequence[Tensor],
    config: Config,
    callback: Callback | None = None,
    init_image: Tensor | None = None,
    checkpoint: Checkpoint | None = None,
    shape: tuple[int, int] | None = None,
    style_cache: StyleCache | None = None,
    on_tile: TileCallback | None = None,
    tile_runner: TileRunner | None = None,
) -> Tensor:
    """Tensor-level core of `stylize` (and of `synthesize`, with content None and an output `shape` (H, W)):
    colour handling, then each scale of the schedule: resize, targets, optimise. Output (1, 3, H, W) on the CPU."""
    deadline = None if config.time_budget is None else time.perf_counter() + config.time_budget
    regions = load_regions(config.masks, len(styles))
    original = content
    content, styles = color_inputs(config.color, content, styles)
    if config.color == "palette-only":
        if content is None:
            raise ConfigError("color palette-only needs a content image")
        target = resize_long_edge(content, config.size)
        return palette_only(target, _pooled_pixels(styles, config.blend_weights(len(styles))))
    device = pick_device(config.device)
    model = build_model(config.weights, config.pooling, device, "circular" if config.tileable else "zeros")
    model.low_memory = config.low_memory
    if tile_runner is None:
        tile_runner = LocalTiles(model, functools.partial(conv_precision, config, device))
    losses = build_style_losses(config)
    check_masks_supported(losses, regions)
    plan = config.schedule()
    full_shape = _hw(content) if content is not None else shape
    if full_shape is None:
        raise ValueError("transfer needs a content image or an output shape")
    fp = fingerprint(config, [content, *styles, *(r.content for r in regions)], shape)
    saved = checkpoint.load(fp) if checkpoint is not None and checkpoint.resume else None
    x = opt_state = None
    for k, (size, steps) in enumerate(plan):
        if saved is not None and k < saved["scale"]:
            continue
        hw = _fit(full_shape, size, tileable=config.tileable)
        c_k = None if content is None else resize(content, hw).to(device)
        s_k = [resize_long_edge(s, style_edge(config, size)).to(device) for s in styles]
        _check_sizes(c_k, s_k, hw, config)
        reference = c_k if c_k is not None else _noise(hw, config.seed, device)
        resuming = saved is not None and k == saved["scale"]
        # The first step's pass is one of the reference when the run starts there: content init, or a texture
        # from its noise (which is the reference). Deferring elsewhere would only move the pass into step 1.
        starts_at_reference = x is None and not resuming and init_image is None and (
            config.init == "content" or (content is None and config.init == "noise"))
        start = 0
        if saved is not None and resuming:
            x, start, opt_state = saved["image"].to(device), saved["step"], saved["optimizer"]
            begin = saved.get("start", x if k == 0 else None)
            begin = None if begin is None else begin.to(device)
            saved = None
        elif x is None:
            x = begin = initial_image(config, reference, init_image, s_k)
        else:
            opt_state = _carry_state(config, opt_state, hw)
            x = begin = resize(x, hw).clamp(0, 1)
        if config.tile and max(hw) > config.tile:
            targets = compute_tiled_targets(tile_runner, c_k, s_k, config, losses, reference, config.tile, style_cache,
                                            ticks=None if on_tile is None else _tile_ticks(on_tile, k, "targets"),
                                            defer=starts_at_reference)
            targets.ticks = None if on_tile is None else _tile_ticks(on_tile, k, "step")
        else:
            # A guided loss matches the content, mixed with the image this scale starts from after the first scale
            targets = compute_targets(model, c_k, s_k, config, losses, regions, reference=reference,
                                      style_cache=style_cache, defer=starts_at_reference,
                                      start=begin if k > 0 else None)
        stop = StopRule(_scale_deadline(deadline, plan[k:], full_shape), config.tol)
        save = None if checkpoint is None else _saver(checkpoint, fp, k, steps, begin)
        # The images this scale's targets summarise are not needed again, and at print size each is hundreds of MB
        # (a 4096 px style: 200 MB): none is kept while the optimiser works. The image the scale starts from goes
        # to the optimiser alone (it works on its own copy), unless a checkpoint keeps it.
        del c_k, s_k, reference, begin
        start_image = [x]
        del x
        x, opt_state = optimize(model, start_image.pop(), targets, config, losses, steps, callback, scale=k,
                                start=start, state=opt_state, stop=stop, save=save)
    if x is None:
        raise ValueError("the schedule has no scale")
    out = x.detach().clamp(0, 1).cpu()
    return color_output(config.color, out, original, styles, config.blend_weights(len(styles)))


def _tile_ticks(on_tile: TileCallback, scale: int, phase: str) -> Callable[[int, int, int, int], None]:
    """TileProgress events for `on_tile`, timed from the first tile of each pass through the sweeps."""
    began = [0.0]

    def tick(sweep: int, sweeps: int, done: int, tiles: int) -> None:
        now = time.perf_counter()
        if (sweep == 1 and done == 1) or not began[0]:
            began[0] = now  # the first tile's own time is not counted: its start is not seen
        on_tile(TileProgress(scale, phase, sweep, sweeps, done, tiles, now - began[0]))
    return tick


def color_inputs(mode: str, content: Tensor | None, styles: Sequence[Tensor]) -> tuple[Tensor | None, list[Tensor]]:
    """Colour control before optimising (docs/method.md §7): grey images for luminance-only transfer, or style
    colours matched to the content's mean and covariance."""
    if content is None or mode in ("none", "transfer", "palette-only", "recolor"):
        return content, list(styles)
    if mode == "keep-luminance":
        greys = [luminance_only(content, s) for s in styles]
        return greys[0][0], [g[1] for g in greys]
    return content, [match_colors(s, content) for s in styles]  # "match"


def color_output(mode: str, out: Tensor, original: Tensor | None, styles: Sequence[Tensor] = (),
                 blend: Sequence[float] = ()) -> Tensor:
    """keep-luminance / transfer: the output's luminance with the content's chroma (YUV). recolor: the output's
    lightness with the content's colours mapped onto the styles' pooled palette (NNST's colour step)."""
    if original is not None and mode == "recolor":
        return recolor(out, resize(original, tuple(out.shape[-2:])), _pooled_pixels([s.cpu() for s in styles], blend))
    if original is None or mode not in ("keep-luminance", "transfer"):
        return out
    return restore_color(out, resize(original, tuple(out.shape[-2:])))


def _pooled_pixels(styles: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """All style images' pixels as one (1, 3, 1, N) image, each image's share of N following its blend weight."""
    pixels = [s.reshape(3, -1) for s in styles]
    n = max(p.shape[1] for p in pixels)
    parts = [p[:, torch.linspace(0, p.shape[1] - 1, max(1, round(w * n))).round().long()]
             for p, w in zip(pixels, weights) if w > 0]
    return torch.cat(parts, dim=1)[None, :, None, :]


def _fit(shape: tuple[int, int], long_edge: int, tileable: bool = False) -> tuple[int, int]:
    """(H, W) with the aspect of `shape` and the given long edge; multiples of 16 px for tileable outputs."""
    h, w = shape
    f = long_edge / max(h, w)
    step = 16 if tileable else 1
    return max(step, round(h * f / step) * step), max(step, round(w * f / step) * step)


def _hw(image: Tensor) -> tuple[int, int]:
    """(H, W) of a (..., H, W) tensor."""
    return int(image.shape[-2]), int(image.shape[-1])


def _noise(hw: tuple[int, int], seed: int, device: torch.device) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((1, 3, *hw), generator=g).to(device)


def _check_sizes(content: Tensor | None, styles: Sequence[Tensor], hw: tuple[int, int], config: Config) -> None:
    layers = (*config.content_layers, *config.style_layers) if content is not None else config.style_layers
    check_size(torch.empty(1, 3, *hw, device="meta"), layers, "content image" if content is not None else "texture")
    for s in styles:
        check_size(s, config.style_layers, "style image")


def _scale_deadline(deadline: float | None, plan: Sequence[tuple[int, int]], shape: tuple[int, int]) -> float | None:
    """This scale's share of the time left, in proportion to its planned work (steps x pixels)."""
    if deadline is None:
        return None
    costs = [steps * (size / max(shape)) ** 2 for size, steps in plan]
    now = time.perf_counter()
    return now + max(0.0, deadline - now) * costs[0] / sum(costs)


def _saver(checkpoint: Checkpoint, fp: str, scale: int, steps: int,
           begin: Tensor | None = None) -> Callable[[int, Tensor, dict], None]:
    """`begin`: the image the scale started from (a guided loss's targets depend on it; a resume needs it)."""
    def save(i: int, x: Tensor, opt_state: dict) -> None:
        if i % checkpoint.every == 0 or i == steps:
            state = {"fingerprint": fp, "scale": scale, "step": i, "image": x.detach().cpu(),
                     "optimizer": _to_cpu(opt_state)}
            if begin is not None:
                state["start"] = begin.detach().cpu()
            checkpoint.save(state)
    return save


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _carry_state(config: Config, state: dict | None, hw: tuple[int, int]) -> dict | None:
    """Optimiser state for the next scale. Adam: moments resized to the new grid (crowsonkb: first moment
    bicubic, second bilinear and kept >= 0). L-BFGS: none; its curvature pairs belong to the old grid. A pyramid:
    none (a fresh Adam at each scale, as STROTSS and NNST do: the coarse levels' moments have no finer grid)."""
    if config.optimizer != "adam" or state is None or config.param != "pixels":
        return None
    st = dict(state["state"][0])
    interp = torch.nn.functional.interpolate
    st["exp_avg"] = interp(st["exp_avg"], size=hw, mode="bicubic", align_corners=False)
    st["exp_avg_sq"] = interp(st["exp_avg_sq"], size=hw, mode="bilinear", align_corners=False).clamp_min(0)
    return {"state": {0: st}, "param_groups": state["param_groups"]}


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


def weights_checksum(path: str | None) -> str:
    """sha256 of the VGG19 weights file a run with `weights=path` uses (for provenance)."""
    return _cached_weights(path).checksum


def build_model(weights_path: str | None, pooling: str, device: torch.device, padding: str = "zeros") -> VGG19:
    return VGG19(_cached_weights(weights_path), pooling, padding).to(device)


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


def check_masks_supported(losses: StyleLosses, regions: Sequence[LoadedRegion]) -> None:
    if not regions:
        return
    for label, (loss, _) in losses.items():
        if not loss.weighted:
            raise ConfigError(f"style loss {label!r} does not support masks; use one of: "
                              + ", ".join(name for name in STYLE_LOSSES if style_loss(name).weighted))


@torch.no_grad()
def compute_tiled_targets(model: VGG19 | TileRunner, content: Tensor | None, styles: Sequence[Tensor], config: Config,
                          losses: StyleLosses, reference: Tensor, tile: int, style_cache: StyleCache | None = None,
                          ticks: Callable[[int, int, int, int], None] | None = None, defer: bool = False) -> Targets:
    """compute_targets for a scale computed in tiles of `tile` px: the content targets put together from tiles,
    the style statistics and normalisers from moments summed over tiles (stylelab.engine.tiles)."""
    runner = runner_of(model, functools.partial(conv_precision, config, reference.device))
    key = None if style_cache is None else _style_key(styles, config, reference.device)
    cached = None if key is None or style_cache is None else style_cache.get(key)
    style = tiled_style(runner, reference, styles, config.blend_weights(len(styles)), config, losses, tile,
                        stats=cached, ticks=ticks, defer=defer)
    if key is not None and cached is None and style_cache is not None:
        style_cache[key] = style.stats
    content_layers = config.content_layers if content is not None else ()
    targets = Targets(tuple(content_layers), {}, {}, [], content_kind=config.content_loss, seed=config.seed,
                      tiled=style, tile=tile, runner=runner)
    if content is not None:
        set_content(targets, tiled_activations(runner, content, content_layers, tile))
    return targets


@torch.no_grad()
def compute_targets(
    model: VGG19, content: Tensor | None, styles: Sequence[Tensor], config: Config, losses: StyleLosses,
    regions: Sequence[LoadedRegion] = (), reference: Tensor | None = None, style_cache: StyleCache | None = None,
    defer: bool = False, start: Tensor | None = None,
) -> Targets:
    """Style statistics per region and loss, their normalisers (each loss at `reference`, default the content
    image: there every style layer's L̂ is 1), and the content targets (none when `content` is None).
    With a `style_cache` (and no masks) the blended style statistics are looked up, or computed and stored.
    `defer` (no masks): leave the content targets and normalisers to the first objective (`Targets.pending`),
    which saves the reference's forward pass and losses when optimisation starts from the reference.
    Guided losses (StyleLoss.guide; with a content image only) get their per-position targets here, from the
    content's activations, the style images' and those of `start` (the image this scale starts from, if any)."""
    reference = content if reference is None else reference
    if reference is None:
        raise ValueError("compute_targets needs a content image or a reference")
    style_layers = config.style_layers
    content_layers = config.content_layers if content is not None else ()
    guided = content is not None and any(loss.guide is not None for loss, _ in losses.values())
    defer = defer and not regions and not guided
    key = None if style_cache is None or regions else _style_key(styles, config, reference.device)
    cached = None if key is None or style_cache is None else style_cache.get(key)
    with conv_precision(config, reference.device):
        ref_acts = {} if defer else model(reference, {*content_layers, *style_layers})
        if cached is None or guided:
            with model.zero_padding():  # a style image is not a torus, even when the output is (tileable)
                style_acts = [model(s, style_layers) for s in styles]
        else:
            style_acts = []
        guide_content = None
        if guided:
            assert content is not None
            content_acts = ref_acts if reference is content else model(content, style_layers)
            start_acts = None if start is None else model(start, style_layers)
            guide_content = (content_acts, start_acts)
    parts: list[tuple[list[dict[str, Tensor]], list[float], Tensor | None, Tensor | None, float]]
    if regions:
        parts = [([style_acts[r.style]], [1.0], r.style_mask, r.content, 1.0 / len(regions)) for r in regions]
    else:
        parts = [(style_acts, config.blend_weights(len(styles)), None, None, 1.0)]
    region_targets = [_region_targets(losses, style_layers, ref_acts, *part, stats=cached,
                                      guide=None if guide_content is None else (*guide_content, config))
                      for part in parts]
    if key is not None and cached is None and style_cache is not None:
        first = region_targets[0]
        style_cache[key] = first.stats if first.style_stats is None else first.style_stats
    targets = Targets(tuple(content_layers), {}, {}, region_targets, pending=reference if defer else None,
                      content_kind=config.content_loss, seed=config.seed)
    if not defer:
        set_content(targets, ref_acts)
    return targets


def set_content(targets: Targets, acts: dict[str, Tensor]) -> None:
    """The content targets (for `targets.content_layers`, or none: a texture) from the reference's activations,
    and their normalisers."""
    for layer in targets.content_layers:
        targets.content[layer] = t = at_least_float32(acts[layer].detach())
        targets.content_power[layer] = (t**2).mean().clamp_min(1e-12)
        if targets.content_kind == "self-similarity":
            targets.content_self[layer] = self_similarity_target(t, targets.seed)


def _region_targets(
    losses: StyleLosses, layers: Sequence[str], ref_acts: dict[str, Tensor], style_acts: Sequence[dict[str, Tensor]],
    blend_w: Sequence[float], style_mask: Tensor | None, content_mask: Tensor | None, share: float,
    stats: dict[str, dict[str, Stats]] | None = None,
    guide: tuple[dict[str, Tensor], dict[str, Tensor] | None, Config] | None = None,
) -> RegionTargets:
    """`stats`: the blended style statistics when already known (a style cache), else computed from `style_acts`.
    `guide`: (the content's activations, those of the scale's start image or None, the config) for guided losses.
    Empty `ref_acts` (deferred targets, no masks): the normalisers are left for `_settle`."""
    out_w = {layer: w for layer in layers if layer in ref_acts
             if (w := position_weights(content_mask, ref_acts[layer])) is not None}
    known = stats is not None
    stats = stats if stats is not None else {}
    ref: dict[str, dict[str, Tensor]] = {}
    for label, (loss, _) in losses.items():
        ref[label] = {}
        if not known:
            stats[label] = {}
        for layer in layers:
            if not known:
                per_style = [loss.stats(flatten(a[layer]), **_weights(position_weights(style_mask, a[layer])))
                             for a in style_acts]
                stats[label][layer] = loss.blend(per_style, blend_w)
    used = _guided(losses, stats, style_acts, blend_w, style_mask, guide)
    for label, (loss, _) in losses.items():
        for layer in layers:
            if layer in ref_acts:
                ref[label][layer] = _normaliser(loss.loss(flatten(ref_acts[layer]), used[label][layer],
                                                          **_weights(out_w.get(layer))))
    return RegionTargets(used, ref, None if content_mask is None else out_w, share,
                         style_stats=None if used is stats else stats)


def _guided(losses: StyleLosses, stats: dict[str, dict[str, Stats]], style_acts: Sequence[dict[str, Tensor]],
            blend_w: Sequence[float], style_mask: Tensor | None,
            guide: tuple[dict[str, Tensor], dict[str, Tensor] | None, Config] | None) -> dict[str, dict[str, Stats]]:
    """The targets the losses compare with: `stats`, except that each guided loss's target at each layer takes
    its per-position targets from the loss's guide (StyleLoss.guide). `stats` itself when nothing is guided."""
    if guide is None or not any(loss.guide is not None for loss, _ in losses.values()):
        return stats
    from ..losses.neighbours import GuideInput

    content_acts, start_acts, config = guide
    inputs = GuideInput(content=content_acts, output=start_acts, styles=list(style_acts), blend=list(blend_w),
                        style_masks=[style_mask] * len(style_acts), layer_weights=config.style_layer_weight_map())
    used = dict(stats)
    for label, (loss, _) in losses.items():
        if loss.guide is not None:
            assigned = loss.guide(inputs)
            # a guided loss's target is (its style sample, per-position targets or None): NNTarget
            used[label] = {layer: (cast(tuple, target)[0], assigned.get(layer))
                           for layer, target in stats[label].items()}
    return used


def _normaliser(raw: Tensor) -> Tensor:
    # Guard against a style identical to the reference, where the loss is 0 and any output is perfect.
    return raw.detach().clamp_min(1e-12)


def _style_key(styles: Sequence[Tensor], config: Config, device: torch.device) -> tuple:
    """What the blended style statistics depend on: the style pixels as resized for this scale (so the image and
    the scale), the blend and every setting that changes the network or the losses' statistics. Not `tileable`:
    style images are always seen with zero padding (compute_targets)."""
    digests = tuple(hashlib.sha256(s.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
                    + f"{tuple(s.shape)}" for s in styles)
    return (digests, tuple(config.blend_weights(len(styles))), config.weights, config.pooling, config.style_layers,
            config.style_loss, config.seed, config.optimizer, config.precision, str(device))


def _weights(w: Tensor | None) -> dict[str, Tensor]:
    """Keyword arguments for a loss: only losses run with masks ever receive `weights`."""
    return {} if w is None else {"weights": w}


def objective(
    model: VGG19, x: Tensor, targets: Targets, config: Config, losses: StyleLosses,
    extra_loss: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its unweighted terms; the total is exactly what gets differentiated. `extra_loss(x)`, when
    given, is added to the total as it is (already weighted) and reported as the term 'extra'."""
    if targets.tiled is not None and targets.tile is not None:
        if extra_loss is not None:
            raise ConfigError("an extra loss (video's temporal loss) cannot run in tiles; leave out --tile")
        return tiled_objective(targets.runner or model, x, targets.tile, targets.content, targets.content_power,
                               targets.tiled, config, losses, functools.partial(conv_precision, config, x.device),
                               targets.ticks)
    content_layers = targets.content_layers
    with conv_precision(config, x.device):
        feats = model(x, {*content_layers, *config.style_layers})
    at_reference = False  # x is the reference image of deferred targets: its raw style losses set the normalisers
    if targets.pending is not None:
        at_reference = _settle(model, x, feats, targets, config, losses)
    content = sum(
        (w * (self_similarity_loss(feats[layer], targets.content_self[layer]) if layer in targets.content_self
              else content_loss(feats[layer], targets.content[layer], targets.content_power[layer]))
         for layer, w in config.content_layer_weight_map().items() if layer in targets.content),
        start=x.new_zeros(()),
    )
    layer_w = config.style_layer_weight_map()
    flat = {layer: flatten(feats[layer]) for layer in config.style_layers}
    normalised = normalised_style(flat, targets, losses, at_reference)
    mix = [pi for _, pi in losses.values()]
    per_layer = {layer: weighted_sum([normalised[label][layer] for label in losses], mix)
                 for layer in config.style_layers}
    style = weighted_sum([per_layer[layer] for layer in layer_w], list(layer_w.values()))
    # Tileable: one wrapped row and column, so the seam between tiles is smoothed like any other neighbours.
    tv = tv_loss(torch.nn.functional.pad(x, (0, 1, 0, 1), mode="circular") if config.tileable else x)
    total = config.content_weight * content + config.style_weight * style + config.tv_weight * tv
    terms = {"content": content, "style": style, "tv": tv, **{f"style/{k}": v for k, v in per_layer.items()}}
    if len(losses) > 1:  # each member of a mix on its own, for reporting
        terms.update({f"style:{label}": weighted_sum([normalised[label][layer] for layer in layer_w],
                                                     list(layer_w.values())) for label in losses})
    if extra_loss is not None:  # e.g. the temporal loss of stylelab.video
        terms["extra"] = extra_loss(x)
        total = total + terms["extra"]
    return total, terms


def normalised_style(flat: dict[str, Tensor], targets: Targets, losses: StyleLosses,
                     at_reference: bool = False) -> dict[str, dict[str, Tensor]]:
    """Loss label -> layer -> L̂ (1 at the reference image), summed over the regions by their shares.
    `at_reference`: `flat` are the reference image's features, whose raw losses become the normalisers."""
    out: dict[str, dict[str, Tensor]] = {}
    for label, (loss, _) in losses.items():
        out[label] = {}
        for layer, x in flat.items():
            total: Tensor | float = 0
            for r in targets.regions:
                w = None if r.weights is None else r.weights[layer]
                raw = loss.loss(x, r.stats[label][layer], **_weights(w))
                if at_reference:
                    r.ref[label][layer] = _normaliser(raw)
                total = total + r.share * raw / r.ref[label][layer]
            out[label][layer] = torch.as_tensor(total)
    return out


def _settle(model: VGG19, x: Tensor, feats: dict[str, Tensor], targets: Targets, config: Config,
            losses: StyleLosses) -> bool:
    """Fill in deferred targets (`Targets.pending`). True when `x` is the reference image: `feats` then give the
    content targets, and the raw style losses about to be computed from them the normalisers (normalised_style),
    the same numbers as from a separate pass. Otherwise they come from a no-grad pass of the reference; False."""
    reference, targets.pending = targets.pending, None
    assert reference is not None
    if torch.equal(x.detach(), reference):
        set_content(targets, feats)
        return True
    with torch.no_grad(), conv_precision(config, reference.device):
        acts = model(reference, {*targets.content_layers, *config.style_layers})
        set_content(targets, acts)
        # Deferred only without masks: every region is the whole image, its statistics known.
        targets.regions[:] = [_region_targets(losses, config.style_layers, acts, [], [], None, None, r.share,
                                              stats=r.stats) for r in targets.regions]
    return False


def conv_precision(config: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for the VGG convolutions on CUDA (precision 'auto'). Only the network runs in it: every
    statistic is computed from features cast to float32 (`flatten`), because half-precision Gram matrices are
    useless (docs/method.md §5.5); bfloat16 rather than float16 because activations exceed float16's range."""
    enabled = config.precision == "auto" and device.type == "cuda"
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def initial_image(config: Config, content: Tensor, init_image: Tensor | None = None,
                  styles: Sequence[Tensor] = ()) -> Tensor:
    """The image optimisation starts from, shaped like `content`."""
    if config.init == "content":
        return content.clone()
    if config.init == "noise":
        return _noise(_hw(content), config.seed, content.device)  # white noise (Gatys et al. 2016)
    if config.init == "fast":  # a feed-forward stylisation to refine (stylelab.engine.fast; optional extra)
        from .fast import stylize_fast

        return stylize_fast(content, styles, config.blend_weights(len(styles)), _hw(content))
    if init_image is None:
        init_image = to_tensor(config.init, "init image")
    return resize(init_image, tuple(content.shape[-2:])).clamp(0, 1).to(content.device)


class StopRule:
    """When a scale stops before its planned steps: out of time (the next step would pass `deadline`), or a
    plateau (the loss fell by less than `tol` of its value over the last `window` steps)."""

    def __init__(self, deadline: float | None, tol: float, window: int = 10) -> None:
        self.deadline, self.tol, self.window = deadline, tol, window
        self.losses: list[float] = []
        self.seconds: list[float] = []

    def out_of_time(self) -> bool:
        if self.deadline is None:
            return False
        step = statistics.median(self.seconds) if self.seconds else 0.0
        # The next step and, after it, the forward pass that reports the output's loss (Step.final; counted as a
        # whole step, an upper bound) must both end before the deadline.
        return time.perf_counter() + 2 * step > self.deadline

    def record(self, loss: float, seconds: float) -> bool:
        """Note a finished step; True when the loss has plateaued."""
        self.losses.append(loss)
        self.seconds.append(seconds)
        if self.tol <= 0 or len(self.losses) <= self.window:
            return False
        before, now = self.losses[-1 - self.window], self.losses[-1]
        return before - now < self.tol * abs(now)


def optimize(
    model: VGG19, x: Tensor, targets: Targets, config: Config, losses: StyleLosses, steps: int | None = None,
    callback: Callback | None = None, scale: int = 0, *, start: int = 0, state: dict | None = None,
    stop: StopRule | None = None, save: Callable[[int, Tensor, dict], None] | None = None,
    extra_loss: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, dict]:
    """Optimiser steps `start+1 .. steps` (default config.steps) on the pixels of `x`, each one forward + backward;
    `extra_loss` is added to the objective (see `objective`). Returns the image and the optimiser state (to
    resume, or to warm-start the next scale)."""
    steps = config.steps if steps is None else steps
    param = image_param(config.param)
    leaves = param.split(x)
    x = param.join(leaves)
    lr = config.learning_rate
    opt: torch.optim.Optimizer
    if config.optimizer == "lbfgs":
        # max_iter=1: one closure evaluation per step() (no line search), history kept across calls.
        opt = torch.optim.LBFGS(leaves, lr=lr, max_iter=1, history_size=config.lbfgs_history)
    else:
        opt = torch.optim.Adam(leaves, lr=lr, betas=(0.9, 0.99))
    if state is not None:
        opt.load_state_dict(state)
    last: dict[str, Any] = {}
    done: int | None = None  # the last step taken
    stopped = ""  # why the loop ended early (Step.stopped)

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        total, terms = objective(model, param.join(leaves), targets, config, losses, extra_loss)
        total.backward()
        last["total"], last["terms"] = total.detach(), terms
        return total

    for i in range(start + 1, steps + 1):
        if stop is not None and stop.out_of_time():
            stopped = "time"
            break
        t0 = time.perf_counter()
        opt.step(closure)
        param.project(leaves)  # the image stays in [0, 1]
        with torch.no_grad():
            x = param.join(leaves)
        values = _values(last["total"], last["terms"])
        if not math.isfinite(values[0]):
            raise OptimizationError(
                f"the loss became {values[0]} at step {i}; try a smaller --lr or --optimizer adam"
            )
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(Step(scale, i, steps, values[0], dict(zip(last["terms"], values[1:])), seconds, x.detach()))
        done = i
        plateau = stop is not None and stop.record(values[0], seconds)
        if save is not None:
            save(steps if plateau else i, x, opt.state_dict())
        if plateau:
            stopped = "plateau" if i < steps else ""
            break
    if callback is not None and (done is not None or stopped):
        t0 = time.perf_counter()
        with torch.no_grad():
            total, terms = objective(model, x, targets, config, losses, extra_loss)
        values = _values(total, terms)
        callback(ScaleEnd(scale, start if done is None else done, steps, values[0], dict(zip(terms, values[1:])),
                          time.perf_counter() - t0, x.detach(), stopped=stopped))
    return x.detach(), opt.state_dict()


def _values(total: Tensor, terms: dict[str, Tensor]) -> list[float]:
    """[total, *terms] as floats, in one device sync."""
    return torch.stack([total.detach(), *(v.detach() for v in terms.values())]).tolist()
