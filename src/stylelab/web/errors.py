"""The API's refusals and how they are answered: JSON {"error": one line}, never a stack trace; a refused setting
adds {"field": its name in the form}. A request body of the wrong shape is a 400 with the message its model gives
(stylelab.web.models.message); a path or query parameter of the wrong type stays FastAPI's 422."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import StylelabError
from .models import message

__all__ = ["BadRequest", "Conflict", "NotFound", "error", "install"]


class BadRequest(StylelabError):
    """A request the API refuses: its `status` (400 unless given) and a one-line message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotFound(StylelabError):
    status = 404


class Conflict(StylelabError):
    status = 409


def error(status: int, text: str, field: str | None = None) -> JSONResponse:
    body = {"error": " ".join(text.split())}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def _stylelab_error(request: Request, exc: Exception) -> JSONResponse:
    return error(getattr(exc, "status", 400), str(exc), getattr(exc, "field", None))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    outside = [e for e in errors if tuple(e.get("loc", ()))[:1] != ("body",)]
    if errors and not outside:
        return error(400, message(tuple(errors[0]["loc"])[1:]))
    first = outside[0] if outside else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error(422, f"bad request: {where}: {first.get('msg', 'invalid')}" if where else "bad request")


def install(app: FastAPI) -> None:
    """The app's answers to the errors above, to Starlette's HTTP errors and to malformed requests."""
    app.add_exception_handler(StylelabError, _stylelab_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
