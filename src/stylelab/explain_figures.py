"""The figures of `stylelab explain` (matplotlib, no pyplot: no global state, no display)."""

from __future__ import annotations

from typing import BinaryIO

from matplotlib.figure import Figure

from .explain import LayerView


def gram_figure(view: LayerView, out: BinaryIO) -> None:
    """One Gram heatmap per image, on a square-root colour scale shared with the style's, as PNG into `out`."""
    fig = Figure(figsize=(4 * len(view.grams), 3.6))
    axes = fig.subplots(1, len(view.grams))
    vmax = float(view.grams["style"].abs().max())
    for ax, (name, g) in zip(axes, view.grams.items()):
        im = ax.imshow((g.sign() * g.abs().sqrt()).numpy(), cmap="magma", vmin=0, vmax=vmax**0.5)
        ax.set_title(f"{name}: Gram (√ scale)")
        ax.set_xlabel("channel")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{view.layer}: G = F Fᵀ / M  ({view.grams['style'].shape[0]} channels)")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=80)


def moments_figure(view: LayerView, out: BinaryIO) -> None:
    """Per-channel means and stds of every image, channels sorted by the style's mean, as PNG into `out`."""
    fig = Figure(figsize=(11, 3.2))
    mean_ax, std_ax = fig.subplots(1, 2)
    order = view.means["style"].argsort(descending=True)
    for name in view.means:
        mean_ax.plot(view.means[name][order].numpy(), label=name, lw=1)
        std_ax.plot(view.stds[name][order].numpy(), label=name, lw=1)
    mean_ax.set_title(f"{view.layer}: per-channel mean (channels by style mean)")
    std_ax.set_title(f"{view.layer}: per-channel std")
    mean_ax.legend()
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=80)
