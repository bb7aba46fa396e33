"""The HTTP routes, by what they serve: the page, uploads, jobs, and reports of results.

    GET  /                          the page (static/, no build step, nothing from the network); /favicon.ico
    GET  /api/schema                the form: every image setting of `stylelab run` (from its parser) + limits
    POST /api/uploads               one image (multipart `file`): sniffed and decoded by the CLI's loaders
    GET  /api/uploads, /api/uploads/{sha256}/image      recently used inputs
    POST /api/jobs                  {content: sha256 | null (texture), styles: [sha256], settings: {...}, init, masks}
    GET  /api/jobs, /api/jobs/{id}  history, one job;  DELETE /api/jobs/{id}
    GET  /api/jobs/{id}/events      server-sent events: state, step (losses, seconds, ETA), preview (`"fast":
                                    true`: the feed-forward picture before step 1, with stylelab[fast]), end
    GET  /api/jobs/{id}/preview     the latest JPEG preview;  /result: the PNG;  /provenance: its settings
    POST /api/jobs/{id}/cancel | /continue {settings} | /restart {settings}
    POST /api/jobs/{id}/explain | /compare {losses} | /compare-report;  GET /api/jobs/{id}/report/{file}

A route that touches the disk or the database is a plain `def` (FastAPI runs it in its thread pool), so the event
loop only streams.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse

from . import uploads as upload_checks
from .errors import NotFound
from .models import Comparison, NewJob, NewSettings
from .runner import Runner
from .schema import form_schema

__all__ = [
    "ROUTERS",
    "SSE_POLL_S",
    "STATIC",
    "Limits",
    "RunnerDep",
    "all_jobs",
    "cancel",
    "compare",
    "compare_report",
    "continue_",
    "delete",
    "events",
    "explain",
    "favicon",
    "index",
    "job",
    "jobs",
    "page",
    "preview",
    "provenance",
    "recent_uploads",
    "report",
    "reports",
    "restart",
    "result",
    "schema",
    "submit",
    "upload",
    "upload_image",
    "uploads",
]

STATIC = Path(__file__).parent / "static"
_SHA = re.compile(r"^[0-9a-f]{64}$")
_REPORT_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(html|png)$")
SSE_POLL_S = 0.1  # how often an event stream looks for new events


@dataclass(frozen=True)
class Limits:
    bytes: int  # of one upload
    pixels: int  # of one decoded upload


def _runner(request: Request) -> Runner:
    return request.app.state.runner


def _limits(request: Request) -> Limits:
    return request.app.state.limits


RunnerDep = Annotated[Runner, Depends(_runner)]
page = APIRouter()
uploads = APIRouter(prefix="/api/uploads")
jobs = APIRouter(prefix="/api/jobs")
reports = APIRouter(prefix="/api/jobs/{job_id}")
ROUTERS = (page, uploads, jobs, reports)  # all the app's routes but the static files

# ------------------------------------------------------------------------------------------------- the page


@page.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@page.get("/favicon.ico")
async def favicon() -> FileResponse:  # asked for by browsers on every page, the explain reports' too
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


@page.get("/api/schema")
async def schema(limits: Annotated[Limits, Depends(_limits)]) -> dict:
    return {"fields": form_schema(), "limits": {"bytes": limits.bytes, "pixels": limits.pixels}}


# --------------------------------------------------------------------------------------------------- uploads


@uploads.post("")
async def upload(file: UploadFile, runner: RunnerDep, limits: Annotated[Limits, Depends(_limits)]) -> dict:
    data = await file.read(limits.bytes + 1)
    name = upload_checks.client_name(file.filename)
    fmt, size = await run_in_threadpool(upload_checks.check, data, name, limits.bytes, limits.pixels)
    return await run_in_threadpool(runner.uploads.add, data, fmt, name, size)


@uploads.get("")
def recent_uploads(runner: RunnerDep) -> list[dict]:
    return runner.uploads.recent()


@uploads.get("/{sha}/image")
def upload_image(sha: str, runner: RunnerDep) -> FileResponse:
    if not _SHA.match(sha):
        raise NotFound("no such upload")
    return FileResponse(runner.uploads.path(sha))


# ------------------------------------------------------------------------------------------------------ jobs


@jobs.post("")
def submit(body: NewJob, runner: RunnerDep) -> dict:
    masks = [m.model_dump() for m in body.masks or []]
    return runner.submit(body.content, body.styles, body.settings, init=body.init, masks=masks)


@jobs.get("")
def all_jobs(runner: RunnerDep) -> dict:
    return {"jobs": runner.jobs(), "queue": runner.queue(), "running": runner.running}


@jobs.get("/{job_id}")
def job(job_id: int, runner: RunnerDep) -> dict:
    return runner.job(job_id)


@jobs.delete("/{job_id}")
def delete(job_id: int, runner: RunnerDep) -> dict:
    runner.delete(job_id)
    return {"deleted": job_id}


@jobs.post("/{job_id}/cancel")
def cancel(job_id: int, runner: RunnerDep) -> dict:
    return runner.cancel(job_id)


@jobs.post("/{job_id}/continue")
def continue_(job_id: int, runner: RunnerDep, body: NewSettings | None = None) -> dict:
    return runner.continue_from(job_id, body.settings if body else None)


@jobs.post("/{job_id}/restart")
def restart(job_id: int, runner: RunnerDep, body: NewSettings | None = None) -> dict:
    return runner.restart(job_id, body.settings if body else None)


@jobs.get("/{job_id}/events")
async def events(job_id: int, request: Request, runner: RunnerDep, since: int = 0) -> StreamingResponse:
    await run_in_threadpool(runner.job, job_id)  # 404 before the stream starts
    last = request.headers.get("last-event-id", "")  # an EventSource reconnecting goes on where it was
    start = max(since, int(last) if last.isdigit() else 0)

    async def stream() -> AsyncIterator[str]:
        k = start
        while True:
            new, ended = runner.events(job_id, k)  # in memory, under the runner's lock: no disk, no SQL
            for event in new:
                k += 1
                yield f"id: {k}\ndata: {json.dumps(event)}\n\n"
            if ended or await request.is_disconnected():  # ended: read with the events, the end was among them
                return
            await asyncio.sleep(SSE_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@jobs.get("/{job_id}/preview")
def preview(job_id: int, runner: RunnerDep) -> Response:
    return Response(runner.preview(job_id), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@jobs.get("/{job_id}/result")
def result(job_id: int, runner: RunnerDep, download: bool = False) -> FileResponse:
    return FileResponse(runner.result_path(job_id), media_type="image/png",
                        filename=f"stylelab-{job_id}.png" if download else None)


@jobs.get("/{job_id}/provenance")
def provenance(job_id: int, runner: RunnerDep) -> dict:
    return runner.provenance(job_id)


# ------------------------------------------------------------------------------------- reports of results


@reports.post("/explain")
def explain(job_id: int, runner: RunnerDep) -> dict:
    runner.reports.explain(job_id)
    return {"report": f"/api/jobs/{job_id}/report/index.html"}


@reports.post("/compare")
def compare(job_id: int, runner: RunnerDep, body: Comparison | None = None) -> dict:
    return {"jobs": runner.reports.compare(job_id, body.losses if body else "all")}


@reports.post("/compare-report")
def compare_report(job_id: int, runner: RunnerDep) -> dict:
    runner.reports.compare_report(job_id)
    return {"report": f"/api/jobs/{job_id}/report/compare.html"}


@reports.get("/report/{name}")
def report(job_id: int, name: str, runner: RunnerDep) -> FileResponse:
    if not _REPORT_FILE.match(name):
        raise NotFound(f"no report file {name!r}")
    return FileResponse(runner.reports.file(job_id, name))
