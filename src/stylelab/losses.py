"""Content loss, total variation, and the registry of style losses.

A style loss is a pair of pure functions (STYLE.md habit 1):
    stats(X) -> S          X: (C, M) features of one image at one layer (M = H*W positions), run once per target
    loss(X, S) -> scalar   run every step; the value returned is the value differentiated
plus `blend(stats_list, weights) -> S`, which mixes several style images' statistics (METHOD.md §5.2).

Conventions: features are per-image *distributions* of M column vectors, so every statistic averages over
positions (never sums), which lets the style and output images differ in size. Statistics are computed in
float32 whatever the dtype of the features (half-precision Gram matrices are useless, METHOD.md §7.4).
Raw values differ by orders of magnitude between losses and layers; the optimizer divides each layer's value
by its value between the content and style images (METHOD.md §2.11), so these raw functions carry no constants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Stats = Any  # a tensor or a tuple of tensors; whatever a loss's `stats` returns


def flatten(activation: Tensor) -> Tensor:
    """(1, C, H, W) activation -> (C, H*W) feature matrix (columns = samples), at least float32."""
    b, c, h, w = activation.shape
    if b != 1:
        raise ValueError(f"expected a batch of one image, got {b}")
    return at_least_float32(activation.reshape(c, h * w))  # (C, M)


def at_least_float32(x: Tensor) -> Tensor:
    """Half/bfloat16 -> float32; float32 and float64 unchanged (float64 keeps exact checks exact)."""
    return x if x.dtype == torch.float64 else x.float()


def linear_blend(stats: Sequence[Stats], weights: Sequence[float]) -> Stats:
    """Σ_k w_k S_k, elementwise over tuples. Exact for statistics that are expectations (moments)."""
    first = stats[0]
    if isinstance(first, tuple):
        return tuple(linear_blend([s[i] for s in stats], weights) for i in range(len(first)))
    return sum(w * s for w, s in zip(weights, stats))


@dataclass(frozen=True)
class StyleLoss:
    """One entry of the registry: how to summarise a style and how far an output is from it."""

    stats: Callable[[Tensor], Stats]
    loss: Callable[[Tensor, Stats], Tensor]
    blend: Callable[[Sequence[Stats], Sequence[float]], Stats] = linear_blend


# ---------------------------------------------------------------------------------------------- Gram / poly-MMD


def gram(x: Tensor) -> Tensor:
    """G = X Xᵀ / M for X (C, M) -> (C, C): the second raw moment E[f fᵀ] of the feature distribution."""
    m = x.shape[1]
    xs = x / m**0.5  # scale before the product so float32 never overflows (METHOD.md §7.4)
    return xs @ xs.T  # (C, C)


def gram_distance(x: Tensor, target_gram: Tensor) -> Tensor:
    """‖G(X) − G_S‖²_F. Equals MMD²_b with k(x,y) = (xᵀy)² exactly (Li et al. 2017), also for unequal M.

    Deviation from Gatys et al.: no 1/(4C²M²) factor; each Gram is divided by its own M and the
    per-layer reference normalisation absorbs every constant.
    """
    return ((gram(x) - target_gram) ** 2).sum()


# ---------------------------------------------------------------------------------------------- first-order family


def channel_mean(x: Tensor) -> Tensor:
    """μ = mean over positions of X (C, M) -> (C,)."""
    return x.mean(dim=1)


def mean_distance(x: Tensor, target_mean: Tensor) -> Tensor:
    """‖μ_X − μ_S‖². Equals MMD²_b with the linear kernel k(x,y) = xᵀy (Li et al. 2017), also for unequal M."""
    return ((channel_mean(x) - target_mean) ** 2).sum()


BN_EPS = 1e-5  # inside the square root: a channel that is all zero after ReLU has σ = 0 (METHOD.md §7.7)


def bn_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """(μ, E[f²]) per channel, each (C,): moments, so blending them is blending the distributions (§5.2)."""
    return x.mean(dim=1), (x**2).mean(dim=1)


def bn_distance(x: Tensor, target: tuple[Tensor, Tensor]) -> Tensor:
    """mean_c [(μ_X,c − μ_S,c)² + (σ_X,c − σ_S,c)²] with population std σ = sqrt(var + ε)."""
    mu_s, second_s = target
    sigma_s = ((second_s - mu_s**2).clamp_min(0) + BN_EPS).sqrt()
    mu_x = x.mean(dim=1)
    sigma_x = (((x - mu_x[:, None]) ** 2).mean(dim=1) + BN_EPS).sqrt()  # centred first: no cancellation
    return ((mu_x - mu_s) ** 2 + (sigma_x - sigma_s) ** 2).mean()


# ---------------------------------------------------------------------------------------------- the registry
# name -> factory(**params) -> StyleLoss. Parameters are bound explicitly when the loss is built.

STYLE_LOSSES: dict[str, Callable[..., StyleLoss]] = {
    "gram": lambda: StyleLoss(stats=gram, loss=gram_distance),
    "mmd-linear": lambda: StyleLoss(stats=channel_mean, loss=mean_distance),
    "bn": lambda: StyleLoss(stats=bn_stats, loss=bn_distance),
}


def style_loss(name: str, **params: Any) -> StyleLoss:
    """Build the registry entry `name` with `params` bound."""
    try:
        factory = STYLE_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown style loss {name!r}; choose one of: {', '.join(STYLE_LOSSES)}") from None
    return factory(**params)


# ---------------------------------------------------------------------------------------------- content and TV


def content_loss(x: Tensor, target: Tensor, target_power: Tensor) -> Tensor:
    """Normalised MSE: mean((F_x − F_c)²) / mean(F_c²); 1 for an all-zero response, 0 at the content image."""
    return ((at_least_float32(x) - target) ** 2).mean() / target_power


def tv_loss(image: Tensor) -> Tensor:
    """Squared anisotropic total variation of a (B, 3, H, W) image in [0,1], averaged over pixel pairs."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return (dy**2).mean() + (dx**2).mean()
