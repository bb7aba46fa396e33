"""Fixtures of the batch tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import batch_folder


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    """tmp_path/in: five small contents c0.png ... c4.png (turned 7 degrees more each), style.png and style2.png."""
    return batch_folder(tmp_path / "in", 5, 7, styles=2)
