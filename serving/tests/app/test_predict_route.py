"""The prediction routes behave as FastAPI routes: a dependency declared on the app, on an
included router or on the route applies to them, and only a route with nothing declared
takes the fast path that skips FastAPI's resolution."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.routing import APIRoute, APIRouter

from app import errors
from app.routers import predict
from app.service import ModelService

from .conftest import in_process

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
DENIED = "denied by the fork's dependency"


async def deny() -> None:
    raise HTTPException(status_code=403, detail=DENIED)


async def allow() -> None:
    return None


def routes_declaring(service: ModelService, dependency: Callable[..., Any]) -> APIRouter:
    """The prediction router rebuilt with `dependency` on each route, as a fork declares it
    in `@router.post(..., dependencies=[...])`."""
    built = predict.build_router(service)
    router = APIRouter(route_class=predict.DirectRoute)
    for route in built.routes:
        assert isinstance(route, APIRoute)
        router.add_api_route(
            route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            dependencies=[Depends(dependency)],
        )
    return router


def assemble(service: ModelService, level: str, dependency: Callable[..., Any]) -> FastAPI:
    """The prediction routes in an app, `dependency` declared at `level`."""
    declared = [Depends(dependency)]
    app = FastAPI(dependencies=declared if level == "app" else None)
    errors.install(app, service.model_version)
    app.state.service = service
    if level == "route":
        app.include_router(routes_declaring(service, dependency))
    elif level == "router":
        app.include_router(predict.build_router(service, dependencies=declared))
    elif level == "include":
        app.include_router(predict.build_router(service), dependencies=declared)
    else:
        app.include_router(predict.build_router(service))
    return app


async def post_both(app: FastAPI, example: dict[str, Any]) -> list[httpx.Response]:
    async with in_process(app) as http:
        return [
            await http.post("/predict", content=json.dumps(example), headers=JSON),
            await http.post(
                "/predict/batch", content=json.dumps({"records": [example]}), headers=JSON
            ),
        ]


@pytest.fixture
def service(app: FastAPI) -> ModelService:
    found: ModelService = app.state.service
    return found


@pytest.mark.parametrize("level", ["app", "router", "include", "route"])
async def test_a_denying_dependency_refuses_both_prediction_routes_at_every_level(
    service: ModelService, example: dict[str, Any], level: str
) -> None:
    for response in await post_both(assemble(service, level, deny), example):
        assert response.status_code == 403, (level, response.request.url, response.text)
        assert response.json() == {"detail": DENIED}


class ResolutionSpy:
    """Counts FastAPI's dependency resolutions: the fast path makes none."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = fastapi.dependencies.utils.solve_dependencies

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original(*args, **kwargs)

        # Where FastAPI's request handler looks the function up when it runs.
        monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)


async def test_routes_with_nothing_declared_take_the_fast_path(
    service: ModelService, example: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = ResolutionSpy(monkeypatch)
    responses = await post_both(assemble(service, "none", allow), example)
    assert [r.status_code for r in responses] == [200, 200]
    assert spy.calls == 0


@pytest.mark.parametrize("level", ["app", "router", "include", "route"])
async def test_routes_with_a_dependency_use_fastapis_handler_and_still_predict(
    service: ModelService, example: dict[str, Any], monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    spy = ResolutionSpy(monkeypatch)
    responses = await post_both(assemble(service, level, allow), example)
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert responses[0].json()["model_version"] == service.model_version
    assert len(responses[1].json()["predictions"]) == 1
    assert spy.calls == 2
