"""Explaining an output (stylelab.analysis): the size it measures at, the identity check, receptive fields, the
figures and the first screen's words. The command and its report files: tests/cli/test_explain.py."""

import io
import math
import re

import pytest
import torch
from PIL import Image

from stylelab import Config
from stylelab.analysis.explain import (
    MAX_PAIRWISE,
    Analysis,
    LayerView,
    analyse,
    headline_layer,
    identity_check,
    layer_scores,
    receptive_field,
)
from stylelab.analysis.figures import gram_figure, gram_norm, moments_figure
from stylelab.analysis.page import number, page


def test_identity_check_agrees_and_subsamples_when_large():
    g = torch.Generator().manual_seed(0)
    x, y = torch.relu(torch.randn(8, 300, generator=g)), torch.relu(torch.randn(8, MAX_PAIRWISE + 500, generator=g))
    check = identity_check(x, y, "relu1_1")
    assert check.subsampled and check.positions == (300, MAX_PAIRWISE)
    assert abs(check.gram_distance / check.mmd - 1) < 1e-10 and check.relative_difference < 1e-10


def test_receptive_fields_of_vgg19():
    # 3x3 convs add 2 steps, 2x2 pools 1 step and double it: the textbook VGG19 values
    sides = [receptive_field(layer) for layer in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")]
    assert sides == [3, 10, 24, 68, 156]


def _saved(image: Image.Image, path) -> str:
    image.save(path)
    return str(path)


@pytest.mark.slow
def test_explain_measures_at_the_outputs_own_size(content_image, style_image, tmp_path):
    # content 120x80, style 80x80, output 64x43: at Config()'s size 512 the old report upsampled all three
    style = _saved(style_image.resize((80, 80)), tmp_path / "s.png")
    output = _saved(content_image.resize((64, 43)), tmp_path / "o.png")
    analysis = analyse(content_image, style, output, Config())
    assert analysis.size == 64 and analysis.size_from_output
    assert {k: tuple(v.shape[-2:]) for k, v in analysis.images.items()} == {
        "style": (64, 64), "content": (43, 64), "output": (43, 64)}
    assert analysis.files == {"style": (80, 80), "content": (120, 80), "output": (64, 43)}
    asked = analyse(content_image, style, output, Config(), size=48)  # a size asked for wins
    assert asked.size == 48 and not asked.size_from_output and asked.images["output"].shape[-1] == 48


def _tiny_analysis(gram_distances: dict[str, float] | None = None, output: bool = True) -> Analysis:
    """An Analysis of random features, no network: the figures and the page are drawn from numbers alone.
    `gram_distances`: layer -> the output's normalised Gram distance (one layer, relu1_1 at 0.25, by default)."""
    g = torch.Generator().manual_seed(0)
    names = ("style", "content", "output") if output else ("style", "content")
    views = []
    for layer, d in (gram_distances or {"relu1_1": 0.25}).items():
        feats = {name: torch.relu(torch.randn(6, 40, generator=g)) for name in names}
        distances = {"content": {"gram": 1.0, "bn": 1.0}, "output": {"gram": d, "bn": 0.5}}
        views.append(LayerView(
            layer,
            grams={k: f @ f.T / f.shape[1] for k, f in feats.items()},
            means={k: f.mean(dim=1) for k, f in feats.items()},
            stds={k: f.std(dim=1, unbiased=False) for k, f in feats.items()},
            distances={k: v for k, v in distances.items() if k in names},
            check=identity_check(feats[names[-1]], feats["style"], layer),
        ))
    images = {k: torch.rand(1, 3, 8, 12, generator=g) for k in names}
    files = {"style": (30, 20), "content": (12, 8), "output": (12, 8)}
    return Analysis(images, ("gram", "bn"), names[-1], tuple(views), 12, output, {k: files[k] for k in names})


def test_figures_and_page_from_an_analysis():
    analysis = _tiny_analysis()
    for draw in (gram_figure, moments_figure):
        buffer = io.BytesIO()
        draw(analysis.layers[0], buffer)
        assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page(analysis)
    assert "<h2>relu1_1</h2>" in html
    assert "style · 12×8 px (file 30×20)" in html and "content · 12×8 px<" in html and "output · 12×8 px<" in html
    assert "<tr><th>output</th><td>0.250</td><td>0.500</td></tr>" in html
    check = analysis.layers[0].check
    assert f"<td title='{check.relative_difference!r}'>" in html


def test_gram_colours_show_entries_far_below_the_largest():
    # a deep layer: one strong channel pair, the rest 1000x weaker; they must not all be drawn as black
    view = _tiny_analysis().layers[0]
    norm = gram_norm(view)
    top = max(float(g.abs().max()) for g in view.grams.values())
    assert float(norm(top * 1e-3)) > 0.2 and float(norm(top)) == pytest.approx(1.0)


def test_numbers_are_readable():
    assert number(3.311980e7, 7) == "3.311980 × 10<sup>7</sup>"
    assert number(2.2e-13, 2) == "2.2 × 10<sup>−13</sup>"
    assert number(9.99996e13) == "1.000 × 10<sup>14</sup>"
    assert number(0.25) == "0.25" and number(1234.5) == "1234" and number(0.0) == "0"


def _first_screen(html: str) -> str:
    return html.split("<h2 id=\"maths\">")[0]


def test_first_screen_names_the_least_matched_layer():
    distances = {"relu1_1": 0.04, "relu2_1": 0.25, "relu3_1": 0.01}  # matched: 80%, 50%, 90%
    analysis = _tiny_analysis(distances)
    scores = layer_scores(analysis)
    assert scores == pytest.approx({layer: 1 - math.sqrt(d) for layer, d in distances.items()})
    assert headline_layer(analysis) == "relu2_1"
    screen = _first_screen(page(analysis))
    verdict = re.search(r"<p class=\"verdict\">(.*?)</p>", screen, re.S).group(1)
    assert "least of its <b>small strokes and fine texture</b> (relu2_1: 50%)" in verdict
    assert "most of the style's <b>brush marks and small patterns</b> (relu3_1: 90%)" in verdict
    bars = dict(re.findall(r"data-layer='(\w+)' data-score='([-0-9.]+)'", screen))
    assert min(bars, key=lambda layer: float(bars[layer])) == "relu2_1"
    assert "<tr class='headline' data-layer='relu2_1'" in screen and "style matched 80%" in screen
    assert "How the % is made" in screen


def test_first_screen_without_output_compares_content_and_style():
    analysis = _tiny_analysis({"relu1_1": 1.0, "relu4_1": 1.0}, output=False)
    expected = {}
    for view in analysis.layers:
        c, s = view.grams["content"].double(), view.grams["style"].double()
        expected[view.layer] = float(torch.linalg.norm(c - s) / torch.sqrt((c**2).sum() + (s**2).sum()))
    assert layer_scores(analysis) == pytest.approx(expected)
    most = max(expected, key=expected.__getitem__)
    screen = _first_screen(page(analysis))
    assert "No output image was given" in screen
    assert "They differ most in <b>" in screen and f"({most}: {round(100 * expected[most])}%)" in screen
    assert headline_layer(analysis) == most and f"<tr class='headline' data-layer='{most}'" in screen
