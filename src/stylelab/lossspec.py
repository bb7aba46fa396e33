"""Style-loss specs: the text of `--style-loss` / `Config.style_loss` -> a mix of `LossTerm`s.

    'gram:0.5,mmd-poly(c=1):0.5'  ->  [LossTerm('gram', (), 0.5), LossTerm('mmd-poly', (('c', 1),), 0.5)]

The registry and the losses themselves live in `stylelab.losses`; this module only parses and checks the text
(each term is built once, so every parameter is checked against its valid range before any work).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .losses import StyleLoss, style_loss


@dataclass(frozen=True)
class LossTerm:
    """One member of a style-loss mix: `name(params):weight`."""

    name: str
    params: tuple[tuple[str, Any], ...]
    weight: float  # normalised over the mix

    @property
    def label(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({args})" if args else self.name

    def build(self, seed: int = 0, resample: bool = False) -> StyleLoss:
        return style_loss(self.name, seed=seed, resample=resample, **dict(self.params))


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


def _parse_param(text: str) -> tuple[str, Any]:
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
