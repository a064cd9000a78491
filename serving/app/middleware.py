"""Pure ASGI middleware: the request context (id, API key, log line, metrics, headers) and
the body-size limit.

Pure ASGI rather than `BaseHTTPMiddleware`: no extra task or memory stream per request, and
the body is never buffered here, only counted as it streams.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import auth, metrics

log = logging.getLogger("app.requests")

# Header names, lower-case as ASGI passes them: the load balancer's trace id first (ALB
# adds one to every request), then an id the client chose.
REQUEST_ID_HEADERS = (b"x-amzn-trace-id", b"x-request-id")
# Anything else is replaced: the id lands in logs and a response header.
_SAFE_ID = re.compile(rb"[A-Za-z0-9=;:._\-]{1,200}")
UNMATCHED_ROUTE = "unmatched"


class RequestIds:
    """Ids for requests that bring none: 32 hex digits, a random per-process prefix and a
    counter, unique across workers and restarts without a `uuid4` (and its system call) per
    request. The prefix is drawn again in every forked child, so gunicorn's workers never
    share one."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_ids = RequestIds()


def request_id(headers: dict[bytes, bytes]) -> str:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value is not None and _SAFE_ID.fullmatch(value):
            return value.decode("ascii")
    return _ids.next()


def route_template(scope: Scope) -> str:
    """The matched route's template: a bounded label set, unlike raw paths."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestContextMiddleware:
    """Each request's id, log line, metrics and headers, and its API key (`app.auth`):
    without a valid one, when keys are configured, the request is answered 401 here,
    before it is routed, logged and counted like any other."""

    def __init__(
        self,
        app: ASGIApp,
        model_version: str,
        request_metrics: metrics.RequestMetrics,
        api_keys: auth.ApiKeys | None = None,
    ) -> None:
        self.app = app
        self.model_version = model_version
        self.metrics = request_metrics
        self.api_keys = api_keys if api_keys else None
        self._version_header = (b"x-model-version", model_version.encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        tally = self.metrics.begin()
        headers: dict[bytes, bytes] = dict(scope["headers"])
        rid = request_id(headers)
        key_name: str | None = None
        refusal: str | None = None
        if self.api_keys is not None and scope["path"] not in auth.OPEN_PATHS:
            presented = auth.presented_key(headers)
            key_name = self.api_keys.name_of(presented)
            if key_name is None:
                refusal = "missing" if presented is None else "invalid"
                metrics.count_authentication_refusal(self.model_version, refusal)
            else:
                metrics.count_api_key(self.model_version, key_name)
        # Handlers (the 500 handler) read it back from request.state.
        scope.setdefault("state", {})["request_id"] = rid
        extra_headers = [self._version_header, (b"x-request-id", rid.encode("ascii"))]
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        failure: BaseException | None = None
        try:
            if refusal is None:
                await self.app(scope, receive, send_with_headers)
            else:
                await _unauthenticated(refusal)(scope, receive, send_with_headers)
        except BaseException as error:
            # Starlette's outermost error middleware answers 500 (app.errors shapes it);
            # the traceback goes into this request's log line.
            failure = error
            status = status or 500
            raise
        finally:
            status = status or 500  # the app returned without answering
            seconds = time.perf_counter() - started
            route = route_template(scope)
            fields = {
                "request_id": rid,
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
                "model_version": self.model_version,
                "client": (scope.get("client") or ("", 0))[0],
                # Prometheus is updated, and the line carries its CloudWatch metrics (EMF).
                **self.metrics.finish(tally, scope["method"], route, status, seconds),
            }
            # The key's name, never the key: which client sent it, or why it was refused.
            if key_name is not None:
                fields["api_key"] = key_name
            elif refusal is not None:
                fields["auth_refused"] = refusal
            level = logging.ERROR if status >= 500 else logging.INFO
            log.log(
                level,
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra=fields,
                exc_info=failure if isinstance(failure, Exception) else None,
            )


def _unauthenticated(reason: str) -> JSONResponse:
    detail = (
        "an API key is required: send it as Authorization: Bearer <key> or X-API-Key"
        if reason == "missing"
        else "the API key is not valid"
    )
    return JSONResponse(
        {"detail": detail},
        status_code=401,
        headers=dict([auth.CHALLENGE]),
    )


class BodyTooLarge(HTTPException):
    """Raised from `receive`; FastAPI re-raises HTTPExceptions met while reading a body, so
    it reaches the app's HTTP error handler and becomes a JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body exceeds {limit} bytes")


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes`: at once when Content-Length says so, otherwise as
    soon as the bytes received pass the limit (a chunked upload declares no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            error = BodyTooLarge(self.max_bytes)
            status = 413 if declared.isdigit() else 400
            detail = error.detail if declared.isdigit() else "Content-Length is not a number"
            await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as error:
            # Only when whoever read the body let the exception escape unanswered.
            if response_started:
                raise
            await JSONResponse({"detail": error.detail}, status_code=413)(scope, receive, send)
