"""Shared fixtures: small inputs drawn by stylelab.samples (no files from outside the repo)."""

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
