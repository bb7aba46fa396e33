"""`stylelab explain`: the report folder and image from the flags, and the report files."""

import re

import pytest
from PIL import Image

from stylelab import Config
from stylelab.cli import main
from stylelab.cli.explain import OLD_FORM_WARNING, report_and_image
from stylelab.config import ConfigError


@pytest.mark.slow
def test_explain_report(input_files, style_image, tmp_path):
    (c, s), o = input_files, tmp_path / "o.png"
    style_image.rotate(180).resize((64, 43)).save(o)  # an 'output' that differs from the style, 64 px long
    Image.open(s).resize((50, 60)).save(s)  # a style of another shape: its caption must say its own size
    report = tmp_path / "report"
    code = main(["explain", str(c), str(s), "--image", str(o), "-o", str(report)])
    assert code == 0
    html = (report / "index.html").read_text()
    for layer in Config().style_layers:
        assert (report / f"gram_{layer}.png").stat().st_size > 1000
        assert (report / f"moments_{layer}.png").exists()
        assert f"<h2>{layer}</h2>" in html
    assert Image.open(report / "output.png").size == (64, 43)  # measured at the output's size, not --size 512
    assert "style · 53×64 px (file 50×60)" in html and "content · 64×43 px (file 120×80)" in html
    assert "output · 64×43 px<" in html and "the output's own size" in html
    # the identity table: relative differences (exact values in the cells' titles) are tiny
    diffs = [float(v) for v in re.findall(r"<td title='([^']+)'>[^<]*(?:<sup>[^<]*</sup>)?</td></tr>", html)]
    assert len(diffs) == 5 and max(diffs) < 1e-6


@pytest.mark.slow
def test_explain_old_spelling_still_works_with_a_warning(input_files, style_image, tmp_path, capsys):
    (c, s), o = input_files, tmp_path / "o.png"
    style_image.resize((48, 32)).save(o)
    for n, folder_flag in enumerate(("-o", "--report")):
        report = tmp_path / f"r{n}"
        assert main(["explain", str(c), str(s), "--output", str(o), folder_flag, str(report)]) == 0
        err = capsys.readouterr().err
        assert err.splitlines()[0] == OLD_FORM_WARNING and "--output IMAGE is now --image IMAGE" in err
        assert Image.open(report / "output.png").size == (48, 32)
    assert main(["explain", str(c), str(s), "--image", str(o), "--output", str(tmp_path / "r"), "--size", "40"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and Image.open(tmp_path / "r" / "output.png").size == (40, 27)


def test_report_folder_and_image_from_the_flags():
    assert report_and_image([("-o", "r")], "o.png") == ("r", "o.png", False)
    assert report_and_image([("--output", "r")], None) == ("r", None, False)
    assert report_and_image([("--output", "o.png"), ("-o", "r")], None) == ("r", "o.png", True)
    assert report_and_image([("--report", "r"), ("--output", "o.png")], None) == ("r", "o.png", True)
    for given, image in (([("--output", "a"), ("-o", "b")], "o.png"), ([("-o", "a"), ("--report", "b")], None),
                         ([("--output", "a"), ("--output", "b")], None)):
        with pytest.raises(ConfigError, match="report folder once"):
            report_and_image(given, image)


@pytest.mark.slow
def test_explain_without_output_and_bad_report_path(input_files, tmp_path):
    c, s = input_files
    assert main(["explain", str(c), str(s), "-o", str(tmp_path / "r"), "--size", "64"]) == 0
    assert (tmp_path / "r" / "index.html").exists() and not (tmp_path / "r" / "output.png").exists()
    assert "No output image was given" in (tmp_path / "r" / "index.html").read_text()
    assert main(["explain", str(c), str(s), "-o", str(tmp_path / "missing" / "r")]) == 2
