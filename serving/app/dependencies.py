"""What routes receive by injection instead of importing globals."""

from __future__ import annotations

from fastapi import Request

from app.service import ModelService


async def get_service(request: Request) -> ModelService:
    # async: FastAPI would run a plain `def` dependency in the thread pool, one more hop
    # per request for an attribute lookup.
    service: ModelService = request.app.state.service
    return service
