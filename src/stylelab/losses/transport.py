"""One-dimensional optimal transport: sliced W2 (features projected on random directions, each projection matched
to the style's quantiles by rank) and per-channel histogram matching (the sliced loss along the channel axes).

The ranks come from a histogram of each row (binned.py: linear work, no sort) on the CPU for rows of at least
binned.EXACT_BELOW positions; from a sort (ranks.py) elsewhere, or everywhere with `bins=0`."""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .base import (
    MAX_DIRECTIONS,
    Sample,
    StyleLoss,
    as_sample,
    check_param,
    normalise_weights,
    split_sample,
    weighted_sample,
)
from .binned import BINS, EXACT_BELOW, QuantileFn, binned_quantiles, transport
from .ranks import sort_rows, sorted_match

__all__ = [
    "FRESH_STYLE_SAMPLES",
    "MAX_BINS",
    "DrawKey",
    "Draws",
    "Presorted",
    "Quantiles",
    "SlicedTarget",
    "histogram_blend",
    "histogram_distance",
    "histogram_loss",
    "pool_samples",
    "quantiles",
    "resample_sorted",
    "resampled",
    "sliced_wasserstein",
    "sorted_rows",
    "sorts",
]

DrawKey = tuple[str | int, ...]  # what a random draw is cached under: its use and its sizes
# Sorted rows q (K, N), each an empirical quantile function; or with their weights (K, N) in each row's order
Quantiles = Tensor | tuple[Tensor, Tensor]
Presorted = tuple[Tensor, Tensor | None]  # sorted rows (K, N) and their weights (K, N), None for equal weights
SlicedTarget = tuple[Sample, Presorted | None]  # the pooled style sample; its projections sorted, if fixed
MAX_BINS = 1 << 16
# With fresh directions at every call (Adam), the style's quantiles along them come from this many of its positions,
# drawn afresh with the directions: the style side then costs little next to the output's, and the draws average out.
FRESH_STYLE_SAMPLES = 4096


class Draws:
    """Seeded random tensors for a loss: fixed per key (deterministic objective, for L-BFGS) or, with
    `resample`, fresh at every call from one generator seeded once (for Adam). Same seed, same draws."""

    def __init__(self, seed: int, resample: bool) -> None:
        self.seed, self.resample = seed, resample
        self.generator = torch.Generator().manual_seed(seed % 2**64)  # any integer seed: torch takes 64 bits
        self.cache: dict[DrawKey, Tensor] = {}

    def get(self, key: DrawKey, make: Callable[[torch.Generator], Tensor]) -> Tensor:
        if self.resample:
            return make(self.generator)
        if key not in self.cache:
            seed = (self.seed * 1_000_003 + zlib.crc32(repr(key).encode())) % 2**64
            self.cache[key] = make(torch.Generator().manual_seed(seed))
        return self.cache[key]

    def positions(self, sample: Sample, tag: str, n: int) -> Sample:
        """A random subset of n columns (positions) of x (C, M); all of x if M <= n. Of a weighted sample (x, w):
        the same columns and their weights, renormalised."""
        x, w = split_sample(sample)
        m = x.shape[1]
        if m <= n:
            return sample
        idx = self.get(("idx", tag, m, n), lambda g: torch.randperm(m, generator=g)[:n]).to(x.device)
        if w is None:
            return x[:, idx]
        return x[:, idx], w[idx] / w[idx].sum()

    def shuffled(self, sample: Sample, tag: str) -> Sample:
        """The columns of a sample in a random order (once, for window())."""
        x, w = split_sample(sample)
        m = x.shape[1]
        order = self.get(("order", tag, m), lambda g: torch.randperm(m, generator=g)).to(x.device)
        return x[:, order] if w is None else (x[:, order], w[order])

    def window(self, sample: Sample, tag: str, n: int) -> Sample:
        """n consecutive columns of a shuffled() sample, from a random start: as random a subset as positions()
        gives, but a view, not a copy; all of it if it has <= n columns. Weights renormalised."""
        x, w = split_sample(sample)
        m = x.shape[1]
        if m <= n:
            return sample
        start = int(self.get(("start", tag, m, n), lambda g: torch.randint(m - n + 1, (1,), generator=g)))
        if w is None:
            return x[:, start:start + n]
        part = w[start:start + n]
        return x[:, start:start + n], part / part.sum()


def _interpolate_rows(q: Tensor, pos: Tensor) -> Tensor:
    """Rows q (K, N) at fractional indices pos (m,) or (K, m), linear in between, clamped to the ends -> (K, m)."""
    n = q.shape[1]
    pos = pos.clamp(0, n - 1).expand(q.shape[0], -1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(n - 1)
    frac = pos - lo.to(q.dtype)
    return q.gather(1, lo) * (1 - frac) + q.gather(1, hi) * frac


def resample_sorted(q: Tensor, m: int) -> Tensor:
    """Sorted rows q (K, N) -> (K, m) quantiles at (i + ½)/m by linear interpolation (N != m allowed)."""
    n = q.shape[1]
    if n == m:
        return q
    return _interpolate_rows(q, (torch.arange(m, device=q.device, dtype=q.dtype) + 0.5) * n / m - 0.5)


class _ResampleMemo:
    """resample_sorted(q, m), kept while the target q lives: a target is resampled to the output's position count
    once per scale instead of at every step (it costs as much as the sort at the first layer)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int, int], Tensor] = {}

    def __call__(self, q: Tensor, m: int) -> Tensor:
        if q.requires_grad:
            return resample_sorted(q, m)
        key = (id(q), m)
        if key not in self.entries:
            self.entries[key] = resample_sorted(q, m)
            weakref.finalize(q, self.entries.pop, key, None)
        return self.entries[key]


resampled = _ResampleMemo()


def quantiles(q: Tensor, p: Tensor, weights: Tensor | None = None) -> Tensor:
    """Quantile function of sorted rows q (K, N) at probabilities p (m,) or (K, m) -> (K, m).

    Sample j sits at the middle of its mass, c_j = Σ_{i<j} w_i + w_j / 2 with w = 1/N, or `weights` (K, N) > 0 in
    q's order summing to 1 per row; linear in between, constant beyond the ends (equal weights: resample_sorted).
    """
    n = q.shape[1]
    if weights is None or n == 1:
        return _interpolate_rows(q, p * n - 0.5)
    c = weights.cumsum(dim=1) - weights / 2  # (K, N), increasing
    p = p.expand(q.shape[0], -1).contiguous()
    hi = torch.searchsorted(c, p).clamp(1, n - 1)  # first c_j >= p
    lo = hi - 1
    c_lo, c_hi = c.gather(1, lo), c.gather(1, hi)
    gap = (c_hi - c_lo).clamp_min(torch.finfo(c.dtype).tiny)  # 0 only if tiny weights vanish in rounding
    return _interpolate_rows(q, lo + ((p - c_lo) / gap).clamp(0, 1))


def _sort_weighted(x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of x (K, M) sorted (differentiable values), and the weights (M,) or (K, M) in each row's order (K, M).
    Stable, so tied values (ReLU zeros) keep one order with or without the zero-weight positions."""
    values, order = x.sort(dim=1, stable=True)
    return values, weights.expand_as(x).gather(1, order)


def _sorted_transport(p: Tensor, weights: Tensor | None, quantile: Callable[[Tensor], Tensor]) -> Tensor:
    """mean over rows of Σ_j w_(j) (sort(p)_j − Q(c_j))²: the 1-D W2² from each row of p (K, M), weighted by w (M,)
    with Σw = 1 (1/M if None), to the target quantile function Q; c_j = the middle of the j-th sorted sample's mass.

    Q(c) depends on p only through its ranks (locally constant), so the gradient is 2 w (sort(p) − Q) on the
    sorted values, as in the unweighted losses.
    """
    w = p.new_full((p.shape[1],), 1 / p.shape[1]) if weights is None else weights
    values, w_sorted = _sort_weighted(p, w)
    c = w_sorted.cumsum(dim=1) - w_sorted / 2
    return (w_sorted * (values - quantile(c)) ** 2).sum(dim=1).mean()


def pool_samples(stats: Sequence[Sample], weights: Sequence[float]) -> Sample:
    """Pool sample sets (C, M_k) into one whose composition follows the weights: the mixture Σ π_k Q_k.
    Each set is resampled evenly to round(π_k · N) columns, N = the largest M_k. If any set is weighted (X_k, w_k),
    the result is exact instead: (all columns, π_k w_k), uniform w_k for the plain sets."""
    parts = [split_sample(s) for s in stats]
    if all(v is None for _, v in parts):
        return _pool_plain([y for y, _ in parts], weights)
    x = torch.cat([y for y, _ in parts], dim=1)
    w = torch.cat([pi * (y.new_full((y.shape[1],), 1 / y.shape[1]) if v is None else v)
                   for pi, (y, v) in zip(weights, parts)])
    keep = w > 0
    return x[:, keep], w[keep] / w[keep].sum()


def _pool_plain(stats: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """pool_samples of equally weighted sets: round(π_k · N) evenly spaced columns of each."""
    if len(stats) == 1:
        return stats[0]
    n = max(s.shape[1] for s in stats)
    parts = []
    for s, pi in zip(stats, weights):
        count = round(pi * n)
        if count > 0:
            idx = torch.linspace(0, s.shape[1] - 1, count, device=s.device).round().long()
            parts.append(s[:, idx])
    return torch.cat(parts, dim=1)


def sorted_rows(x: Tensor, weights: Tensor | None = None) -> Quantiles:
    """Rows of X (C, M) sorted: each channel's empirical quantile function. With weights w (M,): the rows of
    X[:, w > 0] sorted and their weights (Σ = 1) in each row's order, both (C, N)."""
    if weights is None:
        return sort_rows(x)
    return _sort_weighted(*weighted_sample(x, weights))


def histogram_blend(stats: Sequence[Quantiles], weights: Sequence[float]) -> Quantiles:
    """Sorted rows of the pooled mixture; exact (all values, weights π_k w_k) if any style is weighted."""
    plain = [s for s in stats if not isinstance(s, tuple)]
    if len(plain) == len(stats):
        return sort_rows(_pool_plain(plain, weights))
    parts = [(pi, *split_sample(s)) for pi, s in zip(weights, stats) if pi > 0]
    values = torch.cat([q for _, q, _ in parts], dim=1)
    mass = torch.cat([pi * (torch.full_like(q, 1 / q.shape[1]) if w is None else w) for pi, q, w in parts], dim=1)
    return _sort_weighted(values, mass / mass.sum(dim=1, keepdim=True))


def sorts(x: Tensor, bins: int) -> bool:
    """Whether the ranks of x (K, M) come from a sort: asked for (bins=0), off the CPU, or rows too short to bin."""
    return bins == 0 or x.device.type != "cpu" or x.shape[1] < EXACT_BELOW


def histogram_distance(x: Tensor, target_sorted: Quantiles, weights: Tensor | None = None, bins: int = 0) -> Tensor:
    """mean over channels and positions of (sort(X_c) − Q_c)², Q_c = style quantiles at X's ranks.

    This is ‖X − R(X)‖² of Risser et al. (2017) with R = exact histogram matching (no bins): R(X) only moves
    with the ranks of X, which are locally constant, so its gradient 2(X − R) is that of this very value.
    With weights w (M,): Σ_i w_i (X_c,i − R(X)_c,i)² / Σw, the ranks taken in w's mass (_sorted_transport).
    bins > 0: the ranks from a `bins`-bin histogram of each channel where that is cheaper (sorts()).
    """
    q, w_q = split_sample(target_sorted)
    w_x = None if weights is None else normalise_weights(weights, x)
    if not sorts(x, bins):
        return transport(x, _sorted_quantiles(q, w_q), weights=w_x, bins=bins)
    if w_x is None and w_q is None:
        return sorted_match(x, resampled(q, x.shape[1]))
    return _sorted_transport(x, w_x, lambda c: quantiles(q, c, w_q))


def _sorted_quantiles(q: Tensor, weights: Tensor | None) -> QuantileFn:
    return lambda c: quantiles(q, c, weights)


def sliced_wasserstein(directions: int = 0, bins: int = BINS, seed: int = 0,
                       resample: bool = False) -> StyleLoss[Sample, SlicedTarget]:
    """Mean over K random unit directions v of the 1-D W2² between vᵀX and vᵀY (Heitz et al. 2021).
    directions=0 means K = C. Directions are drawn per channel count: fixed within a run, or per call.
    bins: histogram bins per projection that rank it (binned.py); 0 sorts every projection exactly."""
    check_param("sliced-wasserstein", "directions", directions, 0, MAX_DIRECTIONS, "0 = one per channel")
    check_param("sliced-wasserstein", "bins", bins, 0, MAX_BINS, "0 = sort exactly")
    draws = Draws(seed, resample)

    def project(c: int, like: Tensor) -> Tensor:
        k = directions or c
        v = draws.get(("sw", c, k), lambda g: torch.randn(k, c, generator=g))
        v = v.to(device=like.device, dtype=like.dtype)
        return v / v.norm(dim=1, keepdim=True)  # (K, C)

    def sorted_projections(y: Tensor, w_y: Tensor | None, v: Tensor | None = None) -> Presorted:
        v = project(y.shape[0], y) if v is None else v
        if w_y is None:
            return sort_rows(v @ y), None  # (K, My): the style's 1-D quantiles
        return _sort_weighted(v @ y, w_y)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> SlicedTarget:
        """(pooled style sample, its sorted projections when the directions are fixed: sorted once per scale)."""
        pooled = pool_samples(stats, weights)
        if resample:  # in random order, so that each call can take a window of it (loss)
            return draws.shuffled(pooled, "style"), None
        return pooled, sorted_projections(*split_sample(pooled))

    def loss(x: Tensor, target: SlicedTarget, weights: Tensor | None = None) -> Tensor:
        pooled, presorted = target
        v = project(x.shape[0], x)  # one draw for both sides
        w_x = None if weights is None else normalise_weights(weights, x)
        if not sorts(x, bins):
            if presorted is not None:
                quantile = _sorted_quantiles(*presorted)
            else:  # fresh directions: a fresh sample of the style's positions, binned too
                y, w_y = split_sample(draws.window(pooled, "style", FRESH_STYLE_SAMPLES))
                quantile = binned_quantiles(v @ y, w_y, bins, ties=False)
            return transport(x, quantile, v, w_x, bins)
        q, w_q = presorted if presorted is not None else sorted_projections(*split_sample(pooled), v)
        if w_x is None and w_q is None:
            return sorted_match(v @ x, resampled(q, x.shape[1]))
        return _sorted_transport(v @ x, w_x, lambda c: quantiles(q, c, w_q))

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True)


def histogram_loss(bins: int = BINS) -> StyleLoss[Quantiles, Quantiles]:
    """Per-channel 1-D W2² to the style's histograms; bins as for sliced_wasserstein."""
    check_param("histogram", "bins", bins, 0, MAX_BINS, "0 = sort exactly")

    def loss(x: Tensor, target: Quantiles, weights: Tensor | None = None) -> Tensor:
        return histogram_distance(x, target, weights, bins)

    return StyleLoss(stats=sorted_rows, loss=loss, blend=histogram_blend, weighted=True)
