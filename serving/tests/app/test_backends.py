"""The service answers on either backend, forced by SERVICE_BACKEND: the ONNX fast path or
the joblib Pipeline (the in-process tests elsewhere run on `auto`, the fast path). That the
two answer alike on the service's input is test_parity.py's.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from app.factory import create_app
from app.settings import Settings

from .conftest import in_process

pytestmark = pytest.mark.anyio

BACKENDS: tuple[Literal["sklearn"], Literal["onnx"]] = ("sklearn", "onnx")


@pytest.fixture(scope="module", params=BACKENDS)
async def backend_client(
    request: pytest.FixtureRequest, model_dir: Path
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    if request.param == "onnx":
        # SERVICE_BACKEND=onnx refusing to start without a fast path is test_model_loading's.
        request.getfixturevalue("fast_path")
    app = create_app(Settings(model_dir=model_dir, backend=request.param))
    async with in_process(app) as http:
        yield request.param, http


async def test_model_endpoint_reports_the_forced_backend(
    backend_client: tuple[str, httpx.AsyncClient],
) -> None:
    backend, client = backend_client
    response = await client.get("/model")
    assert response.status_code == 200
    assert response.json()["backend"] == backend


async def test_predict_answers_on_each_backend(
    backend_client: tuple[str, httpx.AsyncClient], example: dict[str, Any], task: str
) -> None:
    _, client = backend_client
    response = await client.post("/predict", json=example)
    assert response.status_code == 200
    body = response.json()
    if task == "regression":
        assert math.isfinite(body["prediction"])
        assert "probabilities" not in body
        return
    assert body["prediction"] == max(body["probabilities"], key=body["probabilities"].get)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
