"""`stylelab explain`: an HTML report (PNG figures by matplotlib) of what the style losses see.

First, in plain words: per style layer, what the network looks at there (its receptive field) and how much of the
style the output took at that layer (`style_match`), or without an output how far apart content and style are
(`style_gap`). Then the maths: for each style layer the Gram matrices of style / content / output as heatmaps,
per-channel mean and std, and the distance of content and output to the style under every loss. It also checks the
Gram = MMD identity (docs/method.md §3.2) on these very images: ‖G_x − G_y‖²_F from Gram matrices next to MMD²_b
with k(x,y) = (xᵀy)² from the feature vectors themselves (pairwise sums, on a subsample of positions when the full
sum is too large). Sits on top of the core; nothing in the core imports it.

Images are measured at the output's own long edge (the size it was made at) unless a size is asked for: at any
other size the network sees different strokes, and the distances measure something the run never optimised.

Three parts: `analyse` (the numbers, here), figures.py (matplotlib) and page.py (the HTML); report.py's `explain`
runs them and writes every file atomically.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import Config
from ..engine.features import LAYER_NAMES, VGG19
from ..engine.optimize import RegionTargets, StyleLosses, build_style_losses, compute_targets, load_inputs, prepare
from ..image import ImageLike, resize, to_tensor
from ..losses.base import flatten
from ..losses.mmd import biased_mmd
from ..losses.moments import gram
from .compare import ALL_LOSSES

__all__ = [
    "MATCH_LOSS",
    "MAX_PAIRWISE",
    "Analysis",
    "IdentityCheck",
    "LayerView",
    "analyse",
    "at_size",
    "headline_layer",
    "identity_check",
    "layer_scores",
    "receptive_field",
    "style_gap",
    "style_match",
]

MAX_PAIRWISE = 2048  # positions per image for the explicit O(n² C) MMD sum
MATCH_LOSS = "gram"  # the loss whose distance the first screen turns into "style matched"


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
    size: int  # long edge the images were measured at, px
    size_from_output: bool  # True: `size` is the output's own long edge; False: it was asked for (or no output)
    files: dict[str, tuple[int, int]]  # name -> (W, H) of the image as given, before it was resized to be measured


def receptive_field(layer: str) -> int:
    """Side, in input px, of the square patch one feature of `layer` depends on: a 3×3 convolution widens it by
    2 steps, a 2×2 pooling by 1 step and doubles the step (theory; the effective field is smaller)."""
    side, step = 1, 1
    for name in LAYER_NAMES[: LAYER_NAMES.index(layer) + 1]:
        if name.startswith("conv"):
            side += 2 * step
        elif name.startswith("pool"):
            side, step = side + step, step * 2
    return side


def style_match(view: LayerView, name: str = "output") -> float:
    """1 − ‖G_name − G_S‖_F / ‖G_content − G_S‖_F: 1 = the style's Gram matrix, 0 = no closer than the content
    (below 0: further). The Gram loss is the squared distance normalised at the content, hence the square root."""
    return 1.0 - math.sqrt(max(view.distances[name][MATCH_LOSS], 0.0))


def style_gap(view: LayerView) -> float:
    """‖G_c − G_s‖_F / √(‖G_c‖²_F + ‖G_s‖²_F) of content and (first) style, in [0, 1] for Grams of ReLU features
    (entries ≥ 0): 0 = the same statistics, 1 = no channel pair active in both."""
    c, s = view.grams["content"].double(), view.grams["style"].double()
    scale = math.sqrt(float((c**2).sum() + (s**2).sum()))
    return float(torch.linalg.matrix_norm(c - s)) / scale if scale > 0 else 0.0


def layer_scores(analysis: Analysis) -> dict[str, float]:
    """The first screen's number per style layer: `style_match` with an output, else `style_gap`."""
    score = style_match if analysis.compared == "output" else style_gap
    return {view.layer: score(view) for view in analysis.layers}


def headline_layer(analysis: Analysis) -> str:
    """The layer the first screen names: the least matched (with an output), else where content and style differ
    most (where a stylisation will change the picture most)."""
    scores = layer_scores(analysis)
    pick = min if analysis.compared == "output" else max
    return pick(scores, key=scores.__getitem__)


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


def at_size(config: Config, size: int) -> Config:
    """`config` measuring at long edge `size` (one scale): style images keep their size relative to the output."""
    style_size = None if config.style_size is None else max(16, round(config.style_size * size / config.size))
    return dataclasses.replace(config, size=size, style_size=style_size, scales=None)


def _wh(image: Tensor) -> tuple[int, int]:
    return int(image.shape[-1]), int(image.shape[-2])


@torch.no_grad()
def analyse(content: ImageLike, styles: ImageLike | Sequence[ImageLike], output: ImageLike | None = None,
            config: Config = Config(), size: int | None = None) -> Analysis:
    """The numbers of the report: features of style, content (and output, resized to the content) at each style
    layer, their Grams and moments, every registry loss's normalised distance, and the identity check.
    Measured at long edge `size`; None: the output's own long edge, or config.size without an output."""
    content_t, style_ts = load_inputs(content, styles)
    assert content_t is not None  # a content was given
    output_t = None if output is None else to_tensor(output, "output image")
    own = output_t is not None and size is None
    config = at_size(config, size or (max(output_t.shape[-2:]) if output_t is not None else config.size))
    model, c, ss = prepare(content_t, style_ts, config)
    images = {"style": ss[0], "content": c}
    files = {"style": _wh(style_ts[0]), "content": _wh(content_t)}
    if output_t is not None:
        images["output"] = resize(output_t, tuple(c.shape[-2:])).clamp(0, 1).to(c.device)
        files["output"] = _wh(output_t)
    eval_config = dataclasses.replace(config, style_loss=",".join(ALL_LOSSES), optimizer="lbfgs")
    losses = build_style_losses(eval_config)
    whole = compute_targets(model, c, ss, eval_config, losses).regions[0]  # no masks: one region, the whole image
    views = _layer_views(model, images, whole, config, losses)
    return Analysis({k: v.cpu() for k, v in images.items()}, tuple(losses),
                    "output" if output_t is not None else "content", views, config.size, own, files)


def _layer_views(model: VGG19, images: dict[str, Tensor], whole: RegionTargets, config: Config,
                 losses: StyleLosses) -> tuple[LayerView, ...]:
    """One LayerView per style layer of `config`, from the features of every image in `images`."""
    feats = {name: {k: flatten(v) for k, v in model(im, config.style_layers).items()} for name, im in images.items()}
    compared = "output" if "output" in feats else "content"
    views = []
    for layer in config.style_layers:
        f = {name: per_layer[layer] for name, per_layer in feats.items()}  # name -> (C, M)
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
    return tuple(views)
