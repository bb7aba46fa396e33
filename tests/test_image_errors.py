"""open_image's errors (stylelab.image): one line naming the file and what is wrong with it."""

from __future__ import annotations

import pytest
from helpers import (
    ERROR_CASES,
    bomb_png,
)
from PIL import Image

from stylelab import image as si
from stylelab.image import (
    ImageError,
    open_image,
    to_tensor,
)

# ----------------------------------------------------------------------------------------- open_image errors


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_open_image_errors(tmp_path, case):
    make, phrase = ERROR_CASES[case]
    path = make(tmp_path)
    for call in (lambda: open_image(path, "content image"), lambda: to_tensor(path, "content image")):
        with pytest.raises(ImageError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and msg.strip() == msg and msg
        assert msg.startswith("content image")  # names what it was
        assert path.name in msg  # and which file
        assert phrase in msg


def test_image_error_is_a_stylelab_error_and_value_error():
    from stylelab.errors import StylelabError

    assert issubclass(ImageError, StylelabError)
    assert issubclass(ImageError, ValueError)


def test_bomb_between_pillow_and_stylelab_limits(tmp_path, monkeypatch):
    """With Pillow's own guard off, stylelab's MAX_PIXELS still refuses a large image at open."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    side = int(si.MAX_PIXELS**0.5) + 10
    path = bomb_png(tmp_path / "big.png", side, side)
    with pytest.raises(ImageError, match="too large") as info:
        open_image(path)
    assert "\n" not in str(info.value)


def test_image_under_max_pixels_is_not_called_too_large(tmp_path):
    """96M px is over Pillow's bomb-warning limit (~89.5M) but under MAX_PIXELS (100M): not 'too large'.
    The header-only file then fails as truncated/corrupt. (Regression: it used to say 'over 100,000,000 pixels'.)"""
    assert 10_000 * 9_600 < si.MAX_PIXELS
    path = bomb_png(tmp_path / "big.png", 10_000, 9_600)
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert "too large" not in str(info.value), str(info.value)


def test_bomb_rejected_from_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)  # refused from the header, nothing allocated
    path = bomb_png(tmp_path / "bomb.png", 60_000, 50_000)
    with pytest.raises(ImageError, match="too large"):
        to_tensor(path)
