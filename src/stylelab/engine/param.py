"""What the optimiser moves: the pixels themselves, or the coefficients of a Laplacian pyramid of the image.

    split(image) -> leaves      the tensors the optimiser updates (each requires grad)
    join(leaves) -> image       the image they stand for, differentiable
    project(leaves)             after a step: keep the image in [0, 1] (clamp, then split again)

A Laplacian pyramid (Burt and Adelson 1983) holds the image as band-pass details, each at half the resolution of the
one before, and a small residual: join adds them back up, exactly. Optimising those coefficients (STROTSS, NNST)
lets a step move a whole region's tone as easily as a single pixel: with Adam, every coefficient takes a step of
the same size, so the coarse levels, with few coefficients each, move large areas quickly and coherently. Under
L-BFGS the pyramid is a linear change of variables (a preconditioner).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PARAMS", "PYRAMID_RESIDUAL", "Param", "Pixels", "Pyramid", "image_param"]

PARAMS = ("pixels", "pyramid")
PYRAMID_RESIDUAL = 8  # px: the pyramid halves the image until its short side would fall below this


class Param:
    """The pixels as they are: one leaf, the image."""

    def split(self, image: Tensor) -> list[Tensor]:
        # Contiguous: a resized 1x1 input comes out channels-last strided, and L-BFGS flattens its gradient with view()
        return [image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)]

    def join(self, leaves: Sequence[Tensor]) -> Tensor:
        return leaves[0]

    @torch.no_grad()
    def project(self, leaves: Sequence[Tensor]) -> None:
        # Projected steps: the pixels stay in [0,1], so the optimised image is the saved one. For L-BFGS this reaches a
        # lower loss of the clipped image than clipping once at the end (bench/box.py).
        leaves[0].clamp_(0, 1)


Pixels = Param


def _down(x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(math.ceil(h / 2), math.ceil(w / 2)), mode="bilinear", align_corners=False,
                         antialias=True)


def _up(x: Tensor, hw: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)


class Pyramid(Param):
    """Laplacian pyramid leaves [detail at full size, detail at 1/2, ..., residual]; `levels` details (None: as many
    as keep the residual's short side >= PYRAMID_RESIDUAL px)."""

    def __init__(self, levels: int | None = None) -> None:
        self.levels = levels

    def count(self, hw: Sequence[int]) -> int:
        if self.levels is not None:
            return self.levels
        return max(0, int(math.log2(max(1, min(hw) / PYRAMID_RESIDUAL))))

    def decompose(self, image: Tensor) -> list[Tensor]:
        parts, current = [], image
        for _ in range(self.count(image.shape[-2:])):
            if min(current.shape[-2:]) < 2:
                break
            smaller = _down(current)
            parts.append(current - _up(smaller, current.shape[-2:]))
            current = smaller
        return [*parts, current]

    def split(self, image: Tensor) -> list[Tensor]:
        return [p.detach().contiguous().requires_grad_(True) for p in self.decompose(image.detach())]

    def join(self, leaves: Sequence[Tensor]) -> Tensor:
        current = leaves[-1]
        for detail in reversed(leaves[:-1]):
            current = _up(current, detail.shape[-2:]) + detail
        return current

    @torch.no_grad()
    def project(self, leaves: Sequence[Tensor]) -> None:
        image = self.join(leaves)
        if bool(((image < 0) | (image > 1)).any()):
            for leaf, part in zip(leaves, self.decompose(image.clamp(0, 1))):
                leaf.copy_(part)


def image_param(name: str) -> Param:
    if name == "pixels":
        return Param()
    if name == "pyramid":
        return Pyramid()
    raise ValueError(f"unknown param {name!r}; choose one of: {', '.join(PARAMS)}")
