"""Builds the FastAPI application around one verified, loaded model.

The model is loaded when the app is built, not in the lifespan: gunicorn (`preload_app`)
builds the app once in its master, so a model that fails its checks stops the service
before any worker starts, and the workers forked afterwards share the loaded model. Each
worker's lifespan then makes one real prediction before it reports ready.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pyarrow as pa
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app import auth, columnar, errors, metrics
from app.artifacts import ModelMetadata, load_metadata, load_metrics, load_profile
from app.drift import InputMonitor
from app.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.predictor import Predictor, load_predictor
from app.routers import health, model, predict
from app.routers import metrics as metrics_routes
from app.schemas import build_schemas
from app.service import ModelService
from app.settings import Settings, get_settings

log = logging.getLogger("app")

DESCRIPTION = """\
Predicts the **{target}** ({answer}) from the features described in `GET /model`.

- `POST /predict` takes one record, `POST /predict/batch` up to {max_batch} records.
- Every field may be null or omitted: the model imputes it as it did in training.
- Bad input is a 4xx whose messages start with the field's path: unknown or mistyped
  fields, values outside the accepted bounds, `NaN`/`Infinity`, and **categories the model
  never saw** are rejected with 422 listing the allowed values, rather than predicted from
  the remaining fields alone. Bodies over {max_body} bytes are rejected with 413, bodies not
  sent as `application/json` with 415.
- Every response carries the `X-Model-Version` and `X-Request-Id` headers; predictions
  are sent with `Cache-Control: no-store`.
"""


def _warn_of_batches_over_the_body_limit(settings: Settings, metadata: ModelMetadata) -> None:
    """Raising a record limit alone would advertise batches (OpenAPI, /model) that the body
    limit answers 413: say so at start, sized from GET /model's example record."""
    example = metadata.example_record()
    sample = min(settings.max_arrow_records, 1000)  # an Arrow body grows linearly beyond it
    arrow = len(columnar.ipc_stream(pa.Table.from_pylist([example] * sample)))
    limits = {
        ("SERVICE_MAX_BATCH_RECORDS", "JSON"): (
            settings.max_batch_records,
            settings.max_batch_records * len(json.dumps(example)),
        ),
        ("SERVICE_MAX_ARROW_RECORDS", "Arrow"): (
            settings.max_arrow_records,
            arrow * settings.max_arrow_records // sample,
        ),
    }
    for (variable, form), (records, size) in limits.items():
        if size > settings.max_body_bytes:
            log.warning(
                "%s=%d records like GET /model's example are about %d bytes of %s, over "
                "SERVICE_MAX_BODY_BYTES=%d: such batches are refused with 413",
                variable,
                records,
                size,
                form,
                settings.max_body_bytes,
            )


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The service for the model in `settings.model_dir`.

    Raises `ModelIntegrityError` when the model must not be served. `predictor` replaces
    the one loaded from disk (tests inject slow or faulty ones).
    """
    settings = settings or get_settings()
    metadata = load_metadata(settings.model_dir)
    if predictor is None:
        predictor = load_predictor(settings.model_dir, metadata, settings.backend)
    schemas = build_schemas(metadata, settings.max_batch_records)
    service = ModelService(
        settings=settings,
        metadata=metadata,
        predictor=predictor,
        schemas=schemas,
        monitor=InputMonitor(metadata, load_profile(settings.model_dir, metadata)),
        evaluation=load_metrics(settings.model_dir),
    )
    log.info(
        "model %s loaded, served by the %s backend",
        metadata.model_version,
        predictor.backend,
        extra={
            "model_version": metadata.model_version,
            "backend": predictor.backend,
            "deployed_revision": settings.deployed_revision,
        },
    )
    # Which clients may call, by name: a deployment that meant to require keys and does not
    # says so in its first lines.
    if settings.api_keys:
        log.info("API keys required; valid names: %s", ", ".join(sorted(settings.api_keys)))
    else:
        log.warning("no API keys configured (SERVICE_API_KEYS): every caller is answered")
    _warn_of_batches_over_the_body_limit(settings, metadata)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Runs in each worker after the fork: lazily built resources (the model thread,
        # sessions) are created here, in the process that uses them.
        await service.run(service.warm_up)
        metrics.MODEL_INFO.labels(metadata.model_version, predictor.backend).set(1)
        log.info("worker ready", extra={"model_version": metadata.model_version})
        yield
        service.shutdown()

    app = FastAPI(
        title=f"{metadata.target.capitalize()} prediction service",
        version=metadata.model_version,
        description=DESCRIPTION.format(
            target=metadata.target,
            answer=("a number" if metadata.task == "regression" else ", ".join(metadata.classes)),
            max_batch=settings.max_batch_records,
            max_body=settings.max_body_bytes,
        ),
        lifespan=lifespan,
        # Swagger UI and ReDoc come from a CDN: off unless SERVICE_API_DOCS asks for them.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        # Starlette answers `/health/` with a redirect to an absolute URL built from the
        # Host header, which the client chooses; a slashed path is a 404 instead.
        redirect_slashes=False,
    )
    app.state.service = service
    errors.install(app, metadata.model_version)
    app.include_router(predict.build_router(service))
    app.include_router(model.router)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    # The last added is the outermost: the request context sees the limit's 413s too.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestContextMiddleware,
        model_version=metadata.model_version,
        request_metrics=metrics.RequestMetrics(
            settings.metrics_namespace, settings.name, metadata.model_version
        ),
        api_keys=auth.ApiKeys(settings.api_keys),
    )
    app.openapi = _openapi_with_components(  # type: ignore[method-assign]
        app, schemas.components, secured=bool(settings.api_keys)
    )
    return app


def _openapi_with_components(
    app: FastAPI, components: dict[str, Any], *, secured: bool
) -> Callable[[], dict[str, Any]]:
    """The generated document plus the request-body schemas the predict routes reference,
    and, when API keys are required, how to send one and the 401 without it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(components)
            if secured:
                _declare_api_keys(document)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def _declare_api_keys(document: dict[str, Any]) -> None:
    """The middleware's key check (app.auth), as OpenAPI states it for clients and
    generators: either header on every operation but the open checks."""
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    refused = {
        "description": "No API key, or a wrong one.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for path, operations in document.get("paths", {}).items():
        if path in auth.OPEN_PATHS:
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            operation.setdefault("responses", {})["401"] = refused
