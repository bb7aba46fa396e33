"""Kernel MMD² between the feature distributions: polynomial kernels (k = (xᵀy/s² + c)^d, sampled) and the
Gaussian kernel (exact on samples, or linear-time through random Fourier features)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .base import (
    MAX_FEATURES,
    MAX_POLY_C,
    MAX_POLY_DEGREE,
    MAX_SAMPLES,
    Sample,
    StyleLoss,
    Tiling,
    as_sample,
    check_param,
    split_sample,
)
from .moments import channel_mean, gram, gram_distance, mean_distance
from .transport import Draws, pool_samples

__all__ = ["GaussianTarget", "PolyMoments", "PolyTarget", "biased_mmd", "mmd_gaussian", "mmd_poly", "poly_stats"]

PolyMoments = tuple[Tensor, Tensor]  # (G (C, C), μ (C,))
PolyTarget = tuple[float, Sample]  # (s² = mean ‖y‖² of the style, the pooled style sample)


def poly_stats(x: Tensor, weights: Tensor | None = None) -> PolyMoments:
    """(G, μ): the moments that the degree-2 polynomial-kernel MMD depends on."""
    return gram(x, weights), channel_mean(x, weights)


def mmd_poly(
    c: float = 0.0, degree: int = 2, samples: int = 1024, seed: int = 0, resample: bool = False,
) -> StyleLoss[PolyMoments, PolyMoments] | StyleLoss[Sample, PolyTarget]:
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
        def loss2(x: Tensor, target: PolyMoments, weights: Tensor | None = None) -> Tensor:
            g_s, mu_s = target
            return gram_distance(x, g_s, weights) + 2 * c * mean_distance(x, mu_s, weights)

        tiling = Tiling(moments=lambda x: poly_stats(x),
                        distance=lambda m, t: (((m[0] - t[0].to(m[0].dtype)) ** 2).sum()
                                               + 2 * c * ((m[1] - t[1].to(m[1].dtype)) ** 2).sum()),
                        stats=lambda m: (m[0].float(), m[1].float()))
        return StyleLoss(stats=poly_stats, loss=loss2, weighted=True, tiling=tiling)
    draws = Draws(seed, resample)

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> PolyTarget:
        pooled = pool_samples(stats, weights)
        y, w = split_sample(pooled)
        return float(channel_mean((y**2).sum(dim=0), w).clamp_min(1e-12)), pooled

    def loss(x: Tensor, target: PolyTarget, weights: Tensor | None = None) -> Tensor:
        scale, y = target
        xs, ys = draws.positions(as_sample(x, weights), "x", samples), draws.positions(y, "y", samples)
        return biased_mmd(xs, ys, lambda a, b: (a.T @ b / scale + c) ** degree)

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True)


def _bandwidths(y: Tensor, scales: int, weights: Tensor | None = None) -> list[float]:
    """γ = 1 / E‖y − y'‖² over the style's own (weighted) samples (= 1 / (2 tr Σ)), times {1} or {¼, 1, 4}.

    Deviation from the official code (which uses output-vs-style pairs each step): computed once from the
    style, so the objective is fixed for L-BFGS and the same for both estimators.
    """
    mu = channel_mean(y, weights)
    msd = 2 * (channel_mean((y**2).sum(dim=0), weights) - (mu**2).sum())
    gamma = 1.0 / float(msd.clamp_min(1e-12))
    return [gamma * f for f in ((1.0,) if scales == 1 else (0.25, 1.0, 4.0))]


# (bandwidths γ, the pooled style sample, its mean random features per γ under fixed draws or None)
GaussianTarget = tuple[list[float], Sample, list[Tensor] | None]


def mmd_gaussian(
    estimator: str = "rff", features: int = 1024, samples: int = 1024, scales: int = 1,
    seed: int = 0, resample: bool = False,
) -> StyleLoss[Sample, GaussianTarget]:
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

    def blend(stats: Sequence[Sample], weights: Sequence[float]) -> GaussianTarget:
        """(bandwidths, pooled style sample, its mean features under fixed draws; None when they are redrawn)."""
        pooled = pool_samples(stats, weights)
        y, w = split_sample(pooled)
        gammas = _bandwidths(y, scales, w)
        fixed = estimator == "rff" and not resample
        return gammas, pooled, [mean_features(y, rff(y.shape[0], g, y), w) for g in gammas] if fixed else None

    def loss(x: Tensor, target: GaussianTarget, weights: Tensor | None = None) -> Tensor:
        gammas, pooled, means = target
        if estimator == "rff":
            y, w_y = split_sample(pooled)
            total = x.new_zeros(())
            for k, g in enumerate(gammas):
                wb = rff(x.shape[0], g, x)  # one draw for both sides: redrawn per call, never per side
                m_y = means[k] if means is not None else mean_features(y, wb, w_y)
                total = total + ((mean_features(x, wb, weights) - m_y) ** 2).sum()
            return total
        xs, ys = draws.positions(as_sample(x, weights), "x", samples), draws.positions(pooled, "y", samples)
        total = x.new_zeros(())
        for g in gammas:
            total = total + _gaussian_mmd(xs, ys, g)
        return total

    return StyleLoss(stats=as_sample, loss=loss, blend=blend, weighted=True)


def biased_mmd(x: Sample, y: Sample, kernel: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """MMD²_b = E k(x,x') + E k(y,y') − 2 E k(x,y) between the columns of x (C, n) and y (C, m), or between weighted
    samples (X, w): pairs weighted by w_i w_j; kernel(a, b) -> the (n_a, n_b) kernel matrix."""
    (x, wx), (y, wy) = split_sample(x), split_sample(y)
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
