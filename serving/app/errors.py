"""Error responses: a 4xx names the field and what is wrong; a 5xx says nothing about why.

FastAPI's default 422 handler echoes each invalid input back. A `NaN` sent by the client
then makes the error response itself unencodable, and the client gets a 500. The handler
here never echoes input, and prefixes every message with the field's path, so
`island: Input should be 'Biscoe', 'Dream' or 'Torgersen'` reads on its own. What it
does quote (field names, which a client chooses) is cut to a few dozen characters, and the
whole error body stays under `MAX_ERROR_BODY_BYTES`, so an error never amplifies a request.

A client that goes away before its request body has arrived is not a server error: it gets
499 (nginx's "client closed request") in the request log and metrics, without a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.messages import MAX_ERROR_BODY_BYTES, describe
from app.metrics import CLIENT_CLOSED_REQUEST
from app.protocol import BODY_TIMED_OUT

# A batch of 1,000 bad records would otherwise answer with 1,000 messages.
MAX_REPORTED_ERRORS = 50


def _size(item: dict[str, Any]) -> int:
    # As JSONResponse encodes it (ensure_ascii=False), plus the separating comma.
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()) + 1


def bounded_detail(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The errors described, as many as fit in `MAX_ERROR_BODY_BYTES` (at most
    `MAX_REPORTED_ERRORS`), then one entry counting the rest."""
    # Room for the envelope and the closing "more errors" entry.
    budget = MAX_ERROR_BODY_BYTES - 256
    detail: list[dict[str, Any]] = []
    for error in errors[:MAX_REPORTED_ERRORS]:
        item = describe(error)
        budget -= _size(item)
        if budget < 0:
            break
        detail.append(item)
    hidden = len(errors) - len(detail)
    if hidden:
        detail.append(
            {"loc": ["body"], "msg": f"body: {hidden} more errors not shown", "type": "truncated"}
        )
    return detail


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    request.app.state.service.monitor.observe_validation_errors(errors)
    return JSONResponse(status_code=422, content={"detail": bounded_detail(errors)})


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


async def client_disconnect_handler(request: Request, exc: Exception) -> Response:
    """The client closed the connection (or was cut off by the body deadline) before its
    body arrived. The response goes nowhere; its status is what the request line logs."""
    assert isinstance(exc, ClientDisconnect)
    timed_out = bool(getattr(request.state, BODY_TIMED_OUT, False))
    return Response(status_code=408 if timed_out else CLIENT_CLOSED_REQUEST)


def install(app: FastAPI, model_version: str) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(ClientDisconnect, client_disconnect_handler)
    app.add_exception_handler(Exception, internal_error_handler(model_version))
