"""POST /predict and POST /predict/batch.

The endpoints hand the raw body to `ModelService.answer` (parsing, validation, prediction and
serialisation in one place). Because FastAPI does not parse these bodies, their schemas and
examples are declared in `openapi_extra` and registered as components by `app.factory`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import fastapi.routing
from fastapi import APIRouter, Request, params
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app import metrics
from app.columnar import ARROW_STREAM
from app.schemas import BATCH_SCHEMA, RECORD_SCHEMA, ErrorResponse
from app.service import ModelService

JSON = "application/json"
# Predictions may carry personal data: no cache between the client and the service keeps one.
NO_STORE = {"Cache-Control": "no-store"}


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationIssue]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "The body is larger than the limit."},
    415: {
        "model": ErrorResponse,
        "description": "The body is not declared as JSON (or, for a batch, as an Arrow stream).",
    },
    422: {
        "model": ValidationErrorResponse,
        "description": (
            "The body is empty, not JSON, or a field is missing its type, bounds or allowed "
            "categories, or is unknown. Each message starts with the field's path."
        ),
    },
}


async def read_json_body(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != JSON and not media_type.endswith("+json"):
        # The client's header is not quoted back: it may be kilobytes long.
        raise HTTPException(
            status_code=415,
            detail=f"send the body as {JSON} (Content-Type: {JSON}); "
            f"Content-Type was {'missing' if not content_type else 'another type'}",
        )
    # The app's body-size limit counts these bytes as they stream in and answers 413.
    return await request.body()


def _request_body(schema: str, examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {"$ref": f"#/components/schemas/{schema}"},
                    "examples": {
                        name: {"summary": name, "value": value} for name, value in examples.items()
                    },
                }
            },
        }
    }


ARROW_BODY = {
    "schema": {"type": "string", "format": "binary"},
    "description": (
        "An Apache Arrow IPC stream (uncompressed), one column per feature, named as in "
        "the JSON records; null is a missing value. docs/scoring.md has a client example."
    ),
}
ARROW_RESPONSE: dict[str, Any] = {
    "content": {
        ARROW_STREAM: {
            "schema": {"type": "string", "format": "binary"},
            "description": "When Accept asks for it: columns prediction, probability_<class>.",
        }
    }
}


def _with_arrow(extra: dict[str, Any]) -> dict[str, Any]:
    extra["requestBody"]["content"][ARROW_STREAM] = ARROW_BODY
    return extra


class DirectRoute(APIRoute):
    """A route whose endpoint is called with the request as it is, when nothing is declared
    to resolve for it; otherwise exactly FastAPI's route.

    FastAPI resolves an endpoint's parameters on every request, even for an endpoint that
    takes only the `Request`: a fifth of a `/predict` request's time (docs/performance.md).
    These endpoints take the request and return a finished `Response`, so when the route
    has nothing to resolve they skip it. The moment a dependency is declared on
    the app (`FastAPI(dependencies=...)`), on a router or on the route (an API-key check, a
    rate limit), or a parameter is added to the endpoint, the route uses FastAPI's own
    handler, so the fork's addition runs: a shortcut never makes a security check silently
    do nothing. `get_route_handler` is FastAPI's documented hook for custom route classes.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _resolves_only_the_request(_effective_dependant(self)):
            return handler
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


def _effective_dependant(route: APIRoute) -> Dependant | None:
    """What FastAPI's handler would resolve for `route` as it is being built.

    A route included into the app is built once per inclusion with the dependencies of
    every enclosing router and of the app, and `APIRoute.get_route_handler` finds them in
    a context variable FastAPI sets meanwhile; this reads it the same way. Should a
    FastAPI release move it, the answer is None: the route then always takes FastAPI's
    handler (slower, never wrong), and the test of the fast path fails to say so.
    """
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    if context_var is None:
        return None
    context = context_var.get()
    if context is not None and getattr(context, "original_route", None) is route:
        dependant: Dependant | None = getattr(context, "dependant", None)
        return dependant
    return route.dependant


def _resolves_only_the_request(dependant: Dependant | None) -> bool:
    if dependant is None:
        return False
    declared = (
        dependant.dependencies,
        dependant.path_params,
        dependant.query_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.body_params,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    )
    return dependant.request_param_name is not None and not any(declared)


def build_router(
    service: ModelService, dependencies: Sequence[params.Depends] | None = None
) -> APIRouter:
    """The prediction routes of `service`, which is handed over here once rather than
    resolved by `Depends` on every request (see `DirectRoute`). `dependencies` apply to both
    routes, as on any APIRouter."""
    router = APIRouter(tags=["predictions"], route_class=DirectRoute, dependencies=dependencies)
    schemas = service.schemas
    complete, sparse = schemas.record_example, schemas.sparse_example

    @router.post(
        "/predict",
        summary="Predict one record",
        response_model=schemas.prediction_response,
        responses=ERROR_RESPONSES,
        openapi_extra=_request_body(
            RECORD_SCHEMA, {"every field": complete, "some fields missing": sparse}
        ),
    )
    async def predict(request: Request) -> Response:
        """The prediction (a classifier's class with its probability and every class's; a
        regressor's number) and the model version. Fields may be null or omitted (the model
        imputes them); unknown fields, values outside the accepted bounds and categories the
        model never saw are 422s."""
        body = await read_json_body(request)
        payload = await service.answer(service.predict_one_json, body)
        return Response(payload, media_type=JSON, headers=NO_STORE)

    @router.post(
        "/predict/batch",
        summary="Predict many records in one request",
        response_model=schemas.batch_response,
        responses={**ERROR_RESPONSES, 200: ARROW_RESPONSE},
        openapi_extra=_with_arrow(
            _request_body(BATCH_SCHEMA, {"two records": {"records": [complete, sparse]}})
        ),
    )
    async def predict_batch(request: Request) -> Response:
        """One result per record, in order, from a single model call. Any invalid record
        rejects the whole batch with a 422 naming it (`records[3].island: ...`).

        The records may also come as an Apache Arrow IPC stream (`Content-Type:
        application/vnd.apache.arrow.stream`, one column per feature, up to
        `max_arrow_records` rows), checked by the same rules; the answer is Arrow when
        `Accept` asks for it (columns `prediction` and `probability_<class>`), else JSON."""
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media == ARROW_STREAM:
            body = await request.body()
            arrow = ARROW_STREAM in request.headers.get("accept", "")
            payload, count = await service.answer(
                functools.partial(service.predict_batch_arrow, answer_arrow=arrow), body
            )
            answered = ARROW_STREAM if arrow else JSON
        else:
            body = await read_json_body(request)
            payload, count = await service.answer(service.predict_batch_json, body)
            answered = JSON
        metrics.observe_batch(service.model_version, count)
        return Response(payload, media_type=answered, headers=NO_STORE)

    return router
