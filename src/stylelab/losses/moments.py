"""Moment matching: the Gram matrix (= MMD² with k(x,y) = (xᵀy)²), channel means (linear MMD), BN statistics
(means and standard deviations), and W2 between the Gaussians of two feature distributions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import StyleLoss, Tiling, normalise_weights, weighted_sum

__all__ = [
    "BN_EPS",
    "BN_TILING",
    "GRAM_TILING",
    "MEAN_TILING",
    "W2_TILING",
    "W2Stats",
    "bn_distance",
    "bn_loss",
    "bn_stats",
    "channel_mean",
    "gram",
    "gram_distance",
    "gram_loss",
    "mean_distance",
    "mean_loss",
    "raw_moments",
    "self_product",
    "w2_blend",
    "w2_distance",
    "w2_loss",
    "w2_stats",
]


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


def _covariance(x: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(μ (C,), Σ (C, C)) population moments, (weighted) over positions; centred before the product (no
    E[ffᵀ] − μμᵀ cancellation)."""
    mu = channel_mean(x, weights)
    return mu, gram(x - mu[:, None], weights)


def _psd_sqrt(a: Tensor) -> Tensor:
    """Symmetric PSD square root by eigendecomposition (targets only: no gradient needed)."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


W2Stats = tuple[Tensor, Tensor, Tensor]  # (μ (C,), Σ (C, C), Σ^½ (C, C))


def w2_stats(x: Tensor, weights: Tensor | None = None) -> W2Stats:
    """(μ, Σ, Σ^½) of a Gaussian fit to the (weighted) features."""
    mu, cov = _covariance(x, weights)
    return mu, cov, _psd_sqrt(cov)


def w2_blend(stats: Sequence[W2Stats], weights: Sequence[float]) -> W2Stats:
    """Blend μ and E[ffᵀ] = Σ + μμᵀ (the mixture's moments), then refit the Gaussian (docs/method.md §8)."""
    mu = weighted_sum([m for m, _, _ in stats], weights)
    second = weighted_sum([c + torch.outer(m, m) for m, c, _ in stats], weights)
    cov = second - torch.outer(mu, mu)
    cov = (cov + cov.T) / 2
    return mu, cov, _psd_sqrt(cov)


def w2_distance(x: Tensor, target: W2Stats, weights: Tensor | None = None) -> Tensor:
    """W2² between Gaussian fits: ‖Δμ‖² + tr(Σx + Σs − 2 (Σs^½ Σx Σs^½)^½).

    tr(A^½) = Σ √λ(A) via `eigvalsh`, whose gradient V diag(g) Vᵀ stays finite for repeated eigenvalues
    (eigenvector gradients, which blow up there, are never needed). Eigenvalues are floored at 1e-8·λ_max so the
    √ has a bounded slope; ReLU features often have near-zero variance directions.
    """
    return _w2(*_covariance(x, weights), target)


def _w2(mu_x: Tensor, cov_x: Tensor, target: W2Stats) -> Tensor:
    """w2_distance from the output's mean and covariance."""
    mu_s, cov_s, sqrt_s = (t.to(cov_x.dtype) for t in target)
    inner = sqrt_s @ cov_x @ sqrt_s
    vals = torch.linalg.eigvalsh((inner + inner.T) / 2)
    floor = 1e-8 * vals.detach().abs().max().clamp_min(1e-30)
    cross = vals.clamp_min(floor).sqrt().sum()
    return ((mu_x - mu_s) ** 2).sum() + (cov_x.trace() + cov_s.trace() - 2 * cross).clamp_min(0)


# ------------------------------------------------------------------------------------------------ in tiles
# Every statistic above is an average over positions, so it is the tiles' averages weighted by their shares of the
# positions. The raw moments (μ, E[ffᵀ]) add up; centring needs the whole image's mean, so the losses that centre
# (bn, w2) take their variances from the raw moments, in float64 (the engine sums the tiles' moments in float64),
# where E[f²] − μ² loses nothing that float32 features carry.


def raw_moments(x: Tensor, second: str = "full") -> tuple[Tensor, Tensor]:
    """(μ (C,), E[ffᵀ] (C, C)) of X (C, M); second='diagonal': (μ, E[f²] (C,))."""
    if second == "diagonal":
        return channel_mean(x), channel_mean(x**2)
    return channel_mean(x), gram(x)


def _bn_from_moments(m: tuple[Tensor, ...], target: tuple[Tensor, Tensor]) -> Tensor:
    mu_x, second_x = m
    mu_s, second_s = (t.to(mu_x.dtype) for t in target)
    sigma_s = ((second_s - mu_s**2).clamp_min(0) + BN_EPS).sqrt()
    sigma_x = ((second_x - mu_x**2).clamp_min(0) + BN_EPS).sqrt()
    return ((mu_x - mu_s) ** 2 + (sigma_x - sigma_s) ** 2).mean()


def _covariance_from_moments(m: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    mu, second = m
    cov = second - torch.outer(mu, mu)
    return mu, (cov + cov.T) / 2


def _w2_stats_from_moments(m: tuple[Tensor, ...]) -> W2Stats:
    mu, cov = (t.float() for t in _covariance_from_moments(m))
    return mu, cov, _psd_sqrt(cov)


GRAM_TILING = Tiling(moments=lambda x: (gram(x),),
                     distance=lambda m, target: ((m[0] - target.to(m[0].dtype)) ** 2).sum(),
                     stats=lambda m: m[0].float())
MEAN_TILING = Tiling(moments=lambda x: (channel_mean(x),),
                     distance=lambda m, target: ((m[0] - target.to(m[0].dtype)) ** 2).sum(),
                     stats=lambda m: m[0].float())
BN_TILING = Tiling(moments=lambda x: raw_moments(x, "diagonal"), distance=_bn_from_moments,
                   stats=lambda m: (m[0].float(), m[1].float()))
W2_TILING = Tiling(moments=raw_moments, distance=lambda m, target: _w2(*_covariance_from_moments(m), target),
                   stats=_w2_stats_from_moments)


def gram_loss() -> StyleLoss[Tensor, Tensor]:
    return StyleLoss(stats=gram, loss=gram_distance, weighted=True, tiling=GRAM_TILING)


def mean_loss() -> StyleLoss[Tensor, Tensor]:
    return StyleLoss(stats=channel_mean, loss=mean_distance, weighted=True, tiling=MEAN_TILING)


def bn_loss() -> StyleLoss[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    return StyleLoss(stats=bn_stats, loss=bn_distance, weighted=True, tiling=BN_TILING)


def w2_loss() -> StyleLoss[W2Stats, W2Stats]:
    return StyleLoss(stats=w2_stats, loss=w2_distance, blend=w2_blend, weighted=True, tiling=W2_TILING)
