"""The run flags, generated from `Config`'s fields: one source of truth for names, defaults, choices and help.

Every field of `Config` declares its flag with `config.setting(default, help, ...)`; this module turns those into
argparse options (`add_config_flags`) and the parsed options back into a `Config` (`config_from_args`). The CLI's
commands, the batch manifest's columns and the web app's form (which walks the `run` parser) all go through here,
so a new setting is one field in config.py. Naming: field `style_weight` -> flag `--style-weight`, dest
`style_weight`; a bool field that defaults to True (`multiscale`) -> `--no-multiscale`, dest `no_multiscale`.
"""

from __future__ import annotations

import argparse
import urllib.parse
import urllib.request
from dataclasses import Field, fields
from pathlib import Path
from typing import Any, get_type_hints

from .config import (
    AUTO_MULTISCALE_ABOVE,
    DEFAULT_LR,
    INITS,
    LAYER_NAMES,
    MAX_SIZE,
    MIN_TILE,
    PYRAMID_ADAM_LR,
    Config,
    ConfigError,
    Region,
)
from .image import is_url
from .layers import TILE_GRID
from .losses.spec import STYLE_LOSSES, TILING_LOSSES, TILING_NOTE
from .presets import PRESETS, apply_preset

__all__ = ["add_config_flags", "add_inputs", "add_outputs", "add_run_arguments", "config_from_args", "dest",
    "flag_fields", "flag_name", "local_path", "parse_layers", "parse_mask", "parse_scales", "parse_texture_size",
    "source"]

_HELP_VALUES = {  # the '{name}'s in Config's help texts
    "lr": ", ".join(f"{v:.4g} for {k}" for k, v in DEFAULT_LR.items())
    + f" ({PYRAMID_ADAM_LR:g} for adam on a pyramid)",
    "losses": ", ".join(STYLE_LOSSES),
    "multiscale_above": AUTO_MULTISCALE_ABOVE,
    "tile_grid": TILE_GRID,
    "min_tile": MIN_TILE,
    "tiling": ", ".join(TILING_LOSSES) + f" ({TILING_NOTE})",
}
_TYPES = {int: int, float: float, str: str}


def flag_fields(texture: bool = False) -> list[Field]:
    """Config's fields that have a flag of their own, in declaration order (texture: those `texture` offers)."""
    return [f for f in fields(Config) if f.metadata.get("flag", True) is not None
            and (f.metadata.get("texture", True) or not texture)]


def flag_name(f: Field) -> str:
    if "flag" in f.metadata:
        return f.metadata["flag"]
    prefix = "no-" if f.default is True else ""
    return "--" + prefix + f.name.replace("_", "-")


def dest(f: Field) -> str:
    return flag_name(f)[2:].replace("-", "_")


def _value_type(f: Field) -> Any:
    """int, float, str or bool for a field annotated T or T | None; None for the others (parsed from text)."""
    hint = get_type_hints(Config)[f.name]
    for t in (bool, int, float, str):
        if hint is t or hint == t | None:
            return t
    return None


def add_config_flags(p: argparse.ArgumentParser, texture: bool = False) -> None:
    """One option per Config field (`stylelab texture` takes --size as WxH and has no --color or --mask), and
    --preset."""
    p.add_argument("--preset", default=None, choices=tuple(PRESETS), action=_Noted,
                   help="a named recipe: its settings are the defaults, and any flag you give overrides them; "
                   + "; ".join(f"{name}: {line}" for name, (_, _, line) in PRESETS.items()))
    for f in flag_fields(texture):
        meta, kind = f.metadata, _value_type(f)
        help = meta["help"].format(**_HELP_VALUES)
        if texture and f.name == "size":
            p.add_argument("--size", default="512x512", metavar="WxH", help="size of the texture, px",
                           action=_Noted)
        elif kind is bool:
            p.add_argument(flag_name(f), action=_NotedTrue, help=help)
        elif meta["text"] == "masks":
            p.add_argument(flag_name(f), action=_NotedAppend, default=[], metavar=meta["metavar"], help=help)
        else:
            default: Any = f.default
            if meta["text"] == "layers":
                default = ",".join(default)
            p.add_argument(flag_name(f), type=_TYPES.get(kind, str), default=default, choices=meta["choices"],
                           metavar=meta["metavar"], help=help, action=_Noted)


EXPLICIT = "explicit_settings"  # the Namespace attribute that lists the dests given on the command line


def _note(namespace: argparse.Namespace, dest: str) -> None:
    given = getattr(namespace, EXPLICIT, None) or set()
    setattr(namespace, EXPLICIT, given | {dest})


def _noting(base: type[argparse.Action]) -> type[argparse.Action]:
    """An argparse action like `base` that also notes its flag was given (a preset yields to it even when its
    value is stylelab's default)."""

    class Noted(base):  # type: ignore[valid-type, misc]
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            super().__call__(parser, namespace, values, option_string)
            _note(namespace, self.dest)

    return Noted


_Noted = _noting(argparse._StoreAction)
_NotedTrue = _noting(argparse._StoreTrueAction)
_NotedAppend = _noting(argparse._AppendAction)


def config_from_args(args: argparse.Namespace, texture_size: tuple[int, int] | None = None) -> Config:
    """The Config of parsed options (or of a Namespace with the same dests); a bad value: ConfigError."""
    values: dict[str, Any] = {}
    for f in flag_fields(texture=texture_size is not None):
        raw = getattr(args, dest(f))
        text = f.metadata["text"]
        if _value_type(f) is bool:
            values[f.name] = (not raw) if f.default is True else bool(raw)
        elif text == "layers":
            values[f.name], values[f.metadata["weights_field"]] = parse_layers(raw, flag_name(f))
        elif text == "scales":
            values[f.name] = parse_scales(raw) if raw else None
        elif text == "numbers":
            values[f.name] = None if raw is None else tuple(_float(w, f"{flag_name(f)} weight") for w in raw.split(","))
        elif text == "masks":
            values[f.name] = tuple(parse_mask(m) for m in raw)
        elif text == "path-or-choice":
            values[f.name] = raw if raw in INITS else source(raw)
        else:
            values[f.name] = raw
    pinned: set[str] = set()  # what a texture fixes, which no preset changes
    if texture_size:
        values["size"] = max(texture_size)
        values["color"] = "none"  # `texture` has no --color: there is no content whose colours a step would keep
        if values["init"] == "content":
            values["init"] = "noise"
        pinned = {"size", "color", "init"}
    if values["scales"]:
        values["size"] = values["scales"][-1][0]
    preset = getattr(args, "preset", None)
    if preset:
        kept = _explicit(args, values) | pinned
        values = apply_preset(preset, {k: v for k, v in values.items() if k in kept})
    return Config(**values)


def _explicit(args: argparse.Namespace, values: dict[str, Any]) -> set[str]:
    """The Config fields set explicitly: those whose flags were given on the command line (noted by the parser);
    the web form notes what differs from the form it showed; for a Namespace built elsewhere without notes, those
    that differ from stylelab's defaults."""
    given = getattr(args, EXPLICIT, None)
    if given is None:
        defaults = {f.name: f.default for f in fields(Config)}
        return {k for k, v in values.items() if v != defaults[k]}
    names = set()
    for f in flag_fields():
        if dest(f) in given:
            names.add(f.name)
            if f.metadata.get("weights_field"):
                names.add(f.metadata["weights_field"])
    if "scales" in names or "size" in given:
        names.add("size")
    return names


def parse_layers(text: str, what: str) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """'relu1_1:2,relu2_1' -> (('relu1_1', 'relu2_1'), (2.0, 1.0)); weights None when none given."""
    names, weights, weighted = [], [], False
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, w = item.partition(":")
        if name not in LAYER_NAMES:
            raise ConfigError(f"unknown layer {name!r} in {what}; valid layers: {', '.join(LAYER_NAMES)}")
        names.append(name)
        weights.append(_float(w, f"weight of {name} in {what}") if w else 1.0)
        weighted = weighted or bool(w)
    return tuple(names), (tuple(weights) if weighted else None)


def parse_scales(text: str) -> tuple[tuple[int, int], ...]:
    """'256:300,512:200' -> ((256, 300), (512, 200))."""
    scales = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        size, sep, steps = item.partition(":")
        if not sep:
            raise ConfigError(f"--scales item {item!r} must be SIZE:STEPS, e.g. 512:200")
        scales.append((_int(size, "--scales size"), _int(steps, "--scales steps")))
    if not scales:
        raise ConfigError("--scales needs at least one SIZE:STEPS item")
    return tuple(scales)


def parse_mask(text: str) -> Region:
    """'sky.png=2:clouds.png' -> Region('<abs>/sky.png', style=1, style_mask='<abs>/clouds.png')."""
    mask, sep, rest = text.rpartition("=")
    if not sep or not mask:
        raise ConfigError(f"--mask {text!r} must be CONTENT_MASK=STYLE[:STYLE_MASK], e.g. sky.png=2")
    index, _, style_mask = rest.partition(":")
    k = _int(index, "--mask style number")
    if k < 1:
        raise ConfigError(f"--mask style number counts from 1, got {k}")
    return Region(source(mask), k - 1, source(style_mask) if style_mask else None)


def parse_texture_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); a single number means a square."""
    w, sep, h = text.lower().partition("x")
    size = (_int(w, "--size width"), _int(h if sep else w, "--size height"))
    if min(size) < 16:
        raise ConfigError(f"--size must be at least 16x16 px, got {text}")
    if max(size) > MAX_SIZE:
        raise ConfigError(f"--size sides must be at most {MAX_SIZE} px, got {text}")
    return size


def source(path: str) -> str:
    """An input as stored in provenance: URLs as they are, files as absolute paths (replay from anywhere);
    a file:// URL is the local file it names."""
    if is_url(path):
        return path
    return str(Path(local_path(path)).absolute())


def local_path(path: str) -> str:
    """'file:///tmp/a%20b.png' -> '/tmp/a b.png' (host empty or localhost); other text unchanged."""
    if not path[:7].lower() == "file://":
        return path
    url = urllib.parse.urlsplit(path)
    if url.netloc not in ("", "localhost"):
        raise ConfigError(f"cannot read {path}: file:// URLs on another host ({url.netloc}) are not supported")
    return urllib.request.url2pathname(url.path)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{what} must be an integer, got {text!r}") from None


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None


def add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("content", help="content image (path or http(s) URL)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (path or URL)")


def add_outputs(p: argparse.ArgumentParser) -> None:
    """Flags about files rather than the image: saving, bit depth, checkpoints, progress."""
    p.add_argument("--bit-depth", type=int, default=8, choices=(8, 16), help="bits per channel (16: PNG, TIFF)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save the image every N steps as OUTPUT_stepNNNN.ext")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="save the optimisation state in DIR (atomically) so --resume can continue a killed run")
    p.add_argument("--checkpoint-every", type=int, default=20, metavar="N", help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the state saved in --checkpoint DIR")
    p.add_argument("--overwrite", action="store_true", help="allow the output to replace one of the input files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The whole `stylelab run` command line: inputs, -o, every setting, the file flags, --preview. The web app's
    form is generated from it too."""
    add_inputs(p)
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp, .tif, .bmp)")
    add_config_flags(p)
    add_outputs(p)
    p.add_argument("--preview", default=None, metavar="PATH",
                   help="first write the feed-forward stylisation (stylelab[fast], ~0.2 s) to PATH, an image to look "
                   "at while the optimiser works")
