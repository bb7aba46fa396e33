"""The web app's jobs: validated, queued, run one at a time by the worker thread, followed as events.

The layout of the data folder:

    DATA/stylelab-web.sqlite   uploads and jobs (db.py)
    DATA/uploads/              the uploaded images, by the hash of their bytes (uploads.py)
    DATA/results/              results and the running job's latest preview (worker.py)
    DATA/reports/<job id>/     explain and compare reports of results, made on request (reports.py)

A job found running when a server starts was interrupted (the server died): it is marked failed, "interrupted: ...";
its inputs, and its last preview to go on from, are kept.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

from ..config import Config, Region, config_to_dict
from ..engine.masks import load_regions
from ..engine.provenance import read_provenance
from ..errors import StylelabError
from ..files import remove_partial_writes
from ..image import open_image, tensor_to_pil
from ..jobs.spec import StyleCache
from .db import DB_NAME, Database
from .errors import Conflict, NotFound
from .reports import Reports
from .schema import FieldError, label, settings_to_config
from .uploads import Uploads
from .worker import PREVIEW_QUALITY, PREVIEW_SHARE, Live, Worker

__all__ = ["DB_NAME", "ENDED", "INTERRUPTED", "PREVIEW_QUALITY", "PREVIEW_SHARE", "Runner"]

ENDED = ("done", "failed", "cancelled")
INTERRUPTED = "interrupted: the server stopped while it ran"


class Runner:
    """The jobs of one data folder: the queue, the worker thread, the live state of the jobs it runs."""

    def __init__(self, data: str | Path, preview_every: int | None = None) -> None:
        self.data = Path(data)
        self.data.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.data / DB_NAME)
        self.uploads = Uploads(self.data / "uploads", self.db)
        self.results = self.data / "results"
        self.results.mkdir(exist_ok=True)
        remove_partial_writes(self.data)  # what a killed server was writing: never a result
        self.reports = Reports(self, self.data / "reports")
        self.db.interrupt_running(INTERRUPTED)
        self.lock = threading.RLock()  # the queue and the live state
        self.wake = threading.Condition(self.lock)
        self.live: dict[int, Live] = {job_id: Live() for job_id in self.db.queue()}
        self.stopping = False
        self.running: int | None = None
        self.cache = StyleCache(8)
        self.worker = Worker(self, preview_every)

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.worker.thread.start()

    def stop(self, timeout: float = 60) -> None:
        with self.lock:
            self.stopping = True
            if self.running is not None:
                self.live[self.running].cancel.set()
            self.wake.notify_all()
        if self.worker.thread.is_alive():
            self.worker.thread.join(timeout)
        self.db.close()

    def take(self) -> int | None:
        """For the worker: the next queued job, marked running (waits for one); None once the runner stops."""
        with self.lock:
            while not self.stopping and not self.db.queue():
                self.wake.wait(1.0)
            if self.stopping:
                return None
            job_id = self.db.queue()[0]
            self.running = job_id
            self.db.update(job_id, state="running", started=time.time())
            self.event(job_id, {"type": "state", "state": "running"})
            return job_id

    def release(self) -> None:
        with self.lock:
            self.running = None

    # ------------------------------------------------------------------------------------------ submitting

    def submit(self, content: str | None, styles: list[str], settings: dict[str, Any], init: str | None = None,
               parent: int | None = None, priority: int = 0, masks: list[dict] | None = None,
               continued: bool = False) -> dict:
        """Validate (same code and messages as the CLI) and queue a job; returns its row. `masks`: regions
        {"content_mask": upload, "style": number from 1, "style_mask": upload or None}, as `--mask`; `init`: an
        upload to start from, the parent's image when `continued`."""
        masks = masks or []
        self._check_inputs(content, styles, init, masks)
        kind = "texture" if content is None else "run"
        config, values = self.config(kind, settings, init, masks)
        if config.style_blend is not None and len(config.style_blend) != len(styles):
            raise FieldError("style_blend", f"{label('style_blend')}: {len(config.style_blend)} weights for "
                             f"{len(styles)} style image{'s' if len(styles) > 1 else ''}")
        self._check_masks(config)
        with self.lock:
            job_id = self.db.add_job(kind, content, styles, values, init, masks, continued, parent, priority)
            self.live[job_id] = Live()
            self.event(job_id, {"type": "state", "state": "queued"})
            self.wake.notify_all()
        return self.job(job_id)

    def _check_inputs(self, content: str | None, styles: list[str], init: str | None, masks: list[dict]) -> None:
        """At least one style, mask style numbers in range, every upload named there (the message says its role)."""
        if not styles:
            raise StylelabError("add at least one style image")
        for k, m in enumerate(masks, 1):
            if not 1 <= m["style"] <= len(styles):
                raise StylelabError(f"mask {k}: style number {m['style']}, but the job has {len(styles)} "
                                    f"style image{'s' if len(styles) > 1 else ''}")
        named = [*(("style image", sha) for sha in styles), *((("content image", content),) if content else ()),
                 *((("start image", init),) if init else ()),
                 *((f"mask {k}", sha) for k, m in enumerate(masks, 1) for sha in (m["content_mask"], m["style_mask"])
                   if sha)]
        for what, sha in named:
            try:
                self.uploads.get(sha)
            except NotFound:
                raise NotFound(f"{what}: no upload {sha[:16]}") from None

    def config(self, kind: str, settings: dict[str, Any], init: str | None, masks: list[dict] | None = None
               ) -> tuple[Config, dict]:
        """The job's Config (checked by the CLI's code) and its settings as normalised form values."""
        size = settings.get("size")
        texture_size = None
        if kind == "texture":
            texture_size = int(settings_to_config({"size": size} if size is not None else {})[1]["size"])
        init_path = str(self.uploads.path(init)) if init else None
        regions = [Region(str(self.uploads.path(m["content_mask"])), m["style"] - 1,
                          str(self.uploads.path(m["style_mask"])) if m["style_mask"] else None) for m in masks or []]
        return settings_to_config(settings, texture_size=texture_size, init_path=init_path, masks=regions)

    def _check_masks(self, config: Config) -> None:
        """The mask images as a run reads them (an all-black one is refused), messages naming the upload."""
        n_styles = 1 + max((r.style for r in config.masks), default=0)  # submit() checked the style numbers
        try:
            load_regions(config.masks, n_styles)
        except StylelabError as exc:
            message = str(exc)
            for r in config.masks:
                for path in (r.content_mask, r.style_mask):
                    if path:
                        message = message.replace(path, self.uploads.get(Path(path).stem)["name"] or "upload")
            raise type(exc)(message) from None

    # --------------------------------------------------------------------------------------------- reading

    def job(self, job_id: int) -> dict:
        row = self.db.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id}")
        return row

    def jobs(self) -> list[dict]:
        return self.db.jobs()

    def queue(self) -> list[int]:
        """Queued job ids in the order they will run."""
        return self.db.queue()

    def result_path(self, job_id: int) -> Path:
        row = self.job(job_id)
        if not row["result"]:
            raise NotFound(f"job {job_id} has no result ({row['state']})")
        return self.results / row["result"]

    def provenance(self, job_id: int) -> dict:
        job, config = read_provenance(str(self.result_path(job_id)))
        return {**job, "config": config_to_dict(config)}

    def events(self, job_id: int, since: int) -> tuple[list[dict], bool]:
        """The job's events from number `since` on, and whether its end is among them."""
        with self.lock:
            live = self.live.get(job_id)
            if live is None:  # not run by this server: its end, also to a page that followed it on an earlier one
                row = self.job(job_id)
                return [{"type": "end", "state": row["state"], "error": row["error"]}], True
            return live.events[since:], live.ended

    def preview(self, job_id: int) -> bytes:
        live = self.live.get(job_id)
        if live is None or live.preview is None:
            raise NotFound(f"no preview of job {job_id} yet")
        return live.preview

    # ------------------------------------------------------------------------------------------- steering

    def cancel(self, job_id: int) -> dict:
        with self.lock:
            row = self.job(job_id)
            if row["state"] == "queued":
                self.db.update(job_id, state="cancelled", finished=time.time())
                self._end(job_id, "cancelled")
            elif row["state"] == "running" and not self.live[job_id].cancel.is_set():
                self.live[job_id].cancel.set()
                self.event(job_id, {"type": "state", "state": "stopping"})  # at the end of the current step
        return self.job(job_id)

    def wait_ended(self, job_id: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while self.job(job_id)["state"] not in ENDED:
            if time.monotonic() > deadline:
                raise Conflict(f"job {job_id} did not stop within {timeout:g} s")
            time.sleep(0.05)
        return self.job(job_id)

    def continue_from(self, job_id: int, settings: dict[str, Any] | None) -> dict:
        """Edit and continue: stop the job if it runs, then queue a new one that starts from its current image
        (its result if it finished or was cancelled; the last preview if the server stopped while it ran) with
        `settings` (default: the job's own); it runs next."""
        row = self.job(job_id)
        if row["state"] == "running":
            self.cancel(job_id)
            row = self.wait_ended(job_id)
        image = self._current_image(row)
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")  # into memory: kept as an upload, atomically
        init = self.uploads.add(buf.getvalue(), "png", f"job {job_id}", image.size)["sha256"]
        return self.submit(row["content"], row["styles"], settings if settings is not None else row["settings"],
                           init=init, parent=job_id, priority=1, masks=row["masks"], continued=True)

    def _current_image(self, row: dict):
        live, last = self.live.get(row["id"]), self.worker.last(row["id"])
        if row["result"]:
            return open_image(self.results / row["result"], "result")
        if live is not None and live.image is not None:
            return tensor_to_pil(live.image)
        if last.is_file():
            return open_image(last, "last preview")
        raise Conflict(f"job {row['id']} has no image to continue from yet (it took no step)")

    def restart(self, job_id: int, settings: dict[str, Any] | None) -> dict:
        """Cancel the job if it runs or waits and queue it again from the start (with new `settings`): from the
        image it was started from, if one was chosen, else as `init` says (a continuation starts afresh)."""
        row = self.job(job_id)
        if row["state"] in ("queued", "running"):
            self.cancel(job_id)
        return self.submit(row["content"], row["styles"], settings if settings is not None else row["settings"],
                           init=None if row["continued"] else row["init"], parent=job_id, priority=1,
                           masks=row["masks"])

    def delete(self, job_id: int) -> None:
        with self.lock:
            row = self.job(job_id)
            if row["state"] == "running":
                raise Conflict(f"job {job_id} is running; cancel it first")
            self.db.delete(job_id)
            if row["state"] == "queued":
                self._end(job_id, "cancelled")
        if row["result"]:
            (self.results / row["result"]).unlink(missing_ok=True)
        self.worker.last(job_id).unlink(missing_ok=True)
        self.reports.remove(job_id)

    # ------------------------------------------------------------------------------------ for the worker

    def finish(self, job_id: int, state: str, error: str | None, steps: int, result: str | None = None,
               losses: dict | None = None) -> None:
        with self.lock:
            if self.db.job(job_id) is None:
                return  # deleted meanwhile
            self.db.update(job_id, state=state, error=error, steps=steps, result=result, losses=losses,
                           finished=time.time())
            self._end(job_id, state, error)

    def event(self, job_id: int, event: dict) -> None:
        with self.lock:
            self.live.setdefault(job_id, Live()).events.append(event)

    def set_preview(self, live: Live, jpeg: bytes) -> None:
        with self.lock:
            live.preview, live.previews = jpeg, live.previews + 1

    def _end(self, job_id: int, state: str, error: str | None = None) -> None:
        with self.lock:
            self.event(job_id, {"type": "end", "state": state, "error": error})
            self.live[job_id].ended = True
