"""The web form's fields, read from the `stylelab run` argument parser, and their validation by the CLI's code.

No third copy of the settings: every option of `run` that sets the image (dest, help, default, choices, type) is
walked from cli.build_parser(); values come back through argparse's own conversion and cli.config_from_args, so a
bad value gets the same message as on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from .. import cli
from ..config import INITS, Config, ConfigError, Region

# `run` options that are about files on the server's disk, not the image: a request never names a path, so
# these are not editable (-o, checkpoints, snapshots, --overwrite) or take uploaded files instead (--mask: the
# job's `masks`, uploads; --weights: not offered). --init: its named choices here; an uploaded image to start
# from is the job's `init` (as "continue" sets it).
NOT_IN_FORM = ("help", "content", "styles", "output", "save_every", "checkpoint", "checkpoint_every", "resume",
               "overwrite", "quiet", "mask", "weights")


@functools.lru_cache(maxsize=1)
def run_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


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
    """One entry per form field, in the parser's order: name (the dest), flag, kind, default, choices, help."""
    fields = []
    for dest, a in _actions().items():
        choices = list(a.choices) if a.choices is not None else None
        if dest == "init":
            choices = list(INITS)
        fields.append({"name": dest, "flag": max(a.option_strings, key=len), "kind": _kind(a), "default": a.default,
                       "choices": choices, "help": a.help or "", "metavar": a.metavar})
    return fields


def _convert(action: argparse.Action, value: Any) -> Any:
    """A submitted value, converted and checked exactly as argparse does for the flag (same messages)."""
    if isinstance(action, argparse._StoreTrueAction):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off", ""):
            return value.lower() in ("true", "1", "on")
        raise ConfigError(f"argument {'/'.join(action.option_strings)}: expected true or false, got {value!r}")
    if value is None or (isinstance(value, str) and value.strip() == "" and action.default is None):
        return action.default
    try:
        return run_parser()._get_values(action, [str(value)])  # argparse's conversion and choices check
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from None


def settings_to_config(settings: dict[str, Any], texture_size: int | None = None, init_path: str | None = None,
                       masks: Sequence[Region] = ()) -> tuple[Config, dict[str, Any]]:
    """Form values -> (Config, the normalised values). Unknown names and path-valued settings are refused.
    `init_path`: a server-side image to start from (edit and continue); `texture_size`: a square texture;
    `masks`: regions of server-side mask images (`--mask`), not for textures."""
    actions = _actions()
    unknown = sorted(set(settings) - set(actions))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}; settings: {', '.join(actions)}")
    values = {dest: a.default for dest, a in actions.items()}
    for dest, value in settings.items():
        values[dest] = _convert(actions[dest], value)
    if values["init"] not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)} (to start from an image, use edit and continue)")
    ns = argparse.Namespace(**values, mask=[], weights=None)
    if init_path is not None:
        ns.init = init_path
    tex = (texture_size, texture_size) if texture_size else None
    if tex:
        if masks:
            raise ConfigError("masks need a content image; a texture has none")
        ns.color = "none"
    config = cli.config_from_args(ns, texture_size=tex)
    return (dataclasses.replace(config, masks=tuple(masks)) if masks else config), values
