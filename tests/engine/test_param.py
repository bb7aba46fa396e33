"""What the optimiser moves: pixels, or a Laplacian pyramid of the image."""

import pytest
import torch

from stylelab.config import Config, ConfigError
from stylelab.engine.param import Param, Pyramid, image_param


@pytest.mark.parametrize("hw", [(64, 48), (37, 53), (9, 9), (1, 5)])
def test_the_pyramid_joins_back_to_the_image_exactly(hw):
    image = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    leaves = Pyramid().split(image)
    assert all(leaf.requires_grad and leaf.is_leaf for leaf in leaves)
    torch.testing.assert_close(Pyramid().join(leaves), image, rtol=0, atol=1e-12)
    if min(hw) >= 16:
        assert len(leaves) == 1 + int(torch.log2(torch.tensor(min(hw) / 8)))  # residual of 8-15 px
        assert leaves[1].shape[-2:] == ((hw[0] + 1) // 2, (hw[1] + 1) // 2)  # each level half the one before


def test_a_step_on_a_coarse_level_moves_a_whole_region():
    image = torch.full((1, 3, 64, 64), 0.5, dtype=torch.float64)
    leaves = Pyramid().split(image)
    grad_of = [torch.autograd.grad(Pyramid().join(leaves)[..., 30:34, 30:34].sum(), leaf)[0] for leaf in leaves]
    # the pixels' gradient reaches the residual spread over its few coefficients, the finest level only the 4x4
    assert int((grad_of[0] != 0).sum()) == 3 * 16
    assert float(grad_of[-1].abs().sum()) == pytest.approx(3 * 16, rel=1e-9)  # bilinear weights sum to 1 per pixel
    with torch.no_grad():
        leaves[-1] += 0.1  # one step on the residual lifts the whole image
    torch.testing.assert_close(Pyramid().join(leaves), image + 0.1)


def test_projection_keeps_the_image_in_range_and_leaves_an_in_range_image_alone():
    param = Pyramid()
    leaves = param.split(torch.rand(1, 3, 32, 32, dtype=torch.float64))
    before = [leaf.detach().clone() for leaf in leaves]
    param.project(leaves)
    assert all(torch.equal(a, b) for a, b in zip(before, leaves))
    with torch.no_grad():
        leaves[-1] += 2.0
    param.project(leaves)
    out = param.join(leaves).detach()
    assert float(out.min()) >= 0 and float(out.max()) <= 1 + 1e-12
    pixels = Param()
    [x] = pixels.split(torch.rand(1, 3, 8, 8) * 3 - 1)
    pixels.project([x])
    assert float(x.min()) == 0 and float(x.max()) == 1


def test_param_names_and_the_default_learning_rate():
    assert isinstance(image_param("pyramid"), Pyramid) and type(image_param("pixels")) is Param
    with pytest.raises(ValueError, match="pixels, pyramid"):
        image_param("wavelets")
    with pytest.raises(ConfigError, match="unknown param 'wavelets'; choose one of: pixels, pyramid"):
        Config(param="wavelets")
    assert Config(param="pyramid", optimizer="adam").learning_rate == 2e-3
    assert Config(param="pyramid", optimizer="lbfgs").learning_rate == 1.0
    assert Config(param="pyramid", optimizer="adam", lr=0.01).learning_rate == 0.01
