"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest
from helpers import noise_png


@pytest.fixture
def run_files(tmp_path):
    """Tiny content and style PNGs, and the (not yet existing) output path."""
    content = noise_png(tmp_path / "content.png", 64, 48, seed=0)
    style = noise_png(tmp_path / "style.png", 48, 64, seed=1)
    return content, style, tmp_path / "out.png"


@pytest.fixture
def fail_if_optimising(monkeypatch):
    """Bad-input tests must stop before any optimisation: make reaching the optimiser a loud failure."""
    import stylelab.engine.optimize as opt

    def boom(*args, **kwargs):
        raise AssertionError("optimisation started although the input was bad")

    monkeypatch.setattr(opt, "optimize", boom)
    monkeypatch.setattr(opt, "compute_targets", boom)
