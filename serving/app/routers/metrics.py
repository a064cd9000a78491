"""Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app import metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of every worker",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus_metrics() -> Response:
    # Plain `def`: in multi-process mode this reads every worker's files from disk, which
    # belongs in the thread pool, not on the event loop.
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
