"""The record every stylelab PNG carries so that `stylelab replay` can make it again.

One JSON object in the PNG text chunk `stylelab`: the job (command, inputs as absolute paths or URLs, bit depth,
texture size), every setting (`config`), the stylelab and torch versions, the sha256 of the VGG19 weights and the
number of torch threads. The thread count is part of it because the CPU's floating-point sums are ordered by
thread: the same run with 1 and 2 threads differs by a few levels on most pixels, so replay uses the recorded
count. Written by `stylelab run`, batch jobs and the web app alike; read by `replay` and the web app.
"""

from __future__ import annotations

import json
from typing import Any

from .. import __version__
from ..config import MAX_SIZE, Config, ConfigError, config_from_dict, config_to_dict
from ..flags import local_path
from ..image import read_metadata

__all__ = ["PROVENANCE_KEY", "check_job", "read_provenance", "record"]

PROVENANCE_KEY = "stylelab"  # the PNG text chunk holding the JSON record


def record(job: dict[str, Any], config: Config) -> dict[str, str]:
    """The PNG text chunk for `job` run with `config`: {PROVENANCE_KEY: JSON}."""
    import torch

    from .optimize import weights_checksum

    data = {**job, "config": config_to_dict(config), "stylelab": __version__, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "weights_sha256": weights_checksum(config.weights)}
    return {PROVENANCE_KEY: json.dumps(data, sort_keys=True)}


def read_provenance(path: str) -> tuple[dict, Config]:
    """The job and Config stored in a stylelab PNG; a damaged record is a ConfigError naming the bad field."""
    text = read_metadata(local_path(path)).get(PROVENANCE_KEY)
    if text is None:
        raise ConfigError(f"{path} holds no stylelab settings (only PNGs written by stylelab run/texture do)")
    try:
        job = json.loads(text)
        problem = check_job(job) if isinstance(job, dict) else "the record is not a JSON object"
    except ValueError:
        problem = "the record is not valid JSON"
    if problem is None:
        try:
            return job, config_from_dict(job.pop("config"))
        except ConfigError as exc:
            problem = f"'config': {exc}"
        except (ValueError, TypeError, AttributeError) as exc:
            problem = f"'config' is malformed ({type(exc).__name__})"
    raise ConfigError(f"the stylelab settings in {path} are damaged: {problem}")


def check_job(job: dict) -> str | None:
    """What is wrong with the job fields of a provenance record (None: nothing); names the field."""
    command = job.get("command")
    if command not in ("run", "texture"):
        return f"'command' must be run or texture, got {command!r}"
    if not isinstance(job.get("config"), dict):
        return "'config' is missing or not an object"
    styles = job.get("styles")
    if not isinstance(styles, list) or not styles or not all(isinstance(s, str) and s for s in styles):
        return f"'styles' must be a non-empty list of paths or URLs, got {styles!r}"
    if command == "run" and not (isinstance(job.get("content"), str) and job["content"]):
        return f"'content' must be a path or URL, got {job.get('content')!r}"
    if command == "texture":
        size = job.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size)):
            return f"'size' must be [width, height] in px, got {size!r}"
        if not all(16 <= v <= MAX_SIZE for v in size):
            return f"'size' sides must be in [16, {MAX_SIZE}] px, got {size!r}"
    if job.get("bit_depth", 8) not in (8, 16) or isinstance(job.get("bit_depth"), bool):
        return f"'bit_depth' must be 8 or 16, got {job.get('bit_depth')!r}"
    threads = job.get("threads", 1)
    if not (type(threads) is int and threads >= 1):
        return f"'threads' must be a whole number >= 1, got {threads!r}"
    return None
