"""The HTTP side of `stylelab serve`: `create_app(data_dir, token=None)` -> a FastAPI app.

    GET  /                          the page (static/, no build step, nothing from the network); /favicon.ico
    GET  /api/schema                the form: every image setting of `stylelab run` (from its parser) + limits
    POST /api/uploads               one image (multipart `file`): sniffed and decoded by the CLI's loaders
    GET  /api/uploads, /api/uploads/{sha256}/image      recently used inputs
    POST /api/jobs                  {content: sha256 | null (texture), styles: [sha256], settings: {...}}
    GET  /api/jobs, /api/jobs/{id}  history, one job;  DELETE /api/jobs/{id}
    GET  /api/jobs/{id}/events      server-sent events: state, step (losses, seconds, ETA), preview, end
    GET  /api/jobs/{id}/preview     the latest JPEG preview;  /result: the PNG;  /provenance: its settings
    POST /api/jobs/{id}/cancel | /continue {settings} | /restart {settings}
    POST /api/jobs/{id}/explain     `stylelab explain` of a result; GET /api/jobs/{id}/report/index.html

Security: the Host header must be loopback (or the explicit --host), so a DNS-rebinding page cannot talk to the
server; with a token every request must carry it (header X-Stylelab-Token, `Authorization: Bearer`, ?token=, or
the SameSite=Strict cookie a request with the right ?token= sets).
Errors are JSON {"error": one line}, never a stack trace; a refused setting adds {"field": its name in the form}.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import re
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException

from ..errors import StylelabError
from ..jobs.spec import decode
from .runner import Conflict, NotFound, Runner
from .schema import form_schema

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 50 * 2**20
BODY_OVERHEAD = 2**16  # multipart headers and boundaries around one upload
MAX_UPLOAD_PIXELS = 50_000_000  # below the CLI's own guard (stylelab.image.MAX_PIXELS), which applies first
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_REPORT_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(html|png)$")
COOKIE = "stylelab_token"  # set from ?token= so the page's images and the report's relative links carry it


class BadRequest(StylelabError):
    """A request the API refuses: its `status` (400 unless given) and a one-line message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def create_app(data_dir: str | Path, token: str | None = None, *, hosts: Sequence[str] = (), port: int | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_upload_pixels: int = MAX_UPLOAD_PIXELS,
               preview_every: int | None = None) -> FastAPI:
    """The app over the data folder `data_dir` (made if missing). `hosts`: non-loopback names or addresses the
    server is reached by (allowed in the Host header besides loopback); `port`: if given, a Host header's port
    must be it. `preview_every`: steps between previews (None: chosen so encoding costs < 5% of a step)."""
    runner = Runner(data_dir, preview_every=preview_every)
    runner.start()  # the worker thread; stopped when the app shuts down (lifespan)
    allowed = {*LOOPBACK, *(h.strip("[]").lower() for h in hosts)}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(runner.stop)

    app = FastAPI(title="stylelab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runner = runner
    # Outermost: a request body over the limit is cut off while it arrives (before the multipart parser spools it).
    app.add_middleware(BodyLimit, limit=max_upload_bytes + BODY_OVERHEAD)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        name, req_port = _split_host(request.headers.get("host", ""))
        if name not in allowed or (port is not None and req_port is not None and req_port != port):
            return _error(421, f"Host {request.headers.get('host', '')!r} is not this server (allowed: "
                          f"{', '.join(sorted(allowed))}); open the URL `stylelab serve` printed")
        from_query = ""
        if token is not None:
            from_query = request.query_params.get("token") or ""
            given = request.headers.get("x-stylelab-token") or from_query or request.cookies.get(COOKIE) or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = given or auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "missing or wrong token: open the URL with ?token=... that `stylelab serve` "
                              "printed")
        try:
            response = await call_next(request)
        except Exception as exc:  # never a stack trace to the client
            return _error(500, f"internal error ({type(exc).__name__})")
        if token is not None and from_query == token and request.cookies.get(COOKIE) != token:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(StylelabError)
    async def stylelab_error(request: Request, exc: StylelabError):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else \
            getattr(exc, "status", 400)
        return _error(status, str(exc), getattr(exc, "field", None))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"bad request: {where}: {first.get('msg', 'invalid')}" if where else "bad request")

    # ------------------------------------------------------------------------------------------- the page

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:  # asked for by browsers on every page, the explain reports' too
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/schema")
    async def schema() -> dict:
        return {"fields": form_schema(), "limits": {"bytes": max_upload_bytes, "pixels": max_upload_pixels}}

    # -------------------------------------------------------------------------------------------- uploads

    @app.post("/api/uploads")
    async def upload(file: UploadFile) -> dict:
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise BadRequest(f"{_name(file)} is larger than the upload limit ({_size(max_upload_bytes)})", 413)
        if not data:
            raise BadRequest(f"{_name(file)} is an empty file", 400)
        try:
            fmt, size = await run_in_threadpool(_sniff, data, _name(file))
        except StylelabError as exc:
            raise BadRequest(str(exc), 413 if "too large" in str(exc) else 415) from None
        if size[0] * size[1] > max_upload_pixels:
            raise BadRequest(f"{_name(file)} is too large ({size[0]}x{size[1]} px, limit "
                             f"{max_upload_pixels:,} pixels)", 413)
        return await run_in_threadpool(runner.add_upload, data, fmt, _name(file), size)

    @app.get("/api/uploads")
    async def uploads() -> list[dict]:
        return await run_in_threadpool(runner.uploads)

    @app.get("/api/uploads/{sha}/image")
    async def upload_image(sha: str) -> FileResponse:
        if not _SHA.match(sha):
            raise NotFound("no such upload")
        return FileResponse(await run_in_threadpool(runner.upload_path, sha))

    # ----------------------------------------------------------------------------------------------- jobs

    @app.post("/api/jobs")
    async def submit(body: dict[str, Any]) -> dict:
        content, styles = body.get("content"), body.get("styles")
        if content is not None and not (isinstance(content, str) and _SHA.match(content)):
            raise BadRequest("content must be the id of an upload, or null for a texture")
        if not isinstance(styles, list) or not all(isinstance(s, str) and _SHA.match(s) for s in styles):
            raise BadRequest("styles must be a list of upload ids")
        init = body.get("init")
        if init is not None and not (isinstance(init, str) and _SHA.match(init)):
            raise BadRequest("init must be the id of an upload (an image to start from), or null")
        return await run_in_threadpool(runner.submit, content, styles, _settings(body), init=init,
                                       masks=_masks(body))

    @app.get("/api/jobs")
    async def jobs() -> dict:
        return {"jobs": await run_in_threadpool(runner.jobs), "queue": await run_in_threadpool(runner.queue),
                "running": runner.running}

    @app.get("/api/jobs/{job_id}")
    async def job(job_id: int) -> dict:
        return await run_in_threadpool(runner.job, job_id)

    @app.delete("/api/jobs/{job_id}")
    async def delete(job_id: int) -> dict:
        await run_in_threadpool(runner.delete, job_id)
        return {"deleted": job_id}

    @app.post("/api/jobs/{job_id}/cancel")
    async def cancel(job_id: int) -> dict:
        return await run_in_threadpool(runner.cancel, job_id)

    @app.post("/api/jobs/{job_id}/continue")
    async def continue_(job_id: int, body: dict[str, Any] | None = None) -> dict:
        return await run_in_threadpool(runner.continue_from, job_id, _settings(body or {}, None))

    @app.post("/api/jobs/{job_id}/restart")
    async def restart(job_id: int, body: dict[str, Any] | None = None) -> dict:
        return await run_in_threadpool(runner.restart, job_id, _settings(body or {}, None))

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: int, request: Request, since: int = 0) -> StreamingResponse:
        await run_in_threadpool(runner.job, job_id)  # 404 before the stream starts

        last = request.headers.get("last-event-id", "")  # an EventSource reconnecting goes on where it was
        start = max(since, int(last) if last.isdigit() else 0)

        async def stream() -> AsyncIterator[str]:
            k = start
            while True:
                new, ended = runner.events(job_id, k)
                for event in new:
                    k += 1
                    yield f"id: {k}\ndata: {json.dumps(event)}\n\n"
                if ended:  # read with the events, under one lock: the end was among them
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/jobs/{job_id}/preview")
    async def preview(job_id: int) -> Response:
        live = runner.live.get(job_id)
        if live is None or live.preview is None:
            raise NotFound(f"no preview of job {job_id} yet")
        return Response(live.preview, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/result")
    async def result(job_id: int, download: bool = False) -> FileResponse:
        path = await run_in_threadpool(runner.result_path, job_id)
        return FileResponse(path, media_type="image/png",
                            filename=f"stylelab-{job_id}.png" if download else None)

    @app.post("/api/jobs/{job_id}/explain")
    async def explain(job_id: int) -> dict:
        await run_in_threadpool(runner.explain, job_id)
        return {"report": f"/api/jobs/{job_id}/report/index.html"}

    @app.post("/api/jobs/{job_id}/compare")
    async def compare(job_id: int, body: dict[str, Any] | None = None) -> dict:
        losses = (body or {}).get("losses", "all")
        if not isinstance(losses, str):
            raise BadRequest("losses must be a comma list of style losses, or 'all'")
        return {"jobs": await run_in_threadpool(runner.compare, job_id, losses)}

    @app.post("/api/jobs/{job_id}/compare-report")
    async def compare_report(job_id: int) -> dict:
        await run_in_threadpool(runner.compare_report, job_id)
        return {"report": f"/api/jobs/{job_id}/report/compare.html"}

    @app.get("/api/jobs/{job_id}/report/{name}")
    async def report(job_id: int, name: str) -> FileResponse:
        if not _REPORT_FILE.match(name):
            raise NotFound(f"no report file {name!r}")
        return FileResponse(await run_in_threadpool(runner.report_file, job_id, name))

    @app.get("/api/jobs/{job_id}/provenance")
    async def provenance(job_id: int) -> dict:
        return await run_in_threadpool(runner.provenance, job_id)

    return app


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request whose body grows past `limit` bytes is answered 413 as soon as it does (a
    declared Content-Length over it at once), whatever the endpoint; the app's own answer to it is dropped."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = {"error": f"the request is larger than the upload limit ({_size(self.limit - BODY_OVERHEAD)})"}
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse(message, status_code=413)(scope, receive, send)
            return
        state = {"seen": 0, "over": False}

        async def limited():
            msg = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    raise _TooLarge
            return msg

        async def quiet(msg) -> None:
            if not state["over"]:
                await send(msg)

        try:
            await self.app(scope, limited, quiet)
        except Exception:
            if not state["over"]:
                raise
        if state["over"]:
            await JSONResponse(message, status_code=413)(scope, receive, send)


def _settings(body: dict[str, Any], default: Any = ...) -> Any:
    settings = body.get("settings", {} if default is ... else default)
    if settings is not None and not isinstance(settings, dict):
        raise BadRequest("settings must be an object of {setting: value}")
    return settings


def _masks(body: dict[str, Any]) -> list[dict]:
    """The request's regions (`--mask`): [{"content_mask": upload id, "style": number from 1, "style_mask": upload
    id or null}, ...]; anything else is a 400."""
    masks = body.get("masks") or []
    if not isinstance(masks, list):
        raise BadRequest("masks must be a list of {content_mask, style, style_mask}")
    out = []
    for k, m in enumerate(masks, 1):
        if not isinstance(m, dict) or set(m) - {"content_mask", "style", "style_mask"}:
            raise BadRequest(f"mask {k} must be an object with content_mask, style and an optional style_mask")
        content, style, style_mask = m.get("content_mask"), m.get("style"), m.get("style_mask")
        if not (isinstance(content, str) and _SHA.match(content)):
            raise BadRequest(f"mask {k}: content_mask must be the id of an upload")
        if style_mask is not None and not (isinstance(style_mask, str) and _SHA.match(style_mask)):
            raise BadRequest(f"mask {k}: style_mask must be the id of an upload, or null")
        if isinstance(style, bool) or not isinstance(style, int):
            raise BadRequest(f"mask {k}: style must be the number of a style image, from 1")
        out.append({"content_mask": content, "style": style, "style_mask": style_mask})
    return out


def _sniff(data: bytes, name: str) -> tuple[str, tuple[int, int]]:
    """Decode the bytes with the CLI's loader (pixel limit / decompression-bomb guard, orientation, ICC); returns
    the format the content really is (never the file name's) and the decoded size."""
    image = decode(data, name, "upload")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # decode() has applied the guard
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "img").lower()
    return ("jpg" if fmt == "jpeg" else fmt), image.size


def _size(n: int) -> str:
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} kB"


def _name(file: UploadFile) -> str:
    """The client's file name, for messages only (never a path here)."""
    name = Path((file.filename or "upload").replace("\\", "/")).name
    return "".join(c for c in name if c.isprintable())[:80] or "upload"


def _split_host(host: str) -> tuple[str, int | None]:
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, (int(port) if port.isdigit() else None)


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": " ".join(message.split())}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)
