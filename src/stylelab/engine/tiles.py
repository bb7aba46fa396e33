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

Each sweep is one small function of a tile (its window's pixels and its share of the image-sized inputs) whose
results the driver adds up in the tiles' order: a TileRunner runs it, here (LocalTiles) or on Ray actors
(stylelab.engine.ray_tiles), with the same sums either way.

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
from typing import Any, Protocol

import torch
from torch import Tensor

from ..config import Config
from ..layers import TILE_GRID, channels, pools_before, tile_margin
from ..losses.base import RankTiling, StyleLoss, Tiling, at_least_float32, flatten, weighted_sum
from ..losses.binned import EXACT_BELOW, PiecewiseTransport
from ..losses.content import tv_loss
from ..losses.spec import STYLE_SAMPLE
from .features import VGG19

__all__ = ["LocalTiles", "Tile", "TileRunner", "TiledStyle", "plan", "run_window", "runner_of", "tiled_activations",
           "tiled_objective", "tiled_style", "tilings_of"]

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

    def span(self, layer: str) -> Box:
        """The core's rows and columns in the whole image's feature map at `layer` (those core_of gives)."""
        s = 2 ** pools_before(layer)
        (cy0, cy1, cx0, cx1), (h, w) = self.core, self.shape
        return cy0 // s, (h if cy1 == h else cy1) // s, cx0 // s, (w if cx1 == w else cx1) // s


def plan(shape: tuple[int, int], tile: int, margin: int) -> list[Tile]:
    """Cores of `tile` px (the last ones in each row and column smaller) and their windows, row by row."""
    if tile % TILE_GRID or margin % TILE_GRID:
        raise ValueError(f"tile ({tile}) and margin ({margin}) must be multiples of {TILE_GRID} px")
    h, w = shape
    return [Tile((y0, min(y0 + tile, h), x0, min(x0 + tile, w)),
                 (max(0, y0 - margin), min(h, y0 + tile + margin), max(0, x0 - margin), min(w, x0 + tile + margin)),
                 shape)
            for y0 in range(0, h, tile) for x0 in range(0, w, tile)]


Net = Callable[[Tensor, set[str]], dict[str, Tensor]]  # VGG19 on a window, in the run's precision: its activations
# A tile's part of a sweep: (net, the window's pixels, the tile, its share of image-sized inputs) -> a small result
Work = Callable[[Net, Tensor, Tile, Any], Any]


class TileRunner(Protocol):
    """Runs one sweep: `work` on each tile's window, with `extra(tile)` (the tile's share of the image-sized inputs,
    such as the content targets under its core), and gives the results back in the tiles' order. The driver adds
    them up in that order, so where the work runs (here, or on Ray actors: stylelab.engine.ray_tiles) changes no
    sum: the same thread count gives the same pixels."""

    def map(self, work: Work, image: Tensor, tiles: Sequence[Tile],
            extra: Callable[[Tile], Any] | None = None) -> Iterator[Any]: ...


def run_window(model: VGG19, window: Tensor, layers: set[str], precision: Precision) -> dict[str, Tensor]:
    """The network on a window, zero-padded (the margins are wide enough for zeros, and only for zeros)."""
    with model.zero_padding(), precision():
        return model(window, layers)


class LocalTiles:
    """The tiles one after another, in this process."""

    def __init__(self, model: VGG19, precision: Precision = contextlib.nullcontext) -> None:
        self.model, self.precision = model, precision

    def net(self, window: Tensor, layers: set[str]) -> dict[str, Tensor]:
        return run_window(self.model, window, layers, self.precision)

    def map(self, work: Work, image: Tensor, tiles: Sequence[Tile],
            extra: Callable[[Tile], Any] | None = None) -> Iterator[Any]:
        for t in tiles:
            yield work(self.net, t.pixels(image), t, None if extra is None else extra(t))


def runner_of(model: VGG19 | TileRunner, precision: Precision = contextlib.nullcontext) -> TileRunner:
    """A runner as given, or the local one on `model`."""
    return LocalTiles(model, precision) if isinstance(model, VGG19) else model


def _run(runner: TileRunner, work: Work, image: Tensor, tiles: Sequence[Tile],
         extra: Callable[[Tile], Any] | None = None,
         tick: Callable[[int], None] | None = None) -> Iterator[tuple[Tile, Any]]:
    """Each tile and its result, in order; tick(tiles done) after each has been used."""
    for k, (t, result) in enumerate(zip(tiles, runner.map(work, image, tiles, extra), strict=True)):
        yield t, result
        if tick is not None:
            tick(k + 1)


def _tiles(image: Tensor, tile: int, layers: Sequence[str]) -> list[Tile]:
    return plan((int(image.shape[-2]), int(image.shape[-1])), tile, tile_margin(tuple(layers)))


def _under(t: Tile, whole: Tensor, layer: str) -> Tensor:
    """The part of an image-sized feature map at `layer` (the content targets, say) under the tile's core."""
    y0, y1, x0, x1 = t.span(layer)
    return whole[..., y0:y1, x0:x1]


@torch.no_grad()
def _core_work(layers: tuple[str, ...], net: Net, window: Tensor, t: Tile, extra: None) -> dict[str, Tensor]:
    """Tile work: the core's activations at `layers`."""
    acts = net(window, set(layers))
    return {layer: at_least_float32(t.core_of(acts[layer], layer)) for layer in layers}


@torch.no_grad()
def tiled_activations(model: VGG19 | TileRunner, image: Tensor, layers: Sequence[str], tile: int,
                      precision: Precision = contextlib.nullcontext) -> dict[str, Tensor]:
    """The whole image's activations at `layers`, computed in tiles and put together (float32)."""
    out: dict[str, Tensor] = {}
    work = functools.partial(_core_work, tuple(layers))
    for t, cores in _run(runner_of(model, precision), work, image, _tiles(image, tile, layers)):
        for layer, a in cores.items():
            if layer not in out:
                out[layer] = a.new_zeros(1, a.shape[1], *_feature_hw(image, layer))
            y0, y1, x0, x1 = t.span(layer)
            out[layer][..., y0:y1, x0:x1] = a
    return out


def _feature_hw(image: Tensor, layer: str) -> tuple[int, int]:
    h, w = int(image.shape[-2]), int(image.shape[-1])
    for _ in range(pools_before(layer)):
        h, w = h // 2, w // 2
    return h, w


Moments = dict[str, dict[str, tuple[Tensor, ...]]]  # loss label -> layer -> moments (float64)
AnyTiling = Tiling | RankTiling
Losses = Mapping[str, tuple[StyleLoss, float]]
Directions = dict[str, dict[str, Tensor | None]]  # transport loss label -> layer -> its directions (None: channels)


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
def tiled_style(model: VGG19 | TileRunner, reference: Tensor, styles: Sequence[Tensor], blend: Sequence[float],
                config: Config, losses: Losses, tile: int, precision: Precision = contextlib.nullcontext,
                stats: dict[str, dict[str, Any]] | None = None, ticks: Ticks | None = None,
                defer: bool = False) -> TiledStyle:
    """The blended style statistics (computed in tiles unless given: a style cache) and each loss's value at the
    reference image (the normaliser: there every layer's L̂ is 1), both computed tile by tile. `ticks`: after
    each tile, the sweeps counted over the style images and the reference. `defer`: the normalisers are left to
    the first objective (TiledStyle.pending), as the untiled engine does when a run starts at the reference: a loss
    that draws its directions per evaluation then draws them as often as in one piece."""
    runner = runner_of(model, precision)
    tilings = tilings_of(losses)
    layers = config.style_layers
    tick = ticks or _silent
    own = 0 if stats is not None else len(styles)
    ref_sweeps = 0 if defer else _sweep_count(tilings, gradient=False)
    sweeps = own + ref_sweeps
    if stats is None:
        per_style = [_style_stats(runner, s, layers, losses, tilings, tile, config.seed,
                                  functools.partial(_style_tick, tick, k + 1, sweeps))
                     for k, s in enumerate(styles)]
        stats = {label: {layer: losses[label][0].blend([p[label][layer] for p in per_style], blend)
                         for layer in layers} for label in tilings}
    if defer:
        return TiledStyle(stats, {}, pending=reference)
    raw, _, _ = _sweeps(runner, reference, tile, config, losses, stats,
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


def _style_stats(runner: TileRunner, image: Tensor, layers: Sequence[str], losses: Losses,
                 tilings: Mapping[str, AnyTiling], tile: int, seed: int,
                 tick: Callable[[int, int], None] | None = None) -> dict[str, dict[str, Any]]:
    """One style image's statistics per loss and layer: from its moments (Tiling), or (RankTiling) the loss's
    statistics of its features at up to STYLE_SAMPLE seeded positions, in the order of the whole image's."""
    tiles = _tiles(image, tile, layers)
    moment_tilings = {label: tl for label, tl in tilings.items() if isinstance(tl, Tiling)}
    ranked = len(moment_tilings) < len(tilings)
    wanted = {layer: _sample_positions(image, layer, seed) for layer in layers} if ranked else None
    widths = {layer: _feature_hw(image, layer)[1] for layer in layers}
    work = functools.partial(_style_work, tuple(layers), moment_tilings, wanted, widths)
    total: Moments = {}
    counts: dict[str, int] = {}
    kept: dict[str, list[tuple[Tensor, Tensor]]] = {layer: [] for layer in layers}
    for _, (parts, n, sampled) in _run(runner, work, image, tiles,
                                       tick=None if tick is None else lambda done: tick(done, len(tiles))):
        _add_moments(total, counts, parts, n)
        for layer, part in (sampled or {}).items():
            kept[layer].append(part)
    moments = _averaged(total, counts)
    out: dict[str, dict[str, Any]] = {}
    for label, tiling in tilings.items():
        if isinstance(tiling, Tiling):
            out[label] = {layer: tiling.stats(moments[label][layer]) for layer in layers}
        else:
            out[label] = {layer: losses[label][0].stats(_in_order(kept[layer])) for layer in layers}
    return out


@torch.no_grad()
def _style_work(layers: tuple[str, ...], tilings: Mapping[str, Tiling], wanted: Mapping[str, Tensor | None] | None,
                widths: Mapping[str, int], net: Net, window: Tensor, t: Tile,
                extra: None) -> tuple[Moments, dict[str, int], dict[str, tuple[Tensor, Tensor]] | None]:
    """Tile work for a style image: the core's moments (times its positions) and, for the transport losses, its
    features at the kept positions."""
    acts = net(window, set(layers))
    cores = {layer: t.core_of(acts[layer], layer) for layer in layers}
    parts, n = _moments_of(tilings, cores)
    sampled = None if wanted is None else {layer: _sampled(t, a, layer, wanted[layer], widths[layer])
                                           for layer, a in cores.items()}
    return parts, n, sampled


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


def _moments_of(tilings: Mapping[str, Tiling], cores: Mapping[str, Tensor]) -> tuple[Moments, dict[str, int]]:
    """A core's moments per loss and layer times its number of positions there (float64), and those numbers."""
    parts: Moments = {}
    n: dict[str, int] = {}
    for layer, a in cores.items():
        x = flatten(a)
        n[layer] = x.shape[1]
        if n[layer] == 0:  # a core at the image's edge that the pools' rounding leaves without a position here
            continue
        for label, tiling in tilings.items():
            parts.setdefault(label, {})[layer] = tuple(m.double() * n[layer] for m in tiling.moments(x))
    return parts, n


def _add_moments(total: Moments, counts: dict[str, int], parts: Moments, n: Mapping[str, int]) -> None:
    """Add one tile's moments (times its positions) and position counts into `total` and `counts`."""
    for layer, k in n.items():
        counts[layer] = counts.get(layer, 0) + k
    for label, per in parts.items():
        for layer, ms in per.items():
            old = total.setdefault(label, {}).get(layer)
            total[label][layer] = ms if old is None else tuple(o + p for o, p in zip(old, ms))


def _averaged(total: Moments, counts: Mapping[str, int]) -> Moments:
    return {label: {layer: tuple(m / counts[layer] for m in ms) for layer, ms in per.items()}
            for label, per in total.items()}


def _rows(directions: Mapping[str, Tensor | None], cores: Mapping[str, Tensor]) -> Iterator[tuple[str, Tensor]]:
    """(layer, rows) of a transport loss at each of its layers where the core has positions: the features
    projected on the layer's directions, or the channels themselves."""
    for layer, v in directions.items():
        x = flatten(cores[layer])
        if x.shape[1]:
            yield layer, x if v is None else v.to(x.dtype) @ x


Raw = dict[str, dict[str, Tensor]]  # loss label -> layer -> the loss's raw value (float64)
Coefs = dict[str, dict[str, float]]  # loss label -> layer -> d objective / d raw value
Ranges = dict[str, dict[str, tuple[Tensor, Tensor]]]  # transport loss label -> layer -> its rows' min and max


@torch.no_grad()
def _first_work(layers: tuple[str, ...], large: tuple[str, ...], small: tuple[str, ...],
                tilings: Mapping[str, Tiling], directions: Directions, content_layers: tuple[str, ...],
                net: Net, window: Tensor, t: Tile, targets: Mapping[str, Tensor] | None,
                ) -> tuple[Moments, dict[str, int], dict[str, Tensor], Ranges, dict[str, Tensor]]:
    """Tile work of the first sweep: the core's moments at the large layers (times its positions), its features at
    the small ones, the transport losses' row ranges, and the content loss's sum of squares at each layer against
    `targets`, the content targets under the core."""
    acts = net(window, set(layers))
    cores = {layer: t.core_of(acts[layer], layer) for layer in layers}
    parts, n = _moments_of(tilings, {layer: cores[layer] for layer in large})
    ranges = {label: {layer: PiecewiseTransport.extent(p) for layer, p in _rows(per, cores)}
              for label, per in directions.items()}
    squares = {layer: _squared_error(cores[layer], targets[layer]).double() for layer in content_layers
               if targets is not None}
    return parts, n, {layer: cores[layer] for layer in small}, ranges, squares


@torch.no_grad()
def _count_work(directions: Directions, splits: Mapping[str, Mapping[str, PiecewiseTransport]], net: Net,
                window: Tensor, t: Tile, extra: None) -> dict[str, dict[str, Any]]:
    """Tile work of the second sweep: each transport row's histogram over the core, on the grid of its range."""
    layers = {layer for per in directions.values() for layer in per}
    acts = net(window, layers)
    cores = {layer: t.core_of(acts[layer], layer) for layer in layers}
    return {label: {layer: splits[label][layer].counted(p) for layer, p in _rows(per, cores)}
            for label, per in directions.items()}


@dataclass(frozen=True)
class _Last:
    """Tile work of the last sweep: the gradient, with respect to the window's pixels, of the tile's surrogate
    (`gradient`), and each transport loss's Σ (p − Q(c(p)))² over the core (`values`). What every tile needs is
    here; each tile's own share (the small layers' gradients and the content targets under its core) comes as
    `extra`."""

    layers: tuple[str, ...]  # the layers the network runs to
    style_layers: tuple[str, ...]
    small: frozenset[str]
    counts: Mapping[str, int]  # the whole image's positions per layer
    tilings: Mapping[str, Tiling]  # the moment losses
    slopes: Mapping[str, Mapping[str, tuple[Tensor, ...]]]  # ∂ objective / ∂ moments (with `gradient`)
    directions: Directions  # the transport losses' rows
    splits: Mapping[str, Mapping[str, PiecewiseTransport]]  # closed: each row's match
    rank_scale: Mapping[str, Mapping[str, float]]  # ∂ objective / ∂ Σ difference · p (with `gradient`)
    content_scale: Mapping[str, float]  # ∂ objective / ∂ the content's sum of squares per layer
    gradient: bool
    values: bool

    def __call__(self, net: Net, window: Tensor, t: Tile,
                 extra: tuple[dict[str, Tensor], dict[str, Tensor]] | None,
                 ) -> tuple[Tensor | None, dict[str, dict[str, Tensor]]]:
        small_grads, targets = extra if extra is not None else ({}, {})
        window = window.detach().requires_grad_(self.gradient)
        sums: dict[str, dict[str, Tensor]] = {}
        with torch.set_grad_enabled(self.gradient):
            acts = net(window, set(self.layers))
            surrogate = window.new_zeros(())
            for layer in self.style_layers:
                core = t.core_of(acts[layer], layer)
                if layer in self.small:
                    if self.gradient:
                        surrogate = surrogate + (small_grads[layer].to(core.dtype) * core).sum()
                    continue
                xc = flatten(core)
                if xc.shape[1] == 0:
                    continue
                share = xc.shape[1] / self.counts[layer]
                for label, slope in self.slopes.items():
                    for g, m in zip(slope[layer], self.tilings[label].moments(xc)):
                        surrogate = surrogate + share * (g.to(m.dtype) * m).sum()
                for label, rows in self.directions.items():
                    v = rows[layer]
                    p = xc if v is None else v.to(xc.dtype) @ xc
                    diff = self.splits[label][layer].difference(p.detach())
                    if self.values:
                        sums.setdefault(label, {})[layer] = (diff.double() ** 2).sum()
                    if self.gradient:
                        surrogate = surrogate + self.rank_scale[label][layer] * (diff * p).sum()
            for layer, target in targets.items():
                surrogate = surrogate + self.content_scale[layer] * _squared_error(t.core_of(acts[layer], layer),
                                                                                   target)
        if not (self.gradient and surrogate.requires_grad):
            return None, sums
        (g_window,) = torch.autograd.grad(surrogate, window)
        return g_window, sums


def _sweeps(runner: TileRunner, image: Tensor, tile: int, config: Config, losses: Losses, stats: Mapping[str, Any],
            content: Mapping[str, Tensor] | None = None,
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
    gradient and the transport losses' values (when either is needed). The tiles' work runs on `runner`; their
    results are added up here, in the tiles' order."""
    tilings = tilings_of(losses)
    style_layers = config.style_layers
    layers_c = [] if content is None else list(content)
    layers = (*style_layers, *(layer for layer in layers_c if layer not in style_layers))
    tiles = _tiles(image, tile, layers)
    image = image.detach()
    small = {layer for layer in style_layers if math.prod(_feature_hw(image, layer)) < EXACT_BELOW}
    large = [layer for layer in style_layers if layer not in small]
    moment_t = {label: tl for label, tl in tilings.items() if isinstance(tl, Tiling)}
    rank_t = {label: tl for label, tl in tilings.items() if isinstance(tl, RankTiling)}
    # Each transport loss's rows and target at the large layers, asked for once per evaluation in the untiled order
    rows = {label: {layer: rt.rows(channels(layer), stats[label][layer], image) for layer in large}
            for label, rt in rank_t.items()}
    directions: Directions = {label: {layer: r[0] for layer, r in per.items()} for label, per in rows.items()}
    splits = {label: {layer: PiecewiseTransport(rt.bins, rt.ties) for layer in large} for label, rt in rank_t.items()}
    ranked = bool(rank_t) and bool(large)
    sweeps = 1 + ranked + (ranked or coefs is not None) + (settle and ranked)

    def tick(sweep: int) -> Callable[[int], None]:
        return lambda done: ticks(sweep, sweeps, done, len(tiles))

    def content_under(t: Tile) -> dict[str, Tensor]:
        assert content is not None
        return {layer: _under(t, content[layer], layer) for layer in layers_c}

    total: Moments = {}
    counts: dict[str, int] = {}
    whole = {layer: image.new_zeros(1, channels(layer), *_feature_hw(image, layer)) for layer in small}
    squares = {layer: torch.zeros((), dtype=torch.float64, device=image.device) for layer in layers_c}
    first = functools.partial(_first_work, layers, tuple(large), tuple(small), moment_t, directions, tuple(layers_c))
    with torch.no_grad():
        for t, (parts, n, smalls, ranges, sq) in _run(runner, first, image, tiles,
                                                       content_under if layers_c else None, tick(1)):
            _add_moments(total, counts, parts, n)
            for layer, a in smalls.items():
                y0, y1, x0, x1 = t.span(layer)
                whole[layer][..., y0:y1, x0:x1] = a
            for label, per in ranges.items():
                for layer, (low, high) in per.items():
                    splits[label][layer].widen(low, high)
            for layer, v in sq.items():
                squares[layer] += v
        if ranked:
            count = functools.partial(_count_work, directions, splits)
            for _, counted in _run(runner, count, image, tiles, tick=tick(2)):
                for label, per in counted.items():
                    for layer, c in per.items():
                        splits[label][layer].merge(c)
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

    def last(gradient: bool, values: bool, slopes: Mapping[str, Mapping[str, tuple[Tensor, ...]]],
             rank_scale: Mapping[str, Mapping[str, float]]) -> _Last:
        return _Last(layers if gradient else tuple(large), tuple(style_layers) if gradient else tuple(large),
                     frozenset(small), counts, moment_t, slopes, directions, splits, rank_scale,
                     content_scale or {}, gradient, values)

    def add_sums(per_tile: Mapping[str, Mapping[str, Tensor]]) -> None:
        for label, per in per_tile.items():
            for layer, v in per.items():
                sums[label][layer] += v

    def rank_values() -> None:
        for label in rank_t:
            for layer in large:
                split = splits[label][layer]
                v = directions[label][layer]
                k = channels(layer) if v is None else int(v.shape[0])
                raw[label][layer] = (sums[label][layer] + split.tie_total.double()) / (k * split.m)

    if settle and ranked:  # the transport losses' values first: the coefficients depend on them
        with torch.no_grad():
            for _, (_, per_tile) in _run(runner, last(False, True, {}, {}), image, tiles, tick=tick(3)):
                add_sums(per_tile)
        rank_values()
    if coefs is None and not ranked:
        return raw, squares, None

    grad = None
    slopes: dict[str, dict[str, tuple[Tensor, ...]]] = {}
    small_grads: dict[str, Tensor] = {}
    rank_scale: dict[str, dict[str, float]] = {}
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
        rank_scale = {label: {layer: c[label][layer] * 2 / (_row_count(directions[label][layer], layer)
                                                            * splits[label][layer].m) for layer in large}
                      for label in rank_t}
    values_now = ranked and not settle

    def shares(t: Tile) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return ({layer: _under(t, g, layer) for layer, g in small_grads.items()},
                content_under(t) if grad is not None and layers_c else {})

    work = last(grad is not None, values_now, slopes, rank_scale)
    for t, (g_window, per_tile) in _run(runner, work, image, tiles, shares, tick(sweeps)):
        if g_window is not None:
            assert grad is not None
            y0, y1, x0, x1 = t.window
            grad[..., y0:y1, x0:x1] += g_window
        if values_now:
            add_sums(per_tile)
    if values_now:
        rank_values()
    return raw, squares, grad


def _row_count(directions: Tensor | None, layer: str) -> int:
    return channels(layer) if directions is None else int(directions.shape[0])


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


def tiled_objective(model: VGG19 | TileRunner, x: Tensor, tile: int, content: Mapping[str, Tensor],
                    content_power: Mapping[str, Tensor], style: TiledStyle, config: Config, losses: Losses,
                    precision: Precision = contextlib.nullcontext,
                    ticks: Ticks | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The objective of optimize.objective (the same value, terms and gradient), computed in tiles of `tile` px.
    `content`: the whole image's content targets per layer (empty for a texture), `content_power` their
    normalisers; `ticks` after each tile of each sweep. Deferred normalisers (TiledStyle.pending) are computed
    here: from this very evaluation when `x` is the reference, else from the reference first."""
    ticks = ticks or _silent
    runner = runner_of(model, precision)
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
            raw_ref, _, _ = _sweeps(runner, reference, tile, config, losses, style.stats, ticks=ticks)
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
        raw, squares, _ = _sweeps(runner, x, tile, config, losses, style.stats,
                                  content={k: content[k] for k in content_w}, ticks=ticks)
        coefs(raw)
    else:
        raw, squares, grad = _sweeps(
            runner, x, tile, config, losses, style.stats, content={k: content[k] for k in content_w},
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


def _squared_error(core: Tensor, target: Tensor) -> Tensor:
    """Σ (F − F_c)² over a core's positions, F_c the whole image's content target under the core."""
    return ((at_least_float32(core) - target) ** 2).sum()


def _zero_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g
