"""Jobs: one stylisation as a small frozen, picklable spec, run by a pure function into a result.

    JobSpec (content, styles, Config, output name)  --read_inputs-->  JobInputs (the files' bytes)
        --run_job / Worker.run-->  JobResult (encoded output bytes, sha256, timings, final losses, error)

Inputs travel as bytes and the output comes back as bytes, so a worker needs no shared filesystem; the caller
(the batch driver) writes the output file. A `Worker` keeps VGG19 loaded and a `StyleCache` of blended style
statistics, so a folder in one style computes the style's statistics once per worker and scale, not per image.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, overload

import torch
from PIL import Image
from torch import Tensor

from ..config import Config, config_to_dict
from ..engine.events import Callback, Report, Step, TileCallback
from ..engine.optimize import OptimizationError, stylize, weights_checksum
from ..engine.provenance import record
from ..errors import StylelabError
from ..image import Picture, decode_image, encode_image, is_url, load_alpha
from ..losses.base import Stats

__all__ = ["JobInputs", "JobResult", "JobSpec", "StepSink", "StyleCache", "StyleKey", "StyleStats", "Worker",
    "decode", "encode", "one_line_error", "provenance", "read_inputs", "run_job"]

_D = TypeVar("_D")
StyleKey = tuple[object, ...]  # what blended style statistics depend on (the engine's style cache key)
StyleStats = dict[str, dict[str, Stats]]  # loss label -> layer -> blended style statistics


@dataclass(frozen=True)
class JobSpec:
    """One stylisation. `content` and `styles` are file paths (absolute, as stored in the job store and the
    output's provenance); `output` is the output file's name, relative to the batch's output folder."""

    content: str
    styles: tuple[str, ...]
    config: Config
    output: str
    bit_depth: int = 8

    @property
    def key(self) -> str:
        """The job's identity in a store: its output name."""
        return self.output

    def to_dict(self) -> dict[str, object]:
        return {"content": self.content, "styles": list(self.styles), "config": config_to_dict(self.config),
                "output": self.output, "bit_depth": self.bit_depth}

    def digest(self) -> str:
        """sha256 of everything that determines the output: a changed setting or input path means a new job."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class JobInputs:
    """The bytes of a job's content and style files, read by the driver (workers need no shared filesystem)."""

    content: bytes
    styles: tuple[bytes, ...]


@dataclass(frozen=True)
class JobResult:
    """What running a job gave: the encoded output (or the one-line error), its sha256 and where the time went.
    `seconds` keys: load (decoding), targets (model, resizing, style and content targets: the run minus its
    steps), steps (optimiser steps and final reports), encode, total. `permanent`: a bad input or setting,
    which a retry cannot fix."""

    key: str
    data: bytes | None = None
    sha256: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    error: str | None = None
    permanent: bool = False
    worker: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class StyleCache(OrderedDict[StyleKey, StyleStats]):
    """Blended style statistics by (style pixels at a scale, settings), least recently used dropped beyond
    `capacity` entries. `stylize(..., style_cache=cache)` fills and reads it; `hits`/`misses` count look-ups."""

    def __init__(self, capacity: int = 16) -> None:
        super().__init__()
        self.capacity, self.hits, self.misses = capacity, 0, 0

    @overload
    def get(self, key: StyleKey, default: None = None) -> StyleStats | None: ...

    @overload
    def get(self, key: StyleKey, default: StyleStats | _D) -> StyleStats | _D: ...

    def get(self, key: StyleKey, default: StyleStats | _D | None = None) -> StyleStats | _D | None:
        if key in self:
            self.hits += 1
            self.move_to_end(key)
            return self[key]
        self.misses += 1
        return default

    def __setitem__(self, key: StyleKey, value: StyleStats) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


def read_inputs(spec: JobSpec) -> JobInputs:
    """Read the job's files. Raises StylelabError (one line) for a missing, empty or unreadable file."""
    return JobInputs(_read(spec.content, "content image"),
                     tuple(_read(s, "style image" if len(spec.styles) == 1 else f"style image {k + 1}")
                           for k, s in enumerate(spec.styles)))


def _read(path: str, what: str) -> bytes:
    if is_url(path):
        raise StylelabError(f"batch inputs must be files, not URLs: {path}")
    p = Path(path)
    if not p.is_file():
        raise StylelabError(f"{what} not found: {p}" if not p.exists() else f"{what} is not a file: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise StylelabError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if not data:
        raise StylelabError(f"{what} is an empty file: {p}")
    return data


class Worker:
    """Runs jobs one after another in this process with VGG19 loaded once and a style-target cache.
    `threads`: torch intra-op threads for this worker (None: leave torch's setting)."""

    def __init__(self, threads: int | None = None, cache_size: int = 16, name: str = "") -> None:
        if threads is not None:
            torch.set_num_threads(max(1, threads))
        self.cache = StyleCache(cache_size)
        self.name = name or f"pid{os.getpid()}"

    def warm(self, config: Config = Config()) -> None:
        """Load the VGG19 weights now (they stay cached for the process) rather than in the first job."""
        weights_checksum(config.weights)

    def run(self, spec: JobSpec, inputs: JobInputs | None = None, callback: Callback | None = None,
            on_tile: TileCallback | None = None) -> JobResult:
        return run_job(spec, inputs, callback=callback, cache=self.cache, worker=self.name, on_tile=on_tile)


def run_job(spec: JobSpec, inputs: JobInputs | None = None, callback: Callback | None = None,
            cache: StyleCache | None = None, worker: str = "", on_tile: TileCallback | None = None) -> JobResult:
    """Run one job. Never raises for a failed job (except KeyboardInterrupt): the result carries the one-line
    error. `inputs` default: the spec's files read now. `callback` gets each `Step` and `ScaleEnd`, and `on_tile`
    each `TileProgress` of a scale computed in tiles, as from `stylize`."""
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    taken, step_seconds = 0, 0.0  # steps taken, seconds in steps and final reports
    losses: dict[str, float] = {}

    def on_step(step: Report) -> None:
        nonlocal taken, step_seconds
        step_seconds += step.seconds
        if isinstance(step, Step):
            taken += 1
        else:  # the end of a scale: the losses of the image it ends with
            losses.clear()
            losses.update({"loss": step.loss, **{k: v for k, v in step.terms.items() if "/" not in k}})
        if callback is not None:
            callback(step)

    try:
        t0 = time.perf_counter()
        inputs = read_inputs(spec) if inputs is None else inputs
        content = decode(inputs.content, spec.content, "content image")
        styles = [decode(b, path, "style image" if len(spec.styles) == 1 else f"style image {k + 1}")
                  for k, (b, path) in enumerate(zip(inputs.styles, spec.styles))]
        alpha = load_alpha(content)
        seconds["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        image = stylize(content, styles, spec.config, on_step, style_cache=cache, on_tile=on_tile)
        run_s = time.perf_counter() - t0
        seconds["steps"] = step_seconds
        seconds["targets"] = max(0.0, run_s - step_seconds)
        t0 = time.perf_counter()
        data = encode(image, spec, alpha)
        seconds["encode"] = time.perf_counter() - t0
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        seconds["total"] = time.perf_counter() - t_start
        return JobResult(spec.key, seconds=seconds, steps=taken, error=one_line_error(exc),
                         permanent=isinstance(exc, StylelabError), worker=worker)
    seconds["total"] = time.perf_counter() - t_start
    return JobResult(spec.key, data, hashlib.sha256(data).hexdigest(), seconds, losses, taken, worker=worker)


def decode(data: bytes, name: str, what: str) -> Picture:
    """Decode an image file's bytes exactly as `stylelab run` decodes the file (orientation, ICC, 16 bits); errors
    name the original file."""
    return decode_image(data, name, what)


def one_line_error(exc: BaseException) -> str:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return "out of memory; try a smaller --size"
    if isinstance(exc, (StylelabError, OptimizationError)):
        text = str(exc)
    else:  # an unexpected failure: its type and where, still one line
        frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" at {Path(frame[0].filename).name}:{frame[0].lineno}" if frame else ""
        text = f"{type(exc).__name__}{where}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def encode(image: Image.Image, spec: JobSpec, alpha: Tensor | None = None) -> bytes:
    """The output file's bytes, in the format of its name, with the provenance `stylelab replay` reads."""
    return encode_image(image, spec.output, bit_depth=spec.bit_depth, alpha=alpha, metadata=provenance(spec))


def provenance(spec: JobSpec) -> dict[str, str]:
    """The record `stylelab run` embeds (stylelab.engine.provenance), so outputs replay."""
    job = {"command": "run", "content": spec.content, "styles": list(spec.styles), "bit_depth": spec.bit_depth}
    return record(job, spec.config)


StepSink = Callable[[str, Report], None]  # (job key, step): how executors hand steps to the driver
