"""Colour control (stylelab.engine.color): closed-form checks on seeded synthetic images, float64 where exact."""

import pytest
import torch

from stylelab.engine import color
from stylelab.image import to_tensor

F64 = torch.float64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rand(h=12, w=16, seed=0, lo=0.0, hi=1.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(1, 3, h, w, generator=g, dtype=F64)).to(dtype)


def correlated(seed, mix, centre, h=24, w=32):
    """Uniform noise mixed by `mix` (3, 3) around `centre`: a colour cloud with a chosen covariance, no clipping."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(3, h * w, generator=g, dtype=F64) * 2 - 1
    return (torch.tensor(mix, dtype=F64) @ z + torch.tensor(centre, dtype=F64)[:, None]).reshape(1, 3, h, w)


def mean_cov(x):
    p = x.reshape(3, -1).double()
    d = p - p.mean(1, keepdim=True)
    return p.mean(1), d @ d.T / p.shape[1]


def corr(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def test_yuv_matches_method_rows_and_round_trips_exactly():
    primaries = torch.eye(3, dtype=F64).reshape(1, 3, 1, 3)  # three pixels: pure R, G, B
    expected = torch.tensor([[0.299, 0.587, 0.114], [-0.147, -0.288, 0.436], [0.615, -0.515, -0.100]], dtype=F64)
    assert torch.allclose(color.rgb_to_yuv(primaries)[0, :, 0, :], expected, atol=1e-15)  # column j: primary j
    x = rand(seed=1)
    assert torch.allclose(color.yuv_to_rgb(color.rgb_to_yuv(x)), x, atol=1e-12, rtol=0)
    yuv = color.rgb_to_yuv(x)
    assert torch.allclose(color.rgb_to_yuv(color.yuv_to_rgb(yuv)), yuv, atol=1e-12, rtol=0)


def test_luminance_is_the_y_row_and_exact_on_grey():
    x = rand(seed=2)
    y = color.luminance(x)
    assert y.shape == (1, 1, 12, 16)
    assert torch.allclose(y, 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:], atol=1e-15)
    grey = x[:, :1].repeat(1, 3, 1, 1)
    assert torch.allclose(color.luminance(grey), x[:, :1], atol=1e-15)


@pytest.mark.parametrize("grey", [True, False])
def test_restore_color_takes_luminance_from_output_and_chroma_from_content(grey):
    content, output = rand(seed=3), rand(seed=4)
    if grey:
        output = output[:, :1].repeat(1, 3, 1, 1)
    out = color.restore_color(output, content)
    want = torch.cat([color.luminance(output), color.rgb_to_yuv(content)[:, 1:]], 1)
    unclipped = ((color.yuv_to_rgb(want) >= 0) & (color.yuv_to_rgb(want) <= 1)).all(1)[0]  # (H, W)
    assert 0 < unclipped.sum() < unclipped.numel()  # full-range colours: both cases occur
    got = color.rgb_to_yuv(out)[0][:, unclipped]
    assert torch.allclose(got, want[0][:, unclipped], atol=1e-6 if grey else 1e-12, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


def test_restore_color_of_content_onto_itself_is_identity():
    x = rand(seed=5, dtype=torch.float32)
    assert torch.allclose(color.restore_color(x, x), x, atol=1e-6)


def test_luminance_only_gives_greys_with_content_mean_and_std():
    content = rand(seed=6, lo=0.3, hi=0.7)  # narrow luminance range: the matched style does not clip
    style = rand(20, 10, seed=7, lo=0.0, hi=0.5) ** 2  # darker, skewed, another size
    c_grey, s_grey = color.luminance_only(content, style)
    assert c_grey.shape == content.shape and s_grey.shape == style.shape
    for g in (c_grey, s_grey):
        assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 0], g[:, 2])
    assert torch.allclose(c_grey[:, :1], color.luminance(content), atol=1e-12)
    yc, ys = c_grey[:, 0], s_grey[:, 0]
    assert 0 < ys.min() and ys.max() < 1
    assert abs(ys.mean() - yc.mean()) < 1e-4 and abs(ys.std(correction=0) - yc.std(correction=0)) < 1e-4
    assert corr(ys, color.luminance(style)) > 1 - 1e-9  # an affine map of the style's own luminance


def test_luminance_only_with_flat_style_gives_the_content_mean():
    content, style = rand(seed=8), torch.full((1, 3, 4, 4), 0.2, dtype=F64)
    _, s_grey = color.luminance_only(content, style)
    assert torch.allclose(s_grey, color.luminance(content).mean().expand_as(s_grey), atol=1e-12)


@pytest.mark.parametrize("method", color.MATCH_METHODS)
def test_match_colors_gives_content_mean_and_covariance(method):
    style = correlated(10, [[0.10, 0.02, 0.0], [0.03, 0.06, 0.01], [0.0, 0.04, 0.05]], [0.3, 0.4, 0.6])
    content = correlated(11, [[0.04, -0.03, 0.02], [0.0, 0.08, 0.0], [0.05, 0.0, 0.03]], [0.6, 0.5, 0.4], 20, 18)
    cov_s = color._stats(style)[2]
    mu_c, cov_c_raw = mean_cov(content)
    a = color._linear_map(cov_s, color._stats(content)[2], method)
    raw = color._match(style, content, method)
    assert 0 < raw.min() and raw.max() < 1  # no clipping, so the output is the linear map itself
    out = color.match_colors(style, content, method)
    assert out.shape == style.shape and out.dtype == F64
    mu_o, cov_o = mean_cov(out)
    assert torch.allclose(mu_o, mu_c, atol=1e-12)
    # Σ += εI on both sides (docs/method.md §7): A(Σ_s+εI)Aᵀ = Σ_c+εI exactly, so cov(out) = Σ_c + ε(I − AAᵀ)
    eps_eye = 1e-5 * torch.eye(3, dtype=F64)
    assert torch.allclose(cov_o + 1e-5 * a @ a.T, cov_c_raw + eps_eye, atol=1e-12)
    assert torch.allclose(cov_o, cov_c_raw, atol=1e-4)
    if method == "chol":
        assert torch.equal(torch.triu(a, 1), torch.zeros_like(a))
    if method == "sym":
        assert torch.allclose(a, a.T, atol=1e-12) and torch.linalg.eigvalsh(a).min() > 0


def test_sym_is_the_cheapest_linear_transport():
    style = correlated(12, [[0.10, 0.05, 0.0], [0.0, 0.06, 0.03], [0.02, 0.0, 0.07]], [0.3, 0.4, 0.5])
    content = correlated(13, [[0.03, 0.0, 0.06], [0.07, 0.02, 0.0], [0.0, 0.05, 0.02]], [0.5, 0.5, 0.5])
    cost = {m: float(((color._match(style, content, m) - style.reshape(3, -1)) ** 2).sum())
            for m in color.MATCH_METHODS}
    assert cost["sym"] < cost["pca"] and cost["sym"] < cost["chol"]


def test_match_colors_rejects_unknown_method():
    with pytest.raises(ValueError, match="chol, pca, sym"):
        color.match_colors(rand(), rand(), "lab")


def test_quantile_map_matches_marginals_and_caps_the_slope():
    v = rand(50, 100, seed=20).reshape(3, -1)
    assert torch.allclose(color._quantile_map(v, 1.5 * v + 0.1), 1.5 * v + 0.1, atol=1e-12)  # slope 1.5: exact
    tight = 0.5 + 0.01 * v  # spreading this onto [0, 1] would need slope 100
    order = tight.argsort(dim=1)
    dv, df = (x.gather(1, order).diff(dim=1) for x in (tight, color._quantile_map(tight, v)))
    assert (df >= 0).all() and (df <= color._MAX_SLOPE * dv + 1e-12).all()


def test_quantile_map_sends_a_flat_region_to_the_middle_of_its_ranks(monkeypatch):
    monkeypatch.setattr(color, "_MAX_SLOPE", 1e6)  # uncapped: exact histogram matching
    v = torch.cat([torch.full((3, 500), 0.3, dtype=F64), 0.3 + rand(10, 50, seed=21).reshape(3, -1)[:, :500]], 1)
    target = torch.linspace(0, 1, 1000, dtype=F64).expand(3, -1)  # the flat half holds ranks 0..0.5 of it
    assert torch.allclose(color._quantile_map(v, target)[:, :500], torch.tensor(0.25, dtype=F64), atol=0.01)


def test_palette_only_takes_the_style_palette_and_keeps_the_structure(content_image, style_image):
    content, style = to_tensor(content_image), to_tensor(style_image)
    out = color.palette_only(content, style)
    assert out.shape == content.shape and out.dtype == torch.float32
    (mu_o, cov_o), (mu_s, cov_s) = mean_cov(out), mean_cov(style)
    assert (mu_o - mu_s).abs().max() < 0.02
    assert (cov_o - cov_s).norm() < 0.1 * cov_s.norm()
    assert corr(color.luminance(out), color.luminance(content)) > 0.9
    # the quantile passes beat mean/covariance matching alone at matching the style's per-channel histograms
    qs = torch.linspace(0, 1, 101, dtype=F64)
    marginals = [x.reshape(3, -1).double().quantile(qs, dim=1) for x in (style, out, color.palette_only(
        content, style, iters=0))]
    assert (marginals[1] - marginals[0]).abs().mean() < 0.7 * (marginals[2] - marginals[0]).abs().mean()
    assert torch.equal(out, color.palette_only(content, style))  # deterministic


def test_palette_only_is_a_function_of_colour_and_the_identity_on_its_own_style(content_image, style_image):
    content = to_tensor(content_image).double()
    out = color.palette_only(content, to_tensor(style_image)).reshape(3, -1).T  # (N, 3)
    colours, group = content.reshape(3, -1).T.unique(dim=0, return_inverse=True)
    assert len(colours) < len(group) / 4  # many repeated colours to test on
    index = group[:, None].expand(-1, 3)
    lo, hi = (torch.zeros_like(colours).scatter_reduce(0, index, out, r, include_self=False) for r in ("amin", "amax"))
    assert torch.equal(lo, hi)  # equal input colours give equal output colours: no texture, no noise
    assert torch.allclose(color.palette_only(content, content), content, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dtype_and_device_are_kept(dtype, device):
    c, s = rand(8, 8, seed=14, dtype=dtype).to(device), rand(6, 10, seed=15, dtype=dtype).to(device)
    results = [color.rgb_to_yuv(c), color.yuv_to_rgb(c), color.luminance(c), *color.luminance_only(c, s),
               color.restore_color(rand(8, 8, seed=16, dtype=dtype).to(device), c), color.match_colors(s, c, "sym"),
               color.palette_only(c, s)]
    for r in results:
        assert r.dtype == dtype and r.device.type == device


@pytest.mark.parametrize("bad", [torch.rand(3, 4, 4), torch.rand(1, 4, 4, 4), torch.rand(2, 3, 4, 4),
                                 torch.rand(1, 3, 0, 4), torch.ones(1, 3, 4, 4, dtype=torch.uint8), "image.png"])
def test_bad_images_are_rejected_with_the_expected_shape(bad):
    for call in (lambda: color.luminance(bad), lambda: color.match_colors(rand(), bad),
                 lambda: color.palette_only(bad, rand()), lambda: color.luminance_only(rand(), bad)):
        with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
            call()


def test_restore_color_rejects_different_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        color.restore_color(rand(8, 8), rand(8, 9))
