"""Images as bytes (a batch worker's inputs and outputs): the same pixels and bytes as through files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylelab.image import ImageError, decode_image, encode_image, read_image, save_image


@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".jpg", 8), (".webp", 8), (".tif", 8), (".bmp", 8),
                                          (".png", 16), (".tif", 16)])
def test_encode_image_gives_the_bytes_save_image_writes(tmp_path, suffix, bits):
    image = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    alpha = torch.rand(1, 1, 24, 32, generator=torch.Generator().manual_seed(1))
    meta = {"stylelab": '{"k": 1}'}
    path = save_image(image, tmp_path / f"a{suffix}", bit_depth=bits, alpha=alpha, metadata=meta)
    assert encode_image(image, f"b{suffix}", bit_depth=bits, alpha=alpha, metadata=meta) == path.read_bytes()


def test_decode_image_reads_the_file_as_read_image_does(tmp_path):
    image = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    path = save_image(image, tmp_path / "a.png", bit_depth=16)
    from_file, from_bytes = read_image(path), decode_image(path.read_bytes(), path)
    assert np.array_equal(from_file.rgb, from_bytes.rgb) and from_bytes.rgb.dtype == np.float32
    assert len(np.unique(from_bytes.rgb)) > 256  # all 16 bits kept


def test_bad_bytes_and_names_are_one_line_errors():
    with pytest.raises(ImageError, match=r"photo\.png"):
        decode_image(b"not an image", "photo.png", "content image")
    with pytest.raises(ImageError, match="cannot tell the output format"):
        encode_image(torch.zeros(1, 3, 4, 4), "out.xyz")
