"""stylelab explain: the report files and the identity check it prints."""

import re

import pytest
import torch

from stylelab import Config
from stylelab.cli import main
from stylelab.explain import MAX_PAIRWISE, identity_check


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
