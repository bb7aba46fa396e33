"""Closed-form checks of the loss functions (float64 where the claim is exact)."""

import pytest
import torch

from stylelab.losses.base import StyleLoss, flatten, linear_blend
from stylelab.losses.content import content_loss, tv_loss
from stylelab.losses.mmd import _gaussian_mmd
from stylelab.losses.moments import (
    BN_EPS,
    bn_distance,
    bn_stats,
    channel_mean,
    gram,
    gram_distance,
    mean_distance,
    self_product,
    w2_blend,
    w2_stats,
)
from stylelab.losses.spec import STYLE_LOSSES, loss_factory, parse_style_losses, style_loss
from stylelab.losses.transport import quantiles, resample_sorted


def mmd2_biased(x: torch.Tensor, y: torch.Tensor, kernel) -> torch.Tensor:
    """Explicit pairwise biased MMD² (V-statistic) between the columns of x (C, Mx) and y (C, My)."""
    kxx, kyy, kxy = kernel(x.T @ x), kernel(y.T @ y), kernel(x.T @ y)  # kernels of inner products
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def features(c: int, m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(c, m, generator=g, dtype=torch.float64))  # non-negative, like ReLU outputs


def test_gram_is_second_moment():
    x = features(5, 37, 0)
    explicit = sum(torch.outer(x[:, i], x[:, i]) for i in range(x.shape[1])) / x.shape[1]
    torch.testing.assert_close(gram(x), explicit, rtol=1e-12, atol=0)


def test_gram_distance_equals_quadratic_kernel_mmd_constant_one():
    # docs/method.md §3.2, §4: ||XXᵀ/Mx − YYᵀ/My||²_F == MMD_b² with k(x,y) = (xᵀy)², also for Mx != My.
    for c, mx, my in ((3, 7, 7), (16, 50, 50), (64, 400, 400), (16, 300, 517)):
        x, y = features(c, mx, 1), features(c, my, 2)
        mmd = mmd2_biased(x, y, lambda k: k**2)
        assert abs(gram_distance(x, gram(y)) / mmd - 1) < 1e-10


def test_raw_gram_constant_is_m_squared_and_gatys_constant_is_4c2():
    c, m = 16, 50
    x, y = features(c, m, 3), features(c, m, 4)
    mmd = mmd2_biased(x, y, lambda k: k**2)
    raw = ((x @ x.T - y @ y.T) ** 2).sum()
    assert abs(raw / (m**2 * mmd) - 1) < 1e-10
    gatys = raw / (4 * c**2 * m**2)  # E_l of Gatys et al. 2016
    assert abs(gatys * 4 * c**2 / mmd - 1) < 1e-10


def test_gram_identity_fails_for_a_wrong_constant():
    # Guard: the check above can fail. With the raw Gram (no 1/M) the constant is M², not 1.
    x, y = features(8, 30, 5), features(8, 30, 6)
    mmd = mmd2_biased(x, y, lambda k: k**2)
    assert abs(((x @ x.T - y @ y.T) ** 2).sum() / mmd - 1) > 1.0


def test_gram_invariant_to_shuffling_positions():
    x = features(12, 90, 7)
    perm = torch.randperm(90, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gram(x[:, perm]), gram(x), rtol=1e-12, atol=1e-14)
    y = features(12, 60, 8)
    torch.testing.assert_close(gram_distance(x[:, perm], gram(y)), gram_distance(x, gram(y)), rtol=1e-12, atol=0)


def test_gram_distance_gradcheck():
    x, y = features(4, 9, 9).requires_grad_(True), features(4, 6, 10)
    assert torch.autograd.gradcheck(lambda a: gram_distance(a, gram(y)), (x,))


def test_self_product_value_and_gradient_equal_plain_autograd():
    """A Aᵀ differentiated through one operand: same value bit for bit, same gradient for a non-symmetric Γ."""
    a = features(6, 40, 11).requires_grad_(True)
    weight = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(12))  # not symmetric
    fast, plain = self_product(a), a @ a.T
    assert torch.equal(fast, plain)
    (g_fast,) = torch.autograd.grad((weight * fast).sum(), a)
    (g_plain,) = torch.autograd.grad((weight * plain).sum(), a)
    torch.testing.assert_close(g_fast, g_plain, rtol=1e-12, atol=1e-14)
    leaf = a[:, :9].detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: (weight * self_product(t)).sum(), (leaf,))


def test_gram_is_float32_for_half_features():
    act = torch.rand(1, 8, 5, 5).half()
    assert flatten(act).dtype == torch.float32
    assert gram(flatten(act)).dtype == torch.float32


def test_registry_entries_are_stats_loss_pairs_zero_at_target():
    x = features(6, 40, 11)
    for name in STYLE_LOSSES:
        entry = loss_factory(name)()
        value = entry.loss(x, entry.blend([entry.stats(x)], [1.0]))  # targets always go through blend
        assert abs(float(value)) < 1e-12, name


def test_linear_blend_is_the_mixture_gram():
    # The Gram of a pooled sample set with multiplicities ∝ π equals Σ π_k G_k (docs/method.md §8).
    a, b = features(5, 40, 12), features(5, 40, 13)
    pooled = torch.cat([a, a, a, b], dim=1)  # π = (3/4, 1/4)
    torch.testing.assert_close(linear_blend([gram(a), gram(b)], [0.75, 0.25]), gram(pooled), rtol=1e-12, atol=1e-14)
    pair = linear_blend([(a, b), (b, a)], [0.5, 0.5])
    torch.testing.assert_close(pair[0], (a + b) / 2)


def test_content_loss_normalised():
    target = torch.rand(1, 4, 6, 6) + 0.1
    power = (target**2).mean()
    assert content_loss(target, target, power) == 0
    torch.testing.assert_close(content_loss(torch.zeros_like(target), target, power), torch.tensor(1.0))


def test_tv_loss_values():
    assert tv_loss(torch.full((1, 3, 8, 8), 0.3)) == 0
    step = torch.zeros(1, 3, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: each row has one jump of 1 among 3 horizontal pairs
    torch.testing.assert_close(tv_loss(step), torch.tensor(1 / 3))


# ------------------------------------------------------------------------------------ first-order family


def test_linear_mmd_identity_constant_one():
    # docs/method.md §3.4, §4: MMD_b²[xᵀy] == ||μ_X − μ_Y||², equal and unequal sizes.
    for c, mx, my in ((8, 40, 40), (16, 300, 517)):
        x, y = features(c, mx, 20), features(c, my, 21)
        mmd = mmd2_biased(x, y, lambda k: k)
        assert abs(mean_distance(x, channel_mean(y)) / mmd - 1) < 1e-10


def test_second_moment_is_covariance_plus_mean_outer():
    x = features(6, 70, 22)
    mu = x.mean(dim=1)
    cov = (x - mu[:, None]) @ (x - mu[:, None]).T / x.shape[1]
    torch.testing.assert_close(gram(x), cov + torch.outer(mu, mu), rtol=1e-12, atol=1e-14)


def test_bn_distance_closed_form():
    x, y = features(5, 50, 23), features(5, 80, 24)
    expected = ((x.mean(1) - y.mean(1)) ** 2 + ((x.var(1, unbiased=False) + BN_EPS).sqrt()
                                              - (y.var(1, unbiased=False) + BN_EPS).sqrt()) ** 2).mean()
    torch.testing.assert_close(bn_distance(x, bn_stats(y)), expected, rtol=1e-10, atol=0)


def test_bn_blend_is_mixture_moments():
    # Blending (μ, E[f²]) linearly gives the mean and std of the pooled mixture (docs/method.md §8).
    a, b = features(4, 60, 25), features(4, 60, 26) * 3
    pooled = torch.cat([a, b, b, b], dim=1)  # π = (1/4, 3/4)
    blended = style_loss("bn").blend([bn_stats(a), bn_stats(b)], [0.25, 0.75])
    assert abs(float(bn_distance(pooled, blended))) < 1e-12


def test_bn_gradient_finite_for_dead_channel():
    x = features(3, 20, 27)
    x[1] = 0.0  # a channel that is all zero after ReLU: σ = 0
    x.requires_grad_(True)
    bn_distance(x, bn_stats(features(3, 20, 28))).backward()
    assert torch.isfinite(x.grad).all()


def test_first_order_losses_invariant_to_shuffling():
    x, y = features(10, 80, 29), features(10, 50, 30)
    perm = torch.randperm(80, generator=torch.Generator().manual_seed(1))
    for name in ("mmd-linear", "bn"):
        loss = style_loss(name)
        torch.testing.assert_close(loss.loss(x[:, perm], loss.stats(y)), loss.loss(x, loss.stats(y)),
                                   rtol=1e-12, atol=1e-15)


def test_first_order_losses_gradcheck():
    y = features(4, 6, 31)
    for name in ("mmd-linear", "bn"):
        loss = style_loss(name)
        x = (features(4, 9, 32) + 0.1).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, loss=loss: loss.loss(a, loss.stats(y)), (x,)), name


def test_unknown_style_loss_lists_choices():
    with pytest.raises(ValueError, match="choose one of: ") as err:
        style_loss("gaussian-fancy")
    assert all(name in str(err.value) for name in STYLE_LOSSES)
    with pytest.raises(ValueError, match="no parameter 'q'; its parameters: c, degree"):
        style_loss("mmd-poly", q=1)


def test_poly_mmd_identity():
    # docs/method.md §3.3, §4: MMD_b²[(xᵀy + c)²] == ||ΔG||² + 2c||Δμ||², also for unequal sizes.
    for c in (0.0, 1.0, 10.0):
        x, y = features(8, 60, 40), features(8, 90, 41)
        mmd = mmd2_biased(x, y, lambda k, c=c: (k + c) ** 2)
        loss = style_loss("mmd-poly", c=c)
        assert abs(loss.loss(x, loss.stats(y)) / mmd - 1) < 1e-10


def test_parse_style_losses():
    terms = parse_style_losses("gram:1, mmd-poly(c=2.5):3")
    assert [(t.label, t.weight) for t in terms] == [("gram", 0.25), ("mmd-poly(c=2.5)", 0.75)]
    assert terms[1].build().loss is not None
    for bad in ("gram:x", "nope", "mmd-poly(c)", "gram:0", "gram,gram", "gram:-1", "gram:nan", "mmd-poly(c=-1)", "",
                "mmd-poly(c=oops)", "mmd-poly(degree=2.5)", "mmd-poly(c=inf)", "mmd-poly(degree=0)"):
        with pytest.raises(ValueError):
            parse_style_losses(bad)


# ------------------------------------------------------------------------------------ W2, sorting, Gaussian MMD


def _sqrtm(a: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def test_w2_matches_reference_formula():
    x, y = features(6, 80, 50), features(6, 120, 51) * 2
    mx, my = x.mean(1), y.mean(1)
    cx = (x - mx[:, None]) @ (x - mx[:, None]).T / 80
    cy = (y - my[:, None]) @ (y - my[:, None]).T / 120
    root = _sqrtm(cy)
    expected = ((mx - my) ** 2).sum() + torch.trace(cx + cy - 2 * _sqrtm(root @ cx @ root))
    loss = style_loss("w2")
    torch.testing.assert_close(loss.loss(x, loss.stats(y)), expected, rtol=1e-8, atol=1e-10)
    # symmetric, as a distance between two Gaussians must be
    torch.testing.assert_close(loss.loss(x, loss.stats(y)), loss.loss(y, loss.stats(x)), rtol=1e-6, atol=1e-10)


def test_w2_blend_is_mixture_gaussian():
    a, b = features(4, 60, 52), features(4, 60, 53) + 1
    pooled = torch.cat([a, b, b, b], dim=1)
    mu, cov, _ = w2_blend([w2_stats(a), w2_stats(b)], [0.25, 0.75])
    mu_p, cov_p, _ = w2_stats(pooled)
    torch.testing.assert_close(mu, mu_p)
    torch.testing.assert_close(cov, cov_p, rtol=1e-10, atol=1e-12)


def test_w2_gradient_finite_with_degenerate_covariance():
    x = features(5, 30, 54)
    x[2:] = 0.0  # three dead channels: repeated zero eigenvalues
    x.requires_grad_(True)
    loss = style_loss("w2")
    loss.loss(x, loss.stats(features(5, 30, 55))).backward()
    assert torch.isfinite(x.grad).all()


def test_one_dimensional_sliced_wasserstein_and_histogram_are_sorted_matching():
    x, y = features(1, 50, 56) + 0.01, features(1, 50, 57) * 3
    exact = ((x.sort(dim=1).values - y.sort(dim=1).values) ** 2).mean()
    for name in ("sliced-wasserstein", "histogram"):
        loss = style_loss(name)
        torch.testing.assert_close(loss.loss(x, loss.blend([loss.stats(y)], [1.0])), exact, rtol=1e-10, atol=0)


def test_unequal_sizes_by_interpolation():
    q = torch.arange(10, dtype=torch.float64)[None]  # sorted row
    torch.testing.assert_close(resample_sorted(q.repeat_interleave(2, dim=1), 10), q)  # duplicated target: exact
    x, y = features(3, 40, 58), features(3, 40, 59)
    loss = style_loss("histogram")
    doubled = torch.cat([y, y], dim=1)
    torch.testing.assert_close(loss.loss(x, loss.stats(doubled)), loss.loss(x, loss.stats(y)))


def test_rff_error_shrinks_with_more_features():
    x, y = features(8, 300, 60), features(8, 300, 61) * 1.5 + 0.2
    exact_gamma = style_loss("mmd-gaussian", estimator="sampled", samples=8192)  # >= M = 300: every position
    target = exact_gamma.blend([y], [1.0])
    exact = float(exact_gamma.loss(x, target))
    assert exact == pytest.approx(float(_gaussian_mmd(x, y, target[0][0])), rel=1e-12)
    errors = []
    for d in (16, 256, 4096):
        errs = []
        for seed in range(4):
            rff = style_loss("mmd-gaussian", estimator="rff", features=d, seed=seed)
            errs.append(abs(float(rff.loss(x, rff.blend([y], [1.0]))) - exact))
        errors.append(sum(errs) / len(errs))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1 * exact


def test_sampling_losses_fixed_without_resample_and_fresh_with_it():
    x, y = features(6, 500, 62), features(6, 400, 63)
    for name, params in (("sliced-wasserstein", {}), ("mmd-gaussian", {"estimator": "sampled", "samples": 50}),
                         ("mmd-gaussian", {"estimator": "rff", "features": 64})):
        fixed = style_loss(name, seed=1, **params)
        t = fixed.blend([y], [1.0])
        assert float(fixed.loss(x, t)) == float(fixed.loss(x, t)), name  # one objective (L-BFGS)
        again = style_loss(name, seed=1, **params)
        assert float(again.loss(x, again.blend([y], [1.0]))) == float(fixed.loss(x, t)), name  # same seed
        fresh = style_loss(name, seed=1, resample=True, **params)
        t2 = fresh.blend([y], [1.0])
        assert float(fresh.loss(x, t2)) != float(fresh.loss(x, t2)), name  # redrawn per step (Adam)


# Every registry entry that draws random numbers (directions, Fourier features, positions), with the sizes at
# which it samples: M = 600 positions > samples, so the sampled estimators really take subsets.
SAMPLING_LOSSES = [
    ("sliced-wasserstein", {}), ("sliced-wasserstein", {"directions": 3}), ("remd", {"samples": 200}),
    ("nn", {"samples": 200}),
    ("mmd-gaussian", {"estimator": "rff", "features": 256}), ("mmd-gaussian", {"estimator": "rff", "scales": 3}),
    ("mmd-gaussian", {"estimator": "sampled", "samples": 200}), ("mmd-poly", {"degree": 3, "samples": 200}),
]


@pytest.mark.parametrize("resample", [False, True])
@pytest.mark.parametrize("name, params", SAMPLING_LOSSES)
def test_sampling_losses_vanish_at_their_own_target_under_resampling(name, params, resample):
    """loss(Y, target(Y)) is 0 (exact estimators of the draw) or within the sampling error, which is far below
    the loss of another distribution, under fixed draws (L-BFGS) and per-call draws (Adam) alike."""
    y, other = features(6, 600, 70), features(6, 600, 71) * 1.5 + 0.2
    loss = style_loss(name, seed=3, resample=resample, **params)
    t = loss.blend([loss.stats(y)], [1.0])
    own = [float(loss.loss(y, t)) for _ in range(5)]
    far = [float(loss.loss(other, t)) for _ in range(5)]
    if params.get("estimator") == "sampled" or name in ("mmd-poly", "remd", "nn"):  # subsets: an estimator
        assert max(own) < 0.05 * min(far), (own, far)
    else:  # the same directions / features for both sides: the draw's distance of Y to itself is 0
        assert max(abs(v) for v in own) < 1e-9 * min(far), (own, far)


@pytest.mark.parametrize("name, params", [
    ("w2", {}), ("sliced-wasserstein", {}), ("histogram", {}),
    ("mmd-gaussian", {"estimator": "rff", "features": 256}), ("mmd-gaussian", {"estimator": "sampled"}),
])
def test_distribution_losses_invariant_to_shuffling_and_zero_at_target(name, params):
    x, y = features(6, 90, 64), features(6, 70, 65)
    perm = torch.randperm(90, generator=torch.Generator().manual_seed(2))
    loss = style_loss(name, **params)
    t = loss.blend([loss.stats(y)], [1.0])
    torch.testing.assert_close(loss.loss(x[:, perm], t), loss.loss(x, t), rtol=1e-9, atol=1e-12)
    assert abs(float(loss.loss(y, t))) < 1e-9


@pytest.mark.parametrize("name, params", [
    ("w2", {}), ("sliced-wasserstein", {}), ("histogram", {}),
    ("mmd-gaussian", {"estimator": "rff", "features": 32}), ("mmd-gaussian", {"estimator": "sampled"}),
])
def test_distribution_losses_gradcheck(name, params):
    y = features(4, 7, 66)
    loss = style_loss(name, **params)
    t = loss.blend([loss.stats(y)], [1.0])
    x = (torch.rand(4, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss.loss(a, t), (x,))


@pytest.mark.parametrize("degree", [1, 3])
def test_poly_mmd_other_degrees_match_explicit_pairwise(degree):
    x, y = features(5, 40, 70), features(5, 30, 71)  # fewer positions than `samples`: no subsampling
    loss = style_loss("mmd-poly", c=0.5, degree=degree)
    target = loss.blend([loss.stats(y)], [1.0])
    scale = float((y**2).sum(0).mean())
    expected = mmd2_biased(x, y, lambda k: (k / scale + 0.5) ** degree)
    torch.testing.assert_close(loss.loss(x, target), expected, rtol=1e-10, atol=1e-14)
    assert abs(float(loss.loss(y, target))) < 1e-12


def test_gram_and_pairwise_poly_mmd_same_values_and_gradients_through_conv_relu():
    """docs/method.md §4 (check 3): a Gram implementation and an explicit pairwise (xᵀy)² MMD give identical values and
    gradients w.r.t. the input image, through a conv+ReLU layer, with Mx != My."""
    g = torch.Generator().manual_seed(7)
    conv = torch.nn.Conv2d(3, 6, 3, padding=1).double()
    image = torch.rand(1, 3, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)  # Mx = 99
    style = torch.rand(1, 3, 6, 7, generator=g, dtype=torch.float64)  # My = 42
    feats = lambda im: flatten(torch.relu(conv(im)))  # noqa: E731
    y = feats(style).detach()
    via_gram = gram_distance(feats(image), gram(y))
    (grad_gram,) = torch.autograd.grad(via_gram, image)
    via_pairs = mmd2_biased(feats(image), y, lambda k: k**2)
    (grad_pairs,) = torch.autograd.grad(via_pairs, image)
    torch.testing.assert_close(via_gram, via_pairs, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_gram, grad_pairs, rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------------------------------ per-position weights (masks)

WEIGHTED = [
    ("gram", {}), ("mmd-poly", {"c": 1.0}), ("mmd-linear", {}), ("bn", {}), ("w2", {}), ("histogram", {}),
    ("sliced-wasserstein", {}), ("mmd-gaussian", {"estimator": "rff", "features": 64}),
    ("mmd-gaussian", {"estimator": "sampled"}),  # all positions (M < samples)
    ("mmd-poly", {"c": 0.5, "degree": 3, "samples": 12}),  # subsampled positions
    ("nn", {}), ("remd", {}), ("remd", {"moments": 0.0}),  # cosine distances to the style's vectors
]
MOMENTS = [("gram", {}), ("mmd-poly", {"c": 1.0}), ("mmd-linear", {}), ("bn", {}), ("w2", {})]  # weighted averages


def _close(a, b, rtol=1e-12, atol=1e-14):
    """assert_close through the tuples/lists/floats that stats and targets are made of."""
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for u, v in zip(a, b):
            _close(u, v, rtol, atol)
    else:
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=rtol, atol=atol)


def _target(loss, y, weights=None):
    return loss.blend([loss.stats(y) if weights is None else loss.stats(y, weights=weights)], [1.0])


def _weights(m: int, seed: int) -> torch.Tensor:
    """Uneven weights in [0, 2) with some exact zeros, like t² of a soft mask."""
    w = 2 * torch.rand(m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w[::5] = 0.0
    return w


def test_every_registry_loss_takes_weights_and_the_default_is_unweighted():
    assert all(loss_factory(name)().weighted for name in STYLE_LOSSES)
    assert style_loss("mmd-poly", degree=3).weighted
    assert not StyleLoss(stats=lambda x: x, loss=lambda x, t: (x - t).sum()).weighted  # opt-in for new losses


def test_guided_gram_is_the_masked_gram():
    # docs/method.md §9: G_r = (F ∘ T)(F ∘ T)ᵀ / Σ t² with weights t².
    x, t = features(5, 40, 80), torch.rand(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(gram(x, t**2), (x * t) @ (x * t).T / (t**2).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, params", WEIGHTED)
def test_uniform_weights_equal_no_weights(name, params):
    x, y = features(5, 40, 81), features(5, 30, 82)
    loss = style_loss(name, **params)
    ones_x, ones_y = torch.ones(40, dtype=torch.float64), torch.ones(30, dtype=torch.float64)
    expected = loss.loss(x, _target(loss, y))
    _close(loss.loss(x, _target(loss, y, ones_y), weights=ones_x), expected)
    _close(loss.loss(x, _target(loss, y), weights=ones_x), expected)  # weighted output, plain style
    _close(loss.loss(x, _target(loss, y, ones_y)), expected)  # plain output, weighted style
    if (name, params) in MOMENTS:
        _close(loss.stats(y, weights=ones_y), loss.stats(y))


@pytest.mark.parametrize("name, params", WEIGHTED)
def test_weights_are_scale_invariant(name, params):
    x, y = features(5, 40, 83), features(5, 30, 84)
    wx, wy = _weights(40, 1), _weights(30, 2)
    loss = style_loss(name, **params)
    _close(loss.loss(x, _target(loss, y, 7 * wy), weights=7 * wx), loss.loss(x, _target(loss, y, wy), weights=wx))


@pytest.mark.parametrize("name, params", WEIGHTED)
def test_zero_one_weights_select_positions(name, params):
    # The identity behind guided statistics: a 0/1 mask gives the statistics, value and gradient of its positions.
    x = torch.rand(5, 40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)  # no ties: one gradient
    y = features(5, 30, 86)
    sel_x = torch.rand(40, generator=torch.Generator().manual_seed(4)) < 0.5
    sel_y = torch.rand(30, generator=torch.Generator().manual_seed(5)) < 0.5
    loss = style_loss(name, **params)
    if (name, params) in MOMENTS:
        _close(_target(loss, y, sel_y.double()), _target(loss, y[:, sel_y]), atol=1e-12)
    if name == "histogram":  # sorted rows of the selected positions, each weighing 1/#selected
        values, mass = _target(loss, y, sel_y.double())
        _close(values, _target(loss, y[:, sel_y]), atol=0)
        _close(mass, torch.full_like(values, 1 / int(sel_y.sum())))
    masked = x.clone().requires_grad_(True)
    value = loss.loss(masked, _target(loss, y, sel_y.double()), weights=sel_x.double())
    (grad,) = torch.autograd.grad(value, masked)
    kept = x[:, sel_x].clone().requires_grad_(True)
    expected = loss.loss(kept, _target(loss, y[:, sel_y]))
    (grad_kept,) = torch.autograd.grad(expected, kept)
    _close(value, expected, atol=1e-12)
    assert not grad[:, ~sel_x].any()  # positions outside the mask get no gradient
    _close(grad[:, sel_x], grad_kept, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, params", MOMENTS)
def test_integer_weights_equal_repeated_positions(name, params):
    x, y = features(5, 30, 87), features(5, 25, 88)
    counts = torch.randint(0, 4, (30,), generator=torch.Generator().manual_seed(5))
    repeated = x.repeat_interleave(counts, dim=1)
    loss = style_loss(name, **params)
    _close(loss.stats(x, weights=counts.double()), loss.stats(repeated), rtol=1e-10, atol=1e-12)
    t = _target(loss, y)
    _close(loss.loss(x, t, weights=counts.double()), loss.loss(repeated, t), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, params", WEIGHTED)
def test_weighted_losses_gradcheck(name, params):
    loss = style_loss(name, **params)
    t = _target(loss, features(4, 7, 89), _weights(7, 6))
    x = (torch.rand(4, 9, generator=torch.Generator().manual_seed(7), dtype=torch.float64) + 0.1).requires_grad_(True)
    w = _weights(9, 8)
    assert torch.autograd.gradcheck(lambda a: loss.loss(a, t, weights=w), (x,))


@pytest.mark.parametrize("name, params", WEIGHTED)
def test_weighted_losses_zero_at_their_weighted_target(name, params):
    y, w = features(5, 30, 90), _weights(30, 9)
    params = {k: v for k, v in params.items() if k != "samples"}  # X and Y subsets differ: zero only for all of them
    loss = style_loss(name, **params)
    assert abs(float(loss.loss(y, _target(loss, y, w), weights=w))) < 1e-10


@pytest.mark.parametrize("name, params", WEIGHTED)
def test_invalid_weights_raise(name, params):
    x = features(4, 12, 91)
    loss = style_loss(name, **params)
    t = _target(loss, x)
    for bad, message in ((torch.zeros(12), "all zero"), (-torch.ones(12), ">= 0"), (torch.ones(11), "shape")):
        with pytest.raises(ValueError, match=message):
            loss.stats(x, weights=bad)
        with pytest.raises(ValueError, match=message):
            loss.loss(x, t, weights=bad)


@pytest.mark.parametrize("name, params", [(n, p) for n, p in WEIGHTED if (n, p) not in MOMENTS])
def test_blending_weighted_samples_is_the_exact_mixture(name, params):
    # Σ_k π_k Q_k of weighted samples = one sample holding every position with weight π_k w_k / Σ w_k
    # (docs/method.md §8).
    a, b, x = features(5, 40, 92), features(5, 30, 93) + 0.5, features(5, 50, 94)
    wa, wb = _weights(40, 10), _weights(30, 11)
    loss = style_loss(name, **params)
    mixed = loss.blend([loss.stats(a, weights=wa), loss.stats(b, weights=wb)], [0.75, 0.25])
    pooled = _target(loss, torch.cat([a, b], dim=1), torch.cat([0.75 * wa / wa.sum(), 0.25 * wb / wb.sum()]))
    _close(loss.loss(x, mixed), loss.loss(x, pooled), rtol=1e-10, atol=1e-13)


def test_rff_blend_of_weighted_samples_equals_repeated_positions():
    # π = (3/4, 1/4) of two equally weighted styles is the pooled sample with multiplicities 3:1.
    a, b = features(5, 40, 95), features(5, 40, 96) + 0.5
    ones = torch.ones(40, dtype=torch.float64)
    loss = style_loss("mmd-gaussian", estimator="rff", features=64)
    mixed = loss.blend([loss.stats(a, weights=ones), loss.stats(b, weights=ones)], [0.75, 0.25])
    repeated = _target(loss, torch.cat([a, a, a, b], dim=1))
    # The target is (bandwidths, pooled sample, mean features): the pooled samples differ in form (weighted vs
    # repeated columns); the bandwidths and kernel mean embeddings, what the loss compares with, are equal.
    _close((mixed[0], mixed[2]), (repeated[0], repeated[2]), rtol=1e-10, atol=1e-13)


def test_weighted_quantiles_closed_form():
    q = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([[0.75, 0.25]], dtype=torch.float64)  # masses centred at 0.375 and 0.875
    p = torch.tensor([0.1, 0.375, 0.625, 0.875, 0.99], dtype=torch.float64)
    torch.testing.assert_close(quantiles(q, p, w), torch.tensor([[0.0, 0.0, 0.5, 1.0, 1.0]], dtype=torch.float64))
    rows = features(3, 11, 97).sort(dim=1).values  # equal weights: the unweighted interpolation
    p = (torch.arange(17, dtype=torch.float64) + 0.5) / 17
    torch.testing.assert_close(quantiles(rows, p, torch.full_like(rows, 1 / 11)), resample_sorted(rows, 17))
    torch.testing.assert_close(quantiles(rows, p), resample_sorted(rows, 17))


# ------------------------------------------------------------------------------ parameter ranges


@pytest.mark.parametrize("spec, message", [
    ("sliced-wasserstein(directions=-5)", "directions must be in [0, 4096]"),
    ("sliced-wasserstein(directions=1e9)", "directions must be in [0, 4096]"),
    ("mmd-gaussian(features=1e8)", "features must be in [1, 8192]"),
    ("mmd-gaussian(features=0)", "features must be in [1, 8192]"),
    ("mmd-gaussian(estimator=sampled,samples=1)", "samples must be in [2, 8192]"),
    ("mmd-gaussian(scales=2)", "scales must be 1 or 3"),
    ("mmd-gaussian(estimator=exact)", "estimator must be rff or sampled"),
    ("mmd-poly(degree=3,samples=0)", "samples must be in [2, 8192]"),
    ("mmd-poly(degree=11)", "degree must be in [1, 10]"),
    ("mmd-poly(c=1e6)", "c must be in [0, 1000]"),
    ("nn(mix=1.5)", "mix must be in [0, 1]"),
    ("nn(reuse=-1)", "reuse must be in [0, 1000]"),
    ("nn(seed=3)", "has no parameter 'seed'"),
    ("gram(name=1)", "has no parameter 'name'"),
    ("nn(samples=1)", "samples must be in [2, 8192]"),
    ("remd(moments=-1)", "moments must be in [0, 1000]"),
    ("remd(style_samples=1e5)", "style_samples must be in [2, 8192]"),
])
def test_loss_parameters_out_of_range_name_the_range(spec, message):
    with pytest.raises(ValueError) as info:
        parse_style_losses(spec)
    assert message in str(info.value) and spec.split("(")[0] in str(info.value)


def test_sampled_poly_mmd_at_the_smallest_sample_count_is_finite():
    x, y = torch.randn(4, 30, dtype=torch.float64), torch.randn(4, 40, dtype=torch.float64)
    loss = style_loss("mmd-poly", degree=3, samples=2)
    assert torch.isfinite(loss.loss(x, loss.blend([loss.stats(y)], [1.0])))


@pytest.mark.parametrize("name", ["sliced-wasserstein", "mmd-gaussian"])
def test_seeds_wider_than_64_bits_draw(name):
    """The optimiser passes Config.seed (up to 2**64 - 1) into the draws, which mix it with a per-key offset."""
    x, y = torch.randn(4, 30), torch.randn(4, 40)
    for seed in (2**64 - 1, 2**70):
        loss = style_loss(name, seed=seed)
        assert torch.isfinite(loss.loss(x, loss.blend([loss.stats(y)], [1.0])))
