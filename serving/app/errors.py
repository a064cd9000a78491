"""Error responses: a 4xx names the field and what is wrong; a 5xx says nothing about why.

FastAPI's default 422 handler echoes each invalid input back. A `NaN` sent by the client
then makes the error response itself unencodable, and the client gets a 500. The handler
here never echoes input, and prefixes every message with the field's path, so
`island: Input should be 'Biscoe', 'Dream' or 'Torgersen'` reads on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


def field_path(loc: Sequence[Any]) -> str:
    """`("body", "records", 3, "island")` -> `records[3].island`; the body itself -> `body`."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def describe(error: dict[str, Any]) -> dict[str, Any]:
    loc = tuple(error.get("loc", ()))
    path = field_path(loc)
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "extra_forbidden":
        message = "is not a field of this model (GET /model lists the input schema)"
    return {"loc": list(loc), "msg": f"{path}: {message}", "type": str(error.get("type"))}


# A batch of 1,000 bad records would otherwise answer with 1,000 messages.
MAX_REPORTED_ERRORS = 50


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    request.app.state.service.monitor.observe_validation_errors(errors)
    detail = [describe(e) for e in errors[:MAX_REPORTED_ERRORS]]
    if len(errors) > MAX_REPORTED_ERRORS:
        hidden = len(errors) - MAX_REPORTED_ERRORS
        detail.append(
            {"loc": ["body"], "msg": f"body: {hidden} more errors not shown", "type": "truncated"}
        )
    return JSONResponse(status_code=422, content={"detail": detail})


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        status_code=exc.status_code,
        content={"detail": exc.detail},
        headers=dict(exc.headers or {}),
    )


def internal_error_handler(model_version: str) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        # The request middleware has already logged the traceback with the request id.
        # This response runs outside that middleware, so it sets the headers itself.
        request_id = str(getattr(request.state, "request_id", ""))
        return JSONResponse(
            status_code=500,
            content={"detail": f"internal server error (request id {request_id})"},
            headers={"X-Model-Version": model_version, "X-Request-Id": request_id},
        )

    return handler


def install(app: FastAPI, model_version: str) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(Exception, internal_error_handler(model_version))
