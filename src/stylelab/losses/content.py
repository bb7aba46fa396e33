"""The content losses (features, self-similarity) and total variation."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import at_least_float32

__all__ = ["SELF_SIMILARITY_SAMPLES", "SelfSimilarityTarget", "content_loss", "self_similarity",
           "self_similarity_loss", "self_similarity_target", "tv_loss"]

SELF_SIMILARITY_SAMPLES = 2048  # positions compared pairwise per layer (a 2048² matrix: 16 MiB)

# (positions (n,), the content's normalised self-distances (n, n), the loss's normaliser)
SelfSimilarityTarget = tuple[Tensor, Tensor, Tensor]


def content_loss(x: Tensor, target: Tensor, target_power: Tensor) -> Tensor:
    """Normalised MSE: mean((F_x − F_c)²) / mean(F_c²); 1 for an all-zero response, 0 at the content image."""
    return ((at_least_float32(x) - target) ** 2).mean() / target_power


def self_similarity(features: Tensor) -> Tensor:
    """(C, n) -> (n, n): the cosine distances 1 − cos(f_i, f_j) between positions, each column divided by its sum
    (STROTSS): how unlike each other the positions are, relative to how unlike the rest each one is."""
    f = features / features.norm(dim=0, keepdim=True).clamp_min(1e-8)
    d = 1 - f.T @ f
    return d / d.sum(dim=0, keepdim=True).clamp_min(1e-8)


def self_similarity_target(activation: Tensor, seed: int = 0,
                           samples: int = SELF_SIMILARITY_SAMPLES) -> SelfSimilarityTarget:
    """The content's side of the self-similarity loss at one layer (1, C, H, W): up to `samples` seeded positions,
    the content's self-similarity there, and the normaliser: the loss of an output whose positions are all
    equally unlike one another (so 1 means "no layout at all", like the feature loss's 1 for an all-zero response)."""
    f = at_least_float32(activation.detach()).reshape(activation.shape[1], -1)
    m = f.shape[1]
    idx = torch.arange(m) if m <= samples else torch.randperm(
        m, generator=torch.Generator().manual_seed(seed % 2**64))[:samples].sort().values
    idx = idx.to(f.device)
    d = self_similarity(f[:, idx])
    flat = torch.full_like(d, 1.0 / d.shape[0])
    return idx, d, ((flat - d).abs().mean() * d.shape[0]).clamp_min(1e-12)


def self_similarity_loss(x: Tensor, target: SelfSimilarityTarget) -> Tensor:
    """mean |S(F_x) − S(F_c)| over the sampled pairs, normalised: 0 at the content image (and at any image whose
    positions are as alike as the content's), 1 for a layout-free output."""
    idx, d_content, norm = target
    f = at_least_float32(x).reshape(x.shape[1], -1)[:, idx]
    return (self_similarity(f) - d_content).abs().mean() * d_content.shape[0] / norm


def tv_loss(image: Tensor) -> Tensor:
    """Squared anisotropic total variation of a (B, 3, H, W) image in [0,1], averaged over pixel pairs."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return (dy**2).mean() + (dx**2).mean()
