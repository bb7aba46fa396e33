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
    Memo,
    RankTiling,
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
    "DIRECTION_SETS",
    "MAX_BINS",
    "SET_STYLE_SAMPLES",
    "SHALLOW_CHANNELS",
    "SHALLOW_POSITIONS",
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
MAX_BINS = 1 << 16
# Layers with at most SHALLOW_CHANNELS channels (relu1_x, relu2_x) get C/2 directions by default when the style
# has at least SHALLOW_POSITIONS positions there, other layers C: such layers have the most positions, so each of
# their directions costs the most, and halving them there kept the picture's quality (docs/benchmarks.md, "Step
# cost"); halving them everywhere did not. Small images keep C (cheap, and few steps move their colours faster).
SHALLOW_CHANNELS = 128
SHALLOW_POSITIONS = 8192
# With fresh directions at every call (Adam), each call takes one of this many seeded sets of directions at random,
# and the style's quantiles along each set are computed once per scale, on its first use, from at most
# SET_STYLE_SAMPLES of its positions (drawn for that set): a first use then costs little next to the step.
DIRECTION_SETS = 16
SET_STYLE_SAMPLES = 16384


# The pooled style sample, and its projections sorted once per scale (fixed directions), or a Memo of the style
# along each set of directions, filled on its first use (resampled directions; the sets are seeded, so a target kept
# between runs of the same seed finds the same entries)
SlicedTarget = tuple[Sample, Presorted | Memo]


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
        return self.fixed(key, make)

    def fixed(self, key: DrawKey, make: Callable[[torch.Generator], Tensor]) -> Tensor:
        """The draw seeded by (seed, key), made once: the same at every call, with or without `resample`."""
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

    def pick(self, n: int) -> int:
        """One of 0..n-1: at random at every call with `resample`, else always 0."""
        return int(torch.randint(n, (1,), generator=self.generator)) if self.resample else 0


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
    directions=0 means K = C, or C/2 on layers of at most SHALLOW_CHANNELS channels whose style sample has at least
    SHALLOW_POSITIONS positions. Directions are drawn per
    channel count: fixed within a run, or (resample) one of DIRECTION_SETS seeded sets at random per call.
    bins: histogram bins per projection that rank it (binned.py); 0 sorts every projection exactly."""
    check_param("sliced-wasserstein", "directions", directions, 0, MAX_DIRECTIONS,
                f"0 = one per channel, half as many on large layers of <= {SHALLOW_CHANNELS} channels")
    check_param("sliced-wasserstein", "bins", bins, 0, MAX_BINS, "0 = sort exactly")
    draws = Draws(seed, resample)

    def count(c: int, style_positions: int) -> int:
        """K: `directions`, or by default C, halved on a shallow layer whose style sample has many positions."""
        if directions:
            return directions
        return max(1, c // 2) if c <= SHALLOW_CHANNELS and style_positions >= SHALLOW_POSITIONS else c

    def project(c: int, like: Tensor, k: int, which: int | None = None) -> Tensor:
        """The (K, C) unit directions: the run's fixed ones, or set number `which` of the resampling pool."""
        key: DrawKey = ("sw", c, k) if which is None else ("sw", c, k, which)
        v = draws.fixed(key, lambda g: torch.randn(k, c, generator=g)).to(device=like.device, dtype=like.dtype)
        return v / v.norm(dim=1, keepdim=True)

    def sorted_projections(y: Tensor, w_y: Tensor | None, v: Tensor) -> Presorted:
        if w_y is None:
            return sort_rows(v @ y), None  # (K, My): the style's 1-D quantiles
        return _sort_weighted(v @ y, w_y)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> SlicedTarget:
        """(pooled style sample, its projections sorted: once per scale when the directions are fixed; along each
        set of directions on its first use when they are resampled)."""
        pooled = pool_samples(stats, weights)
        if resample:
            return pooled, Memo()
        y, w_y = split_sample(pooled)
        return pooled, sorted_projections(y, w_y, project(y.shape[0], y, count(*y.shape)))

    def along(c: int, target: SlicedTarget, like: Tensor, binned: bool) -> tuple[Tensor, Presorted | QuantileFn]:
        """The directions (K, C) of this call, and the style along them: sorted, or binned."""
        pooled, style = target
        if isinstance(style, Memo):  # one of the seeded sets, and the style along it (computed once)
            which = draws.pick(DIRECTION_SETS)
            v = project(c, like, count(c, split_sample(pooled)[0].shape[1]), which)
            if (which, binned) not in style.entries:
                y, w_y = split_sample(draws.positions(pooled, "style", SET_STYLE_SAMPLES))
                style.entries[which, binned] = (binned_quantiles(v @ y, w_y, bins, ties=False) if binned
                                                else sorted_projections(y, w_y, v))
            return v, style.entries[which, binned]
        return project(c, like, style[0].shape[0]), style  # as many as the style was sorted along

    def rows(c: int, target: SlicedTarget, like: Tensor) -> tuple[Tensor, QuantileFn]:
        v, found = along(c, target, like, binned=True)
        return v, found if callable(found) else _sorted_quantiles(*found)

    def loss(x: Tensor, target: SlicedTarget, weights: Tensor | None = None) -> Tensor:
        w_x = None if weights is None else normalise_weights(weights, x)
        binned = not sorts(x, bins)
        v, found = along(x.shape[0], target, x, binned)
        if binned:
            return transport(x, found if callable(found) else _sorted_quantiles(*found), v, w_x, bins)
        assert not callable(found)
        q, w_q = found
        if w_x is None and w_q is None:
            return sorted_match(v @ x, resampled(q, x.shape[1]))
        return _sorted_transport(v @ x, w_x, lambda c: quantiles(q, c, w_q))

    tiling = None if bins == 0 else RankTiling(rows=rows, bins=bins, ties=False)  # bins=0: exact sorts only
    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True, tiling=tiling)


def histogram_loss(bins: int = BINS) -> StyleLoss[Quantiles, Quantiles]:
    """Per-channel 1-D W2² to the style's histograms; bins as for sliced_wasserstein."""
    check_param("histogram", "bins", bins, 0, MAX_BINS, "0 = sort exactly")

    def loss(x: Tensor, target: Quantiles, weights: Tensor | None = None) -> Tensor:
        return histogram_distance(x, target, weights, bins)

    def rows(c: int, target: Quantiles, like: Tensor) -> tuple[None, QuantileFn]:
        return None, _sorted_quantiles(*split_sample(target))

    tiling = None if bins == 0 else RankTiling(rows=rows, bins=bins, ties=True)
    return StyleLoss(stats=sorted_rows, loss=loss, blend=histogram_blend, weighted=True, tiling=tiling)
