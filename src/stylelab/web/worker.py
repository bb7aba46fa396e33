"""The worker thread: runs the queued jobs one at a time, reports each step, writes previews and results.

Progress goes to an in-memory `Live` per job (events, the latest JPEG preview, the current image); a Cancel sets a
flag that the step callback checks, raising `Cancelled` between steps. Before the first step, a job with a content
image shows the feed-forward stylisation (stylelab.engine.fast, when the optional extra is installed) as its first
preview, marked `"fast": true`: a picture to look at while the optimiser starts, not the job's image. Files:

    DATA/results/<job id>.png        the result, with the PNG provenance `stylelab run` writes (replayable); a
                                     cancelled job keeps its last image here too (its record says at which step)
    DATA/results/<job id>-last.jpg   the latest preview of the running job: what a job the server stopped while
                                     it ran goes on from (edit and continue); removed when the job ends
"""

from __future__ import annotations

import io
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from ..config import INITS, Config
from ..engine import fast, provenance
from ..engine.events import Report, ScaleEnd, Step, TileProgress
from ..engine.optimize import load_inputs, stylize, synthesize
from ..files import write_atomic
from ..image import load_alpha, open_image, save_image, tensor_to_pil, to_tensor
from ..jobs.spec import one_line_error

if TYPE_CHECKING:
    from .runner import Runner

__all__ = ["PREVIEW_QUALITY", "PREVIEW_SHARE", "Cancelled", "Live", "Progress", "Worker"]

PREVIEW_SHARE = 0.05  # JPEG previews may cost at most this fraction of the optimisation's time
PREVIEW_QUALITY = 85
TILE_EVENT_S = 0.5  # inside a step in tiles: at most one tile event per this many seconds (and one per sweep)


class Cancelled(Exception):
    """Raised by the step callback when the job's Cancel flag is set (checked between steps)."""


@dataclass
class Live:
    """What the page streams of one job while this server runs it."""

    events: list[dict] = field(default_factory=list)
    preview: bytes | None = None
    previews: int = 0
    image: torch.Tensor | None = None  # the current image, (1, 3, H, W)
    cancel: threading.Event = field(default_factory=threading.Event)
    ended: bool = False


class Worker:
    """The thread that takes the runner's queued jobs, one at a time, until the runner stops."""

    def __init__(self, runner: Runner, preview_every: int | None) -> None:
        self.runner = runner
        self.preview_every = preview_every  # None: chosen from the measured encode and step times
        self.thread = threading.Thread(target=self._loop, name="stylelab-web-worker", daemon=True)

    def _loop(self) -> None:
        while (job_id := self.runner.take()) is not None:
            try:
                self._run(job_id)
            finally:
                self.runner.release()

    def _run(self, job_id: int) -> None:
        runner, live = self.runner, self.runner.live[job_id]
        row = runner.job(job_id)
        record: dict[str, Any] = {}  # the provenance's job fields, once the inputs are read
        alpha, result, done = None, None, [0]
        try:
            config, _ = runner.config(row["kind"], row["settings"], row["init"], row["masks"])
            on_step = Progress(self, job_id, live, sum(steps for _, steps in config.schedule()), done)
            record, content, alpha = self._inputs(row, config)
            if content is None:
                image = synthesize(record["styles"], (config.size, config.size), config, on_step,
                                   on_tile=on_step.tile)
            else:  # the inputs read once, for the quick preview and the run
                content_t, styles = to_tensor(content, "content image"), load_inputs(None, record["styles"])[1]
                if config.init in INITS:  # not when it goes on from an image: that image is already on show
                    on_step.fast_preview(content_t, styles, config)
                image = stylize(content_t, styles, config, on_step, style_cache=runner.cache, on_tile=on_step.tile)
            self._save(job_id, image, row, config, record, alpha)
            result = f"{job_id}.png"
        except Cancelled:
            # Keep the image of the last step taken: a result to look at, explain, or go on from.
            error = None
            if live.image is not None and record:
                try:
                    self._save(job_id, live.image, row, config, {**record, "stopped_at_step": done[0]}, alpha)
                    result = f"{job_id}.png"
                except Exception as exc:
                    error = f"its image was not kept: {one_line_error(exc)}"
            runner.finish(job_id, "cancelled", error, done[0], result=result, losses=_losses(live))
        except Exception as exc:
            runner.finish(job_id, "failed", one_line_error(exc), done[0])
        else:
            runner.finish(job_id, "done", None, done[0], result=result, losses=_losses(live))
        finally:
            self.last(job_id).unlink(missing_ok=True)
        if result:
            live.image = None  # the result file is the image to continue from

    def _inputs(self, row: dict, config: Config) -> tuple[dict, Image.Image | None, torch.Tensor | None]:
        """The provenance's job fields (inputs as server paths), the content image and its alpha (a texture:
        None, None)."""
        styles = [str(self.runner.uploads.path(s)) for s in row["styles"]]
        if row["kind"] == "texture":
            return {"command": "texture", "size": [config.size, config.size], "styles": styles}, None, None
        content_path = str(self.runner.uploads.path(row["content"]))
        content = open_image(content_path, "content image")
        return {"command": "run", "content": content_path, "styles": styles}, content, load_alpha(content)

    def _save(self, job_id: int, image: Image.Image | torch.Tensor, row: dict, config: Config, record: dict,
              alpha: torch.Tensor | None) -> None:
        """DATA/results/<job id>.png with the provenance `stylelab replay` reads (`record`: its job fields);
        written atomically (save_image goes through stylelab.files.write_atomic)."""
        bit_depth = int(row["settings"].get("bit_depth", 8))
        save_image(image, self.runner.results / f"{job_id}.png", bit_depth=bit_depth, alpha=alpha,
                   metadata=provenance.record({**record, "bit_depth": bit_depth}, config))

    def last(self, job_id: int) -> Path:
        """The latest preview of a running job, kept on disk for as long as it runs."""
        return self.runner.results / f"{job_id}-last.jpg"


class Progress:
    """The step callback of a job of `total` steps: step events, previews, the Cancel check; counts in `done`.

    A preview (JPEG encode and its file) is made every `every` steps, `every` chosen from the median encode and
    step times so that previews cost under PREVIEW_SHARE of the optimisation (unless the server fixes it)."""

    def __init__(self, worker: Worker, job_id: int, live: Live, total: int, done: list[int]) -> None:
        self.worker, self.runner, self.job_id, self.live = worker, worker.runner, job_id, live
        self.total, self.done = total, done
        self.t0 = time.perf_counter()
        self.step_s: list[float] = []
        self.encode_s: list[float] = []
        self.every = worker.preview_every or 1
        self.tile_t = 0.0  # when the last tile event went out

    def __call__(self, step: Report) -> None:
        if self.live.cancel.is_set():
            raise Cancelled
        self.live.image = step.pixels().detach().to("cpu", copy=True)
        if isinstance(step, Step):
            self.done[0] += 1
            self.step_s.append(step.seconds)
        self.runner.event(self.job_id, self._step_event(step))
        if isinstance(step, ScaleEnd) or self.done[0] % self.every == 0 or self.done[0] == 1:
            self._preview(step)

    def tile(self, event: TileProgress) -> None:
        """Inside a step computed in tiles (--tile), after each tile: the Cancel check (a print-size step takes
        minutes), and a tile event at most every TILE_EVENT_S seconds and at the end of each sweep."""
        if self.live.cancel.is_set():
            raise Cancelled
        now = time.perf_counter()
        if event.tile < event.tiles and now - self.tile_t < TILE_EVENT_S:
            return
        self.tile_t = now
        eta = event.eta()
        self.runner.event(self.job_id, {
            "type": "tile", "step": self.done[0], "total": self.total, "scale": event.scale, "phase": event.phase,
            "sweep": event.sweep, "sweeps": event.sweeps, "tile": event.tile, "tiles": event.tiles,
            "eta": None if math.isnan(eta) else eta, "elapsed": now - self.t0})

    def _step_event(self, step: Report) -> dict:
        median = statistics.median(self.step_s) if self.step_s else step.seconds
        h, w = step.pixels().shape[-2:]
        return {"type": "step", "step": self.done[0], "total": self.total, "scale": step.scale, "i": step.i,
                "n": step.n, "final": isinstance(step, ScaleEnd), "loss": step.loss,
                "terms": {k: v for k, v in step.terms.items() if "/" not in k}, "seconds": step.seconds,
                "size": [w, h], "elapsed": time.perf_counter() - self.t0,
                "eta": median * (self.total - self.done[0])}

    def fast_preview(self, content: torch.Tensor, styles: list[torch.Tensor], config: Config) -> None:
        """Publish the feed-forward stylisation at the output's size as the first preview, `"fast": true`, if the
        optional model is installed and runs (else nothing: a preview is never the job's error). Only shown: not
        the job's image (`live.image`) nor the file an interrupted job goes on from."""
        f0 = time.perf_counter()
        image = fast.preview(content, styles, config.blend_weights(len(styles)), config.size)
        if image is None:
            return
        e0 = time.perf_counter()
        jpeg = _jpeg(image)
        self._publish(jpeg, fast=True, seconds=e0 - f0, encode_s=time.perf_counter() - e0)

    def _preview(self, step: Report) -> None:
        e0 = time.perf_counter()
        jpeg = _jpeg(step.pixels())
        try:  # what an interrupted job goes on from
            write_atomic(self.worker.last(self.job_id), lambda f: f.write(jpeg))
        except OSError:  # a full disk costs only that fallback, not the run
            pass
        self.encode_s.append(time.perf_counter() - e0)
        if self.worker.preview_every is None and self.step_s:
            # the medians: the first encode and the first steps are slower
            encode, step_s = statistics.median(self.encode_s), statistics.median(self.step_s)
            if step_s > 0:
                self.every = max(1, math.ceil(encode / (PREVIEW_SHARE * step_s)))
        self._publish(jpeg, fast=False, every=self.every, encode_s=self.encode_s[-1])

    def _publish(self, jpeg: bytes, **fields: Any) -> None:
        """The job's preview is now `jpeg`: a preview event (its number `n`, the seconds since the job started)."""
        self.runner.set_preview(self.live, jpeg)
        self.runner.event(self.job_id, {"type": "preview", "n": self.live.previews,
                                        "elapsed": time.perf_counter() - self.t0, **fields})


def _jpeg(image: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    tensor_to_pil(image).save(buf, format="JPEG", quality=PREVIEW_QUALITY)
    return buf.getvalue()


def _losses(live: Live) -> dict:
    """The loss and its terms at the last step taken ({} before the first)."""
    last = next((e for e in reversed(live.events) if e["type"] == "step"), None)
    return {"loss": last["loss"], **last["terms"]} if last else {}
