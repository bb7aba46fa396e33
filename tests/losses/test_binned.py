"""The sort-free 1-D transport (ranks from a histogram of each row) against the exact sort it stands in for."""

import pytest
import torch

from stylelab.losses import binned, style_loss
from stylelab.losses.ranks import sort_rows, sorted_match
from stylelab.losses.transport import DIRECTION_SETS, quantiles, resample_sorted, sorts

# The stated tolerance for rows of 4096 values at the default bins: relative L2 error of the gradient and
# relative error of the value, against the sort.
GRAD_TOL, VALUE_TOL = 0.015, 0.002


def features(c: int, m: int, seed: int) -> torch.Tensor:
    """Heavy-tailed, correlated columns with exact zeros (a third or more), like a ReLU layer's (C, M) features."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g) / c**0.5
    return torch.relu(mix @ torch.randn(c, m, generator=g) + 0.3) ** 1.5


def unit_rows(k: int, c: int, seed: int) -> torch.Tensor:
    v = torch.randn(k, c, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=1, keepdim=True)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def gradient_error(approx: torch.Tensor, exact: torch.Tensor, x: torch.Tensor) -> float:
    """Relative error of the gradient where x > 0, plus that of each row's sum over its zeros: a sort spreads tied
    zeros over their ranks in arbitrary order, the histogram moves them together (the ReLU before the loss passes
    no gradient to them either way)."""
    tie = x == 0
    return max(relative(approx * ~tie, exact * ~tie), relative((approx * tie).sum(1), (exact * tie).sum(1)))


def exact_and_binned(x, y, v, bins=binned.BINS):
    """(value, gradient) of the sort-based loss and of binned.transport, for directions v (None: the rows)."""
    q = sort_rows(y if v is None else v @ y)
    leaf = x.clone().requires_grad_(True)
    exact = sorted_match(leaf if v is None else v @ leaf, resample_sorted(q, x.shape[1]))
    (g_exact,) = torch.autograd.grad(exact, leaf)
    leaf = x.clone().requires_grad_(True)
    approx = binned.transport(leaf, lambda c: quantiles(q, c), v, bins=bins)
    (g_approx,) = torch.autograd.grad(approx, leaf)
    return exact, g_exact, approx, g_approx


@pytest.mark.parametrize("sliced", [False, True])
def test_value_and_gradient_within_the_stated_tolerance_of_the_sort(sliced):
    x, y = features(32, 4096, 1), features(32, 5000, 2) * 1.7
    v = unit_rows(32, 32, 3) if sliced else None
    exact, g_exact, approx, g_approx = exact_and_binned(x, y, v)
    assert abs(float(approx.detach() / exact.detach()) - 1) < VALUE_TOL
    assert gradient_error(g_approx, g_exact, x) < GRAD_TOL
    # the tolerance means something: with 4 bins per row the same comparison fails
    exact, g_exact, approx, g_approx = exact_and_binned(x, y, v, bins=4)
    assert gradient_error(g_approx, g_exact, x) > GRAD_TOL


def test_weighted_value_and_gradient_close_to_the_weighted_sort():
    x, y = features(16, 4096, 4), features(16, 4096, 5) * 0.5
    w = torch.rand(4096, generator=torch.Generator().manual_seed(6)) ** 2
    w = w / w.sum()
    q = sort_rows(y)
    exact_loss = style_loss("histogram", bins=0)
    binned_loss = style_loss("histogram")
    target = exact_loss.blend([exact_loss.stats(y)], [1.0])
    assert torch.equal(target, q)
    results = []
    for loss in (exact_loss, binned_loss):
        leaf = x.clone().requires_grad_(True)
        value = loss.loss(leaf, target, weights=w)
        results += [value, torch.autograd.grad(value, leaf)[0]]
    exact, g_exact, approx, g_approx = results
    assert abs(float(approx.detach() / exact.detach()) - 1) < VALUE_TOL
    assert gradient_error(g_approx, g_exact, x) < GRAD_TOL


def test_the_registry_losses_bin_long_rows_on_the_cpu_and_sort_otherwise():
    assert not sorts(torch.zeros(4, binned.EXACT_BELOW), binned.BINS)
    assert sorts(torch.zeros(4, binned.EXACT_BELOW - 1), binned.BINS)
    assert sorts(torch.zeros(4, binned.EXACT_BELOW), 0)
    x, y = features(16, 4096, 7), features(16, 4096, 8) * 2
    for name in ("sliced-wasserstein", "histogram"):
        fast, exact = style_loss(name), style_loss(name, bins=0)
        target = fast.blend([fast.stats(y)], [1.0])
        a, b = fast.loss(x, target), exact.loss(x, target)
        assert a != b and abs(float(a / b) - 1) < VALUE_TOL


def test_zero_at_its_own_distribution_and_invariant_to_shuffling():
    x = features(16, 6000, 9)
    loss = style_loss("sliced-wasserstein")
    own = loss.blend([loss.stats(x)], [1.0])
    other = loss.blend([loss.stats(features(16, 6000, 10) * 3)], [1.0])
    assert float(loss.loss(x, own)) < 1e-5 * float(loss.loss(x, other))
    perm = torch.randperm(6000, generator=torch.Generator().manual_seed(11))
    leaf = x.clone().requires_grad_(True)
    value = loss.loss(leaf, other)
    (grad,) = torch.autograd.grad(value, leaf)
    leaf_p = x[:, perm].clone().requires_grad_(True)
    value_p = loss.loss(leaf_p, other)
    (grad_p,) = torch.autograd.grad(value_p, leaf_p)
    torch.testing.assert_close(value_p, value)
    torch.testing.assert_close(grad_p, grad[:, perm])


def test_gradient_scales_with_the_upstream_gradient_and_float64_works():
    x, y = features(8, 4096, 12).double(), features(8, 4096, 13).double()
    q = sort_rows(y)
    leaf = x.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(binned.transport(leaf, lambda c: quantiles(q, c)), leaf)
    (g3,) = torch.autograd.grad(3 * binned.transport(leaf, lambda c: quantiles(q, c)), leaf)
    assert g1.dtype == torch.float64
    torch.testing.assert_close(g3, 3 * g1)


def test_constant_and_extreme_rows_stay_finite():
    x = torch.ones(4, 4096) * 5.0
    x[1] = 0
    x[2, ::2] = 1e15  # a row with two values far apart (squares still finite in float32)
    q = sort_rows(features(4, 4096, 14))
    leaf = x.clone().requires_grad_(True)
    value = binned.transport(leaf, lambda c: quantiles(q, c))
    (grad,) = torch.autograd.grad(value, leaf)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_histogram_quantiles_close_to_the_sorted_ones():
    y = features(16, 8192, 15)
    levels = torch.linspace(0.01, 0.99, 257).expand(16, -1)  # the last 1% holds few values per bin
    exact = quantiles(sort_rows(y), levels)
    approx = binned.binned_quantiles(y)(levels)
    error = (approx - exact).abs() / (exact[:, -1] - exact[:, 0]).unsqueeze(1)  # in units of the spread
    assert float(error.max()) < 0.01 and float(error.mean()) < 0.001


def test_fresh_directions_bin_the_style_too():
    x, y = features(16, 4096, 16), features(16, 4096, 17) * 2
    fixed, fresh = style_loss("sliced-wasserstein", seed=3), style_loss("sliced-wasserstein", seed=3, resample=True)
    a = fixed.loss(x, fixed.blend([fixed.stats(y)], [1.0]))
    b = fresh.loss(x, fresh.blend([fresh.stats(y)], [1.0]))
    assert 0.5 < float(a / b) < 2  # other directions, the same distance to within its spread over directions


@pytest.mark.parametrize("m", [4096, 512])  # binned and sorted ranks
def test_fresh_directions_come_from_a_pool_of_seeded_sets(m):
    """Resampling picks one of DIRECTION_SETS seeded sets per call and computes the style along each set once,
    kept in the target: many calls see at most that many distinct values, and a second loss of the same seed finds
    the same ones (what a style cache shared between runs relies on)."""
    x, y = features(16, m, 18), features(16, m, 19) * 2
    fresh = style_loss("sliced-wasserstein", seed=5, resample=True)
    target = fresh.blend([fresh.stats(y)], [1.0])
    values = {round(float(fresh.loss(x, target)), 6) for _ in range(120)}
    memo = target[1]
    assert 2 <= len(memo.entries) <= DIRECTION_SETS and len(values) == len(memo.entries)
    again = style_loss("sliced-wasserstein", seed=5, resample=True)
    assert {round(float(again.loss(x, target)), 6) for _ in range(40)} <= values


@pytest.mark.parametrize(("c", "m", "k"), [(64, 8192, 32), (128, 8192, 64), (256, 8192, 256), (64, 4096, 64)])
def test_default_directions_are_halved_on_large_shallow_layers(c, m, k):
    """directions=0: C/2 directions on layers of <= SHALLOW_CHANNELS channels whose style has >= SHALLOW_POSITIONS
    positions, C elsewhere (the same draw as asking for that K; another K gives another value)."""
    x, y = features(c, m, 20), features(c, m, 21) * 2

    def value(directions):
        loss = style_loss("sliced-wasserstein", directions=directions, seed=7)
        return float(loss.loss(x, loss.blend([loss.stats(y)], [1.0])))

    auto = value(0)
    assert auto == value(k)
    assert auto != value(c if k != c else c // 2)


def test_bins_out_of_range_is_refused():
    with pytest.raises(ValueError, match="bins must be in"):
        style_loss("sliced-wasserstein", bins=-1)
    with pytest.raises(ValueError, match="bins must be at least 1"):
        binned.transport(torch.zeros(2, 8), lambda c: c, bins=0)


def test_a_constant_row_is_one_tie_with_the_sorts_value_and_nan_stays_nan():
    x = torch.full((3, 4096), 0.7)
    y = features(3, 4096, 18)
    exact, _, approx, g_approx = exact_and_binned(x, y, unit_rows(3, 3, 19))
    assert abs(float(approx / exact) - 1) < VALUE_TOL
    g = g_approx.reshape(3, -1)
    assert torch.allclose(g, g[:, :1].expand_as(g))  # tied values move together
    x[1, 5] = torch.nan
    leaf = x.requires_grad_(True)
    value = binned.transport(leaf, lambda c: quantiles(sort_rows(y), c))
    (grad,) = torch.autograd.grad(value, leaf)
    assert value.isnan() and grad.isnan().all()
