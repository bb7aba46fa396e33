"""Style as the style's own feature vectors, compared by cosine distance: neural neighbours (NNST, Kolkin et al.
2022) and the relaxed earth mover's distance with moments (REMD, STROTSS, Kolkin et al. 2019).

Both treat a layer's features as an empirical distribution of vectors, like the sampled MMDs, but compare vectors by
direction (cosine distance), not by inner products:

* `remd`: REMD(X, Y) = max(mean_i min_j d(x_i, y_j), mean_j min_i d(x_i, y_j)), d = 1 − cos, on sampled positions
  of the output (fresh under Adam) and of the style: a lower bound of the optimal-transport cost that needs no
  assignment; plus `moments` × (mean |Δμ| + mean |ΔΣ|), the channel means and covariances compared L1.
* `nn`: with a content image, each output position's target is one style vector, chosen once per scale by the
  engine through this loss's `guide` (docs/method.md §3.10): the style position whose *hypercolumn* (every style
  layer's features there, centred and unit-normalised per layer) is nearest by cosine to the hypercolumn of the
  content (mixed with `mix` of the current output) at that position, no style position being taken more than
  about `reuse` even shares (a stable matching, so a large region of one tone spreads over the style's
  next-nearest vectors instead of repeating one). The match is made on the grid of the relu3
  layers (1/4 of the image's resolution) and copied to every layer: a finer layer takes the matched style
  position's whole 2x2 or 4x4 block, so each output cell receives one coherent patch of the style. The loss is
  mean_i (1 − cos(x_i, t_i)). Without a content image (textures, the compare and explain tools) the loss is the
  one-sided distance mean_i min_j d(x_i, y_j) on sampled positions (centred cosine), which is zero when every
  output vector occurs in the style.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import MAX_SAMPLES, Sample, StyleLoss, as_sample, check_param, split_sample
from .moments import channel_mean
from .transport import Draws, pool_samples

__all__ = [
    "GRID_POOLS",
    "GuideInput",
    "NNTarget",
    "RemdTarget",
    "assign_neighbours",
    "cosine_distances",
    "nn_distance",
    "nn_loss",
    "paired_cosine_distances",
    "remd",
    "remd_loss",
]

GRID_POOLS = 2  # the neighbours are matched on the grid of layers after 2 pools (relu3_x): 1/4 of the image
MAX_QUERY_CHUNK = 4096  # query hypercolumns per matrix product when matching (memory: chunk x style positions)
CANDIDATES = 64  # the nearest style cells a cell may propose to before it looks further (balanced matching)
MOST_CANDIDATES = 256  # how far down a cell's preferences are ever known (memory: cells x this x 12 bytes)
MAX_ROUNDS = 64  # rounds of proposals before the cells still waiting are placed one by one (_fill)

# The pooled style sample, and (after the guide) the style vector each output position takes (C, M), or None
NNTarget = tuple[Sample, Tensor | None]
# The pooled style sample, its channel means (C,) and covariance (C, C)
RemdTarget = tuple[Sample, Tensor, Tensor]


@dataclass(frozen=True)
class GuideInput:
    """What a guided loss's `guide` sees once per scale: activations (1, C, H, W) per layer."""

    content: dict[str, Tensor]  # the content image at this scale
    output: dict[str, Tensor] | None  # the image optimisation starts from at this scale (None at the first scale)
    styles: Sequence[dict[str, Tensor]]  # each style image
    blend: Sequence[float]  # the styles' blend weights (sum 1)
    style_masks: Sequence[Tensor | None]  # where in each style image to take vectors from: (1, 1, H, W) in [0,1]
    layer_weights: dict[str, float]  # the style layers and their weights (sum 1)


_EPS = 1e-6  # every vector gets one more coordinate of this size: an all-zero vector (ReLU) is then like itself


def _unit(x: Tensor) -> tuple[Tensor, Tensor]:
    """The columns of X (C, n) extended by _EPS and unit-normalised: (the first C coordinates, the last one (n,))."""
    norm = (x.square().sum(dim=0) + _EPS**2).sqrt()
    return x / norm, _EPS / norm


def cosine_distances(x: Tensor, y: Tensor, centre: Tensor | None = None) -> Tensor:
    """1 − cos between the columns of X (C, n) and Y (C, m) -> (n, m); both centred by `centre` (C,) first. (Each
    vector is extended by a tiny constant coordinate, so an all-zero vector is at distance 0 from itself.)"""
    if centre is not None:
        x, y = x - centre[:, None], y - centre[:, None]
    (xu, xe), (yu, ye) = _unit(x), _unit(y)
    return 1 - (xu.T @ yu + xe[:, None] * ye[None, :])


def paired_cosine_distances(x: Tensor, y: Tensor) -> Tensor:
    """1 − cos(x_i, y_i) for the columns of X and Y (C, n) -> (n,), as in `cosine_distances`."""
    (xu, xe), (yu, ye) = _unit(x), _unit(y)
    return 1 - ((xu * yu).sum(dim=0) + xe * ye)


def _mean(values: Tensor, weights: Tensor | None) -> Tensor:
    return values.mean() if weights is None else (values * weights).sum()


def nn_distance(x: Tensor, target: NNTarget, weights: Tensor | None = None, draws: Draws | None = None,
                samples: int = 1024) -> Tensor:
    """mean_i (1 − cos(x_i, t_i)) against the assigned targets t (C, M) when they fit X (C, M); else the one-sided
    neighbour distance mean_i min_j (1 − cos) over up to `samples` positions of X and of the style (centred by the
    style's mean). With weights w (M,): weighted means over the output's positions."""
    sample, assigned = target
    w = None if weights is None else weights / weights.sum()
    if assigned is not None and assigned.shape == x.shape:
        return _mean(paired_cosine_distances(x, assigned.to(x)), w)
    draws = draws if draws is not None else Draws(0, False)
    xs, xw = split_sample(draws.positions(as_sample(x, weights), "x", samples))
    ys, yw = split_sample(draws.positions(sample, "y", MAX_SAMPLES))
    d = cosine_distances(xs, ys.to(xs), centre=channel_mean(ys, yw).to(xs))
    return _mean(d.min(dim=1).values, xw)


def nn_loss(samples: int = 1024, mix: float = 0.25, reuse: float = 1.0, seed: int = 0,
            resample: bool = False) -> StyleLoss[Sample, NNTarget]:
    """Neural neighbours: each output position takes a style vector the content has near (see the module).
    `mix`: share of the current output in the image matched against the style at each scale after the first
    (NNST: 0.25); `reuse`: how often one style vector may be taken, in even shares (`_balanced`; 0: no limit, the
    plain nearest, as in NNST); `samples`: output positions for the one-sided distance used without a content
    image."""
    check_param("nn", "samples", samples, 2, MAX_SAMPLES, "output positions, for the distance without content")
    check_param("nn", "mix", mix, 0, 1, "share of the current output in the matched image")
    check_param("nn", "reuse", reuse, 0, 1000, "how often one style vector may be taken, in even shares; 0: no limit")
    draws = Draws(seed, resample)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> NNTarget:
        return pool_samples(stats, weights), None

    def loss(x: Tensor, target: NNTarget, weights: Tensor | None = None) -> Tensor:
        return nn_distance(x, target, weights, draws, samples)

    def guide(inputs: GuideInput) -> dict[str, Tensor]:
        return assign_neighbours(inputs, mix, reuse)

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True, guide=guide)


# ----------------------------------------------------------------------------------------------------------------
# The neighbour assignment (the guide of `nn`)


def _grid_shape(acts: dict[str, Tensor]) -> tuple[int, int]:
    """The matching grid of an image: its activations' shape after GRID_POOLS pools (from the finest layer)."""
    from ..layers import pools_before

    name = min(acts, key=pools_before)
    h, w = acts[name].shape[-2:]
    f = 2 ** (pools_before(name) - GRID_POOLS)  # > 1 when the finest style layer is coarser than the grid
    return max(1, round(h * f)), max(1, round(w * f))


def _hypercolumns(acts: dict[str, Tensor], grid: tuple[int, int], means: dict[str, Tensor],
                  layer_weights: dict[str, float]) -> Tensor:
    """(D, Hg*Wg): each layer resized to the grid (area average when shrinking, bilinear when growing), centred by
    `means`, unit-normalised per position and scaled by √weight, then stacked; so the inner product of two
    columns is the layer-weighted mean of the per-layer centred cosines."""
    parts = []
    for layer, lw in layer_weights.items():
        a = acts[layer].float()
        if a.shape[-2:] != grid:
            shrink = a.shape[-2] >= grid[0] and a.shape[-1] >= grid[1]
            a = F.interpolate(a, size=grid, mode="area") if shrink else F.interpolate(
                a, size=grid, mode="bilinear", align_corners=False)
        f = a.reshape(a.shape[1], -1) - means[layer][:, None]
        parts.append(f / f.norm(dim=0, keepdim=True).clamp_min(1e-8) * lw**0.5)
    return torch.cat(parts, dim=0)


def _nearest(query: Tensor, keys: Tensor) -> Tensor:
    """For each column of `query` (D, n), the index of the column of `keys` (D, m) with the largest inner product."""
    out = []
    for start in range(0, query.shape[1], MAX_QUERY_CHUNK):
        out.append((query[:, start:start + MAX_QUERY_CHUNK].T @ keys).argmax(dim=1))
    return torch.cat(out)


def _preferences(query: Tensor, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each column of `query`'s k largest inner products with the columns of `keys`, largest first: (values, key
    indices), both (n, k)."""
    values, indices = [], []
    for start in range(0, query.shape[1], MAX_QUERY_CHUNK):
        v, i = (query[:, start:start + MAX_QUERY_CHUNK].T @ keys).topk(k, dim=1)
        values.append(v.cpu())
        indices.append(i.cpu())
    return torch.cat(values), torch.cat(indices)


def _keep_best(key: Tensor, score: Tensor, who: Tensor, room: Tensor) -> Tensor:
    """Of proposals (key, score, who), the mask of those each key keeps: its room[key] highest scores (ties: the
    lower `who`)."""
    order = torch.argsort(who, stable=True)
    order = order[torch.argsort(-score[order], stable=True)]
    order = order[torch.argsort(key[order], stable=True)]
    sorted_keys = key[order]
    rank = torch.arange(len(order)) - torch.searchsorted(sorted_keys, sorted_keys)  # place among the key's proposals
    keep = torch.zeros(len(order), dtype=torch.bool)
    keep[order] = rank < room[sorted_keys]
    return keep


def _balanced(query: Tensor, keys: Tensor, reuse: float) -> Tensor:
    """Like `_nearest`, but no column of `keys` is taken more than cap = ceil(max(reuse, 1) x n / m) times (reuse 0:
    no limit, `_nearest`): the stable matching of Gale and Shapley. Each query proposes to the keys in its order of
    preference, each key keeps the `cap` nearest queries that proposed to it so far and turns the others away, who
    propose to their next; no query then prefers a key that has room or holds a query it likes less. A query's
    preferences are its CANDIDATES nearest keys, twice as many (up to MOST_CANDIDATES) whenever it has been turned
    away by all of them. Where many queries want the same few keys (a flat region of near-equal cells), the rounds
    could run on for a long time: after MAX_ROUNDS, the queries still waiting take, best first, each its nearest key
    that still has room (`_fill`)."""
    n, m = query.shape[1], keys.shape[1]
    cap = n if reuse == 0 else math.ceil(max(reuse, 1.0) * n / m)
    if cap >= n:
        return _nearest(query, keys).cpu()
    deepest = min(m, MOST_CANDIDATES)
    known = min(CANDIDATES, deepest)
    values, choices = _preferences(query, keys, known)
    depth = torch.full((n,), known, dtype=torch.long)  # how far down its preferences each query is known
    turn = torch.zeros(n, dtype=torch.long)  # each query's next choice
    room = torch.full((m,), cap, dtype=torch.long)
    held = torch.zeros(0, dtype=torch.long)
    proposing = torch.arange(n)
    for _ in range(MAX_ROUNDS):
        out = proposing[turn[proposing] >= depth[proposing]]  # turned away by every key it knows of
        grow = out[depth[out] < deepest]
        if len(grow) > 0:  # its next-nearest keys
            more = min(2 * int(depth[grow].max()), deepest)
            if more > values.shape[1]:
                pad = more - values.shape[1]
                values = torch.cat([values, values.new_full((n, pad), float("-inf"))], dim=1)
                choices = torch.cat([choices, choices.new_zeros((n, pad))], dim=1)
            v, c = _preferences(query[:, grow.to(query.device)], keys, more)
            values[grow, :more], choices[grow, :more] = v, c
            depth[grow] = more
        proposing = proposing[turn[proposing] < depth[proposing]]
        if len(proposing) == 0:
            break
        who = torch.cat([held, proposing])
        keep = _keep_best(choices[who, turn[who]], values[who, turn[who]], who, room)
        held, away = who[keep], who[~keep]
        turn[away] += 1
        proposing = away
    taken = torch.full((n,), -1, dtype=torch.long)
    taken[held] = choices[held, turn[held]]
    waiting = (taken < 0).nonzero().squeeze(1)
    if len(waiting) > 0:
        room = cap - torch.bincount(taken[taken >= 0], minlength=m)
        taken[waiting] = _fill(query[:, waiting.to(query.device)], keys, room)
    return taken


def _fill(query: Tensor, keys: Tensor, room: Tensor) -> Tensor:
    """Each column of `query` in turn, the one nearest its nearest key first, takes its nearest key that still has
    room (room: (m,), what each key may still take; sum(room) >= n) -> key indices (n,)."""
    room = room.clone()
    out = torch.empty(query.shape[1], dtype=torch.long)
    for start in range(0, query.shape[1], MAX_QUERY_CHUNK):
        sims = (query[:, start:start + MAX_QUERY_CHUNK].T @ keys).cpu()
        sims[:, room <= 0] = float("-inf")
        for i in torch.argsort(sims.max(dim=1).values, descending=True, stable=True).tolist():
            k = int(sims[i].argmax())
            out[start + i] = k
            room[k] -= 1
            if room[k] == 0:
                sims[:, k] = float("-inf")
    return out


def _candidates(inputs: GuideInput) -> list[tuple[int, Tensor]]:
    """Per style image: (its index, the grid positions (flat indices) it offers), a share of all offered positions
    that follows the blend weights (the pooled distribution of `pool_samples`), within its mask."""
    offered = []
    for acts, mask in zip(inputs.styles, inputs.style_masks):
        hg, wg = _grid_shape(acts)
        idx = torch.arange(hg * wg)
        if mask is not None:
            t = F.interpolate(mask.float().cpu(), size=(hg, wg), mode="area").reshape(-1)
            idx = idx[t >= 0.5] if bool((t >= 0.5).any()) else idx[t > 0]
        offered.append(idx)
    n = max(len(i) for i in offered)
    picked = []
    for k, (idx, pi) in enumerate(zip(offered, inputs.blend)):
        count = len(idx) if len(offered) == 1 else round(pi * n)
        if count > 0 and len(idx) > 0:
            picked.append((k, idx[torch.linspace(0, len(idx) - 1, count).round().long()]))
    return picked


def _cells(grid_hw: tuple[int, int], layer_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """For each position of a layer of shape `layer_hw`: its grid cell (flat index, (hl*wl,)) and its offset inside
    that cell along each axis, in grid units in [0, 1) ((hl, 1) and (1, wl))."""
    (hg, wg), (hl, wl) = grid_hw, layer_hw
    u = (torch.arange(hl, dtype=torch.float64) + 0.5) * hg / hl  # each layer row in grid units
    v = (torch.arange(wl, dtype=torch.float64) + 0.5) * wg / wl
    gi, gj = u.floor().long().clamp(0, hg - 1), v.floor().long().clamp(0, wg - 1)
    cell = (gi[:, None] * wg + gj[None, :]).reshape(-1)
    return cell, (u - gi.double())[:, None], (v - gj.double())[None, :]


@torch.no_grad()
def assign_neighbours(inputs: GuideInput, mix: float = 0.25, reuse: float = 1.0) -> dict[str, Tensor]:
    """Layer -> the style vector each output position takes (C, M), for every style layer (see the module)."""
    layers = inputs.layer_weights
    device = next(iter(inputs.content.values())).device
    picked = _candidates(inputs)
    means = {layer: torch.cat([inputs.styles[k][layer].float().reshape(inputs.styles[k][layer].shape[1], -1)
                               for k, _ in picked], dim=1).mean(dim=1) for layer in layers}
    keys, owner, position = [], [], []
    for k, idx in picked:
        keys.append(_hypercolumns(inputs.styles[k], _grid_shape(inputs.styles[k]), means, layers)[:, idx.to(device)])
        owner.append(torch.full((len(idx),), k))
        position.append(idx)
    query_acts = inputs.content
    if inputs.output is not None and mix > 0:
        query_acts = {layer: (1 - mix) * inputs.content[layer].float() + mix * inputs.output[layer].float()
                      for layer in layers}
    grid = _grid_shape(query_acts)
    # centred cosine: each side by its own mean (NNST), so a tone is matched relative to its image's average tone
    own = {layer: query_acts[layer].float().mean(dim=(0, 2, 3)) for layer in layers}
    best = _balanced(_hypercolumns(query_acts, grid, own, layers), torch.cat(keys, dim=1), reuse)
    which, where = torch.cat(owner)[best], torch.cat(position)[best]  # per grid cell: style image, its grid position
    targets = {}
    for layer in layers:
        hl, wl = inputs.content[layer].shape[-2:]
        cell, du, dv = _cells(grid, (hl, wl))
        out = torch.empty(inputs.content[layer].shape[1], hl * wl, dtype=torch.float32, device=device)
        for k, _ in picked:
            style = inputs.styles[k][layer].float()
            (hsg, wsg), (hsl, wsl) = _grid_shape(inputs.styles[k]), style.shape[-2:]
            rows, cols = (where // wsg).double(), (where % wsg).double()
            # the matched cell's position plus the offset inside the cell, on the style's layer grid
            si = ((rows[cell].reshape(hl, wl) + du) * hsl / hsg).floor().long().clamp(0, hsl - 1)
            sj = ((cols[cell].reshape(hl, wl) + dv) * wsl / wsg).floor().long().clamp(0, wsl - 1)
            mine = (which[cell] == k).to(device)
            flat = (si * wsl + sj).reshape(-1).to(device)
            out[:, mine] = style.reshape(style.shape[1], -1)[:, flat[mine]]
        targets[layer] = out
    return targets


# ----------------------------------------------------------------------------------------------------------------
# Relaxed earth mover's distance


def _moments(x: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    mu = channel_mean(x, weights)
    xc = x - mu[:, None]
    if weights is None:
        return mu, xc @ xc.T / x.shape[1]
    w = weights / weights.sum()
    return mu, (xc * w) @ xc.T


def remd(x: Tensor, y: Tensor, x_weights: Tensor | None = None, y_weights: Tensor | None = None) -> Tensor:
    """max(mean_i min_j d_ij, mean_j min_i d_ij), d = 1 − cos between the columns of X (C, n) and Y (C, m); with
    weights, weighted means (each side's weights over its own positions)."""
    d = cosine_distances(x, y)
    return torch.maximum(_mean(d.min(dim=1).values, x_weights), _mean(d.min(dim=0).values, y_weights))


def remd_loss(samples: int = 1024, style_samples: int = 4096, moments: float = 1.0, seed: int = 0,
              resample: bool = False) -> StyleLoss[Sample, RemdTarget]:
    """REMD between `samples` output positions (fresh every step under Adam) and up to `style_samples` positions of
    the pooled style, plus `moments` × (mean |Δμ| + mean |ΔΣ|) over every position (STROTSS)."""
    check_param("remd", "samples", samples, 2, MAX_SAMPLES, "output positions per step")
    check_param("remd", "style_samples", style_samples, 2, MAX_SAMPLES, "style positions")
    check_param("remd", "moments", moments, 0, 1000, "weight of the means and covariances")
    draws = Draws(seed, resample)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> RemdTarget:
        pooled = pool_samples(stats, weights)
        y, w = split_sample(pooled)
        small = Draws(seed, False).positions(pooled, "style", style_samples)
        mu, cov = _moments(y, w)
        return small, mu, cov

    def loss(x: Tensor, target: RemdTarget, weights: Tensor | None = None) -> Tensor:
        sample, mu_s, cov_s = target
        xs, xw = split_sample(draws.positions(as_sample(x, weights), "x", samples))
        ys, yw = split_sample(sample)
        value = remd(xs, ys.to(xs), xw, None if yw is None else yw.to(xs))
        if moments > 0:
            mu, cov = _moments(x, weights)
            value = value + moments * ((mu - mu_s).abs().mean() + (cov - cov_s).abs().mean())
        return value

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True)
