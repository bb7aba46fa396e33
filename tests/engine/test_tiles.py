"""Tiled steps (stylelab.engine.tiles): the same features, objective, gradient and pixels as the step in one piece,
no seams, and one-line refusals for what cannot tile."""

import dataclasses

import pytest
import torch

import stylelab
from stylelab import Config, samples
from stylelab.config import ConfigError, Region
from stylelab.engine import tiles
from stylelab.engine.optimize import (
    build_model,
    build_style_losses,
    compute_targets,
    compute_tiled_targets,
    objective,
)
from stylelab.image import to_tensor
from stylelab.layers import LAYER_NAMES, TILE_GRID, pools_before, receptive_field, tile_margin
from stylelab.losses.spec import STYLE_LOSSES, TILING_LOSSES, style_loss

SHALLOW = ("relu1_1", "relu2_1")
DEEP = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@pytest.fixture(scope="module")
def model64():
    return build_model(None, "max", torch.device("cpu")).double()


@pytest.fixture(scope="module")
def pair64():
    """A content image of 172 x 140 px and a style, float64: 3 x 3 tiles of 64 px, the last ones 44 and 12 px,
    and the 12-px row of cores has no position at relu5_1 (the pools' rounding drops the image's last 12 rows)."""
    return (to_tensor(samples.landscape(172, 140)).double(), to_tensor(samples.swirls(120, 96, seed=1)).double())


def test_the_losses_that_tile_are_the_registry_entries_with_a_tiling():
    assert tuple(name for name in STYLE_LOSSES if style_loss(name).tiling is not None) == TILING_LOSSES
    assert style_loss("mmd-poly", degree=3).tiling is None  # sampled: no moments
    assert style_loss("sliced-wasserstein", bins=0).tiling is None  # exact sorts: no histogram to add up


def test_margins_cover_the_receptive_field_beyond_a_cell():
    assert receptive_field("relu1_1") == 3 and receptive_field("relu5_1") == 156
    assert tile_margin(DEEP) == 80 and tile_margin(("relu4_2",)) == 48 and tile_margin(SHALLOW) == 16
    for name in LAYER_NAMES:
        if name.startswith("relu"):
            margin = tile_margin((name,))
            reach = (receptive_field(name) - 2 ** pools_before(name)) / 2  # beyond the position's own cell
            assert margin % TILE_GRID == 0 and reach <= margin < reach + TILE_GRID


def test_plan_covers_the_image_once_on_the_grid():
    shape = (150, 230)
    cover = torch.zeros(shape, dtype=torch.int64)
    for t in tiles.plan(shape, 64, 32):
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        assert y0 % 16 == 0 and x0 % 16 == 0
        wy0, wy1, wx0, wx1 = t.window
        assert (wy0, wx0) == (max(0, y0 - 32), max(0, x0 - 32)) and (wy1, wx1) == (min(150, y1 + 32), min(230, x1 + 32))
    assert bool((cover == 1).all())
    with pytest.raises(ValueError, match="multiples of 16"):
        tiles.plan(shape, 60, 32)


def test_tiled_activations_are_the_whole_images(model64, pair64):
    content, _ = pair64
    relus = tuple(n for n in LAYER_NAMES if n.startswith("relu"))
    whole = model64(content, set(relus))
    tiled = tiles.tiled_activations(model64, content, relus, 64)
    for name in relus:
        assert tiled[name].shape == whole[name].shape
        assert torch.allclose(tiled[name], whole[name], rtol=1e-9, atol=1e-9), name


def _both(model, content, style, config, x):
    """(value, terms, gradient) of the objective in one piece and in tiles of config.tile px, at image x."""
    losses = build_style_losses(config)
    out = []
    for targets in (compute_targets(model, content, [style], config, losses),
                    compute_tiled_targets(model, content, [style], config, losses, content, config.tile)):
        leaf = x.clone().requires_grad_()
        total, terms = objective(model, leaf, targets, config, losses)
        (grad,) = torch.autograd.grad(total, leaf)
        out.append((float(total.detach()), {k: float(v.detach()) for k, v in terms.items()}, grad))
    return out


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _start(content, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (content + 0.1 * torch.randn(content.shape, generator=g, dtype=content.dtype)).clamp(0, 1)


@pytest.mark.parametrize("spec", [*(n if n != "mmd-poly" else "mmd-poly(c=1)" for n in TILING_LOSSES),
                                  "gram:0.5,bn:0.3,w2:0.2", "gram:0.5,sliced-wasserstein:0.5"])
def test_tiled_objective_and_gradient_equal_the_whole_steps(model64, pair64, spec):
    """Every loss that tiles. The transport losses rank on one histogram of the whole image's rows, counted tile by
    tile: the ranks of the untiled loss, which bins rows of >= 2048 positions (every row here)."""
    content, style = pair64
    config = Config(style_loss=spec, style_layers=SHALLOW, content_layers=("relu2_2",), tile=64, tv_weight=1.0)
    (v1, t1, g1), (v2, t2, g2) = _both(model64, content, style, config, _start(content))
    assert v2 == pytest.approx(v1, rel=1e-4)
    assert t2.keys() == t1.keys()
    for key in t1:
        assert t2[key] == pytest.approx(t1[key], rel=1e-4, abs=1e-9), key
    assert _rel(g2, g1) <= 1e-4


def test_resampled_directions_are_the_same_in_tiles(model64, pair64):
    """With Adam, sliced W2 takes one of its seeded sets of directions per evaluation: the tiled objective asks
    for them in the untiled order, so three evaluations in a row match."""
    content, style = pair64
    config = Config(style_loss="gram:0.5,sliced-wasserstein:0.5", style_layers=SHALLOW, content_layers=("relu2_2",),
                    tile=64, optimizer="adam")
    runs = []
    for tiled in (False, True):
        losses = build_style_losses(config)  # fresh draws for each
        targets = (compute_tiled_targets(model64, content, [style], config, losses, content, 64) if tiled
                   else compute_targets(model64, content, [style], config, losses))
        evaluations = []
        for _ in range(3):
            leaf = _start(content).requires_grad_()
            total, _ = objective(model64, leaf, targets, config, losses)
            evaluations.append((float(total.detach()), torch.autograd.grad(total, leaf)[0]))
        runs.append(evaluations)
    assert len({round(v, 6) for v, _ in runs[0]}) == 3  # three different sets of directions
    for (v1, g1), (v2, g2) in zip(*runs):
        assert v2 == pytest.approx(v1, rel=1e-4) and _rel(g2, g1) <= 1e-4


def test_a_large_style_keeps_seeded_positions_gathered_from_tiles(model64, pair64, monkeypatch):
    """Past STYLE_SAMPLE positions a rank loss keeps the style's features at seeded positions: the tiles gather
    exactly the whole image's features there, in its order."""
    _, style = pair64
    monkeypatch.setattr(tiles, "STYLE_SAMPLE", 1000)
    config = Config(style_loss="sliced-wasserstein", style_layers=SHALLOW, tile=64)
    losses = build_style_losses(config)
    stats = tiles._style_stats(tiles.LocalTiles(model64), style, SHALLOW, losses, tiles.tilings_of(losses), 64, 0)
    whole = model64(style, set(SHALLOW))
    for layer in SHALLOW:
        kept = stats["sliced-wasserstein"][layer]
        positions = tiles._sample_positions(style, layer, 0)
        assert positions is not None and kept.shape == (whole[layer].shape[1], 1000)
        assert torch.allclose(kept, whole[layer].flatten(2)[0][:, positions], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("spec", ["gram", "gram:0.5,sliced-wasserstein:0.5"])
def test_tiled_losses_down_to_relu5_1(model64, pair64, spec):
    """All five default layers: relu3_1 to relu5_1 have fewer than 2048 positions here, where the untiled
    transport losses sort; the tiled step gathers those small layers whole and runs each loss's own function."""
    content, style = pair64
    config = Config(style_loss=spec, style_layers=DEEP, tile=64)
    (v1, t1, g1), (v2, t2, g2) = _both(model64, content, style, config, _start(content))
    assert v2 == pytest.approx(v1, rel=1e-4) and _rel(g2, g1) <= 1e-4
    for key in t1:
        assert t2[key] == pytest.approx(t1[key], rel=1e-4, abs=1e-9), key


def test_tiled_gram_in_float32(pair64):
    model = build_model(None, "max", torch.device("cpu"))
    content, style = (t.float() for t in pair64)
    config = Config(style_loss="gram", style_layers=DEEP, tile=64)
    (v1, _, g1), (v2, _, g2) = _both(model, content, style, config, _start(content))
    assert v2 == pytest.approx(v1, rel=1e-4) and _rel(g2, g1) <= 1e-4


def test_a_margin_narrower_than_documented_changes_the_gradient(model64, pair64, monkeypatch):
    """The tests above can fail: one grid step less margin than relu5_1 needs (64 px for 70), and the gradient is
    off by more than their tolerance (5.5e-4 here; 3.4e-2 with two steps less)."""
    content, style = pair64
    config = Config(style_loss="gram", style_layers=DEEP, tile=64)
    monkeypatch.setattr(tiles, "tile_margin", lambda names: tile_margin(names) - TILE_GRID)
    (_, _, g1), (_, _, g2) = _both(model64, content, style, config, _start(content))
    assert _rel(g2, g1) > 1e-4


# Adam's first steps are about ±lr per pixel whatever the gradient's size, so where a gradient is near 0 the order of
# float sums decides a step's sign. Measured (5 steps, 192 x 128): the same untiled run on 1 thread instead of 2
# moves 2 of 73,728 values by more than 2.5 levels; tiles move 3 (gram) and 19 (the default mix, whose binned ranks
# also move where a value sits on a bin's edge), mean differences 0.03 and 0.07 levels.
@pytest.mark.parametrize("loss, moved", [("gram", 1e-4), (Config().style_loss, 1e-3)], ids=["gram", "default-mix"])
def test_tiled_run_has_the_pixels_of_the_whole_run_and_no_seams(content_image, style_image, loss, moved):
    """Five Adam steps at 192 x 128 px in 64-px tiles: the pixels of the untiled run (for the default mix, the same
    random directions each step: the normalisers come from the first step, as in one piece), and the painted change
    steps across the tiles' borders no more than inside them."""
    config = Config(size=192, steps=5, optimizer="adam", multiscale=False, style_loss=loss)
    whole = to_tensor(stylelab.stylize(content_image, style_image, config))
    tiled = to_tensor(stylelab.stylize(content_image, style_image, dataclasses.replace(config, tile=64)))
    assert tiled.shape == whole.shape == (1, 3, 128, 192)
    diff = (tiled - whole).abs()
    assert float(diff.mean()) <= 1e-3
    assert float((diff > 2.5 / 255).float().mean()) < moved
    start = to_tensor(content_image.resize((192, 128), 3))  # bicubic, as the engine resizes
    change = tiled - start
    # the step in the painted change between neighbouring columns (rows), averaged along the border
    cols = (change[..., :, 1:] - change[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # (W-1,): between x and x+1
    rows = (change[..., 1:, :] - change[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    for steps, borders in ((cols, (63, 127)), (rows, (63,))):
        inside = torch.tensor([float(v) for i, v in enumerate(steps) if i not in borders])
        limit = float(inside.quantile(0.95))
        for b in borders:
            assert float(steps[b]) <= limit


@pytest.mark.parametrize("change, message", [
    ({"style_loss": "sliced-wasserstein(bins=0)"}, "cannot run in tiles.*losses that can: gram"),
    ({"style_loss": "gram,mmd-gaussian"}, "'mmd-gaussian' cannot run in tiles"),
    ({"style_loss": "gram,nn"}, "'nn' cannot run in tiles"),
    ({"style_loss": "mmd-poly(degree=3)"}, "'mmd-poly.degree=3.' cannot run in tiles"),
    ({"tileable": True}, "--tileable cannot run in tiles"),
    ({"content_loss": "self-similarity"}, "cannot run in tiles; use --content-loss features"),
    ({"masks": (Region("mask.png", 0),)}, "masks cannot run in tiles"),
])
def test_what_cannot_tile_is_refused_in_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        Config(**{"style_loss": "gram", "tile": 64, **change})
    assert "\n" not in str(info.value)
    Config(**{"style_loss": "gram", **change})  # fine without tiles


def test_the_terms_that_tile_are_known_without_building_them():
    for spec in ("gram", "mmd-poly", "mmd-poly(c=2)", "mmd-poly(degree=3)", "bn", "w2", "mmd-linear",
                 "sliced-wasserstein", "sliced-wasserstein(bins=0)", "histogram", "histogram(bins=0)", "nn", "remd",
                 "mmd-gaussian(estimator=rff)"):
        (term,) = Config(style_loss=spec).style_loss_terms()
        assert term.tiles == (term.build().tiling is not None), spec


@pytest.mark.parametrize("tile, message", [(48, r"in \[64, 8192\]"), (72, "multiple of 16"), (True, "integer")])
def test_bad_tile_sizes(tile, message):
    with pytest.raises(ConfigError, match=message):
        Config(tile=tile)


def test_progress_inside_tiled_steps(content_image, style_image):
    """on_tile hears every tile of every sweep: of the targets, then of each step, with an ETA once timed."""
    events = []
    config = Config(size=160, steps=2, optimizer="adam", multiscale=False, tile=64)
    stylelab.stylize(content_image, style_image, config, on_tile=events.append)
    assert {e.phase for e in events} == {"targets", "step"}
    steps = [e for e in events if e.phase == "step"]
    tiles = steps[0].tiles
    assert tiles == 6  # 160 x 107 px: 3 x 2 cores of 64 px
    # a step sweeps 3 times (moments and ranges, histograms, gradients); the first also takes the normalisers from
    # its own values (the run starts at the content image), one sweep more
    expected = [(4, s, t) for s in (1, 2, 3, 4) for t in range(1, tiles + 1)]
    expected += [(3, s, t) for s in (1, 2, 3) for t in range(1, tiles + 1)]
    assert [(e.sweeps, e.sweep, e.tile) for e in steps] == expected
    assert steps[-1].fraction == 1 and steps[-1].eta() == 0
