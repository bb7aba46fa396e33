"""The JSON bodies of the API, as pydantic models, and the one-line message for each place a body can be wrong.

FastAPI checks a body against its model before the route runs; errors.py answers a failed check with
`message(where)`, 400. A setting's value is not checked here: `settings` is the form's {name: value}, checked by the
CLI's own code (schema.settings_to_config), whose refusals name the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = ["Comparison", "NewJob", "NewSettings", "Region", "Sha", "message"]

Sha = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]  # an upload's id: the sha256 of its bytes


class Region(BaseModel):
    """One region (`--mask`): where the style numbered `style` (from 1) goes, from its upload ids."""

    model_config = ConfigDict(extra="forbid")
    content_mask: Sha
    style: StrictInt
    style_mask: Sha | None = None


class NewJob(BaseModel):
    """POST /api/jobs: a run (`content` an upload) or a texture (`content` null)."""

    content: Sha | None = None
    styles: list[Sha]
    settings: dict[str, Any] = {}
    init: Sha | None = None  # an image to start from
    masks: list[Region] | None = None


class NewSettings(BaseModel):
    """POST /api/jobs/{id}/continue and /restart: new settings, or none to keep the job's."""

    settings: dict[str, Any] | None = None


class Comparison(BaseModel):
    """POST /api/jobs/{id}/compare: the style losses to run the job under (`stylelab compare --losses`)."""

    losses: StrictStr = "all"


_MESSAGES = {
    (): "the request's body must be a JSON object",
    ("content",): "content must be the id of an upload, or null for a texture",
    ("styles",): "styles must be a list of upload ids",
    ("settings",): "settings must be an object of {setting: value}",
    ("init",): "init must be the id of an upload (an image to start from), or null",
    ("masks",): "masks must be a list of {content_mask, style, style_mask}",
    ("masks", 0): "mask {k} must be an object with content_mask, style and an optional style_mask",
    ("masks", 0, "content_mask"): "mask {k}: content_mask must be the id of an upload",
    ("masks", 0, "style"): "mask {k}: style must be the number of a style image, from 1",
    ("masks", 0, "style_mask"): "mask {k}: style_mask must be the id of an upload, or null",
    ("losses",): "losses must be a comma list of style losses, or 'all'",
}


def message(where: tuple) -> str:
    """The message for a body wrong at `where` (pydantic's location less "body": ("masks", 0, "style")): the most
    specific one known for that place; mask numbers count from 1."""
    k = next((p + 1 for p in where if isinstance(p, int)), 0)
    shape = tuple(0 if isinstance(p, int) else p for p in where)
    while shape not in _MESSAGES:
        shape = shape[:-1]
    return _MESSAGES[shape].replace("{k}", str(k))
