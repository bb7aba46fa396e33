"""Spatial control (Gatys et al. 2017, docs/method.md §9): masks -> per-position weights at each VGG layer.

A region says "style image k, taken from where its style mask is bright, goes where the content mask is bright".
Each style statistic becomes a weighted one with weights t_i² / Σ t², t = the mask resized to the layer's grid
(the guided Gram Σ t_i² f_i f_iᵀ / Σ t_i²); the loss compares the output's weighted statistics in the content
mask with the style's in the style mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ConfigError, Region
from ..image import ImageError, to_tensor

__all__ = ["LoadedRegion", "load_regions", "position_weights"]


@dataclass(frozen=True)
class LoadedRegion:
    """A `Region` with its masks read: grey (1, 1, H, W) tensors in [0,1] at their files' resolution."""

    content: Tensor
    style: int
    style_mask: Tensor | None


def load_regions(regions: Sequence[Region], n_styles: int) -> list[LoadedRegion]:
    """Read every mask; a region must name an existing style image and its masks must not be empty."""
    loaded = []
    for r in regions:
        if r.style >= n_styles:
            raise ConfigError(
                f"mask {r.content_mask} names style {r.style + 1}, but only {n_styles} style image(s) given")
        content = _grey(r.content_mask, "content mask")
        style = None if r.style_mask is None else _grey(r.style_mask, "style mask")
        loaded.append(LoadedRegion(content, r.style, style))
    return loaded


def _grey(source: str, what: str) -> Tensor:
    rgb = to_tensor(source, what)
    grey = rgb.mean(dim=1, keepdim=True)  # (1, 1, H, W)
    if float(grey.max()) <= 0:
        raise ImageError(f"{what} is black everywhere (an empty region): {source}")
    return grey


def position_weights(mask: Tensor | None, activation: Tensor) -> Tensor | None:
    """Mask (1, 1, H, W) -> weights (h*w,) on the grid of `activation` (1, C, h, w): t² with t the mask
    area-averaged to that grid. Any part of the region stays visible at coarse layers. None stays None."""
    if mask is None:
        return None
    h, w = activation.shape[-2:]
    dtype = torch.float64 if activation.dtype == torch.float64 else torch.float32  # bfloat16 under autocast: no
    t = F.interpolate(mask.to(activation.device, dtype), size=(h, w), mode="area")
    weights = (t**2).reshape(h * w)
    if float(weights.sum()) <= 0:
        raise ConfigError("a mask region vanishes at a coarse layer; use larger regions")
    return weights
