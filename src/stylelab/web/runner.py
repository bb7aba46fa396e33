"""The web app's jobs: a small SQLite table in the data folder, a queue and one worker thread.

Own tables rather than stylelab.jobs.store: the batch store is keyed by output file name, has no `cancelled` state and
its `plan()` re-queues by spec digest, while the web needs numbered jobs (texture or run), a cancel, a parent job
(edit and continue) and uploads by content hash. The layout of the data folder:

    DATA/stylelab-web.sqlite   uploads (sha256, file, size) and jobs (settings, state, losses, result file)
    DATA/uploads/<sha256>.<format>   every uploaded image under the hash of its bytes (a request never names a path)
    DATA/results/<job id>.png        results, with the PNG provenance `stylelab run` writes (replayable); a
                                     cancelled job keeps its last image here too (its record says at which step)
    DATA/results/<job id>-last.jpg   the latest preview of the running job: what a job the server stopped while
                                     it ran goes on from (edit and continue); removed when a job ends
    DATA/reports/<job id>/           reports of results, made on request: `stylelab explain` (index.html) and
                                     the comparison with the same settings under other style losses (compare.html)

One job runs at a time. Progress goes to an in-memory `Live` per job (events, the latest JPEG preview, the current
image); a Cancel sets a flag that the step callback checks, raising `Cancelled` between steps. A job found running
when a server starts was interrupted (the server died): it is marked failed, "interrupted: ...".
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..config import Config, ConfigError, Region, config_to_dict
from ..engine import provenance
from ..engine.masks import load_regions
from ..engine.optimize import Step, stylize, synthesize
from ..errors import StylelabError
from ..image import load_alpha, open_image, resize_long_edge, save_image, tensor_to_pil, to_tensor
from ..jobs.spec import StyleCache, one_line_error
from .schema import FieldError, label, settings_to_config

DB_NAME = "stylelab-web.sqlite"
STATES = ("queued", "running", "done", "failed", "cancelled")
ENDED = ("done", "failed", "cancelled")
INTERRUPTED = "interrupted: the server stopped while it ran"
MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: a larger id is no job (not an overflow)
PREVIEW_SHARE = 0.05  # JPEG previews may cost at most this fraction of the optimisation's time
PREVIEW_QUALITY = 85

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    sha256 TEXT PRIMARY KEY, file TEXT NOT NULL, name TEXT, width INTEGER, height INTEGER, added REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('run', 'texture')),
    content TEXT,                  -- sha256 of the content upload (NULL for a texture)
    styles TEXT NOT NULL,          -- JSON list of style upload sha256s
    settings TEXT NOT NULL,        -- JSON: the form's values (names of `stylelab run` options)
    init TEXT,                     -- sha256 of an upload to start from (edit and continue), else NULL
    masks TEXT,                    -- JSON list of regions {content_mask, style (from 1), style_mask}: uploads
    continued INTEGER NOT NULL DEFAULT 0,  -- 1: `init` is the image of the job it continues (edit and continue)
    parent INTEGER,                -- the job this one continues or restarts
    priority INTEGER NOT NULL DEFAULT 0,  -- higher runs first (continue / restart of the running job)
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    error TEXT, steps INTEGER NOT NULL DEFAULT 0, losses TEXT, result TEXT,
    created REAL, started REAL, finished REAL
);
"""


_ADDED_COLUMNS = {"masks": "TEXT", "continued": "INTEGER NOT NULL DEFAULT 0"}  # since the first data folders


class Cancelled(Exception):
    """Raised by the step callback when the job's Cancel flag is set (checked between steps)."""


class NotFound(StylelabError):
    pass


class NotOurDatabase(StylelabError):
    """The data folder's database file is damaged, or another program's."""


class Conflict(StylelabError):
    pass


@dataclass
class Live:
    """What the page streams of one job while this server runs it."""

    events: list[dict] = field(default_factory=list)
    preview: bytes | None = None
    previews: int = 0
    image: torch.Tensor | None = None  # the current image, (1, 3, H, W)
    cancel: threading.Event = field(default_factory=threading.Event)
    ended: bool = False


class Runner:
    """The job table and the worker thread of one data folder."""

    def __init__(self, data: str | Path, preview_every: int | None = None) -> None:
        self.data = Path(data)
        self.data.mkdir(parents=True, exist_ok=True)
        self.db = _open_db(self.data / DB_NAME)
        for sub in ("uploads", "results"):
            (self.data / sub).mkdir(exist_ok=True)
        self.lock = threading.RLock()
        # A job that was running when the server stopped did not finish: say so (its inputs, and its last preview
        # to go on from, are kept).
        self.db.execute("UPDATE jobs SET state = 'failed', error = ?, finished = ? WHERE state = 'running'",
                        (INTERRUPTED, time.time()))
        self.preview_every = preview_every  # None: chosen from the measured encode and step times
        self.live: dict[int, Live] = {r["id"]: Live() for r in self._all("SELECT id FROM jobs WHERE state='queued'")}
        self.wake = threading.Condition(self.lock)
        self.stopping = False
        self.running: int | None = None
        self.cache = StyleCache(8)
        self.explain_lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="stylelab-web-worker", daemon=True)

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 60) -> None:
        with self.lock:
            self.stopping = True
            if self.running is not None:
                self.live[self.running].cancel.set()
            self.wake.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)
        with self.lock:
            self.db.close()

    # -------------------------------------------------------------------------------------------- uploads

    def add_upload(self, data: bytes, fmt: str, name: str, size: tuple[int, int]) -> dict:
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        file = f"{sha}.{fmt.lower()}"
        path = self.data / "uploads" / file
        if not path.is_file():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO uploads (sha256, file, name, width, height, added) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (sha, file, name, size[0], size[1], time.time()))
        return self.upload(sha)

    def upload(self, sha: str) -> dict:
        rows = self._all("SELECT * FROM uploads WHERE sha256 = ?", (sha,))
        if not rows:
            raise NotFound(f"no upload {sha[:16]}")
        return dict(rows[0])

    def uploads(self, limit: int = 50) -> list[dict]:
        return [dict(r) for r in self._all("SELECT * FROM uploads ORDER BY added DESC LIMIT ?", (limit,))]

    def upload_path(self, sha: str) -> Path:
        return self.data / "uploads" / self.upload(sha)["file"]  # the file name comes from the table

    # ----------------------------------------------------------------------------------------------- jobs

    def submit(self, content: str | None, styles: list[str], settings: dict[str, Any], init: str | None = None,
               parent: int | None = None, priority: int = 0, masks: list[dict] | None = None,
               continued: bool = False) -> dict:
        """Validate (same code and messages as the CLI) and queue a job; returns its row. `masks`: regions
        {"content_mask": upload, "style": number from 1, "style_mask": upload or None}, as `--mask`; `init`: an
        upload to start from, the parent's image when `continued`."""
        if not styles:
            raise StylelabError("add at least one style image")
        masks = masks or []
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
                self.upload(sha)
            except NotFound:
                raise NotFound(f"{what}: no upload {sha[:16]}") from None
        config, values = self._config("texture" if content is None else "run", settings, init, masks)
        if config.style_blend is not None and len(config.style_blend) != len(styles):
            raise FieldError("style_blend", f"{label('style_blend')}: {len(config.style_blend)} weights for "
                             f"{len(styles)} style image{'s' if len(styles) > 1 else ''}")
        self._check_masks(config)
        with self.lock:
            cur = self.db.execute(
                "INSERT INTO jobs (kind, content, styles, settings, init, masks, continued, parent, priority, state, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                ("texture" if content is None else "run", content, json.dumps(styles), json.dumps(values), init,
                 json.dumps(masks) if masks else None, int(continued), parent, priority, time.time()))
            job_id = int(cur.lastrowid or 0)
            self.live[job_id] = Live()
            self._event(job_id, {"type": "state", "state": "queued"})
            self.wake.notify_all()
        return self.job(job_id)

    def _config(self, kind: str, settings: dict[str, Any], init: str | None, masks: list[dict] | None = None
                ) -> tuple[Config, dict]:
        size = settings.get("size")
        texture_size = None
        if kind == "texture":
            texture_size = int(settings_to_config({"size": size} if size is not None else {})[1]["size"])
        init_path = str(self.upload_path(init)) if init else None
        regions = [Region(str(self.upload_path(m["content_mask"])), m["style"] - 1,
                          str(self.upload_path(m["style_mask"])) if m["style_mask"] else None) for m in masks or []]
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
                        message = message.replace(path, self.upload(Path(path).stem)["name"] or "upload")
            raise type(exc)(message) from None

    def job(self, job_id: int) -> dict:
        rows = self._all("SELECT * FROM jobs WHERE id = ?", (job_id,)) if 0 < job_id <= MAX_ID else []
        if not rows:
            raise NotFound(f"no job {job_id}")
        return _row(rows[0])

    def jobs(self) -> list[dict]:
        return [_row(r) for r in self._all("SELECT * FROM jobs ORDER BY id DESC")]

    def queue(self) -> list[int]:
        """Queued job ids in the order they will run."""
        return [r["id"] for r in self._all("SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority DESC, id")]

    def cancel(self, job_id: int) -> dict:
        with self.lock:
            row = self.job(job_id)
            if row["state"] == "queued":
                self._set(job_id, state="cancelled", finished=time.time())
                self._end(job_id, "cancelled")
            elif row["state"] == "running" and not self.live[job_id].cancel.is_set():
                self.live[job_id].cancel.set()
                self._event(job_id, {"type": "state", "state": "stopping"})  # at the end of the current step
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
        live = self.live.get(job_id)
        if row["result"]:
            image = open_image(self.data / "results" / row["result"], "result")
        elif live is not None and live.image is not None:
            image = tensor_to_pil(live.image)
        elif self._last(job_id).is_file():
            image = open_image(self._last(job_id), "last preview")
        else:
            raise Conflict(f"job {job_id} has no image to continue from yet (it took no step)")
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        init = self.add_upload(buf.getvalue(), "png", f"job {job_id}", image.size)["sha256"]
        return self.submit(row["content"], row["styles"], settings if settings is not None else row["settings"],
                           init=init, parent=job_id, priority=1, masks=row["masks"], continued=True)

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
            self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            if row["state"] == "queued":
                self._end(job_id, "cancelled")
        if row["result"]:
            (self.data / "results" / row["result"]).unlink(missing_ok=True)
        self._last(job_id).unlink(missing_ok=True)
        report = self.data / "reports" / str(job_id)
        if report.is_dir():
            for p in report.iterdir():
                p.unlink()
            report.rmdir()

    def result_path(self, job_id: int) -> Path:
        row = self.job(job_id)
        if not row["result"]:
            raise NotFound(f"job {job_id} has no result ({row['state']})")
        return self.data / "results" / row["result"]

    def provenance(self, job_id: int) -> dict:
        job, config = provenance.read_provenance(str(self.result_path(job_id)))
        return {**job, "config": config_to_dict(config)}

    def explain(self, job_id: int) -> Path:
        """`stylelab explain` of a run's result (content, styles, the result, its settings), measured at the
        result's own size (no size forced: a cancelled multi-scale run stopped at a coarser one than its settings
        say): the report folder, DATA/reports/<job id>/ (made once; later calls return it)."""
        from ..analysis.report import explain

        self._finished_run(job_id, "explain")
        folder = self.data / "reports" / str(job_id)
        with self.explain_lock:
            if not (folder / "index.html").is_file():
                result = self.result_path(job_id)
                job, config = provenance.read_provenance(str(result))
                explain(job["content"], job["styles"], folder, str(result), config)
        return folder

    def compare(self, job_id: int, losses: str) -> list[dict]:
        """Queue the finished run `job_id` again under each style loss of `losses` (the specs of `stylelab compare
        --losses`: a comma list, or 'all') other than its own, with its inputs and other settings: its children,
        which its compare report puts side by side. Returns the queued jobs."""
        from ..analysis.compare import split_specs
        from ..losses.spec import parse_style_losses

        row = self._finished_run(job_id, "compare")
        try:
            specs = split_specs(losses)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        own = [t.label for t in parse_style_losses(row["settings"]["style_loss"])]
        have = {c["settings"]["style_loss"] for c in self._comparisons(row, ("queued", "running", "done"))}
        have |= set(own) if len(own) == 1 else set()  # a single loss is the job's own row; a mix is not a spec
        init = None if row["continued"] else row["init"]  # a chosen start image is one of the job's inputs
        return [self.submit(row["content"], row["styles"], {**row["settings"], "style_loss": spec}, init=init,
                            parent=job_id, masks=row["masks"]) for spec in specs if spec not in have]

    def _comparisons(self, row: dict, states: tuple[str, ...]) -> list[dict]:
        """The job's comparison runs, oldest first: its children with the same inputs and settings but the style
        loss, started as it was (from the content, or from the same chosen image), not edit-and-continue ones."""
        same = {k: v for k, v in row["settings"].items() if k != "style_loss"}
        return [c for c in self.jobs()[::-1]
                if c["parent"] == row["id"] and c["state"] in states and not c["continued"] and c["kind"] == "run"
                and c["init"] == (None if row["continued"] else row["init"])
                and (c["content"], c["styles"], c["masks"]) == (row["content"], row["styles"], row["masks"])
                and {k: v for k, v in c["settings"].items() if k != "style_loss"} == same]

    def compare_report(self, job_id: int) -> Path:
        """The report of `compare`: the result and its finished comparison runs (same inputs and settings, another
        style loss) in a grid, and every one measured under every loss they used (stylelab.compare.evaluator;
        content image = 1). Written to DATA/reports/<job id>/compare.html and compare.png, remade on each call."""
        from ..analysis.compare import Row, evaluator, grid, page
        from ..engine.optimize import load_inputs
        from ..losses.spec import parse_style_losses

        row = self._finished_run(job_id, "compare")
        runs, seen = [row], {row["settings"]["style_loss"]}
        for c in self._comparisons(row, ("done",)):
            if c["settings"]["style_loss"] not in seen:
                runs.append(c)
                seen.add(c["settings"]["style_loss"])
        if len(runs) < 2:
            raise Conflict(f"job {job_id} has no finished comparison runs yet (compare it first)")
        labels = list(dict.fromkeys(t.label for r in runs for t in parse_style_losses(r["settings"]["style_loss"])))
        job, config = provenance.read_provenance(str(self.result_path(job_id)))
        content, styles = load_inputs(job["content"], job["styles"])
        assert content is not None  # a run has a content image
        with self.explain_lock:
            distances = evaluator(content, styles, config, labels)
            reference = resize_long_edge(content, config.size)
            rows = [Row("content image", tensor_to_pil(reference), distances(reference), float("nan"))]
            for r in runs:
                image = to_tensor(str(self.result_path(r["id"])), "result")
                rows.append(Row(f"#{r['id']} {r['settings']['style_loss']}", tensor_to_pil(image), distances(image),
                                (r["finished"] - r["started"]) / max(1, r["steps"])))
            folder = self.data / "reports" / str(job_id)
            folder.mkdir(parents=True, exist_ok=True)
            save_image(grid(rows), folder / "compare.png")
            notes = ["s/step: the job's time over its steps (targets included)."]
            if row["continued"]:
                notes.append(f"Job {job_id} went on from another job's image (edit and continue); its comparison "
                             "runs start from the content.")
            if row["masks"]:
                notes.append("With regions, the distances are over the whole image, to the blend of the styles.")
            waiting = len(self._comparisons(row, ("queued", "running")))
            if waiting:
                notes.append(f"{waiting} comparison run{'s are' if waiting > 1 else ' is'} still queued or "
                             "running: show the report again when done.")
            html = page(rows, f"Job {job_id} under other style losses", "compare.png", " ".join(notes))
            tmp = folder / "compare.html.part"
            tmp.write_text(html, encoding="utf-8")
            tmp.replace(folder / "compare.html")
        return folder

    def _finished_run(self, job_id: int, what: str) -> dict:
        row = self.job(job_id)
        if row["kind"] != "run":
            raise Conflict(f"{what} needs a content image; this job is a texture")
        if not row["result"]:
            raise Conflict(f"job {job_id} has no result to {what} ({row['state']})")
        return row

    def report_file(self, job_id: int, name: str) -> Path:
        """A file of the job's explain report, found by listing its folder (the name is only compared)."""
        folder = self.data / "reports" / str(job_id)
        files = {p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
        if name not in files:
            raise NotFound(f"no report file {name!r} for job {job_id} (explain it first)")
        return files[name]

    def events(self, job_id: int, since: int) -> tuple[list[dict], bool]:
        with self.lock:
            live = self.live.get(job_id)
            if live is None:  # not run by this server: its end, also to a page that followed it on an earlier one
                row = self.job(job_id)
                return [{"type": "end", "state": row["state"], "error": row["error"]}], True
            return live.events[since:], live.ended

    # ------------------------------------------------------------------------------------------ the worker

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self.stopping and not self.queue():
                    self.wake.wait(1.0)
                if self.stopping:
                    return
                job_id = self.queue()[0]
                self.running = job_id
                self._set(job_id, state="running", started=time.time())
                self._event(job_id, {"type": "state", "state": "running"})
            try:
                self._run(job_id)
            finally:
                with self.lock:
                    self.running = None

    def _run(self, job_id: int) -> None:
        row, live = self.job(job_id), self.live[job_id]
        record: dict[str, Any] = {}  # the provenance's job fields, once the inputs are read
        alpha, result, done = None, None, [0]
        try:
            config, _ = self._config(row["kind"], row["settings"], row["init"], row["masks"])
            on_step = self._progress(job_id, live, sum(steps for _, steps in config.schedule()), done)
            styles = [str(self.upload_path(s)) for s in row["styles"]]
            if row["kind"] == "texture":
                size = (config.size, config.size)
                record = {"command": "texture", "size": list(size), "styles": styles}
                image = synthesize(styles, size, config, on_step)
            else:
                content_path = str(self.upload_path(row["content"]))
                content = open_image(content_path, "content image")
                alpha, record = load_alpha(content), {"command": "run", "content": content_path, "styles": styles}
                image = stylize(content, styles, config, on_step, style_cache=self.cache)
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
            self._finish(job_id, "cancelled", error, done[0], result=result, losses=_losses(live))
        except Exception as exc:
            self._finish(job_id, "failed", one_line_error(exc), done[0])
        else:
            self._finish(job_id, "done", None, done[0], result=result, losses=_losses(live))
        finally:
            self._last(job_id).unlink(missing_ok=True)
        if result:
            live.image = None  # the result file is the image to continue from

    def _progress(self, job_id: int, live: Live, total: int, done: list[int]) -> Callable[[Step], None]:
        """The step callback of a run of `total` steps: events, previews, the Cancel check; counts in `done`."""
        t0 = time.perf_counter()
        step_s: list[float] = []
        every = [self.preview_every or 1]
        encode_s: list[float] = []

        def on_step(step: Step) -> None:
            if live.cancel.is_set():
                raise Cancelled
            live.image = step.image.detach().to("cpu", copy=True)
            if not step.final:
                done[0] += 1
                step_s.append(step.seconds)
            median = sorted(step_s)[len(step_s) // 2] if step_s else step.seconds
            terms = {k: v for k, v in step.terms.items() if "/" not in k}
            h, w = step.image.shape[-2:]
            self._event(job_id, {"type": "step", "step": done[0], "total": total, "scale": step.scale,
                                 "i": step.i, "n": step.n, "final": step.final, "loss": step.loss,
                                 "terms": terms, "seconds": step.seconds, "size": [w, h],
                                 "elapsed": time.perf_counter() - t0, "eta": median * (total - done[0])})
            if step.final or done[0] % every[0] == 0 or done[0] == 1:
                e0 = time.perf_counter()
                buf = io.BytesIO()
                tensor_to_pil(step.image).save(buf, format="JPEG", quality=PREVIEW_QUALITY)
                tmp = self._last(job_id).with_suffix(".part")  # what an interrupted job goes on from
                try:
                    tmp.write_bytes(buf.getvalue())
                    tmp.replace(self._last(job_id))
                except OSError:  # a full disk costs only that fallback, not the run
                    tmp.unlink(missing_ok=True)
                encode_s.append(time.perf_counter() - e0)
                with self.lock:
                    live.preview, live.previews = buf.getvalue(), live.previews + 1
                if self.preview_every is None and median > 0:  # amortised encode < PREVIEW_SHARE of a step
                    typical = sorted(encode_s)[len(encode_s) // 2]  # the median: the first encode is slower
                    every[0] = max(1, math.ceil(typical / (PREVIEW_SHARE * median)))
                self._event(job_id, {"type": "preview", "n": live.previews, "every": every[0],
                                     "encode_s": encode_s[-1]})

        return on_step

    def _save(self, job_id: int, image: Image.Image | torch.Tensor, row: dict, config: Config, record: dict,
              alpha: torch.Tensor | None) -> None:
        """DATA/results/<job id>.png with the provenance `stylelab replay` reads (`record`: its job fields)."""
        bit_depth = int(row["settings"].get("bit_depth", 8))
        save_image(image, self.data / "results" / f"{job_id}.png", bit_depth=bit_depth, alpha=alpha,
                   metadata=provenance.record({**record, "bit_depth": bit_depth}, config))

    def _last(self, job_id: int) -> Path:
        """The latest preview of a running job, kept on disk for as long as it runs."""
        return self.data / "results" / f"{job_id}-last.jpg"

    def _finish(self, job_id: int, state: str, error: str | None, steps: int, result: str | None = None,
                losses: dict | None = None) -> None:
        with self.lock:
            if not self._all("SELECT id FROM jobs WHERE id = ?", (job_id,)):
                return  # deleted meanwhile
            self._set(job_id, state=state, error=error, steps=steps, result=result,
                      losses=json.dumps(losses) if losses else None, finished=time.time())
            self._end(job_id, state, error)

    # -------------------------------------------------------------------------------------------- helpers

    def _event(self, job_id: int, event: dict) -> None:
        with self.lock:
            live = self.live.setdefault(job_id, Live())
            live.events.append(event)

    def _end(self, job_id: int, state: str, error: str | None = None) -> None:
        with self.lock:
            self._event(job_id, {"type": "end", "state": state, "error": error})
            self.live[job_id].ended = True

    def _set(self, job_id: int, **values: Any) -> None:
        with self.lock:
            cols = ", ".join(f"{k} = ?" for k in values)
            self.db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*values.values(), job_id))

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()


def _losses(live: Live) -> dict:
    """The loss and its terms at the last step taken ({} before the first)."""
    last = next((e for e in reversed(live.events) if e["type"] == "step"), None)
    return {"loss": last["loss"], **last["terms"]} if last else {}


def _open_db(path: Path) -> sqlite3.Connection:
    """The job database of a data folder, made or migrated; a damaged file, or another program's database, is a
    NotOurDatabase (checked before anything is written to it)."""
    refusal = NotOurDatabase(f"{path} is not a stylelab database (damaged?)")
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    except sqlite3.Error as exc:
        raise NotOurDatabase(f"cannot open {path}: {exc}") from None
    db.row_factory = sqlite3.Row
    try:
        tables = {r["name"] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables -= {"sqlite_sequence"}
        if tables:
            columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
            if not {"jobs", "uploads"} <= tables or not {"id", "kind", "styles", "settings", "state"} <= columns:
                raise refusal
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
        for name, sql in _ADDED_COLUMNS.items():  # a data folder made before them
            if name not in columns:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql}")
    except sqlite3.OperationalError as exc:
        db.close()
        raise NotOurDatabase(f"cannot open {path}: {exc}") from None
    except (sqlite3.DatabaseError, NotOurDatabase):
        db.close()
        raise refusal from None
    return db


def _row(r: sqlite3.Row) -> dict:
    d = dict(r)
    d["styles"] = json.loads(d["styles"])
    d["settings"] = json.loads(d["settings"])
    d["losses"] = json.loads(d["losses"]) if d["losses"] else {}
    d["masks"] = json.loads(d["masks"]) if d["masks"] else []
    return d
