"""`stylelab explain`: an HTML report (PNG figures by matplotlib) of what the style losses see.

For each style layer: the Gram matrices of style / content / output as heatmaps, per-channel mean and std,
and the distance of content and output to the style under every loss. It also checks the Gram = MMD identity
on these very images: ‖G_x − G_y‖²_F from Gram matrices next to MMD²_b with k(x,y) = (xᵀy)² from the feature
vectors themselves (pairwise sums, on a subsample of positions when the full sum is too large).
Sits on top of the core; nothing in the core imports it.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .compare import ALL_LOSSES
from .config import Config
from .image import ImageLike, save_image, to_tensor
from .losses import biased_mmd, flatten, gram
from .optimize import build_style_losses, compute_targets, load_inputs, prepare

MAX_PAIRWISE = 2048  # positions per image for the explicit O(n² C) MMD sum


@dataclass(frozen=True)
class IdentityCheck:
    """‖G_x − G_y‖²_F (from Gram matrices) and MMD²_b[(xᵀy)²] (from feature vectors) on the same positions."""

    layer: str
    positions: tuple[int, int]  # positions used (x, y)
    subsampled: bool
    gram_distance: float
    mmd: float

    @property
    def relative_difference(self) -> float:
        scale = max(abs(self.gram_distance), abs(self.mmd))
        return abs(self.gram_distance - self.mmd) / scale if scale > 0 else 0.0


def identity_check(x: Tensor, y: Tensor, layer: str, seed: int = 0) -> IdentityCheck:
    """x (C, Mx), y (C, My) -> both sides of the identity in float64."""
    g = torch.Generator().manual_seed(seed)
    subsampled = max(x.shape[1], y.shape[1]) > MAX_PAIRWISE

    def pick(f: Tensor) -> Tensor:
        if f.shape[1] <= MAX_PAIRWISE:
            return f
        return f[:, torch.randperm(f.shape[1], generator=g)[:MAX_PAIRWISE]]

    xs, ys = pick(x.double().cpu()), pick(y.double().cpu())
    gram_side = float(((gram(xs) - gram(ys)) ** 2).sum())
    mmd = float(biased_mmd(xs, ys, lambda a, b: (a.T @ b) ** 2))  # k(x, y) = (xᵀy)², all pairs
    return IdentityCheck(layer, (xs.shape[1], ys.shape[1]), subsampled, gram_side, mmd)


def explain(
    content: ImageLike, styles: ImageLike | Sequence[ImageLike], report_dir: str | Path,
    output: ImageLike | None = None, config: Config = Config(),
) -> Path:
    """Write report_dir/index.html and its figures; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out_dir = Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    content_t, style_ts = load_inputs(content, styles)
    assert content_t is not None  # a content was given
    model, c, ss = prepare(content_t, style_ts, config)
    device = c.device
    images = {"style": ss[0], "content": c}
    if output is not None:
        o = to_tensor(output, "output image")
        images["output"] = torch.nn.functional.interpolate(o, size=c.shape[-2:], mode="bicubic", antialias=True).clamp(0, 1).to(device)
    for name, im in images.items():
        save_image(im.cpu(), out_dir / f"{name}.png")

    layers = config.style_layers
    with torch.no_grad():
        feats = {name: {k: flatten(v) for k, v in model(im, layers).items()} for name, im in images.items()}
    eval_config = dataclasses.replace(config, style_loss=",".join(ALL_LOSSES), optimizer="lbfgs")
    losses = build_style_losses(eval_config)
    targets = compute_targets(model, c, ss, eval_config, losses)

    sections, checks = [], []
    for layer in layers:
        grams = {name: gram(f[layer]).cpu() for name, f in feats.items()}
        fig, axes = plt.subplots(1, len(grams), figsize=(4 * len(grams), 3.6))
        vmax = float(grams["style"].abs().max())
        for ax, (name, g) in zip(axes, grams.items()):
            im = ax.imshow((g.sign() * g.abs().sqrt()).numpy(), cmap="magma", vmin=0, vmax=vmax**0.5)
            ax.set_title(f"{name}: Gram (√ scale)")
            ax.set_xlabel("channel")
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(f"{layer}: G = F Fᵀ / M  ({grams['style'].shape[0]} channels)")
        fig.tight_layout()
        fig.savefig(out_dir / f"gram_{layer}.png", dpi=80)
        plt.close(fig)

        fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
        order = feats["style"][layer].mean(dim=1).argsort(descending=True).cpu()
        for name, f in feats.items():
            axes[0].plot(f[layer].mean(dim=1).cpu()[order].numpy(), label=name, lw=1)
            axes[1].plot(f[layer].std(dim=1, unbiased=False).cpu()[order].numpy(), label=name, lw=1)
        axes[0].set_title(f"{layer}: per-channel mean (channels by style mean)")
        axes[1].set_title(f"{layer}: per-channel std")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"moments_{layer}.png", dpi=80)
        plt.close(fig)

        rows = []
        for name in feats:
            if name == "style":
                continue
            cells = []
            for label, (loss, _) in losses.items():
                with torch.no_grad():
                    whole = targets.regions[0]  # explain has no masks: one region, the whole image
                    value = loss.loss(feats[name][layer], whole.stats[label][layer]) / whole.ref[label][layer]
                cells.append(f"<td>{float(value):.3f}</td>")
            rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
        head = "".join(f"<th>{html.escape(label)}</th>" for label in losses)
        sections.append(
            f"<h2>{layer}</h2><img src='gram_{layer}.png'><img src='moments_{layer}.png'>"
            f"<p>Distance to the style, normalised so the content image scores 1:</p>"
            f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>")
        other = "output" if "output" in feats else "content"
        checks.append(identity_check(feats[other][layer], feats["style"][layer], layer, config.seed))

    check_rows = "".join(
        f"<tr><td>{k.layer}</td><td>{k.positions[0]} × {k.positions[1]}{' (subsampled)' if k.subsampled else ''}</td>"
        f"<td>{k.gram_distance:.6e}</td><td>{k.mmd:.6e}</td><td>{k.relative_difference:.1e}</td></tr>"
        for k in checks)
    which = "output" if "output" in feats else "content"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>stylelab explain</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>What the style losses see</h1>
<p>{" ".join(f"<img src='{n}.png' height=160 title='{n}'>" for n in images)}<br>
Images: {", ".join(images)} ({c.shape[-1]}×{c.shape[-2]} px). Each VGG19 layer turns an image into a cloud of
feature vectors, one per position. A style loss compares the {which} image's cloud with the style's.</p>
<h2>Gram matching is MMD with k(x, y) = (xᵀy)²</h2>
<p>Left: ‖G<sub>x</sub> − G<sub>y</sub>‖²<sub>F</sub> with G = F Fᵀ / M computed from Gram matrices. Right: the
biased MMD² computed from the feature vectors, as a sum of (x<sub>i</sub>ᵀx<sub>j</sub>)² over all pairs. x = the
{which} image, y = the style. Where an image has more than {MAX_PAIRWISE} positions both sides use the same random
subsample of {MAX_PAIRWISE} positions (the pairwise sum is quadratic in positions), so they must still agree.</p>
<table><tr><th>layer</th><th>positions (x × y)</th><th>‖ΔG‖²<sub>F</sub></th><th>MMD²</th><th>relative difference</th></tr>
{check_rows}</table>
{''.join(sections)}
</body></html>"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
