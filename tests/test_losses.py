"""Closed-form checks of the loss functions (float64 where the claim is exact)."""

import torch

from stylelab.losses import STYLE_LOSSES, content_loss, flatten, gram, gram_distance, linear_blend, tv_loss


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
    # METHOD.md §6.1: ||XXᵀ/Mx − YYᵀ/My||²_F == MMD_b² with k(x,y) = (xᵀy)², also for Mx != My.
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


def test_gram_is_float32_for_half_features():
    act = torch.rand(1, 8, 5, 5).half()
    assert flatten(act).dtype == torch.float32
    assert gram(flatten(act)).dtype == torch.float32


def test_registry_entries_are_stats_loss_pairs_zero_at_target():
    x = features(6, 40, 11)
    for name, factory in STYLE_LOSSES.items():
        entry = factory()
        value = entry.loss(x, entry.stats(x))
        assert abs(float(value)) < 1e-12, name


def test_linear_blend_is_the_mixture_gram():
    # The Gram of a pooled sample set with multiplicities ∝ π equals Σ π_k G_k (METHOD.md §5.2).
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

from stylelab.losses import BN_EPS, bn_distance, bn_stats, channel_mean, mean_distance, style_loss  # noqa: E402


def test_linear_mmd_identity_constant_one():
    # METHOD.md §6.2: MMD_b²[xᵀy] == ||μ_X − μ_Y||², equal and unequal sizes.
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
    # Blending (μ, E[f²]) linearly gives the mean and std of the pooled mixture (METHOD.md §5.2).
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
        assert torch.autograd.gradcheck(lambda a: loss.loss(a, loss.stats(y)), (x,)), name


def test_unknown_style_loss_lists_choices():
    import pytest

    with pytest.raises(ValueError, match="choose one of: ") as err:
        style_loss("gaussian-fancy")
    assert all(name in str(err.value) for name in STYLE_LOSSES)
    with pytest.raises(ValueError, match="no parameter 'q'; its parameters: c, degree"):
        style_loss("mmd-poly", q=1)


def test_poly_mmd_identity():
    # METHOD.md §6.2: MMD_b²[(xᵀy + c)²] == ||ΔG||² + 2c||Δμ||², also for unequal sizes.
    for c in (0.0, 1.0, 10.0):
        x, y = features(8, 60, 40), features(8, 90, 41)
        mmd = mmd2_biased(x, y, lambda k: (k + c) ** 2)
        loss = style_loss("mmd-poly", c=c)
        assert abs(loss.loss(x, loss.stats(y)) / mmd - 1) < 1e-10


def test_parse_style_losses():
    import pytest

    from stylelab.losses import parse_style_losses

    terms = parse_style_losses("gram:1, mmd-poly(c=2.5):3")
    assert [(t.label, t.weight) for t in terms] == [("gram", 0.25), ("mmd-poly(c=2.5)", 0.75)]
    assert terms[1].build().loss is not None
    for bad in ("gram:x", "nope", "mmd-poly(c)", "gram:0", "gram,gram", "gram:-1", "gram:nan", "mmd-poly(c=-1)", "",
                "mmd-poly(c=oops)", "mmd-poly(degree=2.5)", "mmd-poly(c=inf)"):
        with pytest.raises(ValueError):
            parse_style_losses(bad)
