"""`stylelab compare`: the grid and the CSV, and a bad loss name."""

import csv

import pytest

from stylelab.cli import main


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
