"""Steps over an image of any size in the memory of one tile, with the same result as the step in one piece.

A tile is a *core*, a rectangle of the image whose corners lie on the 16-px grid of VGG19's four pools (the cores
cover the image once), and a *window*: the core and a margin around it, clipped to the image. The margin is as
wide as the deepest layer's field of view reaches beyond its own 16-px cell (layers.tile_margin: 80 px for
relu5_1, which sees 156 px), so the network run on the window gives, inside the core, exactly the features of the
whole image: the zeros that pad the window's edge never reach the core, and every pool of the window pools the
same 2x2 cells as the pool of the whole image.

The style losses that tile (StyleLoss.tiling) compare statistics that are averages over positions. A step is then
two sweeps over the tiles:

1. statistics (no gradient): each core's moments, averaged over the tiles by their shares of the positions (in
   float64) into the whole image's moments m; the style loss L(m), its gradient ∂L/∂m, and the content loss;
2. gradients: per tile, the surrogate  Σ ⟨∂L/∂m, share_t · moments(core_t)⟩ + the content loss of the core,
   differentiated back to the window's pixels. The chain rule says its gradient is the tile's part of the whole
   gradient; the windows overlap, and their pixel gradients add up into one image.

The step costs two forward passes and one backward pass per window (one forward more than a step in one piece,
plus the margins), and holds one window's activations at a time, the image-sized vectors of the optimiser and the
content targets at their layer. The optimiser sees one differentiable objective (an autograd Function), so L-BFGS,
Adam and the pyramid parameterisation work unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import Config
from ..layers import TILE_GRID, channels, pools_before, tile_margin
from ..losses.base import STYLE_SAMPLE, RankTiling, StyleLoss, Tiling, at_least_float32, flatten, weighted_sum
from ..losses.binned import PiecewiseTransport
from ..losses.content import tv_loss
from .features import VGG19

__all__ = ["Tile", "TiledStyle", "plan", "tiled_activations", "tiled_objective", "tiled_style", "tilings_of"]

Precision = Callable[[], contextlib.AbstractContextManager]  # the context the network runs in (conv_precision)
Box = tuple[int, int, int, int]  # y0, y1, x0, x1 in px, ends excluded


@dataclass(frozen=True)
class Tile:
    core: Box  # the part of the image whose features this tile computes
    window: Box  # the core and its margin, clipped to the image: what the network sees
    shape: tuple[int, int]  # the image's (H, W)

    def pixels(self, x: Tensor) -> Tensor:
        y0, y1, x0, x1 = self.window
        return x[..., y0:y1, x0:x1]

    def core_of(self, activation: Tensor, layer: str) -> Tensor:
        """The core's part of the window's activation (1, C, h, w) at `layer`: exactly the whole image's there."""
        s = 2 ** pools_before(layer)
        (cy0, cy1, cx0, cx1), (wy0, _, wx0, _) = self.core, self.window
        h, w = self.shape
        # A core that ends at the image's edge keeps the rows the pools' rounding leaves at that edge
        y1 = None if cy1 == h else (cy1 - wy0) // s
        x1 = None if cx1 == w else (cx1 - wx0) // s
        return activation[..., (cy0 - wy0) // s:y1, (cx0 - wx0) // s:x1]

    def offset(self, layer: str) -> tuple[int, int]:
        """Where the core's features start in the whole image's feature map at `layer`."""
        s = 2 ** pools_before(layer)
        return self.core[0] // s, self.core[2] // s


def plan(shape: tuple[int, int], tile: int, margin: int) -> list[Tile]:
    """Cores of `tile` px (the last ones in each row and column smaller) and their windows, row by row."""
    if tile % TILE_GRID or margin % TILE_GRID:
        raise ValueError(f"tile ({tile}) and margin ({margin}) must be multiples of {TILE_GRID} px")
    h, w = shape
    return [Tile((y0, min(y0 + tile, h), x0, min(x0 + tile, w)),
                 (max(0, y0 - margin), min(h, y0 + tile + margin), max(0, x0 - margin), min(w, x0 + tile + margin)),
                 shape)
            for y0 in range(0, h, tile) for x0 in range(0, w, tile)]


def _cores(model: VGG19, image: Tensor, tiles: Sequence[Tile], layers: Sequence[str],
           precision: Precision) -> Iterator[tuple[Tile, dict[str, Tensor]]]:
    """Each tile and its core's activations at `layers`."""
    for t in tiles:
        with precision():
            acts = model(t.pixels(image), set(layers))
        yield t, {layer: t.core_of(acts[layer], layer) for layer in layers}


def _tiles(image: Tensor, tile: int, layers: Sequence[str]) -> list[Tile]:
    return plan((int(image.shape[-2]), int(image.shape[-1])), tile, tile_margin(tuple(layers)))


@torch.no_grad()
def tiled_activations(model: VGG19, image: Tensor, layers: Sequence[str], tile: int,
                      precision: Precision = contextlib.nullcontext) -> dict[str, Tensor]:
    """The whole image's activations at `layers`, computed in tiles and put together (float32)."""
    out: dict[str, Tensor] = {}
    for t, cores in _cores(model, image, _tiles(image, tile, layers), layers, precision):
        for layer, a in cores.items():
            a = at_least_float32(a)
            if layer not in out:  # the first tile is the top-left one: its offset is (0, 0)
                h, w = _feature_hw(image, layer)
                out[layer] = a.new_zeros(1, a.shape[1], h, w)
            y, x = t.offset(layer)
            out[layer][..., y:y + a.shape[-2], x:x + a.shape[-1]] = a
    return out


def _feature_hw(image: Tensor, layer: str) -> tuple[int, int]:
    h, w = int(image.shape[-2]), int(image.shape[-1])
    for _ in range(pools_before(layer)):
        h, w = h // 2, w // 2
    return h, w


Moments = dict[str, dict[str, tuple[Tensor, ...]]]  # loss label -> layer -> the whole image's moments (float64)
AnyTiling = Tiling | RankTiling
Losses = Mapping[str, tuple[StyleLoss, float]]


def tilings_of(losses: Losses) -> dict[str, AnyTiling]:
    out = {}
    for label, (loss, _) in losses.items():
        if loss.tiling is None:
            raise ValueError(f"style loss {label!r} cannot run in tiles")
        out[label] = loss.tiling
    return out


@dataclass(frozen=True)
class TiledStyle:
    """The style side of a tiled objective: the blended targets and the normalisers, per loss and layer."""

    stats: dict[str, dict[str, Any]]
    ref: dict[str, dict[str, Tensor]]


@torch.no_grad()
def tiled_style(model: VGG19, reference: Tensor, styles: Sequence[Tensor], blend: Sequence[float], config: Config,
                losses: Losses, tile: int, precision: Precision,
                stats: dict[str, dict[str, Any]] | None = None) -> TiledStyle:
    """The blended style statistics (computed in tiles unless given: a style cache) and each loss's value at the
    reference image (the normaliser: there every layer's L̂ is 1), both computed tile by tile."""
    tilings = tilings_of(losses)
    layers = config.style_layers
    if stats is None:
        with model.zero_padding():  # a style image is not a torus (the engine's rule, kept here)
            per_style = [_style_stats(model, s, layers, losses, tilings, tile, config.seed, precision) for s in styles]
        stats = {label: {layer: losses[label][0].blend([p[label][layer] for p in per_style], blend)
                         for layer in layers} for label in tilings}
    raw, _, _ = _sweeps(model, reference, tile, config, losses, stats, precision)
    ref = {label: {layer: v.float().clamp_min(1e-12) for layer, v in per.items()} for label, per in raw.items()}
    return TiledStyle(stats, ref)


def _style_stats(model: VGG19, image: Tensor, layers: Sequence[str], losses: Losses,
                 tilings: Mapping[str, AnyTiling], tile: int, seed: int,
                 precision: Precision) -> dict[str, dict[str, Any]]:
    """One style image's statistics per loss and layer: from its moments (Tiling), or (RankTiling) the loss's
    statistics of its features at up to STYLE_SAMPLE seeded positions, in the order of the whole image's."""
    tiles = _tiles(image, tile, layers)
    moment_tilings = {label: tl for label, tl in tilings.items() if isinstance(tl, Tiling)}
    total: Moments = {}
    counts: dict[str, int] = {}
    wanted = {layer: _sample_positions(image, layer, seed) for layer in layers}
    kept: dict[str, list[tuple[Tensor, Tensor]]] = {layer: [] for layer in layers}
    ranked = len(moment_tilings) < len(tilings)
    for t, cores in _cores(model, image, tiles, layers, precision):
        _accumulate(total, counts, moment_tilings, cores)
        if ranked:
            for layer, a in cores.items():
                kept[layer].append(_sampled(t, a, layer, wanted[layer], _feature_hw(image, layer)[1]))
    moments = _averaged(total, counts)
    out: dict[str, dict[str, Any]] = {}
    for label, tiling in tilings.items():
        if isinstance(tiling, Tiling):
            out[label] = {layer: tiling.stats(moments[label][layer]) for layer in layers}
        else:
            out[label] = {layer: losses[label][0].stats(_in_order(kept[layer])) for layer in layers}
    return out


def _sample_positions(image: Tensor, layer: str, seed: int) -> Tensor | None:
    """The positions (row-major indices) of the whole feature map at `layer` a rank loss keeps, sorted; None: all."""
    h, w = _feature_hw(image, layer)
    if h * w <= STYLE_SAMPLE:
        return None
    g = torch.Generator().manual_seed((seed * 1_000_003 + h * w) % 2**64)
    return torch.randperm(h * w, generator=g)[:STYLE_SAMPLE].sort().values


def _sampled(t: Tile, core: Tensor, layer: str, wanted: Tensor | None, width: int) -> tuple[Tensor, Tensor]:
    """(the positions, the features there (C, n)) of the core's part of `wanted` (all of the core if None)."""
    y, x = t.offset(layer)
    h, w = core.shape[-2:]
    rows = torch.arange(y, y + h).repeat_interleave(w)
    cols = torch.arange(x, x + w).repeat(h)
    index = rows * width + cols  # the core's positions in the whole map, row by row
    f = at_least_float32(core.reshape(core.shape[1], -1))
    if wanted is not None:
        keep = torch.isin(index, wanted)
        index, f = index[keep], f[:, keep.to(f.device)]
    return index, f


def _in_order(parts: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    index = torch.cat([i for i, _ in parts])
    features = torch.cat([f for _, f in parts], dim=1)
    return features[:, index.argsort().to(features.device)]


def _accumulate(total: Moments, counts: dict[str, int], tilings: Mapping[str, Tiling],
                cores: Mapping[str, Tensor]) -> None:
    """Add one tile's moments, weighted by its position count, into `total` (float64)."""
    for layer, a in cores.items():
        x = flatten(a)
        n = x.shape[1]
        counts[layer] = counts.get(layer, 0) + n
        if n == 0:  # a core at the image's edge that the pools' rounding leaves without a position at this layer
            continue
        for label, tiling in tilings.items():
            parts = tuple(m.double() * n for m in tiling.moments(x))
            old = total.setdefault(label, {}).get(layer)
            total[label][layer] = parts if old is None else tuple(o + p for o, p in zip(old, parts))


def _averaged(total: Moments, counts: Mapping[str, int]) -> Moments:
    return {label: {layer: tuple(m / counts[layer] for m in ms) for layer, ms in per.items()}
            for label, per in total.items()}


Raw = dict[str, dict[str, Tensor]]  # loss label -> layer -> the loss's raw value (float64)


def _sweeps(model: VGG19, image: Tensor, tile: int, config: Config, losses: Losses, stats: Mapping[str, Any],
            precision: Precision, content: Mapping[str, Tensor] | None = None,
            weights: Callable[[Raw], Tensor] | None = None,
            rank_weights: Mapping[str, Mapping[str, float]] | None = None,
            content_scale: Mapping[str, float] | None = None) -> tuple[Raw, dict[str, Tensor], Tensor | None]:
    """Each style loss's raw value at each style layer of `image`, computed in tiles, the content loss's sums of
    squares per layer (with `content` targets), and with `weights` the gradient with respect to the image of

        weights(raw values as functions of the moment losses' moments) + Σ rank_weights · rank losses' values
        + Σ content_scale · sums of squares

    (all three given together). Sweeps: 1. moments, the rank losses' ranges, content sums; 2. the rank losses'
    histograms (when there are any); 3. the gradient and the rank losses' values (when either is needed)."""
    tilings = tilings_of(losses)
    layers_c = [] if content is None else list(content)
    layers = [*config.style_layers, *(layer for layer in layers_c if layer not in config.style_layers)]
    tiles = _tiles(image, tile, layers)
    image = image.detach()
    moment_t = {label: tl for label, tl in tilings.items() if isinstance(tl, Tiling)}
    rank_t = {label: tl for label, tl in tilings.items() if isinstance(tl, RankTiling)}
    # Each rank loss's rows and target per layer, asked for once per evaluation in the order of the untiled loss
    rows: dict[str, dict[str, tuple[Tensor | None, Callable[[Tensor], Tensor]]]] = {}
    for label, rt in rank_t.items():
        rows[label] = {layer: rt.rows(channels(layer), stats[label][layer], image) for layer in config.style_layers}
    splits = {label: {layer: PiecewiseTransport(rt.bins, rt.ties) for layer in config.style_layers}
              for label, rt in rank_t.items()}

    def projected(label: str, layer: str, x: Tensor) -> Tensor:
        v = rows[label][layer][0]
        return x if v is None else v.to(x.dtype) @ x

    total: Moments = {}
    counts: dict[str, int] = {}
    squares = {layer: torch.zeros((), dtype=torch.float64, device=image.device) for layer in layers_c}
    with torch.no_grad():
        for t, cores in _cores(model, image, tiles, layers, precision):
            _accumulate(total, counts, moment_t, {layer: cores[layer] for layer in config.style_layers})
            for label in rank_t:
                for layer in config.style_layers:
                    x = flatten(cores[layer])
                    if x.shape[1]:
                        splits[label][layer].observe(projected(label, layer, x))
            for layer in layers_c:
                assert content is not None
                squares[layer] += _squared_error(t, cores[layer], content[layer], layer).double()
        if rank_t:
            for _, cores in _cores(model, image, tiles, config.style_layers, precision):
                for label in rank_t:
                    for layer in config.style_layers:
                        x = flatten(cores[layer])
                        if x.shape[1]:
                            splits[label][layer].count(projected(label, layer, x))
            for label in rank_t:
                for layer in config.style_layers:
                    splits[label][layer].close(rows[label][layer][1])
    moments = _averaged(total, counts)
    leaves = {label: {layer: tuple(m.detach().requires_grad_(weights is not None) for m in ms)
                      for layer, ms in per.items()} for label, per in moments.items()}
    with torch.enable_grad():
        raw: Raw = {label: {layer: moment_t[label].distance(leaves[label][layer], stats[label][layer])
                            for layer in config.style_layers} for label in moment_t}
        slopes: dict[str, dict[str, tuple[Tensor, ...]]] = {}
        if weights is not None and moment_t:
            flat = [m for per in leaves.values() for ms in per.values() for m in ms]
            grads = iter(torch.autograd.grad(weights(raw), flat, allow_unused=True))
            slopes = {label: {layer: tuple(_zero_if_none(next(grads), m) for m in ms) for layer, ms in per.items()}
                      for label, per in leaves.items()}
    raw = {label: {layer: v.detach() for layer, v in per.items()} for label, per in raw.items()}
    if not rank_t and weights is None:
        return raw, squares, None

    sums = {label: {layer: torch.zeros((), dtype=torch.float64, device=image.device) for layer in config.style_layers}
            for label in rank_t}
    grad = None if weights is None else torch.zeros_like(image)
    for t in tiles:
        window = t.pixels(image).detach().requires_grad_(grad is not None)
        with torch.set_grad_enabled(grad is not None):
            with precision():
                acts = model(window, set(layers))
            surrogate = window.new_zeros(())
            for layer in config.style_layers:
                xc = flatten(t.core_of(acts[layer], layer))
                if xc.shape[1] == 0:
                    continue
                share = xc.shape[1] / counts[layer]
                for label, ms in slopes.items():
                    for g, m in zip(ms[layer], moment_t[label].moments(xc)):
                        surrogate = surrogate + share * (g.to(m.dtype) * m).sum()
                for label in rank_t:
                    p = projected(label, layer, xc)
                    split = splits[label][layer]
                    diff = split.difference(p.detach())
                    sums[label][layer] += (diff.double() ** 2).sum()
                    if rank_weights is not None:
                        scale = rank_weights[label][layer] * 2 / (p.shape[0] * split.m)
                        surrogate = surrogate + scale * (diff * p).sum()
            if grad is not None:
                assert content_scale is not None and content is not None
                for layer in layers_c:
                    surrogate = surrogate + content_scale[layer] * _squared_error(
                        t, t.core_of(acts[layer], layer), content[layer], layer)
        if grad is not None and surrogate.requires_grad:
            (g_window,) = torch.autograd.grad(surrogate, window)
            y0, y1, x0, x1 = t.window
            grad[..., y0:y1, x0:x1] += g_window
    for label in rank_t:
        for layer in config.style_layers:
            split = splits[label][layer]
            v = rows[label][layer][0]
            k = channels(layer) if v is None else int(v.shape[0])
            raw[label] = raw.get(label, {})
            raw[label][layer] = (sums[label][layer] + split.tie_total.double()) / (k * split.m)
    return raw, squares, grad


class _Tiled(torch.autograd.Function):
    """A value whose gradient with respect to the image was computed by the sweeps (kept for backward)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, value: Tensor, grad: Tensor) -> Tensor:
        ctx.grad = grad
        return value.clone()

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple[Tensor | None, ...]:
        grad, ctx.grad = ctx.grad, None
        return grad * grad_outputs[0], None, None


def tiled_objective(model: VGG19, x: Tensor, tile: int, content: Mapping[str, Tensor],
                    content_power: Mapping[str, Tensor], style: TiledStyle, config: Config, losses: Losses,
                    precision: Precision = contextlib.nullcontext) -> tuple[Tensor, dict[str, Tensor]]:
    """The objective of optimize.objective (the same value, terms and gradient), computed in tiles of `tile` px.
    `content`: the whole image's content targets per layer (empty for a texture), `content_power` their
    normalisers."""
    content_w = {layer: w for layer, w in config.content_layer_weight_map().items() if layer in content}
    style_w = config.style_layer_weight_map()
    mix = {label: pi for label, (_, pi) in losses.items()}
    # d total / d raw value of each loss and layer: the style weight, the layer's, the mix's, the normaliser
    coef = {label: {layer: config.style_weight * style_w.get(layer, 0.0) * pi / float(style.ref[label][layer])
                    for layer in config.style_layers} for label, pi in mix.items()}
    want_grad = torch.is_grad_enabled() and x.requires_grad

    def weighted(raw: Raw) -> Tensor:
        return sum((coef[label][layer] * v for label, per in raw.items() for layer, v in per.items()),
                   start=torch.zeros((), dtype=torch.float64))

    content_scale = {layer: config.content_weight * w / (content[layer].numel() * float(content_power[layer]))
                     for layer, w in content_w.items()}
    ranked = {label for label, tl in tilings_of(losses).items() if isinstance(tl, RankTiling)}
    raw, squares, grad = _sweeps(
        model, x, tile, config, losses, style.stats, precision, content={k: content[k] for k in content_w},
        weights=weighted if want_grad else None,
        rank_weights={label: coef[label] for label in ranked} if want_grad else None,
        content_scale=content_scale if want_grad else None)

    normalised = {label: {layer: raw[label][layer] / style.ref[label][layer].double()
                          for layer in config.style_layers} for label in losses}
    per_layer = {layer: weighted_sum([normalised[label][layer] for label in losses], list(mix.values()))
                 for layer in config.style_layers}
    style_value = weighted_sum([per_layer[layer] for layer in style_w], list(style_w.values()))
    content_value = sum((w * squares[layer] / (content[layer].numel() * content_power[layer].double())
                         for layer, w in content_w.items()), start=torch.zeros((), dtype=torch.float64))
    value = (config.content_weight * content_value + config.style_weight * style_value).to(x.dtype)
    tv = tv_loss(x)
    terms: dict[str, Tensor] = {"content": content_value.float(), "style": style_value.float(), "tv": tv}
    terms.update({f"style/{layer}": v.float() for layer, v in per_layer.items()})
    if len(losses) > 1:
        terms.update({f"style:{label}": weighted_sum([normalised[label][layer] for layer in style_w],
                                                      list(style_w.values())).float() for label in losses})
    if grad is None:
        return value + config.tv_weight * tv, terms
    return _Tiled.apply(x, value, grad) + config.tv_weight * tv, terms


def _squared_error(t: Tile, core: Tensor, target: Tensor, layer: str) -> Tensor:
    """Σ (F − F_c)² over the core's positions at `layer`, F_c the whole image's content target there."""
    y, x = t.offset(layer)
    part = target[..., y:y + core.shape[-2], x:x + core.shape[-1]]
    return ((at_least_float32(core) - part) ** 2).sum()


def _zero_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g
