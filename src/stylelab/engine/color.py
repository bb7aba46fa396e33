"""Colour control (docs/method.md §7): YUV, luminance-only transfer, colour restoration, colour matching, palettes.

Pure tensor functions on images of shape (1, 3, H, W), RGB in [0,1]; the result keeps the input's dtype and device.
Statistics are computed in float64. Bad shapes raise `ColorError` (a `ValueError`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import StylelabError

__all__ = [
    "MATCH_METHODS",
    "ColorError",
    "luminance",
    "luminance_only",
    "match_colors",
    "palette_only",
    "restore_color",
    "rgb_to_yuv",
    "yuv_to_rgb",
]

MATCH_METHODS = ("chol", "pca", "sym")

# Y, U, V rows of BT.601 (docs/method.md §7). The inverse is the exact one, not the rounded 1.139/0.395/... table,
# so rgb -> yuv -> rgb is the identity to float precision.
_RGB2YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.147, -0.288, 0.436], [0.615, -0.515, -0.100]],
                        dtype=torch.float64)
_YUV2RGB = torch.linalg.inv(_RGB2YUV)
_EPS = 1e-5  # added to colour covariances (docs/method.md §7); also the std below which a luminance counts as flat
_NODES = 256  # quantile nodes per axis in palette_only
_MAX_SLOPE = 2.0  # steepest colour stretch palette_only may apply along an axis, per pass (see _quantile_map)
_SAMPLE = 1 << 14  # pixels used to estimate those quantiles


class ColorError(StylelabError, ValueError):
    """An image passed to a colour function has the wrong shape or type."""


def _check(x: Tensor, what: str) -> None:
    if not (isinstance(x, Tensor) and x.dim() == 4 and x.shape[:2] == (1, 3) and x.numel() and x.is_floating_point()):
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ColorError(f"{what} must be a float tensor of shape (1, 3, H, W) with H, W ≥ 1, got {got}")


def _apply(m: Tensor, x: Tensor) -> Tensor:
    return torch.einsum("ij,bjhw->bihw", m.to(x), x)  # per-pixel m @ [c0, c1, c2]


def rgb_to_yuv(x: Tensor) -> Tensor:
    """[Y, U, V] = M_yuv [R, G, B] per pixel (docs/method.md §7). (1, 3, H, W) -> (1, 3, H, W)."""
    _check(x, "image")
    return _apply(_RGB2YUV, x)


def yuv_to_rgb(x: Tensor) -> Tensor:
    """[R, G, B] = M_yuv⁻¹ [Y, U, V] per pixel, exact inverse of rgb_to_yuv, no clipping. (1, 3, H, W) -> same."""
    _check(x, "YUV image")
    return _apply(_YUV2RGB, x)


def luminance(x: Tensor) -> Tensor:
    """Y = 0.299 R + 0.587 G + 0.114 B. (1, 3, H, W) -> (1, 1, H, W)."""
    _check(x, "image")
    return _apply(_RGB2YUV[:1], x)


def luminance_only(content: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
    """Grey images for Gatys 2017 luminance-only transfer: Y_c, and clip(σ_c/σ_s (Y_s − μ_s) + μ_c, 0, 1),
    each replicated to 3 channels. (1, 3, Hc, Wc), (1, 3, Hs, Ws) -> same shapes."""
    _check(content, "content")
    _check(style, "style")
    yc, ys = luminance(content), luminance(style)
    sd_c, sd_s = yc.std(correction=0), ys.std(correction=0)
    # A flat style has no contrast to scale: map it to the content's mean instead of amplifying rounding noise.
    gain = torch.where(sd_s > _EPS, sd_c / sd_s.clamp_min(_EPS), torch.zeros_like(sd_s))
    ys = ((ys - ys.mean()) * gain + yc.mean()).clamp(0, 1)
    return yc.clamp(0, 1).repeat(1, 3, 1, 1), ys.repeat(1, 3, 1, 1)


def restore_color(output: Tensor, content: Tensor) -> Tensor:
    """clip(YUV⁻¹[Y(output), U(content), V(content)], 0, 1). (1, 3, H, W) twice, same H×W -> (1, 3, H, W).

    Y(output) is the BT.601 luminance, not the mean of the channels used by Gatys' notebook: the two agree on
    grey outputs (keep-luminance), and on a colour output (transfer) Y is the brightness the YUV split assumes."""
    _check(output, "output")
    _check(content, "content")
    if output.shape != content.shape:
        raise ColorError(f"output and content differ in size: {tuple(output.shape)} vs {tuple(content.shape)}")
    uv = rgb_to_yuv(content)[:, 1:]
    return yuv_to_rgb(torch.cat([luminance(output), uv.to(output)], 1)).clamp(0, 1)


def _stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels P (3, N) float64, their mean μ (3, 1) and covariance Σ = (P−μ)(P−μ)ᵀ/N + 1e-5 I (3, 3)."""
    p = x.reshape(3, -1).double()
    mu = p.mean(1, keepdim=True)
    d = p - mu
    return p, mu, d @ d.T / p.shape[1] + _EPS * torch.eye(3, dtype=p.dtype, device=p.device)


def _powm(s: Tensor, power: float) -> Tensor:
    """S^power for a symmetric positive definite (3, 3) S, through its eigendecomposition."""
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(1e-12) ** power) @ v.T  # V diag(w^p) Vᵀ


def _linear_map(cov_s: Tensor, cov_t: Tensor, method: str) -> Tensor:
    """A (3, 3) with A Σ_s Aᵀ = Σ_t: chol L_t L_s⁻¹; pca Σ_t^½ Σ_s^-½; sym Σ_s^-½ (Σ_s^½ Σ_t Σ_s^½)^½ Σ_s^-½."""
    if method == "chol":
        eye = torch.eye(3, dtype=cov_s.dtype, device=cov_s.device)
        l_s_inv = torch.linalg.solve_triangular(torch.linalg.cholesky(cov_s), eye, upper=False)  # exactly lower
        return torch.linalg.cholesky(cov_t) @ l_s_inv
    if method == "pca":
        return _powm(cov_t, 0.5) @ _powm(cov_s, -0.5)
    if method == "sym":  # the Monge (optimal transport) map between the Gaussians: symmetric positive definite
        r, r_inv = _powm(cov_s, 0.5), _powm(cov_s, -0.5)
        return r_inv @ _powm(r @ cov_t @ r, 0.5) @ r_inv
    raise ColorError(f"unknown colour matching method {method!r}; choose one of: {', '.join(MATCH_METHODS)}")


def _match(source: Tensor, target: Tensor, method: str) -> Tensor:
    """Source pixels mapped to the target's mean/covariance, A (P_s − μ_s) + μ_t, unclipped: (3, N_s) float64."""
    p, mu_s, cov_s = _stats(source)
    _, mu_t, cov_t = _stats(target)
    return _linear_map(cov_s, cov_t, method) @ (p - mu_s) + mu_t


def match_colors(style: Tensor, content: Tensor, method: str = "pca") -> Tensor:
    """clip(A (x − μ_s) + μ_c, 0, 1) per style pixel x, with A Σ_s Aᵀ = Σ_c (docs/method.md §7; method chol, pca
    or sym). (1, 3, Hs, Ws), (1, 3, Hc, Wc) -> (1, 3, Hs, Ws)."""
    _check(style, "style")
    _check(content, "content")
    return _match(style, content, method).reshape(style.shape).clamp(0, 1).to(style.dtype)


def _quantiles(v: Tensor) -> Tensor:
    """(3, N) -> (3, _NODES): per row, the values at evenly spaced ranks of a strided sample of ≤ _SAMPLE pixels."""
    v = v[:, :: max(1, v.shape[1] // _SAMPLE)].sort(dim=1).values
    return v[:, torch.linspace(0, v.shape[1] - 1, _NODES, device=v.device).round().long()]


def _quantile_map(v: Tensor, target: Tensor) -> Tensor:
    """Per row, v (3, N) through a piecewise-linear F_target⁻¹ ∘ F_v with slope ≤ _MAX_SLOPE -> (3, N)."""
    xp, fp = _quantiles(v), _quantiles(target)  # (3, K) each
    # Nodes tied in xp (a flat colour region spans many ranks) share their mean target: the middle of the ranks.
    group = torch.cat([xp.new_zeros(3, 1), (xp.diff(dim=1) > 0).to(xp)], 1).cumsum(1).long()
    sums = fp.new_zeros(fp.shape).scatter_add(1, group, fp)
    fp = (sums / fp.new_zeros(fp.shape).scatter_add(1, group, torch.ones_like(fp))).gather(1, group)
    # Deviation from exact matching: a steeper map turns the 1/255 steps of smooth 8-bit gradients (skies) into
    # visible bands, so the rise between nodes is capped and the curve rebuilt around its median node.
    curve = torch.cat([fp.new_zeros(3, 1), torch.minimum(fp.diff(dim=1), _MAX_SLOPE * xp.diff(dim=1)).cumsum(1)], 1)
    fp = curve + (fp - curve)[:, _NODES // 2, None]
    slope = fp.diff(dim=1) / xp.diff(dim=1).clamp_min(1e-12)  # (3, K-1), 0 across tied nodes
    v = v.clamp(xp[:, :1], xp[:, -1:])  # flat outside the nodes
    i = (torch.searchsorted(xp, v.contiguous()) - 1).clamp(0, _NODES - 2)  # segment [xp_i, xp_i+1] holding v
    return fp.gather(1, i) + (v - xp.gather(1, i)) * slope.gather(1, i)


def palette_only(content: Tensor, style: Tensor, iters: int = 2) -> Tensor:
    """The content recoloured with the style's colours, no texture: clip(f(x), 0, 1) per content pixel x, with f =
    sym Monge map, `iters` passes of slope-capped quantile matching along 3 orthogonal axes (the style's principal
    axes, then seeded random rotations: sliced optimal transport), sym Monge map again. (1, 3, H, W) -> same.

    Mean/covariance matching alone (iters=0) leaves the style's multimodal palette as one Gaussian blend; two
    passes halve the sliced Wasserstein distance to it on the samples. The slope caps compound over passes,
    and at four passes 1024 px skies showed bands."""
    _check(content, "content")
    _check(style, "style")
    p = _match(content, style, "sym")  # (3, N)
    q, _, cov_s = _stats(style)
    q = q[:, :: max(1, q.shape[1] // _SAMPLE)]  # only its quantiles are used
    gen = torch.Generator().manual_seed(0)  # fixed rotations: the same inputs give the same picture
    bases = [torch.linalg.eigh(cov_s.cpu())[1]]
    bases += [torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0] for _ in range(iters - 1)]
    for r in bases[:iters]:
        r = r.to(p.device)
        p = r @ _quantile_map(r.T @ p, r.T @ q)  # matched coordinates along r's three columns, rotated back
    # The capped passes leave mean and covariance slightly off; the final linear map restores them exactly.
    # f depends on the colour alone: equal colours stay equal, so no texture or noise is added.
    return _match(p, style, "sym").reshape(content.shape).clamp(0, 1).to(content.dtype)
