"""The same HTTP answers whichever backend serves: the ONNX fast path or the joblib Pipeline.

The in-process tests elsewhere run on `auto`, which picks the fast path for the penguins
model; these run each endpoint that predicts on both backends, forced by SERVICE_BACKEND.
"""

from __future__ import annotations

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
    app = create_app(Settings(model_dir=model_dir, backend=request.param))
    async with in_process(app) as http:
        yield request.param, http


@pytest.fixture(scope="module")
def records(example: dict[str, Any]) -> list[dict[str, Any]]:
    sparse = dict.fromkeys(example)
    first = next(iter(example))
    sparse[first] = example[first]
    return [example, sparse, {}]


async def test_model_endpoint_reports_the_forced_backend(
    backend_client: tuple[str, httpx.AsyncClient],
) -> None:
    backend, client = backend_client
    response = await client.get("/model")
    assert response.status_code == 200
    assert response.json()["backend"] == backend


async def test_predict_answers_on_each_backend(
    backend_client: tuple[str, httpx.AsyncClient], example: dict[str, Any]
) -> None:
    _, client = backend_client
    response = await client.post("/predict", json=example)
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == max(body["probabilities"], key=body["probabilities"].get)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


async def test_both_backends_give_the_same_answers(
    model_dir: Path, records: list[dict[str, Any]]
) -> None:
    answers = {}
    for backend in BACKENDS:
        app = create_app(Settings(model_dir=model_dir, backend=backend))
        async with in_process(app) as client:
            response = await client.post("/predict/batch", json={"records": records})
        assert response.status_code == 200, response.text
        answers[backend] = response.json()["predictions"]
    sklearn, onnx = answers["sklearn"], answers["onnx"]
    assert [a["prediction"] for a in sklearn] == [a["prediction"] for a in onnx]
    for a, b in zip(sklearn, onnx, strict=True):
        for label, probability in a["probabilities"].items():
            assert b["probabilities"][label] == pytest.approx(probability, abs=1e-6)
