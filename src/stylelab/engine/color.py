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
    "oklab_to_rgb",
    "palette_only",
    "recolor",
    "restore_color",
    "rgb_to_oklab",
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


# OkLab (Ottosson 2020): linear sRGB -> LMS -> cube root -> Lab. A perceptual space: equal steps look equally large.
_RGB2LMS = torch.tensor([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                         [0.0883024619, 0.2817188376, 0.6299787005]], dtype=torch.float64)
_LMS2LAB = torch.tensor([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
                         [0.0259040371, 0.7827717662, -0.8086757660]], dtype=torch.float64)
_RECOLOR_ITERS = 5  # passes of the cross-bilateral filter that aligns the colours with the output's strokes
_RECOLOR_EDGE = 10.0  # its weight exp(−_RECOLOR_EDGE·|ΔL|) between neighbours of lightness L


def rgb_to_oklab(x: Tensor) -> Tensor:
    """sRGB in [0,1] -> OkLab (L in [0,1], a and b about ±0.4). (1, 3, H, W) -> same, float64."""
    _check(x, "image")
    c = x.double()
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lms = _apply(_RGB2LMS, linear)
    return _apply(_LMS2LAB, lms.sign() * lms.abs() ** (1 / 3))


def oklab_to_rgb(x: Tensor) -> Tensor:
    """Exact inverse of rgb_to_oklab, clipped to [0,1]. (1, 3, H, W) -> same, float64."""
    _check(x, "OkLab image")
    lms = _apply(torch.linalg.inv(_LMS2LAB), x.double()) ** 3
    linear = _apply(torch.linalg.inv(_RGB2LMS), lms).clamp(0, 1)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055).clamp(0, 1)


def _cross_bilateral(values: Tensor, guide: Tensor, iters: int) -> Tensor:
    """Smooth `values` (1, K, H, W) over 3x3 neighbourhoods with weights exp(−_RECOLOR_EDGE·|Δguide|), `iters` times:
    colours spread within regions of even lightness and stop at its edges."""
    h, w = guide.shape[-2:]
    g = torch.nn.functional.pad(guide, (1, 1, 1, 1), mode="replicate")
    weights = [torch.exp(-_RECOLOR_EDGE * (g[..., dy:dy + h, dx:dx + w] - guide).abs())
               for dy in range(3) for dx in range(3)]
    total = torch.stack(weights).sum(0)
    for _ in range(iters):
        v = torch.nn.functional.pad(values, (1, 1, 1, 1), mode="replicate")
        values = sum((wt * v[..., dy:dy + h, dx:dx + w] for wt, (dy, dx) in
                      zip(weights, [(dy, dx) for dy in range(3) for dx in range(3)])), start=torch.zeros_like(values))
        values = values / total
    return values


def recolor(output: Tensor, content: Tensor, style: Tensor) -> Tensor:
    """NNST's colour step: the output's lightness with the content's colours (a, b in OkLab) mapped onto the
    style's (mean and covariance), both kept within the style's range, the colours then aligned with the output's
    edges by a cross-bilateral filter. Where the style has hardly any colour (its a, b spread < 0.01), the output's
    own Lab is mapped onto the style's instead. (1, 3, H, W) output and content, same H×W; any style -> (1, 3, H, W)."""
    _check(output, "output")
    _check(content, "content")
    _check(style, "style")
    if output.shape != content.shape:
        raise ColorError(f"output and content differ in size: {tuple(output.shape)} vs {tuple(content.shape)}")
    lab_o, lab_c, lab_s = rgb_to_oklab(output), rgb_to_oklab(content.to(output)), rgb_to_oklab(style.to(output))
    s = lab_s.reshape(3, -1)
    lo, hi = s.min(dim=1).values[None, :, None, None], s.max(dim=1).values[None, :, None, None]
    if float(s[1:].std(dim=1).max()) < 0.01:  # a grey style: no palette to map the content's colours onto
        lab = _match(lab_o, lab_s, "pca").reshape(output.shape)
    else:
        ab = _match2(lab_c[:, 1:].reshape(2, -1), s[1:]).reshape(1, 2, *output.shape[-2:])
        light = lab_o[:, :1].clamp(lo[:, :1], hi[:, :1])
        ab = _cross_bilateral(ab.clamp(lo[:, 1:], hi[:, 1:]), light, _RECOLOR_ITERS)
        lab = torch.cat([light, ab], dim=1)
    return oklab_to_rgb(lab.clamp(lo, hi)).to(output.dtype)


def _match2(p: Tensor, q: Tensor) -> Tensor:
    """Rows P (K, N) mapped to the mean and covariance of Q (K, M): Σ_q^½ Σ_p^-½ (P − μ_p) + μ_q, float64."""
    p, q = p.double(), q.double()
    mu_p, mu_q = p.mean(1, keepdim=True), q.mean(1, keepdim=True)
    eye = _EPS * torch.eye(p.shape[0], dtype=p.dtype, device=p.device)
    cov_p = (p - mu_p) @ (p - mu_p).T / p.shape[1] + eye
    cov_q = (q - mu_q) @ (q - mu_q).T / q.shape[1] + eye
    return _powm(cov_q, 0.5) @ _powm(cov_p, -0.5) @ (p - mu_p) + mu_q
