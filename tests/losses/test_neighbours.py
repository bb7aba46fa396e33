"""Neural neighbours (the guide's assignment, the per-position loss), REMD, and the self-similarity content loss."""

import pytest
import torch

from stylelab.losses.content import self_similarity, self_similarity_loss, self_similarity_target
from stylelab.losses.neighbours import GuideInput, assign_neighbours, cosine_distances, nn_distance, remd
from stylelab.losses.spec import style_loss

LAYERS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512}  # each after one more pool


def acts(h: int, w: int, seed: int, channels: float = 0.25) -> dict[str, torch.Tensor]:
    """Random ReLU-like activations of an image of h x w px at each layer of LAYERS (few channels, for speed)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, (name, c) in enumerate(LAYERS.items()):
        out[name] = torch.relu(torch.randn(1, max(2, int(c * channels)), h >> k, w >> k, generator=g))
    return out


def guide_input(content, styles, blend=None, masks=None, output=None) -> GuideInput:
    return GuideInput(content=content, output=output, styles=styles,
                      blend=blend or [1 / len(styles)] * len(styles), style_masks=masks or [None] * len(styles),
                      layer_weights={name: 1 / len(LAYERS) for name in LAYERS})


def columns(a: torch.Tensor) -> torch.Tensor:
    return a.reshape(a.shape[1], -1)


def all_among(t: torch.Tensor, s: torch.Tensor) -> bool:
    """Every column of t (C, n) is exactly one of the columns of s (C, m)."""
    return bool((t[:, :, None] == s[:, None, :]).all(dim=0).any(dim=1).all())


def test_a_content_that_is_the_style_takes_its_own_vectors_at_every_layer():
    """Each grid cell's nearest style hypercolumn is its own, and every layer copies that cell's block: the targets
    are the content's features exactly, at the finer layers (whole 2x2 and 4x4 blocks) and the coarser ones."""
    a = acts(32, 24, 0)
    targets = assign_neighbours(guide_input(a, [a]))
    for name in LAYERS:
        torch.testing.assert_close(targets[name], columns(a[name]), rtol=0, atol=0)


def test_targets_are_style_vectors_and_follow_the_content():
    content, style = acts(32, 32, 1), acts(40, 24, 2)
    targets = assign_neighbours(guide_input(content, [style]))
    for name in LAYERS:
        t, s = targets[name], columns(style[name])
        assert t.shape == columns(content[name]).shape  # one target per output position
        assert all_among(t, s)  # every target is one of the style's vectors at that layer
    different = assign_neighbours(guide_input(acts(32, 32, 3), [style]))
    assert not torch.equal(different["relu1_1"], targets["relu1_1"])


def test_a_style_mask_and_a_zero_blend_weight_keep_vectors_out():
    a = acts(32, 32, 4)
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1.0
    masked = assign_neighbours(guide_input(a, [a], masks=[left]))
    allowed = columns(a["relu3_1"]).reshape(a["relu3_1"].shape[1], 8, 8)[:, :, :4].reshape(a["relu3_1"].shape[1], -1)
    assert all_among(masked["relu3_1"], allowed)  # only vectors from the masked half
    assert not all_among(assign_neighbours(guide_input(a, [a]))["relu3_1"], allowed)
    other = acts(32, 32, 5)
    blended = assign_neighbours(guide_input(a, [a, other], blend=[1.0, 0.0]))
    torch.testing.assert_close(blended["relu2_1"], columns(a["relu2_1"]), rtol=0, atol=0)


def test_mix_matches_the_content_blended_with_the_start_image():
    content, start, style = acts(32, 32, 6), acts(32, 32, 7), acts(32, 32, 8)
    pure = assign_neighbours(guide_input(content, [style]), mix=0.0)
    with_start = assign_neighbours(guide_input(content, [style], output=start), mix=0.0)
    torch.testing.assert_close(with_start["relu1_1"], pure["relu1_1"])  # mix 0: the start image is not used
    only_start = assign_neighbours(guide_input(content, [style], output=start), mix=1.0)
    expected = assign_neighbours(guide_input(start, [style]), mix=0.0)
    torch.testing.assert_close(only_start["relu4_1"], expected["relu4_1"])


def _matching(n: int, m: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit columns: n queries crowded around one direction (all nearest to the same few keys), m keys spread out."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(d, m, generator=g)
    query = keys[:, :1] + 0.3 * torch.randn(d, n, generator=g)
    return query / query.norm(dim=0), keys / keys.norm(dim=0)


@pytest.mark.parametrize("n, m, reuse, candidates", [(60, 40, 1.0, 64), (60, 40, 1.0, 3), (50, 50, 1.0, 2),
                                                     (90, 20, 2.5, 4), (30, 80, 1.0, 64)])
def test_balanced_matching_keeps_to_the_cap_and_is_stable(n, m, reuse, candidates, monkeypatch):
    """No key is taken more than ceil(max(reuse, 1) n / m) times, every query gets a key, and the matching is stable:
    no query prefers a key that has room or holds a query it likes less (checked against every pair). A few
    candidates per round make queries run out of them and start again among the keys with room."""
    from stylelab.losses import neighbours

    monkeypatch.setattr(neighbours, "CANDIDATES", candidates)
    query, keys = _matching(n, m, 8, seed=n + m)
    cap = -(-int(reuse * n) // m) if reuse * n / m >= n / m else -(-n // m)
    taken = neighbours._balanced(query, keys, reuse)
    used = torch.bincount(taken, minlength=m)
    assert taken.shape == (n,) and int(used.max()) <= cap
    sim = query.T @ keys
    mine = sim[torch.arange(n), taken]
    for q in range(n):
        for k in (sim[q] > mine[q]).nonzero().flatten().tolist():  # keys q likes better than its own
            held = (taken == k).nonzero().flatten()
            assert len(held) == cap, (q, k)  # full ...
            assert bool((sim[held, k] >= sim[q, k]).all()), (q, k)  # ... with queries it likes at least as much
    plain = neighbours._nearest(query, keys)
    assert int(torch.bincount(plain, minlength=m).max()) > cap  # without the cap, the crowd shares a few keys
    torch.testing.assert_close(neighbours._balanced(query, keys, 0.0), plain, rtol=0, atol=0)  # reuse 0: no cap


@pytest.mark.parametrize("rounds", [64, 3])
def test_many_equal_queries_are_spread_within_the_cap(rounds, monkeypatch):
    """Queries that all want the same keys (a flat region): the proposals would take n / cap rounds; after
    MAX_ROUNDS the waiting ones are placed one by one, still within the cap, every key used."""
    from stylelab.losses import neighbours

    monkeypatch.setattr(neighbours, "MAX_ROUNDS", rounds)
    query, keys = _matching(1, 300, 8, seed=5)
    taken = neighbours._balanced(query.expand(8, 600).contiguous(), keys, 1.0)
    used = torch.bincount(taken, minlength=300)
    assert int(used.max()) == 2 and int(used.min()) == 2  # 600 queries, 300 keys, cap 2: every key twice
    nearest_first = torch.argsort(query[:, 0] @ keys, descending=True)
    assert set(taken[:2 * rounds].tolist()) <= set(nearest_first[:rounds].tolist())  # in order of preference


def test_reuse_spreads_the_targets_over_the_style():
    """A content of two flat halves (each one style vector, a little noise) takes a handful of style cells for all
    its cells with reuse 0, and every style cell once with reuse 1 (as many grid cells as the style has)."""
    style = acts(32, 32, 11)
    g = torch.Generator().manual_seed(12)
    two = {}
    for name, a in style.items():
        halves = torch.cat([a[..., :1, :1].expand(-1, -1, a.shape[2], a.shape[3] // 2),
                            a[..., -1:, -1:].expand(-1, -1, a.shape[2], a.shape[3] - a.shape[3] // 2)], dim=3)
        two[name] = halves + 1e-3 * torch.rand(a.shape, generator=g)
    plain = assign_neighbours(guide_input(two, [style]), reuse=0.0)["relu3_1"]
    even = assign_neighbours(guide_input(two, [style]), reuse=1.0)["relu3_1"]
    distinct = lambda t: len(torch.unique(t, dim=1).T)  # noqa: E731
    assert distinct(plain) <= 4 and distinct(even) == 64  # 8 x 8 grid cells, 8 x 8 style cells: one each


def test_nn_loss_is_zero_at_its_targets_and_one_minus_cosine_elsewhere():
    loss = style_loss("nn")
    x = torch.rand(5, 30, dtype=torch.float64) + 0.1
    t = torch.rand(5, 30, dtype=torch.float64) + 0.1
    target = (loss.blend([loss.stats(t)], [1.0])[0], t)
    assert abs(float(loss.loss(t, target))) < 1e-12
    cos = torch.nn.functional.cosine_similarity(x, t, dim=0)
    torch.testing.assert_close(loss.loss(x, target), (1 - cos).mean(), rtol=1e-9, atol=1e-12)
    w = torch.rand(30, dtype=torch.float64)
    torch.testing.assert_close(loss.loss(x, target, weights=w), ((1 - cos) * w).sum() / w.sum(), rtol=1e-9, atol=1e-12)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss.loss(a, target, weights=w), (xg,))


def test_nn_without_targets_is_the_one_sided_neighbour_distance():
    y = torch.rand(4, 20, dtype=torch.float64)
    x = torch.rand(4, 15, dtype=torch.float64)
    centre = y.mean(dim=1)
    expected = cosine_distances(x, y, centre).min(dim=1).values.mean()
    torch.testing.assert_close(nn_distance(x, (y, None)), expected)
    assert abs(float(nn_distance(y[:, :7], (y, None)))) < 1e-12  # every output vector occurs in the style


def test_cosine_distances_and_remd_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # columns e1, e2
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)  # e1, (e1+e2), 0
    d = cosine_distances(x, y)
    torch.testing.assert_close(d[:, :2], torch.tensor([[0.0, 1 - 2**-0.5], [1.0, 1 - 2**-0.5]], dtype=torch.float64))
    # the zero vector: at distance 1 from the others (to 1e-6, the size of the constant coordinate), 0 from itself
    assert float(d[0, 2]) == pytest.approx(1.0, abs=2e-6) and float(cosine_distances(y[:, 2:], y[:, 2:])) == 0.0
    # x -> y: e1 -> 0, e2 -> 1 - 1/√2; y -> x: e1 -> 0, (e1+e2) -> 1 - 1/√2, 0 -> 1
    expected = max((0 + 1 - 2**-0.5) / 2, (0 + 1 - 2**-0.5 + 1) / 3)
    assert float(remd(x, y)) == pytest.approx(expected, abs=2e-6)


def test_remd_moments_term_is_l1_of_means_and_covariances():
    g = torch.Generator().manual_seed(9)
    x, y = torch.rand(3, 40, generator=g, dtype=torch.float64), torch.rand(3, 50, generator=g, dtype=torch.float64)
    with_moments, without = style_loss("remd", moments=2.0), style_loss("remd", moments=0.0)
    t1, t0 = with_moments.blend([y], [1.0]), without.blend([y], [1.0])
    mu_x, mu_y = x.mean(1), y.mean(1)
    cov_x = (x - mu_x[:, None]) @ (x - mu_x[:, None]).T / 40
    cov_y = (y - mu_y[:, None]) @ (y - mu_y[:, None]).T / 50
    extra = 2.0 * ((mu_x - mu_y).abs().mean() + (cov_x - cov_y).abs().mean())
    torch.testing.assert_close(with_moments.loss(x, t1) - without.loss(x, t0), extra)


# ------------------------------------------------------------------------------ self-similarity content loss


def test_self_similarity_columns_sum_to_one_and_ignore_each_positions_scale():
    f = torch.rand(6, 12, dtype=torch.float64)
    s = self_similarity(f)
    torch.testing.assert_close(s.sum(dim=0), torch.ones(12, dtype=torch.float64))
    torch.testing.assert_close(self_similarity(f * torch.rand(12, dtype=torch.float64) * 5), s)  # cosine: per-position


def test_self_similarity_loss_is_zero_at_the_content_one_without_layout_and_has_true_gradients():
    content = torch.rand(1, 8, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = self_similarity_target(content, seed=0)
    assert abs(float(self_similarity_loss(content, target))) < 1e-12
    assert abs(float(self_similarity_loss(content * 3.0, target))) < 1e-12  # brightness of the features: no matter
    # an output without layout, all positions pairwise orthogonal (all equally unlike): about 1, the normaliser
    # being the loss of the uniform 1/n (which no image reaches exactly: a position is never unlike itself, so the
    # gap is of order 1/n; 0.971-0.975 over 300 random contents of 100 positions)
    orthogonal = torch.eye(100, dtype=torch.float64).reshape(1, 100, 10, 10)
    assert 0.95 < float(self_similarity_loss(orthogonal, target)) < 1.05
    # the gradient, on a smaller case: |.| has a kink where a pair's difference is 0, so the check is made at a
    # point whose differences are all clear of it (else the finite difference straddles the kink)
    small = torch.rand(1, 8, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    small_target = self_similarity_target(small, seed=0)
    x = small + 0.3 * torch.rand(small.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    off_diagonal = ~torch.eye(12, dtype=torch.bool)  # a position's distance to itself is 0 on both sides, always
    assert (self_similarity(x.reshape(8, -1)) - small_target[1]).abs()[off_diagonal].min() > 1e-5
    assert torch.autograd.gradcheck(lambda a: self_similarity_loss(a, small_target), (x.requires_grad_(True),))


def test_self_similarity_samples_positions_with_the_seed():
    a = torch.rand(1, 4, 60, 60, dtype=torch.float64)
    one, two, other = (self_similarity_target(a, seed=s, samples=100) for s in (1, 1, 2))
    assert torch.equal(one[0], two[0]) and not torch.equal(one[0], other[0]) and len(one[0]) == 100


def test_each_side_is_centred_by_its_own_mean():
    """A content that is the style plus a constant in every channel (a brighter copy) matches cell for cell: tones
    are compared relative to each image's own average (NNST's centred cosine)."""
    style = acts(32, 32, 10)
    brighter = {name: a + 5.0 for name, a in style.items()}
    targets = assign_neighbours(guide_input(brighter, [style]))
    for name in LAYERS:
        torch.testing.assert_close(targets[name], columns(style[name]), rtol=0, atol=0)


def test_the_registry_names_exactly_the_guided_losses():
    from stylelab.losses.spec import GUIDED_LOSSES, STYLE_LOSSES, loss_factory

    assert set(GUIDED_LOSSES) == {name for name in STYLE_LOSSES if loss_factory(name)().guide is not None}
