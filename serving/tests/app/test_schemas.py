"""A non-feature field is one declaration: `app.schemas.EXTRA_FIELDS`.

The test adds a client `reference` there and nowhere else, as docs/serving.md shows, and
sees it documented in the OpenAPI request and response schemas, validated with a 422 naming
it, and echoed per record, in JSON and Arrow batches, for a classifier and a regressor alike.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pyarrow as pa
import pytest
from pydantic import Field

from app import schemas
from app.artifacts import load_metadata
from app.columnar import ARROW_STREAM, ipc_stream, read_ipc_stream
from app.factory import create_app
from app.schemas import ExtraField, build_schemas
from app.settings import Settings

from .conftest import in_process

pytestmark = pytest.mark.anyio

REFERENCE = ExtraField(
    "reference",
    Annotated[
        str,
        Field(min_length=1, max_length=64, description="Your reference, returned with the result."),
    ],
)


@pytest.fixture(params=["model_dir", "regression_model_dir"])
async def referenced(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    """A client of the service with `reference` declared, and a valid record."""
    monkeypatch.setattr(schemas, "EXTRA_FIELDS", (REFERENCE,))
    model_dir: Path = request.getfixturevalue(request.param)
    app = create_app(Settings(model_dir=model_dir, backend="auto"))
    record = dict(app.state.service.schemas.record_example)
    async with in_process(app) as http:
        yield http, record


async def test_declared_field_is_documented_in_request_and_response(
    referenced: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, _ = referenced
    components = (await client.get("/openapi.json")).json()["components"]["schemas"]
    sent = components[schemas.RECORD_SCHEMA]["properties"]["reference"]
    returned = components["Prediction"]["properties"]["reference"]
    for documented in (sent, returned):
        assert documented["type"] == "string"
        assert documented["maxLength"] == 64
        assert documented["description"] == "Your reference, returned with the result."
    assert "reference" not in components[schemas.RECORD_SCHEMA].get("required", [])
    assert "reference" not in components["Prediction"].get("required", [])


async def test_declared_field_is_echoed_per_record_only_when_sent(
    referenced: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, record = referenced
    single = await client.post("/predict", json={**record, "reference": "order-17"})
    assert single.status_code == 200, single.text
    assert single.json()["reference"] == "order-17"
    unreferenced = await client.post("/predict", json=record)
    assert "reference" not in unreferenced.json()
    batch = await client.post(
        "/predict/batch", json={"records": [{**record, "reference": 'a "b"'}, record]}
    )
    assert batch.status_code == 200, batch.text
    first, second = batch.json()["predictions"]
    assert first["reference"] == 'a "b"'
    assert "reference" not in second
    # The extra field changes nothing else in the answer.
    assert {k: v for k, v in first.items() if k != "reference"} == second


@pytest.mark.parametrize(
    ("value", "message"),
    [("x" * 65, "at most 64 characters"), (17, "valid string"), ("", "at least 1 character")],
)
async def test_declared_field_is_validated_by_name(
    referenced: tuple[httpx.AsyncClient, dict[str, Any]], value: Any, message: str
) -> None:
    client, record = referenced
    response = await client.post(
        "/predict/batch", json={"records": [record, {**record, "reference": value}]}
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "records", 1, "reference"]
    assert message in problem["msg"]
    assert "x" * 65 not in response.text


async def test_declared_field_is_echoed_and_validated_in_an_arrow_batch(
    referenced: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    """The Arrow body of /predict/batch (large batches' fast path) takes it as JSON does; a
    null is a field not sent."""
    client, record = referenced
    arrow = {"Content-Type": ARROW_STREAM}
    body = ipc_stream(pa.Table.from_pylist([{**record, "reference": "order-17"}, record]))
    as_json = await client.post("/predict/batch", content=body, headers=arrow)
    assert as_json.status_code == 200, as_json.text
    sent_as_json = {"records": [{**record, "reference": "order-17"}, record]}
    assert as_json.json() == (await client.post("/predict/batch", json=sent_as_json)).json()
    as_arrow = await client.post(
        "/predict/batch", content=body, headers={**arrow, "Accept": ARROW_STREAM}
    )
    assert as_arrow.status_code == 200, as_arrow.text
    assert read_ipc_stream(as_arrow.content).column("reference").to_pylist() == ["order-17", None]
    invalid = [{**record, "reference": "fine"}, {**record, "reference": "x" * 65}]
    refused = await client.post(
        "/predict/batch", content=ipc_stream(pa.Table.from_pylist(invalid)), headers=arrow
    )
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "records", 1, "reference"]
    assert "at most 64 characters" in problem["msg"]


def test_a_field_named_like_a_feature_is_refused_at_start(model_dir: Path) -> None:
    metadata = load_metadata(model_dir)
    name = metadata.feature_names[0]
    with pytest.raises(ValueError, match=re.escape(f"extra field {name!r} is also")):
        build_schemas(metadata, 10, [ExtraField(name, str)])
