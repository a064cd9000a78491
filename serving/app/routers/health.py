"""Liveness and readiness: answered on the event loop, never queued behind predictions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.dependencies import get_service
from app.service import ModelService

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]
    model_version: str


class Readiness(BaseModel):
    status: Literal["ready", "warming up"]
    model_version: str


@router.get("/health", response_model=Health, summary="Liveness: the model is loaded")
async def health(service: Annotated[ModelService, Depends(get_service)]) -> Health:
    """200 whenever this process serves: the model loads before the app exists, and a
    model that fails its checks stops the service before it listens. The container's
    health check; the load balancer checks `/ready`."""
    return Health(status="ok", model_version=service.model_version)


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: this worker has made its warm-up prediction",
    responses={503: {"model": Readiness, "description": "The warm-up has not finished."}},
)
async def ready(service: Annotated[ModelService, Depends(get_service)]) -> JSONResponse:
    state = Readiness(
        status="ready" if service.ready else "warming up", model_version=service.model_version
    )
    return JSONResponse(state.model_dump(), status_code=200 if service.ready else 503)
