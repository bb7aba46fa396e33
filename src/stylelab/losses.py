"""Content loss, total variation, and the registry of style losses.

A style loss is a pair of pure functions (docs/method.md §3):
    stats(X) -> S          X: (C, M) features of one image at one layer (M = H*W positions), run once per target
    loss(X, S) -> scalar   run every step; the value returned is the value differentiated
plus `blend(stats_list, weights) -> S`, which mixes several style images' statistics (docs/method.md §8); a target
is always `blend([stats(Y_1), ...], weights)`, even for one style, so a loss can finish its target there (e.g.
the Gaussian MMD fixes its bandwidth from the blended style).

Spatial control (docs/method.md §9): an entry with `weighted=True` also takes per-position weights w (M,) >= 0,
    stats(X, weights=w), loss(X, S, weights=w)
normalised to Σw = 1 inside; every statistic becomes a w-weighted average over positions (the guided Gram of
Gatys et al. 2017 is the weighted second moment with w_i = t_i²), so 0/1 weights give exactly the statistics of the
selected positions. Weighted moments blend as before; the sample-based losses keep weighted samples (X, w) and
pool them exactly.

Conventions: features are per-image *distributions* of M column vectors, so every statistic averages over
positions (never sums), which lets the style and output images differ in size. Statistics are computed in
float32 whatever the dtype of the features (half-precision Gram matrices are useless, docs/method.md §5.5).
Raw values differ by orders of magnitude between losses and layers; the optimizer divides each layer's value
by its value between the content and style images (docs/method.md §3.1), so these raw functions carry no constants.
"""

from __future__ import annotations

import math
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .ranks import sort_rows, sorted_match

Stats = Any  # a tensor or a tuple of tensors; whatever a loss's `stats` returns
Sample = Tensor | tuple[Tensor, Tensor]  # columns of X (C, M), equally weighted, or (X, w): weights w (M,) > 0, Σw = 1


def flatten(activation: Tensor) -> Tensor:
    """(1, C, H, W) activation -> (C, H*W) feature matrix (columns = samples), at least float32."""
    b, c, h, w = activation.shape
    if b != 1:
        raise ValueError(f"expected a batch of one image, got {b}")
    return at_least_float32(activation.reshape(c, h * w))  # (C, M)


def at_least_float32(x: Tensor) -> Tensor:
    """Half/bfloat16 -> float32; float32 and float64 unchanged (float64 keeps exact checks exact)."""
    return x if x.dtype == torch.float64 else x.float()


def normalise_weights(weights: Tensor, x: Tensor) -> Tensor:
    """Per-position weights (M,) >= 0 for X (..., M) -> w / Σw (M,) in X's dtype and on X's device."""
    m = x.shape[-1]
    if weights.shape != (m,):
        raise ValueError(f"weights must have shape ({m},), one per position, got {tuple(weights.shape)}")
    w = weights.to(device=x.device, dtype=x.dtype)
    total = w.sum()
    valid, positive = torch.stack([(torch.isfinite(w) & (w >= 0)).all(), total > 0]).tolist()  # one sync
    if not valid:
        raise ValueError("weights must be finite and >= 0")
    if not positive:
        raise ValueError("weights are all zero: no position to take statistics from (an empty mask region?)")
    return w / total


def as_sample(x: Tensor, weights: Tensor | None = None) -> Sample:
    """The features as a sample set: X (C, M) itself, or with weights the weighted sample (X[:, w>0], w[w>0] / Σw)."""
    if weights is None:
        return x
    w = normalise_weights(weights, x)
    keep = w > 0
    return x[:, keep], w[keep]


def _split(sample: Sample) -> tuple[Tensor, Tensor | None]:
    return sample if isinstance(sample, tuple) else (sample, None)


def linear_blend(stats: Sequence[Stats], weights: Sequence[float]) -> Stats:
    """Σ_k w_k S_k, elementwise over tuples. Exact for statistics that are expectations (moments)."""
    first = stats[0]
    if isinstance(first, tuple):
        return tuple(linear_blend([s[i] for s in stats], weights) for i in range(len(first)))
    return sum(w * s for w, s in zip(weights, stats))


@dataclass(frozen=True)
class StyleLoss:
    """One entry of the registry: how to summarise a style and how far an output is from it."""

    stats: Callable[..., Stats]  # stats(X) -> S, and stats(X, weights=w) if `weighted`
    loss: Callable[..., Tensor]  # loss(X, S) -> scalar, and loss(X, S, weights=w) if `weighted`
    blend: Callable[[Sequence[Stats], Sequence[float]], Stats] = linear_blend
    weighted: bool = False  # stats/loss take per-position weights (spatial control with masks, docs/method.md §9)


# ---------------------------------------------------------------------------------------------- parameters
# Valid ranges of the loss parameters. The upper bounds keep one layer's working set in memory: K projections,
# D random features or n² kernel entries per layer, each the size of (part of) a feature map.

MAX_DIRECTIONS = 4096  # sliced-wasserstein: K x M projected values per layer
MAX_FEATURES = 8192  # mmd-gaussian rff: D x M cosines per layer
MAX_SAMPLES = 8192  # sampled MMDs: n x n kernel matrices (8192² float32 = 256 MiB)
MAX_POLY_DEGREE = 10  # (xᵀy/s² + c)^d stays finite in float32
MAX_POLY_C = 1000.0


def check_param(loss: str, key: str, value: float, low: float, high: float, note: str = "") -> None:
    """A ValueError naming the loss, the parameter and its valid range [low, high] unless value lies in it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        extra = f" ({note})" if note else ""
        raise ValueError(f"style loss {loss!r}: {key} must be in [{low:g}, {high:g}]{extra}, got {value!r}")


# ---------------------------------------------------------------------------------------------- Gram / poly-MMD


def gram(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """G = X Xᵀ / M for X (C, M) -> (C, C): the second raw moment E[f fᵀ] of the feature distribution.
    With weights w (M,): G = Σ_i w_i f_i f_iᵀ / Σw, the guided Gram of Gatys et al. 2017 for w_i = t_i²."""
    if weights is None:
        # Features are float32 or float64 here (`flatten`), where X Xᵀ cannot overflow (entries ~1e15 at 4k px);
        # dividing the (C, C) product rather than X saves a copy of X in the forward and the backward pass.
        return self_product(x) / x.shape[1]  # (C, C)
    xs = x * normalise_weights(weights, x).sqrt()  # √w with Σw = 1, applied before the product
    return self_product(xs)  # (C, C)


def self_product(a: Tensor) -> Tensor:
    """A Aᵀ for A (C, M), differentiated with one (C,C)x(C,M) product instead of two.

    Autograd would treat the two operands as different tensors: two products of the gradient with A, then a sum.
    Here only the first operand carries the gradient, and symmetrising the incoming gradient gives the second
    operand's share: d/dA ⟨Γ, A Aᵀ⟩ = (Γ + Γᵀ) A. The value is A Aᵀ bit for bit and the gradient is exact for
    any Γ; second derivatives are not (the detached operand), and nothing in stylelab takes them.
    """
    if not a.requires_grad:
        return a @ a.T
    one_sided = a @ a.detach().T  # (C, C): the gradient flows through the first operand only
    both = one_sided + one_sided.T  # gradient Γ + Γᵀ into `one_sided`...
    return one_sided.detach() + (both - both.detach())  # ...while the value stays exactly A Aᵀ


def gram_distance(x: Tensor, target_gram: Tensor, weights: Tensor | None = None) -> Tensor:
    """‖G(X) − G_S‖²_F. Equals MMD²_b with k(x,y) = (xᵀy)² exactly (Li et al. 2017), also for unequal M.

    Deviation from Gatys et al.: no 1/(4C²M²) factor; each Gram is divided by its own M and the
    per-layer reference normalisation absorbs every constant.
    """
    return ((gram(x, weights) - target_gram) ** 2).sum()


# ---------------------------------------------------------------------------------------------- first-order family


def channel_mean(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """μ = mean over positions (the last dim) of X (..., M) -> (...); with weights w (M,), Σ_i w_i f_i / Σw."""
    return x.mean(dim=-1) if weights is None else x @ normalise_weights(weights, x)


def mean_distance(x: Tensor, target_mean: Tensor, weights: Tensor | None = None) -> Tensor:
    """‖μ_X − μ_S‖². Equals MMD²_b with the linear kernel k(x,y) = xᵀy (Li et al. 2017), also for unequal M."""
    return ((channel_mean(x, weights) - target_mean) ** 2).sum()


BN_EPS = 1e-5  # inside the square root: a channel that is all zero after ReLU has σ = 0 (docs/method.md §3.5)


def bn_stats(x: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(μ, E[f²]) per channel, each (C,), (weighted) averages over positions: moments, so blending them is
    blending the distributions (§5.2)."""
    return channel_mean(x, weights), channel_mean(x**2, weights)


def bn_distance(x: Tensor, target: tuple[Tensor, Tensor], weights: Tensor | None = None) -> Tensor:
    """mean_c [(μ_X,c − μ_S,c)² + (σ_X,c − σ_S,c)²] with population std σ = sqrt(var + ε) over (weighted) positions."""
    mu_s, second_s = target
    sigma_s = ((second_s - mu_s**2).clamp_min(0) + BN_EPS).sqrt()
    mu_x = channel_mean(x, weights)
    sigma_x = (channel_mean((x - mu_x[:, None]) ** 2, weights) + BN_EPS).sqrt()  # centred first: no cancellation
    return ((mu_x - mu_s) ** 2 + (sigma_x - sigma_s) ** 2).mean()


def poly_stats(x: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(G, μ): the moments that the degree-2 polynomial-kernel MMD depends on."""
    return gram(x, weights), channel_mean(x, weights)


def mmd_poly(c: float = 0.0, degree: int = 2, samples: int = 1024, seed: int = 0, resample: bool = False) -> StyleLoss:
    """MMD²_b with k(x,y) = (xᵀy + c)^d.

    d = 2: exact and cheap, ‖ΔG‖²_F + 2c‖Δμ‖² (the c² terms cancel; docs/method.md §3.3).
    d ≠ 2: no closed form through a few moments (d = 3 would need the C³ third-moment tensor), so the biased MMD²
    is computed on `samples` seeded random positions of each image, O(n²C), like the sampled Gaussian MMD.
    Inner products are divided by s² = mean ‖y‖² of the style so (xᵀy/s² + c)^d stays in float32 range;
    for d ≠ 2, c is therefore relative to that scale.
    """
    check_param("mmd-poly", "c", c, 0, MAX_POLY_C)
    check_param("mmd-poly", "degree", degree, 1, MAX_POLY_DEGREE)
    check_param("mmd-poly", "samples", samples, 2, MAX_SAMPLES, "positions per image, for degree != 2")
    if degree == 2:
        def loss2(x: Tensor, target: tuple[Tensor, Tensor], weights: Tensor | None = None) -> Tensor:
            g_s, mu_s = target
            return gram_distance(x, g_s, weights) + 2 * c * mean_distance(x, mu_s, weights)

        return StyleLoss(stats=poly_stats, loss=loss2, weighted=True)
    draws = Draws(seed, resample)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> tuple[float, Sample]:
        pooled = pool_samples(stats, weights)
        y, w = _split(pooled)
        return float(channel_mean((y**2).sum(dim=0), w).clamp_min(1e-12)), pooled

    def loss(x: Tensor, target: tuple[float, Sample], weights: Tensor | None = None) -> Tensor:
        scale, y = target
        xs, ys = draws.positions(as_sample(x, weights), "x", samples), draws.positions(y, "y", samples)
        return biased_mmd(xs, ys, lambda a, b: (a.T @ b / scale + c) ** degree)

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True)


# ---------------------------------------------------------------------------------------------- W2 between Gaussians


def _covariance(x: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(μ (C,), Σ (C, C)) population moments, (weighted) over positions; centred before the product (no
    E[ffᵀ] − μμᵀ cancellation)."""
    mu = channel_mean(x, weights)
    return mu, gram(x - mu[:, None], weights)


def _psd_sqrt(a: Tensor) -> Tensor:
    """Symmetric PSD square root by eigendecomposition (targets only: no gradient needed)."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def w2_stats(x: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(μ, Σ, Σ^½) of a Gaussian fit to the (weighted) features."""
    mu, cov = _covariance(x, weights)
    return mu, cov, _psd_sqrt(cov)


def w2_blend(stats: Sequence[tuple[Tensor, Tensor, Tensor]], weights: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """Blend μ and E[ffᵀ] = Σ + μμᵀ (the mixture's moments), then refit the Gaussian (docs/method.md §8)."""
    mu = sum(w * m for w, (m, _, _) in zip(weights, stats))
    second = sum(w * (c + torch.outer(m, m)) for w, (m, c, _) in zip(weights, stats))
    cov = second - torch.outer(mu, mu)
    cov = (cov + cov.T) / 2
    return mu, cov, _psd_sqrt(cov)


def w2_distance(x: Tensor, target: tuple[Tensor, Tensor, Tensor], weights: Tensor | None = None) -> Tensor:
    """W2² between Gaussian fits: ‖Δμ‖² + tr(Σx + Σs − 2 (Σs^½ Σx Σs^½)^½).

    tr(A^½) = Σ √λ(A) via `eigvalsh`, whose gradient V diag(g) Vᵀ stays finite for repeated eigenvalues
    (eigenvector gradients, which blow up there, are never needed). Eigenvalues are floored at 1e-8·λ_max so the
    √ has a bounded slope; ReLU features often have near-zero variance directions.
    """
    mu_s, cov_s, sqrt_s = target
    mu_x, cov_x = _covariance(x, weights)
    inner = sqrt_s @ cov_x @ sqrt_s
    vals = torch.linalg.eigvalsh((inner + inner.T) / 2)
    floor = 1e-8 * vals.detach().abs().max().clamp_min(1e-30)
    cross = vals.clamp_min(floor).sqrt().sum()
    return ((mu_x - mu_s) ** 2).sum() + (cov_x.trace() + cov_s.trace() - 2 * cross).clamp_min(0)


# ---------------------------------------------------------------------------------------------- sorting (1-D OT)


class Draws:
    """Seeded random tensors for a loss: fixed per key (deterministic objective, for L-BFGS) or, with
    `resample`, fresh at every call from one generator seeded once (for Adam). Same seed, same draws."""

    def __init__(self, seed: int, resample: bool) -> None:
        self.seed, self.resample = seed, resample
        self.generator = torch.Generator().manual_seed(seed % 2**64)  # any integer seed: torch takes 64 bits
        self.cache: dict[tuple, Tensor] = {}

    def get(self, key: tuple, make: Callable[[torch.Generator], Tensor]) -> Tensor:
        if self.resample:
            return make(self.generator)
        if key not in self.cache:
            self.cache[key] = make(torch.Generator().manual_seed((self.seed * 1_000_003 + zlib.crc32(repr(key).encode())) % 2**64))
        return self.cache[key]

    def positions(self, sample: Sample, tag: str, n: int) -> Sample:
        """A random subset of n columns (positions) of x (C, M); all of x if M <= n. Of a weighted sample (x, w):
        the same columns and their weights, renormalised."""
        x, w = _split(sample)
        m = x.shape[1]
        if m <= n:
            return sample
        idx = self.get(("idx", tag, m, n), lambda g: torch.randperm(m, generator=g)[:n]).to(x.device)
        if w is None:
            return x[:, idx]
        return x[:, idx], w[idx] / w[idx].sum()


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


def _sort_weighted(x: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Rows of x (K, M) sorted (differentiable values), and the weights (M,) or (K, M) in each row's order (K, M).
    Stable, so tied values (ReLU zeros) keep one order with or without the zero-weight positions."""
    values, order = x.sort(dim=1, stable=True)
    return values, None if weights is None else weights.expand_as(x).gather(1, order)


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
    if any(isinstance(s, tuple) for s in stats):
        parts = [_split(s) for s in stats]
        x = torch.cat([y for y, _ in parts], dim=1)
        w = torch.cat([pi * (y.new_full((y.shape[1],), 1 / y.shape[1]) if v is None else v)
                       for pi, (y, v) in zip(weights, parts)])
        keep = w > 0
        return x[:, keep], w[keep] / w[keep].sum()
    if len(stats) == 1:
        return stats[0]
    n = max(s.shape[1] for s in stats)
    parts = []
    for s, w in zip(stats, weights):
        count = round(w * n)
        if count > 0:
            idx = torch.linspace(0, s.shape[1] - 1, count, device=s.device).round().long()
            parts.append(s[:, idx])
    return torch.cat(parts, dim=1)


def sorted_rows(x: Tensor, weights: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """Rows of X (C, M) sorted: each channel's empirical quantile function. With weights w (M,): the rows of
    X[:, w > 0] sorted and their weights (Σ = 1) in each row's order, both (C, N)."""
    if weights is None:
        return sort_rows(x)
    return _sort_weighted(*as_sample(x, weights))


def histogram_blend(stats: Sequence[Tensor | tuple[Tensor, Tensor]], weights: Sequence[float]) -> Tensor | tuple:
    """Sorted rows of the pooled mixture; exact (all values, weights π_k w_k) if any style is weighted."""
    if not any(isinstance(s, tuple) for s in stats):
        return sorted_rows(pool_samples(stats, weights))
    parts = [(pi, *_split(s)) for pi, s in zip(weights, stats) if pi > 0]
    values = torch.cat([q for _, q, _ in parts], dim=1)
    mass = torch.cat([pi * (torch.full_like(q, 1 / q.shape[1]) if w is None else w) for pi, q, w in parts], dim=1)
    return _sort_weighted(values, mass / mass.sum(dim=1, keepdim=True))


def histogram_distance(x: Tensor, target_sorted: Tensor | tuple, weights: Tensor | None = None) -> Tensor:
    """mean over channels and positions of (sort(X_c) − Q_c)², Q_c = style quantiles at X's ranks.

    This is ‖X − R(X)‖² of Risser et al. (2017) with R = exact histogram matching (no bins): R(X) only moves
    with the ranks of X, which are locally constant, so its gradient 2(X − R) is that of this very value.
    With weights w (M,): Σ_i w_i (X_c,i − R(X)_c,i)² / Σw, the ranks taken in w's mass (_sorted_transport).
    """
    q, w_q = _split(target_sorted)
    if weights is None and w_q is None:
        return sorted_match(x, resampled(q, x.shape[1]))
    w_x = None if weights is None else normalise_weights(weights, x)
    return _sorted_transport(x, w_x, lambda c: quantiles(q, c, w_q))


def sliced_wasserstein(directions: int = 0, seed: int = 0, resample: bool = False) -> StyleLoss:
    """Mean over K random unit directions v of the 1-D W2² between vᵀX and vᵀY (Heitz et al. 2021).
    directions=0 means K = C. Directions are drawn per channel count: fixed within a run, or per call."""
    check_param("sliced-wasserstein", "directions", directions, 0, MAX_DIRECTIONS, "0 = one per channel")
    draws = Draws(seed, resample)

    def project(c: int, like: Tensor) -> Tensor:
        k = directions or c
        v = draws.get(("sw", c, k), lambda g: torch.randn(k, c, generator=g))
        v = v.to(device=like.device, dtype=like.dtype)
        return v / v.norm(dim=1, keepdim=True)  # (K, C)

    def sorted_projections(y: Tensor, w_y: Tensor | None, v: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        v = project(y.shape[0], y) if v is None else v
        if w_y is None:
            return sort_rows(v @ y), None  # (K, My): the style's 1-D quantiles
        return _sort_weighted(v @ y, w_y)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> tuple[Sample, tuple | None]:
        """(pooled style sample, its sorted projections when the directions are fixed: sorted once per scale)."""
        pooled = pool_samples(stats, weights)
        return pooled, None if resample else sorted_projections(*_split(pooled))

    def loss(x: Tensor, target: tuple[Sample, tuple | None], weights: Tensor | None = None) -> Tensor:
        pooled, presorted = target
        v = project(x.shape[0], x)  # one draw for both sides
        q, w_q = presorted if presorted is not None else sorted_projections(*_split(pooled), v)
        if weights is None and w_q is None:
            return sorted_match(v @ x, resampled(q, x.shape[1]))
        w_x = None if weights is None else normalise_weights(weights, x)
        return _sorted_transport(v @ x, w_x, lambda c: quantiles(q, c, w_q))

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True)


# ---------------------------------------------------------------------------------------------- Gaussian MMD


def _bandwidths(y: Tensor, scales: int, weights: Tensor | None = None) -> list[float]:
    """γ = 1 / E‖y − y'‖² over the style's own (weighted) samples (= 1 / (2 tr Σ)), times {1} or {¼, 1, 4}.

    Deviation from the official code (which uses output-vs-style pairs each step): computed once from the
    style, so the objective is fixed for L-BFGS and the same for both estimators.
    """
    mu = channel_mean(y, weights)
    msd = 2 * (channel_mean((y**2).sum(dim=0), weights) - (mu**2).sum())
    gamma = 1.0 / float(msd.clamp_min(1e-12))
    return [gamma * f for f in ((1.0,) if scales == 1 else (0.25, 1.0, 4.0))]


def mmd_gaussian(
    estimator: str = "rff", features: int = 1024, samples: int = 1024, scales: int = 1,
    seed: int = 0, resample: bool = False,
) -> StyleLoss:
    """MMD² with k(x,y) = exp(−γ‖x−y‖²) (summed over bandwidths), per layer γ from the style.

    estimator='rff': random Fourier features φ(x) = √(2/D) cos(Wx + b), W ~ N(0, 2γI), b ~ U[0, 2π];
      MMD² ≈ ‖mean φ(X) − mean φ(Y)‖². Deterministic with fixed W, linear in M (docs/method.md §3.9).
    estimator='sampled': the biased MMD² on `samples` random positions of X and of Y, O(n²C) (§2.4b).
    With weights: kernel means Σ_i w_i φ(x_i), or pairs weighted by w_i w_j among the positions with w > 0.
    """
    if estimator not in ("rff", "sampled"):
        raise ValueError(f"style loss 'mmd-gaussian': estimator must be rff or sampled, got {estimator!r}")
    check_param("mmd-gaussian", "features", features, 1, MAX_FEATURES, "random Fourier features")
    check_param("mmd-gaussian", "samples", samples, 2, MAX_SAMPLES, "positions per image")
    if scales not in (1, 3):
        raise ValueError(f"style loss 'mmd-gaussian': scales must be 1 or 3 (bandwidths), got {scales!r}")
    draws = Draws(seed, resample)

    def rff(c: int, gamma: float, like: Tensor) -> tuple[Tensor, Tensor]:
        wb = draws.get(("rff", c, features), lambda g: torch.cat(
            [torch.randn(features, c, generator=g), torch.rand(features, 1, generator=g) * 2 * math.pi], dim=1))
        wb = wb.to(device=like.device, dtype=like.dtype)
        return wb[:, :c] * math.sqrt(2 * gamma), wb[:, c:]  # W (D, C), b (D, 1)

    def mean_features(x: Tensor, wb: tuple[Tensor, Tensor], weights: Tensor | None = None) -> Tensor:
        w, b = wb
        return math.sqrt(2.0 / features) * channel_mean(torch.cos(w @ x + b), weights)  # (D,)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> tuple[list[float], Sample, list[Tensor] | None]:
        """(bandwidths, pooled style sample, its mean features under fixed draws; None when they are redrawn)."""
        pooled = pool_samples(stats, weights)
        y, w = _split(pooled)
        gammas = _bandwidths(y, scales, w)
        fixed = estimator == "rff" and not resample
        return gammas, pooled, [mean_features(y, rff(y.shape[0], g, y), w) for g in gammas] if fixed else None

    def loss(x: Tensor, target: tuple[list[float], Sample, list[Tensor] | None], weights: Tensor | None = None) -> Tensor:
        gammas, pooled, means = target
        if estimator == "rff":
            y, w_y = _split(pooled)
            total = x.new_zeros(())
            for k, g in enumerate(gammas):
                wb = rff(x.shape[0], g, x)  # one draw for both sides: redrawn per call, never per side
                m_y = means[k] if means is not None else mean_features(y, wb, w_y)
                total = total + ((mean_features(x, wb, weights) - m_y) ** 2).sum()
            return total
        xs, ys = draws.positions(as_sample(x, weights), "x", samples), draws.positions(pooled, "y", samples)
        return sum(_gaussian_mmd(xs, ys, g) for g in gammas)

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True)


def biased_mmd(x: Sample, y: Sample, kernel: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """MMD²_b = E k(x,x') + E k(y,y') − 2 E k(x,y) between the columns of x (C, n) and y (C, m), or between weighted
    samples (X, w): pairs weighted by w_i w_j; kernel(a, b) -> the (n_a, n_b) kernel matrix."""
    (x, wx), (y, wy) = _split(x), _split(y)
    if wx is None and wy is None:
        return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()
    wx = x.new_full((x.shape[1],), 1 / x.shape[1]) if wx is None else wx
    wy = y.new_full((y.shape[1],), 1 / y.shape[1]) if wy is None else wy
    return wx @ kernel(x, x) @ wx + wy @ kernel(y, y) @ wy - 2 * wx @ kernel(x, y) @ wy


def _gaussian_mmd(x: Sample, y: Sample, gamma: float) -> Tensor:
    """Biased MMD²_b with exp(−γ‖x−y‖²) between the (weighted) columns of x (C, n) and y (C, m)."""
    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = (a**2).sum(0)[:, None] + (b**2).sum(0)[None, :] - 2 * a.T @ b
        return torch.exp(-gamma * d2.clamp_min(0))
    return biased_mmd(x, y, k)


# ---------------------------------------------------------------------------------------------- factories
# The registry (name -> factory) lives in stylelab.lossspec, which needs no torch; these build the plain losses.


def gram_loss() -> StyleLoss:
    return StyleLoss(stats=gram, loss=gram_distance, weighted=True)


def mean_loss() -> StyleLoss:
    return StyleLoss(stats=channel_mean, loss=mean_distance, weighted=True)


def bn_loss() -> StyleLoss:
    return StyleLoss(stats=bn_stats, loss=bn_distance, weighted=True)


def w2_loss() -> StyleLoss:
    return StyleLoss(stats=w2_stats, loss=w2_distance, blend=w2_blend, weighted=True)


def histogram_loss() -> StyleLoss:
    return StyleLoss(stats=sorted_rows, loss=histogram_distance, blend=histogram_blend, weighted=True)


# ---------------------------------------------------------------------------------------------- content and TV


def content_loss(x: Tensor, target: Tensor, target_power: Tensor) -> Tensor:
    """Normalised MSE: mean((F_x − F_c)²) / mean(F_c²); 1 for an all-zero response, 0 at the content image."""
    return ((at_least_float32(x) - target) ** 2).mean() / target_power


def tv_loss(image: Tensor) -> Tensor:
    """Squared anisotropic total variation of a (B, 3, H, W) image in [0,1], averaged over pixel pairs."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return (dy**2).mean() + (dx**2).mean()
