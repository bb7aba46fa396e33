"""stylelab compare: one run per loss, cross-evaluation table, grid and CSV."""

import csv

import pytest

from stylelab import Config
from stylelab.analysis.compare import ALL_LOSSES, compare, grid, split_specs, table
from stylelab.cli import main
from stylelab.losses.spec import STYLE_LOSSES


def test_split_specs():
    assert split_specs("all") == list(ALL_LOSSES)
    assert len(ALL_LOSSES) == len(STYLE_LOSSES)
    assert split_specs("gram, mmd-gaussian(estimator=sampled,samples=64),bn") == [
        "gram", "mmd-gaussian(estimator=sampled,samples=64)", "bn"]
    with pytest.raises(ValueError):
        split_specs("gram,nope")


@pytest.mark.slow
def test_compare_cross_evaluation(content_image, style_image):
    rows = compare(content_image, style_image, ["gram", "mmd-linear"], Config(size=64, steps=15))
    assert [r.loss for r in rows] == ["content image", "gram", "mmd-linear"]
    reference = rows[0].distances
    assert reference["content"] == pytest.approx(0.0, abs=1e-6)
    assert reference["gram"] == pytest.approx(1.0, rel=1e-5) and reference["mmd-linear"] == pytest.approx(1.0, rel=1e-5)
    for r in rows[1:]:
        assert r.distances[r.loss] < 0.5  # each output is closer to the style under its own loss
        assert r.distances["content"] > 0.05 and r.seconds_per_step > 0
    lines = table(rows)
    assert lines[0] == ["output", "content", "gram", "mmd-linear", "s/step"] and len(lines) == 4
    sheet = grid(rows, columns=2)
    assert sheet.size == (2 * 64, 2 * (43 + 16))


@pytest.mark.slow
def test_compare_cli_writes_grid_and_csv(input_files, tmp_path, capsys):
    c, s = input_files
    out, table_path = tmp_path / "grid.png", tmp_path / "t.csv"
    code = main(["compare", str(c), str(s), "--losses", "gram,bn", "-o", str(out), "--csv", str(table_path),
                 "--size", "64", "--steps", "3", "-q"])
    assert code == 0 and out.exists()
    rows = list(csv.reader(table_path.open()))
    assert rows[0][:4] == ["output", "content", "gram", "bn"]
    assert [r[0] for r in rows[1:]] == ["content image", "gram", "bn"]
    assert "content image" in capsys.readouterr().out


def test_compare_cli_bad_loss_is_one_line_error(tmp_path, capsys, content_image):
    c = tmp_path / "c.png"
    content_image.save(c)
    code = main(["compare", str(c), str(c), "--losses", "gram,nope", "-o", str(tmp_path / "g.png")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown style loss 'nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.png").exists()
