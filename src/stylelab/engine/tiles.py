"""Steps over an image of any size in the memory of one tile, with the same result as the step in one piece.

A tile is a *core*, a rectangle of the image whose corners lie on the 16-px grid of VGG19's four pools (the cores
cover the image once), and a *window*: the core and a margin around it, clipped to the image. The margin is as
wide as the deepest layer's field of view reaches beyond its own 16-px cell (layers.tile_margin: 80 px for
relu5_1, which sees 156 px), so the network run on the window gives, inside the core, exactly the features of the
whole image: the zeros that pad the window's edge never reach the core, and every pool of the window pools the
same 2x2 cells as the pool of the whole image.

The style losses that tile (StyleLoss.tiling) compare statistics that are averages over positions (Tiling), or
match 1-D projections by rank (RankTiling). A step is up to three sweeps over the tiles:

1. statistics (no gradient): each core's moments, averaged over the tiles by their shares of the positions (in
   float64) into the whole image's moments m, and L(m), ∂L/∂m; each transport row's minimum and maximum; the
   content loss; and the whole features of the small layers (fewer than binned.EXACT_BELOW positions), on which
   every loss runs its own function, as in one piece;
2. histograms (with a transport loss): every tile's projections counted into one histogram per row, on the grid
   the minima and maxima fix (binned.PiecewiseTransport), which gives every value its rank;
3. gradients: per tile, the surrogate  Σ ⟨∂L/∂m, share_t · moments(core_t)⟩ + Σ ⟨2 (p − Q(c(p))) / (K M), p⟩
   + the small layers' gradients · their features + the content loss of the core, differentiated back to the
   window's pixels. The chain rule says its gradient is the tile's part of the whole gradient; the windows
   overlap, and their pixel gradients add up into one image.

A window costs two forward passes and one backward pass (three forward passes with a transport loss), against one
of each for a step in one piece, plus the margins; a step holds one window's activations at a time, the image-
sized vectors of the optimiser and the content targets at their layer. The optimiser sees one differentiable
objective (an autograd Function), so L-BFGS, Adam and the pyramid parameterisation work unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import Config
from ..layers import TILE_GRID, channels, pools_before, tile_margin
from ..losses.base import RankTiling, StyleLoss, Tiling, at_least_float32, flatten, weighted_sum
from ..losses.binned import EXACT_BELOW, PiecewiseTransport
from ..losses.content import tv_loss
from ..losses.spec import STYLE_SAMPLE
from .features import VGG19

__all__ = ["Tile", "TiledStyle", "plan", "tiled_activations", "tiled_objective", "tiled_style", "tilings_of"]

Precision = Callable[[], contextlib.AbstractContextManager]  # the context the network runs in (conv_precision)
# After each tile of a sweep: (sweep, sweeps, tiles done in this sweep, tiles per sweep), 1-based sweeps
Ticks = Callable[[int, int, int, int], None]


def _silent(sweep: int, sweeps: int, done: int, tiles: int) -> None:
    pass
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


def _cores(model: VGG19, image: Tensor, tiles: Sequence[Tile], layers: Sequence[str], precision: Precision,
           tick: Callable[[int], None] | None = None) -> Iterator[tuple[Tile, dict[str, Tensor]]]:
    """Each tile and its core's activations at `layers`; tick(tiles done) after each."""
    for k, t in enumerate(tiles):
        with precision():
            acts = model(t.pixels(image), set(layers))
        yield t, {layer: t.core_of(acts[layer], layer) for layer in layers}
        if tick is not None:
            tick(k + 1)


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


@dataclass
class TiledStyle:
    """The style side of a tiled objective: the blended targets and the normalisers, per loss and layer.
    `pending`: the reference image whose normalisers the first objective computes (deferred: see tiled_style)."""

    stats: dict[str, dict[str, Any]]
    ref: dict[str, dict[str, Tensor]]
    pending: Tensor | None = None


@torch.no_grad()
def tiled_style(model: VGG19, reference: Tensor, styles: Sequence[Tensor], blend: Sequence[float], config: Config,
                losses: Losses, tile: int, precision: Precision,
                stats: dict[str, dict[str, Any]] | None = None, ticks: Ticks | None = None,
                defer: bool = False) -> TiledStyle:
    """The blended style statistics (computed in tiles unless given: a style cache) and each loss's value at the
    reference image (the normaliser: there every layer's L̂ is 1), both computed tile by tile. `ticks`: after
    each tile, the sweeps counted over the style images and the reference. `defer`: the normalisers are left to
    the first objective (TiledStyle.pending), as the untiled engine does when a run starts at the reference: a loss
    that draws its directions per evaluation then draws them as often as in one piece."""
    tilings = tilings_of(losses)
    layers = config.style_layers
    tick = ticks or _silent
    own = 0 if stats is not None else len(styles)
    ref_sweeps = 0 if defer else _sweep_count(tilings, gradient=False)
    sweeps = own + ref_sweeps
    if stats is None:
        with model.zero_padding():  # a style image is not a torus (the engine's rule, kept here)
            per_style = [_style_stats(model, s, layers, losses, tilings, tile, config.seed, precision,
                                      functools.partial(_style_tick, tick, k + 1, sweeps))
                         for k, s in enumerate(styles)]
        stats = {label: {layer: losses[label][0].blend([p[label][layer] for p in per_style], blend)
                         for layer in layers} for label in tilings}
    if defer:
        return TiledStyle(stats, {}, pending=reference)
    raw, _, _ = _sweeps(model, reference, tile, config, losses, stats, precision,
                        ticks=lambda sweep, _, done, n: tick(own + sweep, sweeps, done, n))
    return TiledStyle(stats, _normalisers(raw))


def _sweep_count(tilings: Mapping[str, AnyTiling], gradient: bool) -> int:
    """Sweeps over the tiles of one evaluation: moments (always), the transport losses' histograms, and the
    gradient or the transport losses' values."""
    ranked = any(isinstance(t, RankTiling) for t in tilings.values())
    return 1 + ranked + (ranked or gradient)


def _normalisers(raw: Raw) -> dict[str, dict[str, Tensor]]:
    return {label: {layer: v.float().clamp_min(1e-12) for layer, v in per.items()} for label, per in raw.items()}


def _style_tick(ticks: Ticks, sweep: int, sweeps: int, done: int, tiles: int) -> None:
    ticks(sweep, sweeps, done, tiles)


def _style_stats(model: VGG19, image: Tensor, layers: Sequence[str], losses: Losses,
                 tilings: Mapping[str, AnyTiling], tile: int, seed: int, precision: Precision,
                 tick: Callable[[int, int], None] | None = None) -> dict[str, dict[str, Any]]:
    """One style image's statistics per loss and layer: from its moments (Tiling), or (RankTiling) the loss's
    statistics of its features at up to STYLE_SAMPLE seeded positions, in the order of the whole image's."""
    tiles = _tiles(image, tile, layers)
    moment_tilings = {label: tl for label, tl in tilings.items() if isinstance(tl, Tiling)}
    total: Moments = {}
    counts: dict[str, int] = {}
    wanted = {layer: _sample_positions(image, layer, seed) for layer in layers}
    kept: dict[str, list[tuple[Tensor, Tensor]]] = {layer: [] for layer in layers}
    ranked = len(moment_tilings) < len(tilings)
    for t, cores in _cores(model, image, tiles, layers, precision,
                           None if tick is None else lambda done: tick(done, len(tiles))):
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
Coefs = dict[str, dict[str, float]]  # loss label -> layer -> d objective / d raw value


def _sweeps(model: VGG19, image: Tensor, tile: int, config: Config, losses: Losses, stats: Mapping[str, Any],
            precision: Precision, content: Mapping[str, Tensor] | None = None,
            coefs: Callable[[Raw], Coefs] | None = None, content_scale: Mapping[str, float] | None = None,
            settle: bool = False, ticks: Ticks = _silent) -> tuple[Raw, dict[str, Tensor], Tensor | None]:
    """Each style loss's raw value at each style layer of `image`, computed in tiles, the content loss's sums of
    squares per layer (with `content` targets), and with `coefs` the gradient with respect to the image of

        Σ coefs · raw values + Σ content_scale · sums of squares.

    `coefs(raw)` is asked for once the values it needs are known: every raw value with `settle` (the first
    objective of a deferred scale, whose normalisers are its own values: one more sweep), else those of the moment
    losses and the small layers (the others' coefficients must not depend on them).

    Sweeps: 1. the moments, the transport losses' ranges, the content sums, and the whole features of the small
    layers (fewer than EXACT_BELOW positions: there the untiled transport losses sort, so each loss's own function
    runs on them, exactly as in one piece); 2. the transport losses' histograms (when there are any); 3. the
    gradient and the transport losses' values (when either is needed)."""
    tilings = tilings_of(losses)
    style_layers = config.style_layers
    layers_c = [] if content is None else list(content)
    layers = [*style_layers, *(layer for layer in layers_c if layer not in style_layers)]
    tiles = _tiles(image, tile, layers)
    image = image.detach()
    small = {layer for layer in style_layers if math.prod(_feature_hw(image, layer)) < EXACT_BELOW}
    large = [layer for layer in style_layers if layer not in small]
    moment_t = {label: tl for label, tl in tilings.items() if isinstance(tl, Tiling)}
    rank_t = {label: tl for label, tl in tilings.items() if isinstance(tl, RankTiling)}
    # Each transport loss's rows and target at the large layers, asked for once per evaluation in the untiled order
    rows = {label: {layer: rt.rows(channels(layer), stats[label][layer], image) for layer in large}
            for label, rt in rank_t.items()}
    splits = {label: {layer: PiecewiseTransport(rt.bins, rt.ties) for layer in large} for label, rt in rank_t.items()}
    ranked = bool(rank_t) and bool(large)

    def projected(label: str, layer: str, x: Tensor) -> Tensor:
        v = rows[label][layer][0]
        return x if v is None else v.to(x.dtype) @ x

    def each_row(cores: Mapping[str, Tensor]) -> Iterator[tuple[str, str, Tensor]]:
        """(label, layer, rows) of each transport loss at each large layer of a tile's core (none where the core
        has no position there)."""
        for label in rank_t:
            for layer in large:
                x = flatten(cores[layer])
                if x.shape[1]:
                    yield label, layer, projected(label, layer, x)

    total: Moments = {}
    counts: dict[str, int] = {}
    whole = {layer: image.new_zeros(1, channels(layer), *_feature_hw(image, layer)) for layer in small}
    squares = {layer: torch.zeros((), dtype=torch.float64, device=image.device) for layer in layers_c}
    sweeps = 1 + ranked + (ranked or coefs is not None) + (settle and ranked)
    with torch.no_grad():
        for t, cores in _cores(model, image, tiles, layers, precision,
                               lambda done: ticks(1, sweeps, done, len(tiles))):
            _accumulate(total, counts, moment_t, {layer: cores[layer] for layer in large})
            for layer in small:
                oy, ox = t.offset(layer)
                a = cores[layer]
                whole[layer][..., oy:oy + a.shape[-2], ox:ox + a.shape[-1]] = a
            for label, layer, p in each_row(cores):
                splits[label][layer].observe(p)
            for layer in layers_c:
                assert content is not None
                squares[layer] += _squared_error(t, cores[layer], content[layer], layer).double()
        if ranked:
            for _, cores in _cores(model, image, tiles, large, precision,
                                   lambda done: ticks(2, sweeps, done, len(tiles))):
                for label, layer, p in each_row(cores):
                    splits[label][layer].count(p)
            for label in rank_t:
                for layer in large:
                    splits[label][layer].close(rows[label][layer][1])

    # The moment losses at the large layers: L(m) on leaves, so that their slopes in m can be taken
    moments = _averaged(total, counts)
    leaves = {label: {layer: tuple(m.detach().requires_grad_() for m in ms) for layer, ms in per.items()}
              for label, per in moments.items()}
    with torch.enable_grad():
        moment_raw = {label: {layer: moment_t[label].distance(leaves[label][layer], stats[label][layer])
                              for layer in large} for label in moment_t}
        # Every loss at the small layers, on the whole features: its value and its gradient in them
        small_raw: Raw = {}
        small_slope: dict[str, dict[str, Tensor]] = {}
        for label, (loss, _) in losses.items():
            for layer in style_layers:
                if layer in small:
                    f = flatten(whole[layer]).detach().requires_grad_()
                    value = loss.loss(f, stats[label][layer])
                    small_raw.setdefault(label, {})[layer] = value.detach().double()
                    small_slope.setdefault(label, {})[layer] = torch.autograd.grad(value, f)[0]
    raw: Raw = {label: {} for label in losses}
    for label, per in moment_raw.items():
        raw[label].update({layer: v.detach() for layer, v in per.items()})
    for label, per in small_raw.items():
        raw[label].update(per)

    sums = {label: {layer: torch.zeros((), dtype=torch.float64, device=image.device) for layer in large}
            for label in rank_t}

    def rank_values() -> None:
        for label in rank_t:
            for layer in large:
                split = splits[label][layer]
                v = rows[label][layer][0]
                k = channels(layer) if v is None else int(v.shape[0])
                raw[label][layer] = (sums[label][layer] + split.tie_total.double()) / (k * split.m)

    if settle and ranked:  # the transport losses' values first: the coefficients depend on them
        with torch.no_grad():
            for _, cores in _cores(model, image, tiles, large, precision,
                                   lambda done: ticks(3, sweeps, done, len(tiles))):
                for label, layer, p in each_row(cores):
                    sums[label][layer] += (splits[label][layer].difference(p).double() ** 2).sum()
        rank_values()
    if coefs is None and not ranked:
        return raw, squares, None

    grad = None
    slopes: dict[str, dict[str, tuple[Tensor, ...]]] = {}
    small_grads: dict[str, Tensor] = {}
    c: Coefs = {}
    if coefs is not None:
        c = coefs(raw)
        grad = torch.zeros_like(image)
        flat = [m for per in leaves.values() for ms in per.values() for m in ms]
        if flat:
            objective = sum((c[label][layer] * v for label, per in moment_raw.items() for layer, v in per.items()),
                            start=torch.zeros((), dtype=torch.float64))
            grads = iter(torch.autograd.grad(objective, flat, allow_unused=True))
            slopes = {label: {layer: tuple(_zero_if_none(next(grads), m) for m in ms) for layer, ms in per.items()}
                      for label, per in leaves.items()}
        for layer in small:
            parts = [c[label][layer] * small_slope[label][layer] for label in losses]
            small_grads[layer] = sum(parts[1:], start=parts[0]).reshape(whole[layer].shape)
    values_now = ranked and not settle
    for k, t in enumerate(tiles):
        window = t.pixels(image).detach().requires_grad_(grad is not None)
        with torch.set_grad_enabled(grad is not None):
            with precision():
                acts = model(window, set(layers))
            surrogate = window.new_zeros(())
            for layer in style_layers:
                core = t.core_of(acts[layer], layer)
                if layer in small:
                    if grad is not None:
                        oy, ox = t.offset(layer)
                        part = small_grads[layer][..., oy:oy + core.shape[-2], ox:ox + core.shape[-1]]
                        surrogate = surrogate + (part.to(core.dtype) * core).sum()
                    continue
                xc = flatten(core)
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
                    if values_now:
                        sums[label][layer] += (diff.double() ** 2).sum()
                    if grad is not None:
                        scale = c[label][layer] * 2 / (p.shape[0] * split.m)
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
        ticks(sweeps, sweeps, k + 1, len(tiles))
    if values_now:
        rank_values()
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
                    precision: Precision = contextlib.nullcontext,
                    ticks: Ticks | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The objective of optimize.objective (the same value, terms and gradient), computed in tiles of `tile` px.
    `content`: the whole image's content targets per layer (empty for a texture), `content_power` their
    normalisers; `ticks` after each tile of each sweep. Deferred normalisers (TiledStyle.pending) are computed
    here: from this very evaluation when `x` is the reference, else from the reference first."""
    ticks = ticks or _silent
    content_w = {layer: w for layer, w in config.content_layer_weight_map().items() if layer in content}
    style_w = config.style_layer_weight_map()
    mix = {label: pi for label, (_, pi) in losses.items()}
    want_grad = torch.is_grad_enabled() and x.requires_grad
    settle = False
    if style.pending is not None:
        reference, style.pending = style.pending, None
        if torch.equal(x.detach(), reference):
            settle = True
        else:
            raw_ref, _, _ = _sweeps(model, reference, tile, config, losses, style.stats, precision, ticks=ticks)
            style.ref = _normalisers(raw_ref)

    def coefs(raw: Raw) -> Coefs:
        """d total / d raw value of each loss and layer: the style weight, the layer's, the mix's, 1/normaliser."""
        if settle:
            style.ref = _normalisers(raw)
        return {label: {layer: config.style_weight * style_w.get(layer, 0.0) * pi / float(style.ref[label][layer])
                        for layer in config.style_layers} for label, pi in mix.items()}

    content_scale = {layer: config.content_weight * w / (content[layer].numel() * float(content_power[layer]))
                     for layer, w in content_w.items()}
    if settle and not want_grad:  # the normalisers need the values: take them as coefficients' side effect
        raw, squares, _ = _sweeps(model, x, tile, config, losses, style.stats, precision,
                                  content={k: content[k] for k in content_w}, ticks=ticks)
        coefs(raw)
    else:
        raw, squares, grad = _sweeps(
            model, x, tile, config, losses, style.stats, precision, content={k: content[k] for k in content_w},
            coefs=coefs if want_grad else None, content_scale=content_scale if want_grad else None,
            settle=settle and want_grad, ticks=ticks)
    if not want_grad:
        grad = None

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
