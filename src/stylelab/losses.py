"""Content loss, total variation, and the registry of style losses.

A style loss is a pair of pure functions (STYLE.md habit 1):
    stats(X) -> S          X: (C, M) features of one image at one layer (M = H*W positions), run once per target
    loss(X, S) -> scalar   run every step; the value returned is the value differentiated
plus `blend(stats_list, weights) -> S`, which mixes several style images' statistics (METHOD.md §5.2); a target
is always `blend([stats(Y_1), ...], weights)`, even for one style, so a loss can finish its target there (e.g.
the Gaussian MMD fixes its bandwidth from the blended style).

Conventions: features are per-image *distributions* of M column vectors, so every statistic averages over
positions (never sums), which lets the style and output images differ in size. Statistics are computed in
float32 whatever the dtype of the features (half-precision Gram matrices are useless, METHOD.md §7.4).
Raw values differ by orders of magnitude between losses and layers; the optimizer divides each layer's value
by its value between the content and style images (METHOD.md §2.11), so these raw functions carry no constants.
"""

from __future__ import annotations

import inspect
import math
import re
import zlib
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


def poly_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """(G, μ): the moments that the degree-2 polynomial-kernel MMD depends on."""
    return gram(x), channel_mean(x)


def mmd_poly(c: float = 0.0, degree: int = 2, samples: int = 1024, seed: int = 0, resample: bool = False) -> StyleLoss:
    """MMD²_b with k(x,y) = (xᵀy + c)^d.

    d = 2: exact and cheap, ‖ΔG‖²_F + 2c‖Δμ‖² (the c² terms cancel; METHOD.md §2.2).
    d ≠ 2: no closed form through a few moments (d = 3 would need the C³ third-moment tensor), so the biased MMD²
    is computed on `samples` seeded random positions of each image, O(n²C), like the sampled Gaussian MMD.
    Inner products are divided by s² = mean ‖y‖² of the style so (xᵀy/s² + c)^d stays in float32 range;
    for d ≠ 2, c is therefore relative to that scale.
    """
    if degree < 1:
        raise ValueError(f"mmd-poly needs degree >= 1, got {degree}")
    if c < 0:
        raise ValueError(f"mmd-poly needs c >= 0, got {c}")
    if degree == 2:
        def loss2(x: Tensor, target: tuple[Tensor, Tensor]) -> Tensor:
            g_s, mu_s = target
            return gram_distance(x, g_s) + 2 * c * mean_distance(x, mu_s)

        return StyleLoss(stats=poly_stats, loss=loss2)
    draws = Draws(seed, resample)

    def blend(stats: Sequence[Tensor], weights: Sequence[float]) -> tuple[float, Tensor]:
        y = pool_samples(stats, weights)
        return float((y**2).sum(dim=0).mean().clamp_min(1e-12)), y

    def loss(x: Tensor, target: tuple[float, Tensor]) -> Tensor:
        scale, y = target
        xs, ys = draws.positions(x, "x", samples), draws.positions(y, "y", samples)

        return biased_mmd(xs, ys, lambda a, b: (a.T @ b / scale + c) ** degree)

    return StyleLoss(stats=lambda x: x, loss=loss, blend=blend)


# ---------------------------------------------------------------------------------------------- W2 between Gaussians


def _covariance(x: Tensor) -> tuple[Tensor, Tensor]:
    """(μ (C,), Σ (C, C)) population moments; centred before the product (no E[ffᵀ] − μμᵀ cancellation)."""
    mu = x.mean(dim=1)
    xc = (x - mu[:, None]) / x.shape[1] ** 0.5
    return mu, xc @ xc.T


def _psd_sqrt(a: Tensor) -> Tensor:
    """Symmetric PSD square root by eigendecomposition (targets only: no gradient needed)."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def w2_stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(μ, Σ, Σ^½) of a Gaussian fit to the features."""
    mu, cov = _covariance(x)
    return mu, cov, _psd_sqrt(cov)


def w2_blend(stats: Sequence[tuple[Tensor, Tensor, Tensor]], weights: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """Blend μ and E[ffᵀ] = Σ + μμᵀ (the mixture's moments), then refit the Gaussian (METHOD.md §5.2)."""
    mu = sum(w * m for w, (m, _, _) in zip(weights, stats))
    second = sum(w * (c + torch.outer(m, m)) for w, (m, c, _) in zip(weights, stats))
    cov = second - torch.outer(mu, mu)
    cov = (cov + cov.T) / 2
    return mu, cov, _psd_sqrt(cov)


def w2_distance(x: Tensor, target: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """W2² between Gaussian fits: ‖Δμ‖² + tr(Σx + Σs − 2 (Σs^½ Σx Σs^½)^½).

    tr(A^½) = Σ √λ(A) via `eigvalsh`, whose gradient V diag(g) Vᵀ stays finite for repeated eigenvalues
    (eigenvector gradients, which blow up there, are never needed). Eigenvalues are floored at 1e-8·λ_max so the
    √ has a bounded slope; ReLU features often have near-zero variance directions.
    """
    mu_s, cov_s, sqrt_s = target
    mu_x, cov_x = _covariance(x)
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
        self.generator = torch.Generator().manual_seed(seed)
        self.cache: dict[tuple, Tensor] = {}

    def get(self, key: tuple, make: Callable[[torch.Generator], Tensor]) -> Tensor:
        if self.resample:
            return make(self.generator)
        if key not in self.cache:
            self.cache[key] = make(torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(repr(key).encode())))
        return self.cache[key]

    def positions(self, x: Tensor, tag: str, n: int) -> Tensor:
        """A random subset of n columns (positions) of x (C, M); all of x if M <= n."""
        m = x.shape[1]
        if m <= n:
            return x
        idx = self.get(("idx", tag, m, n), lambda g: torch.randperm(m, generator=g)[:n])
        return x[:, idx.to(x.device)]


def resample_sorted(q: Tensor, m: int) -> Tensor:
    """Sorted rows q (K, N) -> (K, m) quantiles at (i + ½)/m by linear interpolation (N != m allowed)."""
    n = q.shape[1]
    if n == m:
        return q
    pos = ((torch.arange(m, device=q.device, dtype=q.dtype) + 0.5) * n / m - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(n - 1)
    frac = pos - lo.to(q.dtype)
    return q[:, lo] * (1 - frac) + q[:, hi] * frac


def pool_samples(stats: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """Pool sample sets (C, M_k) into one whose composition follows the weights: the mixture Σ π_k Q_k.
    Each set is resampled evenly to round(π_k · N) columns, N = the largest M_k."""
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


def sorted_rows(x: Tensor) -> Tensor:
    return x.sort(dim=1).values


def histogram_blend(stats: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    return sorted_rows(pool_samples(stats, weights))


def histogram_distance(x: Tensor, target_sorted: Tensor) -> Tensor:
    """mean over channels and positions of (sort(X_c) − Q_c)², Q_c = style quantiles at X's ranks.

    This is ‖X − R(X)‖² of Risser et al. (2017) with R = exact histogram matching (no bins): R(X) only moves
    with the ranks of X, which are locally constant, so its gradient 2(X − R) is that of this very value.
    """
    return ((sorted_rows(x) - resample_sorted(target_sorted, x.shape[1])) ** 2).mean()


def sliced_wasserstein(directions: int = 0, seed: int = 0, resample: bool = False) -> StyleLoss:
    """Mean over K random unit directions v of the 1-D W2² between vᵀX and vᵀY (Heitz et al. 2021).
    directions=0 means K = C. Directions are drawn per channel count: fixed within a run, or per call."""
    draws = Draws(seed, resample)

    def project(c: int, like: Tensor) -> Tensor:
        k = directions or c
        v = draws.get(("sw", c, k), lambda g: torch.randn(k, c, generator=g))
        v = v.to(device=like.device, dtype=like.dtype)
        return v / v.norm(dim=1, keepdim=True)  # (K, C)

    def loss(x: Tensor, y: Tensor) -> Tensor:
        v = project(x.shape[0], x)
        p, q = sorted_rows(v @ x), sorted_rows(v @ y)  # (K, Mx), (K, My)
        return ((p - resample_sorted(q, x.shape[1])) ** 2).mean()

    return StyleLoss(stats=lambda x: x, loss=loss, blend=pool_samples)


# ---------------------------------------------------------------------------------------------- Gaussian MMD


def _bandwidths(y: Tensor, scales: int) -> list[float]:
    """γ = 1 / E‖y − y'‖² over the style's own samples (= 1 / (2 tr Σ)), times {1} or {¼, 1, 4}.

    Deviation from the official code (which uses output-vs-style pairs each step): computed once from the
    style, so the objective is fixed for L-BFGS and the same for both estimators.
    """
    mu = y.mean(dim=1)
    msd = 2 * ((y**2).sum(dim=0).mean() - (mu**2).sum())
    gamma = 1.0 / float(msd.clamp_min(1e-12))
    return [gamma * f for f in ((1.0,) if scales == 1 else (0.25, 1.0, 4.0))]


def mmd_gaussian(
    estimator: str = "rff", features: int = 1024, samples: int = 1024, scales: int = 1,
    seed: int = 0, resample: bool = False,
) -> StyleLoss:
    """MMD² with k(x,y) = exp(−γ‖x−y‖²) (summed over bandwidths), per layer γ from the style.

    estimator='rff': random Fourier features φ(x) = √(2/D) cos(Wx + b), W ~ N(0, 2γI), b ~ U[0, 2π];
      MMD² ≈ ‖mean φ(X) − mean φ(Y)‖². Deterministic with fixed W, linear in M (METHOD.md §2.4c).
    estimator='sampled': the biased MMD² on `samples` random positions of X and of Y, O(n²C) (§2.4b).
    """
    if estimator not in ("rff", "sampled"):
        raise ValueError(f"mmd-gaussian estimator must be rff or sampled, got {estimator!r}")
    if features < 1 or samples < 2 or scales not in (1, 3):
        raise ValueError("mmd-gaussian needs features >= 1, samples >= 2 and scales 1 or 3")
    draws = Draws(seed, resample)

    def rff(c: int, gamma: float, like: Tensor) -> tuple[Tensor, Tensor]:
        wb = draws.get(("rff", c, features), lambda g: torch.cat(
            [torch.randn(features, c, generator=g), torch.rand(features, 1, generator=g) * 2 * math.pi], dim=1))
        wb = wb.to(device=like.device, dtype=like.dtype)
        return wb[:, :c] * math.sqrt(2 * gamma), wb[:, c:]  # W (D, C), b (D, 1)

    def mean_features(x: Tensor, gamma: float) -> Tensor:
        w, b = rff(x.shape[0], gamma, x)
        return math.sqrt(2.0 / features) * torch.cos(w @ x + b).mean(dim=1)  # (D,)

    def blend(stats: Sequence[Tensor], weights: Sequence[float]) -> tuple[list[float], Any]:
        y = pool_samples(stats, weights)
        gammas = _bandwidths(y, scales)
        if estimator == "rff":
            return gammas, [mean_features(y, g) for g in gammas]
        return gammas, y

    def loss(x: Tensor, target: tuple[list[float], Any]) -> Tensor:
        gammas, t = target
        if estimator == "rff":
            return sum(((mean_features(x, g) - m) ** 2).sum() for g, m in zip(gammas, t))
        xs, ys = draws.positions(x, "x", samples), draws.positions(t, "y", samples)
        return sum(_gaussian_mmd(xs, ys, g) for g in gammas)

    return StyleLoss(stats=lambda x: x, loss=loss, blend=blend)


def biased_mmd(x: Tensor, y: Tensor, kernel: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """MMD²_b between the columns of x (C, n) and y (C, m); kernel(a, b) -> the (n_a, n_b) kernel matrix."""
    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def _gaussian_mmd(x: Tensor, y: Tensor, gamma: float) -> Tensor:
    """Biased MMD²_b with exp(−γ‖x−y‖²) between the columns of x (C, n) and y (C, m)."""
    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = (a**2).sum(0)[:, None] + (b**2).sum(0)[None, :] - 2 * a.T @ b
        return torch.exp(-gamma * d2.clamp_min(0))
    return biased_mmd(x, y, k)


# ---------------------------------------------------------------------------------------------- the registry
# name -> factory(**params) -> StyleLoss. Parameters are bound explicitly when the loss is built.

STYLE_LOSSES: dict[str, Callable[..., StyleLoss]] = {
    "gram": lambda: StyleLoss(stats=gram, loss=gram_distance),
    "mmd-poly": mmd_poly,
    "mmd-linear": lambda: StyleLoss(stats=channel_mean, loss=mean_distance),
    "bn": lambda: StyleLoss(stats=bn_stats, loss=bn_distance),
    "mmd-gaussian": mmd_gaussian,
    "w2": lambda: StyleLoss(stats=w2_stats, loss=w2_distance, blend=w2_blend),
    "sliced-wasserstein": sliced_wasserstein,
    "histogram": lambda: StyleLoss(stats=sorted_rows, loss=histogram_distance, blend=histogram_blend),
}
RUN_CONTEXT = ("seed", "resample")  # supplied by the optimiser, never by the user


def style_loss(name: str, seed: int = 0, resample: bool = False, **params: Any) -> StyleLoss:
    """Build the registry entry `name` with `params` bound; `seed`/`resample` go to losses that sample."""
    try:
        factory = STYLE_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown style loss {name!r}; choose one of: {', '.join(STYLE_LOSSES)}") from None
    signature = inspect.signature(factory).parameters
    for key, value in params.items():
        if key not in signature or key in RUN_CONTEXT:
            own = [k for k in signature if k not in RUN_CONTEXT]
            raise ValueError(f"style loss {name!r} has no parameter {key!r}; its parameters: {', '.join(own) or 'none'}")
        default = signature[key].default  # its type is the parameter's type
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(default, (int, float)) and not (numeric and (isinstance(default, float) or value == int(value))):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"style loss {name!r}: {key} must be {kind}, got {value!r}")
        if isinstance(default, float) and not math.isfinite(value):
            raise ValueError(f"style loss {name!r}: {key} must be finite, got {value!r}")
        if isinstance(default, int):
            params[key] = int(value)
    context = {k: v for k, v in (("seed", seed), ("resample", resample)) if k in signature}
    return factory(**params, **context)


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

    def build(self, seed: int = 0, resample: bool = False) -> StyleLoss:
        return style_loss(self.name, seed=seed, resample=resample, **dict(self.params))


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
