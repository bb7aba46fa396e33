"""The style-loss registry and its specs: the text of `--style-loss` / `Config.style_loss` -> a mix of `LossTerm`s.

    'gram:0.5,mmd-poly(c=1):0.5'  ->  [LossTerm('gram', (), 0.5), LossTerm('mmd-poly', (('c', 1),), 0.5)]

The registry names every style loss and its factory in this package; the factory is imported when a loss is
first built, so names can be listed and specs split without torch (the command line answers `--help` and usage
errors before torch loads). Parsing builds each term once, so every parameter is checked against its valid range
before any work.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import StyleLoss

    # An entry of the registry, whatever its statistics and target types (each factory states its own).
    AnyStyleLoss = StyleLoss[Any, Any]

Param = int | float | str  # the value of a loss parameter, as parsed from `name(key=value,...)`

__all__ = ["ALL_LOSSES", "GUIDED_LOSSES", "STYLE_LOSSES", "STYLE_SAMPLE", "TILING_LOSSES", "TILING_NOTE", "LossTerm",
           "loss_factory",
           "parse_style_losses", "split_terms", "style_loss"]

# name -> factory(**params) -> StyleLoss: "module:function" in this package (or, for an extension, the function
# itself). Parameters are bound explicitly when the loss is built.
STYLE_LOSSES: dict[str, str | Callable[..., AnyStyleLoss]] = {
    "gram": "moments:gram_loss",
    "mmd-poly": "mmd:mmd_poly",
    "mmd-linear": "moments:mean_loss",
    "bn": "moments:bn_loss",
    "mmd-gaussian": "mmd:mmd_gaussian",
    "w2": "moments:w2_loss",
    "sliced-wasserstein": "transport:sliced_wasserstein",
    "histogram": "transport:histogram_loss",
    "nn": "neighbours:nn_loss",
    "remd": "neighbours:remd_loss",
}
# The entries whose targets also depend on the content's layout (their StyleLoss has a guide): plain data, so a
# command can refuse them before torch loads
GUIDED_LOSSES = ("nn",)
# The entries that can run in tiles (their StyleLoss has a tiling: statistics that are averages over positions, or
# 1-D transport on binned ranks); mmd-poly only at degree 2, the transport losses only with bins > 0. Plain data
# too, so a run can be refused before torch loads.
TILING_LOSSES = ("gram", "mmd-poly", "mmd-linear", "bn", "w2", "sliced-wasserstein", "histogram")
TILING_NOTE = "mmd-poly at degree 2, sliced-wasserstein and histogram with bins > 0"
# Positions of a style image a transport loss keeps per layer in tiles (64 MiB at 256 channels); plain data for the
# memory estimate
STYLE_SAMPLE = 65536
# One representative spec per registry entry (defaults, and the linear-time estimator for the Gaussian).
ALL_LOSSES = tuple(name if name != "mmd-gaussian" else "mmd-gaussian(estimator=rff)" for name in STYLE_LOSSES)
RUN_CONTEXT = ("seed", "resample")  # supplied by the optimiser, never by the user


def loss_factory(name: str) -> Callable[..., AnyStyleLoss]:
    """The factory of registry entry `name` (imports stylelab.losses, and so torch, on first use)."""
    try:
        entry = STYLE_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown style loss {name!r}; choose one of: {', '.join(STYLE_LOSSES)}") from None
    if isinstance(entry, str):
        module, _, function = entry.partition(":")
        return getattr(importlib.import_module(f".{module}", __package__), function)
    return entry


def style_loss(name: str, /, seed: int = 0, resample: bool = False, **params: Param) -> AnyStyleLoss:
    """Build the registry entry `name` with `params` bound; `seed`/`resample` go to losses that sample."""
    factory = loss_factory(name)
    signature = inspect.signature(factory).parameters
    for key, value in params.items():
        if key not in signature:
            raise _no_parameter(name, key)
        default = signature[key].default  # its type is the parameter's type
        if not isinstance(default, (int, float)):
            continue
        # is_integer: also False for inf and nan, which int() cannot convert
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not (isinstance(default, float) or float(value).is_integer())):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"style loss {name!r}: {key} must be {kind}, got {value!r}")
        if isinstance(default, float) and not math.isfinite(value):
            raise ValueError(f"style loss {name!r}: {key} must be finite, got {value!r}")
        if isinstance(default, int):
            params[key] = int(value)
    context = {k: v for k, v in (("seed", seed), ("resample", resample)) if k in signature}
    return factory(**params, **context)


def _no_parameter(name: str, key: str) -> ValueError:
    own = [k for k in inspect.signature(loss_factory(name)).parameters if k not in RUN_CONTEXT]
    return ValueError(f"style loss {name!r} has no parameter {key!r}; its parameters: {', '.join(own) or 'none'}")


@dataclass(frozen=True)
class LossTerm:
    """One member of a style-loss mix: `name(params):weight`."""

    name: str
    params: tuple[tuple[str, Param], ...]
    weight: float  # normalised over the mix

    @property
    def label(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({args})" if args else self.name

    @property
    def tiles(self) -> bool:
        """Whether this term can run in tiles (its StyleLoss has a tiling), known without building it."""
        params = dict(self.params)
        return self.name in TILING_LOSSES and params.get("degree", 2) == 2 and params.get("bins", 1) != 0

    def build(self, seed: int = 0, resample: bool = False) -> AnyStyleLoss:
        params = dict(self.params)
        for key in RUN_CONTEXT:  # a keyword style_loss takes itself: refused here, as any unknown parameter is
            if key in params:
                raise _no_parameter(self.name, key)
        return style_loss(self.name, seed=seed, resample=resample, **params)


_TERM = re.compile(r"^\s*([a-z0-9-]+)\s*(?:\(([^()]*)\))?\s*(?::\s*([^:,()]+))?\s*$")


def split_terms(spec: str) -> list[str]:
    """Split on the commas outside parentheses: 'a(x=1,y=2):1,b' -> ['a(x=1,y=2):1', 'b']."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(spec + ","):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(spec[start:i])
            start = i + 1
    return items


def parse_style_losses(spec: str) -> list[LossTerm]:
    """'gram:0.5,mmd-poly(c=1):0.5' -> LossTerms with weights normalised to sum 1; each is built once to check."""
    terms = [parse_term(item) for item in split_terms(spec)]
    total = sum(t.weight for t in terms)
    if not terms or total <= 0:
        raise ValueError(f"style loss {spec!r} needs at least one loss with weight > 0")
    terms = [LossTerm(t.name, t.params, t.weight / total) for t in terms if t.weight > 0]
    if len({t.label for t in terms}) != len(terms):
        raise ValueError(f"style loss {spec!r} names the same loss twice")
    for t in terms:
        t.build()
    return terms


def parse_term(item: str) -> LossTerm:
    """'mmd-poly(c=1):2' -> LossTerm('mmd-poly', (('c', 1),), 2.0); the weight is not normalised yet."""
    m = _TERM.match(item)
    if not m:
        raise ValueError(f"cannot parse style loss {item.strip()!r}; write NAME, NAME(key=value,...) or NAME:WEIGHT")
    name, args, weight = m.group(1), m.group(2), m.group(3)
    params = tuple(_parse_param(a) for a in args.split(",") if a.strip()) if args else ()
    w = _number(weight, f"weight of {name}") if weight else 1.0
    if not (w >= 0 and w != float("inf")):
        raise ValueError(f"weight of style loss {name} must be a finite number >= 0, got {weight}")
    return LossTerm(name, params, w)


def _parse_param(text: str) -> tuple[str, Param]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise ValueError(f"style loss parameter {text.strip()!r} must be key=value")
    value = value.strip()
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
