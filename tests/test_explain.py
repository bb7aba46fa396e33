"""stylelab explain: the report files and the identity check it prints."""

import io
import re

import pytest
import torch

from stylelab import Config
from stylelab.cli import main
from stylelab.explain import MAX_PAIRWISE, Analysis, LayerView, identity_check
from stylelab.explain_figures import gram_figure, moments_figure
from stylelab.explain_html import page


def test_identity_check_agrees_and_subsamples_when_large():
    g = torch.Generator().manual_seed(0)
    x, y = torch.relu(torch.randn(8, 300, generator=g)), torch.relu(torch.randn(8, MAX_PAIRWISE + 500, generator=g))
    check = identity_check(x, y, "relu1_1")
    assert check.subsampled and check.positions == (300, MAX_PAIRWISE)
    assert abs(check.gram_distance / check.mmd - 1) < 1e-10 and check.relative_difference < 1e-10


@pytest.mark.slow
def test_explain_report(input_files, style_image, tmp_path):
    (c, s), o = input_files, tmp_path / "o.png"
    style_image.rotate(180).save(o)  # an 'output' that differs from the style
    report = tmp_path / "report"
    code = main(["explain", str(c), str(s), "--output", str(o), "-o", str(report), "--size", "64"])
    assert code == 0
    page = (report / "index.html").read_text()
    for layer in Config().style_layers:
        assert (report / f"gram_{layer}.png").stat().st_size > 1000
        assert (report / f"moments_{layer}.png").exists()
        assert f"<h2>{layer}</h2>" in page
    for name in ("style", "content", "output"):
        assert (report / f"{name}.png").exists()
    # the identity table: relative differences printed per layer are tiny
    diffs = [float(v) for v in re.findall(r"<td>([0-9.]+e[-+][0-9]+)</td></tr>", page)]
    assert len(diffs) == 5 and max(diffs) < 1e-6


@pytest.mark.slow
def test_explain_without_output_and_bad_report_path(input_files, tmp_path):
    c, s = input_files
    assert main(["explain", str(c), str(s), "-o", str(tmp_path / "r"), "--size", "64"]) == 0
    assert (tmp_path / "r" / "index.html").exists() and not (tmp_path / "r" / "output.png").exists()
    assert main(["explain", str(c), str(s), "-o", str(tmp_path / "missing" / "r")]) == 2


def _tiny_analysis() -> Analysis:
    """An Analysis of random features, no network: the figures and the page are drawn from numbers alone."""
    g = torch.Generator().manual_seed(0)
    feats = {name: torch.relu(torch.randn(6, 40, generator=g)) for name in ("style", "content", "output")}
    view = LayerView(
        "relu1_1",
        grams={k: f @ f.T / f.shape[1] for k, f in feats.items()},
        means={k: f.mean(dim=1) for k, f in feats.items()},
        stds={k: f.std(dim=1, unbiased=False) for k, f in feats.items()},
        distances={"content": {"gram": 1.0, "bn": 1.0}, "output": {"gram": 0.25, "bn": 0.5}},
        check=identity_check(feats["output"], feats["style"], "relu1_1"),
    )
    images = {k: torch.rand(1, 3, 8, 12, generator=g) for k in feats}
    return Analysis(images, ("gram", "bn"), "output", (view,))


def test_figures_and_page_from_an_analysis():
    analysis = _tiny_analysis()
    for draw in (gram_figure, moments_figure):
        buffer = io.BytesIO()
        draw(analysis.layers[0], buffer)
        assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page(analysis)
    assert "<h2>relu1_1</h2>" in html and "(12×8 px)" in html
    assert "<tr><th>output</th><td>0.250</td><td>0.500</td></tr>" in html
    check = analysis.layers[0].check
    assert f"<td>{check.relative_difference:.1e}</td></tr>" in html
