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

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, TypeVar, cast, overload

import torch
from torch import Tensor

__all__ = [
    "MAX_DIRECTIONS",
    "MAX_FEATURES",
    "MAX_POLY_C",
    "MAX_POLY_DEGREE",
    "MAX_SAMPLES",
    "M",
    "Memo",
    "Moments",
    "RankTiling",
    "S",
    "Sample",
    "Stats",
    "StyleLoss",
    "T",
    "Tiling",
    "as_sample",
    "at_least_float32",
    "check_param",
    "flatten",
    "linear_blend",
    "normalise_weights",
    "split_sample",
    "weighted_sample",
    "weighted_sum",
]

# What a loss's `stats` or `blend` may return: tensors and numbers, in tuples and lists (the engine keeps them per
# layer and a style cache keeps them between runs). Each loss has its own, narrower types S and T (StyleLoss).
class Memo:
    """A part of a target that a loss fills on first use and keeps with the target (the style along each of a
    resampling loss's sets of directions): what it computes from the target, by its own keys."""

    def __init__(self) -> None:
        self.entries: dict[Hashable, Any] = {}


Stats = Tensor | float | None | Memo | tuple["Stats", ...] | Sequence["Stats"]
Moments = Tensor | tuple["Moments", ...]  # statistics that are expectations, so that blending them is linear
S = TypeVar("S", bound=Stats)  # a loss's statistics of one image
T = TypeVar("T", bound=Stats)  # a loss's target: the statistics of several style images, blended
M = TypeVar("M", bound=Moments)

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
    return x if weights is None else weighted_sample(x, weights)


def weighted_sample(x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """X (C, M) with weights w (M,) >= 0 -> (X[:, w>0], w[w>0] / Σw)."""
    w = normalise_weights(weights, x)
    keep = w > 0
    return x[:, keep], w[keep]


def split_sample(sample: Sample) -> tuple[Tensor, Tensor | None]:
    return sample if isinstance(sample, tuple) else (sample, None)


def linear_blend(stats: Sequence[M], weights: Sequence[float]) -> M:
    """Σ_k w_k S_k, elementwise over tuples. Exact for statistics that are expectations (moments)."""
    # One loss's statistics share one structure, all tensors or all tuples alike: the casts say so (mypy cannot
    # build M back from its members).
    first = stats[0]
    if isinstance(first, tuple):
        return cast(M, tuple(linear_blend([s[i] for s in stats], weights) for i in range(len(first))))
    return cast(M, weighted_sum(cast(Sequence[Tensor], stats), weights))


def weighted_sum(tensors: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """Σ_k w_k A_k, added in order."""
    total = weights[0] * tensors[0]
    for w, a in zip(weights[1:], tensors[1:]):
        total = total + w * a
    return total


@dataclass(frozen=True)
class Tiling:
    """How a loss whose statistics are averages over positions is computed tile by tile (stylelab.engine.tiles):

        moments(X) -> tuple of tensors   averages over X's positions, differentiable; the whole image's are the
                                         tiles' averaged by their shares of the positions (summed in float64)
        distance(m, T) -> scalar         the loss's value from the whole image's moments: loss(X, T) = distance(
                                         moments(X), T), and its gradient in m gives each tile's (chain rule)
        stats(m) -> S                    an image's statistics from its moments (the style images' targets)
    """

    moments: Callable[[Tensor], tuple[Tensor, ...]]
    distance: Callable[[tuple[Tensor, ...], Any], Tensor]
    stats: Callable[[tuple[Tensor, ...]], Any]


@dataclass(frozen=True)
class RankTiling:
    """How a 1-D transport loss (sliced-wasserstein, histogram) runs in tiles (stylelab.engine.tiles): its rows,
    the features projected on directions (or the channels themselves), are ranked on one histogram of the whole
    image's rows, counted tile by tile (binned.PiecewiseTransport), so the value and gradient are those of the
    loss's binned ranks in one piece.

        rows(C, target, like) -> (directions (K, C) or None, Q)   once per evaluation and layer, in the order the
                                 untiled loss is called (a resampling loss picks its set of directions there); Q maps
                                 levels (K, L) in [0, 1] to the target's values there

    The style side keeps its features at up to spec.STYLE_SAMPLE seeded positions of each style image (all of them
    when it has fewer), gathered tile by tile, as its statistics."""

    rows: Callable[[int, Any, Tensor], tuple[Tensor | None, Callable[[Tensor], Tensor]]]
    bins: int
    ties: bool  # rows are channels: many values at a row's minimum (a ReLU's zeros) are a tie


@dataclass(frozen=True, init=False)
class StyleLoss(Generic[S, T]):
    """One entry of the registry: how to summarise a style and how far an output is from it.
    S: the statistics of one image, T: the target (several styles' statistics blended), as each loss defines them."""

    stats: Callable[Concatenate[Tensor, ...], S]  # stats(X) -> S, and stats(X, weights=w) if `weighted`
    loss: Callable[Concatenate[Tensor, T, ...], Tensor]  # loss(X, T) -> scalar, and loss(X, T, weights=w) if `weighted`
    blend: Callable[[Sequence[S], Sequence[float]], T]  # default: linear_blend (S = T, moments)
    weighted: bool  # stats/loss take per-position weights (spatial control with masks, docs/method.md §9)
    # A guided loss's target also depends on the content's layout: with a content image, once per scale, the engine
    # calls guide(inputs) (neighbours.GuideInput: the activations of the content, of the image optimisation starts
    # from, of the style images) and gives each layer's loss `blend(...)`'s target with its second member replaced by
    # the returned per-position targets (C, M) of that layer (neural neighbours). None for every other loss.
    guide: Callable[[Any], dict[str, Tensor]] | None
    # How the loss runs in tiles: statistics that are averages over positions (Tiling), or 1-D transport on
    # binned ranks (RankTiling); None for the losses that cannot tile.
    tiling: Tiling | RankTiling | None

    # The default blend fits only statistics that are moments and their own target; a dataclass default cannot say
    # so, these overloads do.
    @overload
    def __init__(self: StyleLoss[M, M], stats: Callable[Concatenate[Tensor, ...], M],
                 loss: Callable[Concatenate[Tensor, M, ...], Tensor], *, weighted: bool = False,
                 guide: Callable[[Any], dict[str, Tensor]] | None = None,
                 tiling: Tiling | RankTiling | None = None) -> None: ...

    @overload
    def __init__(self, stats: Callable[Concatenate[Tensor, ...], S],
                 loss: Callable[Concatenate[Tensor, T, ...], Tensor],
                 blend: Callable[[Sequence[S], Sequence[float]], T], weighted: bool = False,
                 guide: Callable[[Any], dict[str, Tensor]] | None = None,
                 tiling: Tiling | RankTiling | None = None) -> None: ...

    def __init__(self, stats: Callable[..., Stats], loss: Callable[..., Tensor],
                 blend: Callable[..., Stats] | None = None, weighted: bool = False,
                 guide: Callable[[Any], dict[str, Tensor]] | None = None,
                 tiling: Tiling | RankTiling | None = None) -> None:
        object.__setattr__(self, "stats", stats)  # frozen
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "blend", linear_blend if blend is None else blend)
        object.__setattr__(self, "weighted", weighted)
        object.__setattr__(self, "guide", guide)
        object.__setattr__(self, "tiling", tiling)


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
