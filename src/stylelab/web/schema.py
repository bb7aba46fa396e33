"""The web form's fields, read from the `stylelab run` argument parser, and their validation by the CLI's code.

No third copy of the settings: every option of `run` that sets the image (dest, help, default, choices, type) is
walked from the `stylelab run` arguments (flags.add_run_arguments); values come back through argparse's own
conversion and flags.config_from_args, so a value is refused exactly when the command line refuses it. The refusal
is a `FieldError`: the field's name, and a message that names it as the form labels it ("Size: must be a whole
number, got 'abc'"), not as a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Any

from .. import flags
from ..config import INITS, Config, ConfigError, Region
from ..presets import PRESETS

__all__ = ["LABELS", "NOT_IN_FORM", "FieldError", "form_schema", "label", "run_parser", "settings_to_config"]

# `run` options that are about files on the server's disk, not the image: a request never names a path, so
# these are not editable (-o, checkpoints, snapshots, --overwrite, --preview: the page shows its own) or take
# uploaded files instead (--mask: the job's `masks`, uploads; --weights: not offered). --init: its named choices
# here; an uploaded image to start from is the job's `init` (as "continue" sets it).
NOT_IN_FORM = ("help", "content", "styles", "output", "save_every", "checkpoint", "checkpoint_every", "resume",
               "overwrite", "quiet", "mask", "weights", "preview")


LABELS = {"lr": "Learning rate", "tv_weight": "TV weight", "lbfgs_history": "L-BFGS history"}  # else from the name


class FieldError(ConfigError):
    """A form value refused: `field` is the setting's name (the dest), the message starts with its label."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def label(dest: str) -> str:
    """The form's name of a setting: 'style_weight' -> 'Style weight'."""
    return LABELS.get(dest) or dest.replace("_", " ").capitalize()


@functools.lru_cache(maxsize=1)
def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylelab run")
    flags.add_run_arguments(parser)  # the very arguments of `stylelab run`
    return parser


def _actions() -> dict[str, argparse.Action]:
    return {a.dest: a for a in run_parser()._actions if a.option_strings and a.dest not in NOT_IN_FORM}


def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "bool"
    if action.type is int:
        return "int"
    if action.type is float:
        return "float"
    return "str"


def form_schema() -> list[dict[str, Any]]:
    """One entry per form field, in the parser's order: name (the dest), label, flag, kind, default, choices, help;
    the preset field also has `presets`, the form values each preset sets (preset_form_values)."""
    fields = []
    for dest, a in _actions().items():
        choices = list(a.choices) if a.choices is not None else None
        if dest == "init":
            choices = list(INITS)
        fields.append({"name": dest, "label": label(dest), "flag": max(a.option_strings, key=len), "kind": _kind(a),
                       "default": a.default, "choices": choices, "help": a.help or "", "metavar": a.metavar})
        if dest == "preset":
            fields[-1]["presets"] = {name: preset_form_values(name) for name in PRESETS}
    return fields


def preset_form_values(name: str | None) -> dict[str, Any]:
    """The form fields preset `name` sets, with its values ({} for none): the form shows them once the preset is
    chosen, and a field counts as set by the user when its value differs from them (or, for a field the preset
    leaves alone, from stylelab's default)."""
    if not name:
        return {}
    if name not in PRESETS:
        raise FieldError("preset", f"{label('preset')}: must be one of {', '.join(PRESETS)}, got {name!r}")
    dest_of = {f.name: flags.dest(f) for f in flags.flag_fields()}
    return {dest_of[key]: value for key, value in PRESETS[name][0].items()}


def _convert(action: argparse.Action, value: Any) -> Any:
    """A submitted value, converted and checked exactly as argparse does for the flag."""
    name = label(action.dest)
    if isinstance(action, argparse._StoreTrueAction):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off", ""):
            return value.lower() in ("true", "1", "on")
        raise FieldError(action.dest, f"{name}: must be on or off, got {value!r}")
    if value is None or (isinstance(value, str) and value.strip() == "" and action.default is None):
        return action.default
    try:
        return run_parser()._get_values(action, [str(value)])  # argparse's conversion and choices check
    except argparse.ArgumentError as exc:
        text = str(value)
        if "invalid choice" in str(exc):
            problem = f"must be one of {', '.join(map(str, action.choices or ()))}, got {text!r}"
        elif action.type in (int, float):
            problem = f"must be {'a whole number' if action.type is int else 'a number'}, got {text!r}"
        else:
            problem = str(exc).split(": ", 1)[-1]  # argparse's words less its "argument --flag: "
        raise FieldError(action.dest, f"{name}: {problem}") from None


def _names() -> dict[str, str]:
    """Every way a message of the CLI's checks names a form field -> its dest: the flag, the dest and Config's
    field name, with underscores or spaces ('--style-loss', 'style_loss', 'style loss'; 'multiscale')."""
    field_of = {flags.dest(f): f.name for f in flags.flag_fields()}
    names = {}
    for dest, a in _actions().items():
        for word in (dest, field_of.get(dest, dest)):
            names[word] = names[word.replace("_", " ")] = dest
        for flag in a.option_strings:
            names[flag] = dest
    return names


def _named(message: str) -> tuple[str, str] | None:
    """(dest, the words naming it) of the form field a message names first, as a flag or a setting; None if none."""
    found = []
    for words, dest in _names().items():
        m = re.search(rf"(?<![\w-]){re.escape(words)}(?![\w-])", message)
        if m:
            found.append((m.start(), -len(words), words, dest))
    if not found:
        return None
    _, _, words, dest = min(found)
    return dest, words


def _fails_alone(ns: argparse.Namespace, dest: str, tex: tuple[int, int] | None) -> bool:
    """Whether the CLI's checks refuse the value of `dest` with every other setting at its default."""
    alone = argparse.Namespace(**{**vars(ns), **{d: a.default for d, a in _actions().items() if d != dest}})
    try:
        flags.config_from_args(alone, texture_size=tex)
    except ConfigError:
        return True
    return False


def _field_error(exc: ConfigError, ns: argparse.Namespace, submitted: Sequence[str],
                 tex: tuple[int, int] | None) -> ConfigError:
    """The CLI's refusal as a FieldError of the field it names (its name turned into the label when the message
    starts with it), else of the first submitted setting refused on its own; else the error as it is."""
    message = str(exc)
    named = _named(message)
    if named:
        dest, words = named
        if message.startswith(words):
            message = message[len(words):].lstrip(" :")
    else:
        dest = next((d for d in submitted if _fails_alone(ns, d, tex)), "")
        if not dest:
            return exc
    return FieldError(dest, f"{label(dest)}: {message}")


def settings_to_config(settings: dict[str, Any], texture_size: int | None = None, init_path: str | None = None,
                       masks: Sequence[Region] = ()) -> tuple[Config, dict[str, Any]]:
    """Form values -> (Config, the normalised values). Unknown names and path-valued settings are refused.
    `init_path`: a server-side image to start from (edit and continue); `texture_size`: a square texture;
    `masks`: regions of server-side mask images (`--mask`), not for textures."""
    actions = _actions()
    unknown = sorted(set(settings) - set(actions))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}; settings: {', '.join(actions)}")
    preset = _convert(actions["preset"], settings["preset"]) if "preset" in settings else None
    # the form as shown before the user changes anything: stylelab's defaults, and the preset's values
    baseline = {**{dest: a.default for dest, a in actions.items()}, **preset_form_values(preset)}
    values = dict(baseline)
    for dest, value in settings.items():
        values[dest] = _convert(actions[dest], value)
    if values["init"] not in INITS:
        raise FieldError("init", f"{label('init')}: must be one of {', '.join(INITS)} (to start from an image, "
                         "use edit and continue)")
    ns = argparse.Namespace(**values, mask=[], weights=None)
    if init_path is not None:
        ns.init = init_path
    tex = (texture_size, texture_size) if texture_size else None
    if tex:
        if masks:
            raise ConfigError("masks need a content image; a texture has none")
        ns.color = "none"
    # set by the user: what differs from the form as shown (the preset's values, else stylelab's defaults)
    setattr(ns, flags.EXPLICIT, {dest for dest in values if getattr(ns, dest) != baseline[dest]})
    try:
        config = flags.config_from_args(ns, texture_size=tex)
    except ConfigError as exc:
        raise _field_error(exc, ns, list(settings), tex) from None
    return (dataclasses.replace(config, masks=tuple(masks)) if masks else config), values
