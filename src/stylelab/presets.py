"""Named recipes: a preset is a set of defaults for Config's fields, which explicit settings override.

    stylelab run content.jpg style.jpg --preset nnst            # the recipe
    stylelab run content.jpg style.jpg --preset nnst --size 768 # the recipe at another size
    preset_config("nnst", size=768)                             # the same from Python

On the command line every flag given overrides the preset, even one set to stylelab's default (`--style-weight 10`);
the web form shows a chosen preset's values in its fields, and a field counts as given when it differs from what
the form showed (the preset's value, else stylelab's default). A preset's schedule follows the output size:
`scales` is derived from `size` unless given. Plain data: no torch here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .config import Config, ConfigError

__all__ = ["PRESETS", "apply_preset", "preset_config", "preset_schedule"]


def preset_schedule(size: int, smallest: int, steps: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Scales from `smallest` px (or `size`, if smaller) doubling up to `size`; `steps` are the steps of the finest
    scales, finest first, and the last of them repeats for coarser ones: 512 px, 64, (30, 80, 100) ->
    64:100, 128:100, 256:80, 512:30."""
    sizes = [size]
    while sizes[-1] // 2 >= smallest:
        sizes.append(sizes[-1] // 2)
    return tuple((s, steps[min(k, len(steps) - 1)]) for k, s in reversed(list(enumerate(sizes))))


# name -> (settings, what derives the schedule from the size), and a line for the help text
PRESETS: dict[str, tuple[dict[str, Any], Callable[[int], tuple[tuple[int, int], ...]] | None, str]] = {
    "nnst": (
        {"style_loss": "nn", "style_weight": 30.0, "color": "recolor"},
        lambda size: preset_schedule(size, 64, (30, 80, 100)),
        "neural neighbours (NNST): the style's own features, strokes that follow the content's shapes, the "
        "content's colours on the style's palette (--color recolor); 64 px up to --size",
    ),
}


def apply_preset(name: str, explicit: dict[str, Any]) -> dict[str, Any]:
    """Config values: the preset's, overridden by `explicit` ones; the schedule derived from the final size unless
    `scales` is explicit."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    settings, schedule, _ = PRESETS[name]
    values = {**settings, **explicit}
    if schedule is not None and "scales" not in explicit:
        size = values.get("size", Config.size)
        values["scales"] = schedule(size)
    return values


def preset_config(name: str, **overrides: Any) -> Config:
    """The Config of preset `name` with `overrides` (any Config field) applied."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
    return Config(**apply_preset(name, overrides))
