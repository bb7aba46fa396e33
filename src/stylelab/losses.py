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

import inspect
import math
import re

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


def poly_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """(G, μ): the moments that the degree-2 polynomial-kernel MMD depends on."""
    return gram(x), channel_mean(x)


def mmd_poly(c: float = 0.0, degree: int = 2) -> StyleLoss:
    """MMD²_b with k(x,y) = (xᵀy + c)²  =  ‖ΔG‖²_F + 2c‖Δμ‖²  (the c² terms cancel; METHOD.md §2.2)."""
    if degree != 2:
        raise ValueError("mmd-poly supports degree=2 only (the closed form through G and μ)")
    if c < 0:
        raise ValueError(f"mmd-poly needs c >= 0, got {c}")

    def loss(x: Tensor, target: tuple[Tensor, Tensor]) -> Tensor:
        g_s, mu_s = target
        return gram_distance(x, g_s) + 2 * c * mean_distance(x, mu_s)

    return StyleLoss(stats=poly_stats, loss=loss)


# ---------------------------------------------------------------------------------------------- the registry
# name -> factory(**params) -> StyleLoss. Parameters are bound explicitly when the loss is built.

STYLE_LOSSES: dict[str, Callable[..., StyleLoss]] = {
    "gram": lambda: StyleLoss(stats=gram, loss=gram_distance),
    "mmd-poly": mmd_poly,
    "mmd-linear": lambda: StyleLoss(stats=channel_mean, loss=mean_distance),
    "bn": lambda: StyleLoss(stats=bn_stats, loss=bn_distance),
}


def style_loss(name: str, **params: Any) -> StyleLoss:
    """Build the registry entry `name` with `params` bound."""
    try:
        factory = STYLE_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown style loss {name!r}; choose one of: {', '.join(STYLE_LOSSES)}") from None
    signature = inspect.signature(factory).parameters
    for key, value in params.items():
        if key not in signature:
            raise ValueError(f"style loss {name!r} has no parameter {key!r}; "
                             f"its parameters: {', '.join(signature) or 'none'}")
        default = signature[key].default  # its type is the parameter's type
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(default, (int, float)) and not (numeric and (isinstance(default, float) or value == int(value))):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"style loss {name!r}: {key} must be {kind}, got {value!r}")
        if isinstance(default, float) and not math.isfinite(value):
            raise ValueError(f"style loss {name!r}: {key} must be finite, got {value!r}")
        if isinstance(default, int):
            params[key] = int(value)
    return factory(**params)


@dataclass(frozen=True)
class LossTerm:
    """One member of a style-loss mix: `name(params):weight`."""

    name: str
    params: tuple[tuple[str, Any], ...]
    weight: float  # normalised over the mix

    @property
    def label(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({args})" if args else self.name

    def build(self) -> StyleLoss:
        return style_loss(self.name, **dict(self.params))


_TERM = re.compile(r"^\s*([a-z0-9-]+)\s*(?:\(([^()]*)\))?\s*(?::\s*([^:,()]+))?\s*$")


def parse_style_losses(spec: str) -> list[LossTerm]:
    """'gram:0.5,mmd-poly(c=1):0.5' -> LossTerms with weights normalised to sum 1; each is built once to check."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(spec + ","):  # split on commas outside parentheses
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(spec[start:i])
            start = i + 1
    terms = []
    for item in items:
        m = _TERM.match(item)
        if not m:
            raise ValueError(f"cannot parse style loss {item.strip()!r}; write NAME, NAME(key=value,...) or NAME:WEIGHT")
        name, args, weight = m.group(1), m.group(2), m.group(3)
        params = tuple(_parse_param(a) for a in args.split(",") if a.strip()) if args else ()
        w = _number(weight, f"weight of {name}") if weight else 1.0
        if not (w >= 0 and w != float("inf")):
            raise ValueError(f"weight of style loss {name} must be a finite number >= 0, got {weight}")
        terms.append(LossTerm(name, params, w))
    total = sum(t.weight for t in terms)
    if not terms or total <= 0:
        raise ValueError(f"style loss {spec!r} needs at least one loss with weight > 0")
    terms = [LossTerm(t.name, t.params, t.weight / total) for t in terms if t.weight > 0]
    if len({t.label for t in terms}) != len(terms):
        raise ValueError(f"style loss {spec!r} names the same loss twice")
    for t in terms:
        t.build()
    return terms


def _parse_param(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise ValueError(f"style loss parameter {text.strip()!r} must be key=value")
    value = value.strip()
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None


# ---------------------------------------------------------------------------------------------- content and TV


def content_loss(x: Tensor, target: Tensor, target_power: Tensor) -> Tensor:
    """Normalised MSE: mean((F_x − F_c)²) / mean(F_c²); 1 for an all-zero response, 0 at the content image."""
    return ((at_least_float32(x) - target) ** 2).mean() / target_power


def tv_loss(image: Tensor) -> Tensor:
    """Squared anisotropic total variation of a (B, 3, H, W) image in [0,1], averaged over pixel pairs."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return (dy**2).mean() + (dx**2).mean()
