"""Fixtures shared by every test module: small inputs drawn by stylelab.samples (no files from outside the repo).
Plain helper functions live in tests/helpers.py."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from PIL import Image

from stylelab import samples


@pytest.fixture(scope="session")
def content_image() -> Image.Image:
    return samples.landscape(120, 80)


@pytest.fixture(scope="session")
def style_image() -> Image.Image:
    return samples.swirls(120, 80, seed=1)


@pytest.fixture(scope="session")
def style_image2() -> Image.Image:
    return samples.swirls(100, 100, seed=2).rotate(90)


@pytest.fixture
def input_files(tmp_path, content_image, style_image) -> tuple[Path, Path]:
    """The content and style images saved as tmp_path/c.png and tmp_path/s.png, for CLI tests."""
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    content_image.save(c)
    style_image.save(s)
    return c, s


@pytest.fixture
def no_fast_model(monkeypatch):
    """The feed-forward model as without the optional extra (stylelab[fast]): its package not found, and no
    session loaded earlier at hand (a fresh cache for the test; the loaded sessions come back after it)."""
    import importlib.metadata

    from stylelab.engine import fast

    real = importlib.metadata.distribution

    def distribution(name: str):
        if name == fast.PACKAGE:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(fast, "_session", functools.lru_cache(maxsize=2)(fast._session.__wrapped__))
