"""Comparing losses (stylelab.analysis.compare): the list of specs, one run per loss, the cross-evaluation table
and the grid. The command: tests/cli/test_compare.py."""


import pytest

from stylelab import Config
from stylelab.analysis.compare import ALL_LOSSES, compare, grid, split_specs, table
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
