"""The figures of `stylelab explain` (matplotlib, no pyplot: no global state, no display)."""

from __future__ import annotations

from typing import BinaryIO

import torch
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure

from .explain import LayerView

__all__ = ["DECADES", "gram_figure", "gram_norm", "moments_figure"]

DECADES = 4  # orders of magnitude below the largest entry that the Gram colour scale still tells apart


def gram_norm(view: LayerView) -> SymLogNorm:
    """One log colour scale for all of a layer's Gram matrices: from the largest |entry| down DECADES decades.

    Why log: entries span many orders of magnitude, and at deep layers a few strong channels would leave every
    other entry dark on a linear (or √) scale. Symmetric, so Grams of conv layers (entries < 0) still show."""
    stacked = torch.stack(list(view.grams.values())).double()
    top = max(float(stacked.abs().max()), 1e-30)
    low = min(float(stacked.min()), 0.0)
    return SymLogNorm(linthresh=top * 10.0**-DECADES, vmin=low, vmax=top, base=10)


def gram_figure(view: LayerView, out: BinaryIO) -> None:
    """One Gram heatmap per image on a shared log colour scale, channels sorted by the style's own strength (its
    diagonal), as PNG into `out`."""
    fig = Figure(figsize=(3.6 * len(view.grams) + 1, 3.8), layout="constrained")
    axes = fig.subplots(1, len(view.grams), squeeze=False)[0]
    order = view.grams["style"].diagonal().argsort(descending=True)
    norm = gram_norm(view)
    for ax, (name, g) in zip(axes, view.grams.items()):
        im = ax.imshow(g[order][:, order].double().numpy(), cmap="magma", norm=norm, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("channel (strongest in the style first)")
    fig.colorbar(im, ax=list(axes), fraction=0.03, label="G entry (log scale)")
    fig.suptitle(f"{view.layer}: Gram matrices G = F Fᵀ / M, {view.grams['style'].shape[0]} channels")
    fig.savefig(out, format="png", dpi=80)


def moments_figure(view: LayerView, out: BinaryIO) -> None:
    """Per-channel means and stds of every image, channels sorted by the style's mean, as PNG into `out`."""
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    mean_ax, std_ax = fig.subplots(1, 2)
    order = view.means["style"].argsort(descending=True)
    for name in view.means:
        mean_ax.plot(view.means[name][order].numpy(), label=name, lw=1)
        std_ax.plot(view.stds[name][order].numpy(), label=name, lw=1)
    mean_ax.set_title(f"{view.layer}: per-channel mean (channels by style mean)")
    std_ax.set_title(f"{view.layer}: per-channel std")
    for ax in (mean_ax, std_ax):
        ax.set_xlabel("channel")
    mean_ax.legend()
    fig.savefig(out, format="png", dpi=80)
