"""What every style loss shares: the StyleLoss pair, feature flattening, position weights, samples, blends.

A style loss is a pair of pure functions:
    stats(X) -> S          X: (C, M) features of one image at one layer (M = H*W positions), run once per target
    loss(X, S) -> scalar   run every step; the value returned is the value differentiated
plus `blend(stats_list, weights) -> S`, which mixes several style images' statistics; a target is always
`blend([stats(Y_1), ...], weights)`, even for one style, so a loss can finish its target there (e.g. the Gaussian
MMD fixes its bandwidth from the blended style).

Spatial control: an entry with `weighted=True` also takes per-position weights w (M,) >= 0,
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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

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


def split_sample(sample: Sample) -> tuple[Tensor, Tensor | None]:
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
