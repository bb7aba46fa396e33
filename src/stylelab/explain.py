"""`stylelab explain`: an HTML report (PNG figures by matplotlib) of what the style losses see.

For each style layer: the Gram matrices of style / content / output as heatmaps, per-channel mean and std,
and the distance of content and output to the style under every loss. It also checks the Gram = MMD identity
(docs/method.md §3.2) on these very images: ‖G_x − G_y‖²_F from Gram matrices next to MMD²_b with
k(x,y) = (xᵀy)² from the feature vectors themselves (pairwise sums, on a subsample of positions when the full sum
is too large). Sits on top of the core; nothing in the core imports it.

Three parts: `analyse` (the maths, here), explain_figures (matplotlib) and explain_html (the page); `explain`
runs them and writes every file atomically.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .compare import ALL_LOSSES
from .config import Config
from .files import write_atomic, write_text_atomic
from .image import ImageLike, resize, save_image, to_tensor
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


@dataclass(frozen=True)
class LayerView:
    """What one style layer shows, per image name ('style', 'content' and maybe 'output'); tensors on the CPU."""

    layer: str
    grams: dict[str, Tensor]  # name -> (C, C) G = F Fᵀ / M
    means: dict[str, Tensor]  # name -> (C,) per-channel mean over positions
    stds: dict[str, Tensor]  # name -> (C,) per-channel population std
    distances: dict[str, dict[str, float]]  # name (not the style) -> loss label -> normalised distance to the style
    check: IdentityCheck  # on the compared image (output, else content) against the style


@dataclass(frozen=True)
class Analysis:
    images: dict[str, Tensor]  # name -> (1, 3, H, W) on the CPU, the images the features were taken from
    losses: tuple[str, ...]  # loss labels, in table order
    compared: str  # 'output' if one was given, else 'content'
    layers: tuple[LayerView, ...]


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


@torch.no_grad()
def analyse(content: ImageLike, styles: ImageLike | Sequence[ImageLike], output: ImageLike | None = None,
            config: Config = Config()) -> Analysis:
    """The numbers of the report: features of style, content (and output, resized to the content) at each style
    layer, their Grams and moments, every registry loss's normalised distance, and the identity check."""
    content_t, style_ts = load_inputs(content, styles)
    assert content_t is not None  # a content was given
    model, c, ss = prepare(content_t, style_ts, config)
    images = {"style": ss[0], "content": c}
    if output is not None:
        images["output"] = resize(to_tensor(output, "output image"), tuple(c.shape[-2:])).clamp(0, 1).to(c.device)
    feats = {name: {k: flatten(v) for k, v in model(im, config.style_layers).items()} for name, im in images.items()}
    eval_config = dataclasses.replace(config, style_loss=",".join(ALL_LOSSES), optimizer="lbfgs")
    losses = build_style_losses(eval_config)
    whole = compute_targets(model, c, ss, eval_config, losses).regions[0]  # no masks: one region, the whole image
    compared = "output" if "output" in feats else "content"
    views = []
    for layer in config.style_layers:
        f = {name: per_layer[layer] for name, per_layer in feats.items()}
        distances = {name: {label: float(loss.loss(x, whole.stats[label][layer]) / whole.ref[label][layer])
                            for label, (loss, _) in losses.items()}
                     for name, x in f.items() if name != "style"}
        views.append(LayerView(
            layer,
            grams={name: gram(x).cpu() for name, x in f.items()},
            means={name: x.mean(dim=1).cpu() for name, x in f.items()},
            stds={name: x.std(dim=1, unbiased=False).cpu() for name, x in f.items()},
            distances=distances,
            check=identity_check(f[compared], f["style"], layer, config.seed),
        ))
    return Analysis({k: v.cpu() for k, v in images.items()}, tuple(losses), compared, tuple(views))


def explain(
    content: ImageLike, styles: ImageLike | Sequence[ImageLike], report_dir: str | Path,
    output: ImageLike | None = None, config: Config = Config(),
) -> Path:
    """Write report_dir/index.html and its figures; returns the HTML path."""
    from .explain_figures import gram_figure, moments_figure  # matplotlib: imported only for a report
    from .explain_html import page

    out_dir = Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyse(content, styles, output, config)
    for name, im in analysis.images.items():
        save_image(im, out_dir / f"{name}.png")
    for view in analysis.layers:
        for kind, draw in (("gram", gram_figure), ("moments", moments_figure)):
            write_atomic(out_dir / f"{kind}_{view.layer}.png", functools.partial(draw, view))
    return write_text_atomic(out_dir / "index.html", page(analysis))
