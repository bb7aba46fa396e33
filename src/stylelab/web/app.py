"""The HTTP side of `stylelab serve`: `create_app(data_dir, token=None)` -> a FastAPI app.

The routes are in routes.py, the request bodies in models.py, the Host/token checks and the body limit in
security.py, the error answers in errors.py: JSON {"error": one line}, never a stack trace; a refused setting adds
{"field": its name in the form}.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from . import errors, routes
from .runner import Runner
from .security import BODY_OVERHEAD, BodyLimit, Guard

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "create_app"]

MAX_UPLOAD_BYTES = 50 * 2**20
MAX_UPLOAD_PIXELS = 50_000_000  # below the CLI's own guard (stylelab.image.MAX_PIXELS), which applies first


def create_app(data_dir: str | Path, token: str | None = None, *, hosts: Sequence[str] = (), port: int | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_upload_pixels: int = MAX_UPLOAD_PIXELS,
               preview_every: int | None = None) -> FastAPI:
    """The app over the data folder `data_dir` (made if missing). `hosts`: non-loopback names or addresses the
    server is reached by (allowed in the Host header besides loopback); `port`: if given, a Host header's port
    must be it. `preview_every`: steps between previews (None: chosen so encoding costs < 5% of a step)."""
    runner = Runner(data_dir, preview_every=preview_every)
    runner.start()  # the worker thread; stopped when the app shuts down (lifespan)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(runner.stop)

    app = FastAPI(title="stylelab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runner = runner
    app.state.limits = routes.Limits(max_upload_bytes, max_upload_pixels)
    app.middleware("http")(Guard(token, hosts, port))
    # Outermost: a request body over the limit is cut off while it arrives (before the multipart parser spools it).
    app.add_middleware(BodyLimit, limit=max_upload_bytes + BODY_OVERHEAD)
    errors.install(app)
    for router in routes.ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=routes.STATIC), name="static")
    return app
