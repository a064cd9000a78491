"""POST /predict/batch with an Apache Arrow IPC body: the same answers and refusals as the
same records in JSON, in Arrow when asked, within its own record limit."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest

from app.columnar import ARROW_STREAM, ipc_stream, read_ipc_stream

pytestmark = pytest.mark.anyio

ARROW = {"Content-Type": ARROW_STREAM}


def records_table(records: list[dict[str, Any]], metadata: dict[str, Any]) -> pa.Table:
    types = {
        f["name"]: pa.float64() if f["type"] == "number" else pa.string()
        for f in metadata["input_schema"]["features"]
    }
    return pa.table(
        {name: pa.array([r.get(name) for r in records], type_) for name, type_ in types.items()}
    )


def some_records(example: dict[str, Any], number: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """n valid records spread over the number feature's accepted range, some with it null."""
    values = np.linspace(number["minimum"], number["maximum"], n)
    return [{**example, number["name"]: None if i % 5 == 0 else v} for i, v in enumerate(values)]


async def test_an_arrow_batch_gets_the_json_batch_answer_in_arrow_when_accept_asks_for_it(
    client: httpx.AsyncClient,
    example: dict[str, Any],
    number_feature: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    records = some_records(example, number_feature, 40)
    as_json = (await client.post("/predict/batch", json={"records": records})).json()
    body = ipc_stream(records_table(records, metadata))
    json_answer = await client.post("/predict/batch", content=body, headers=ARROW)
    assert json_answer.status_code == 200
    assert json_answer.headers["content-type"] == "application/json"
    assert json_answer.json() == as_json
    response = await client.post(
        "/predict/batch", content=body, headers={**ARROW, "Accept": ARROW_STREAM}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == ARROW_STREAM
    answer = read_ipc_stream(response.content)
    assert answer.schema.metadata[b"model_version"].decode() == as_json["model_version"]
    predicted = answer.column("prediction")
    if metadata["classes"]:  # a class label, dictionary-encoded; a regressor's is a float64
        predicted = predicted.cast(pa.string())
    assert predicted.to_pylist() == [p["prediction"] for p in as_json["predictions"]]
    for label in metadata["classes"]:
        assert answer.column(f"probability_{label}").to_pylist() == [
            p["probabilities"][label] for p in as_json["predictions"]
        ]


async def test_invalid_arrow_rows_are_refused_as_the_same_json_records_are(
    client: httpx.AsyncClient,
    example: dict[str, Any],
    number_feature: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    records = some_records(example, number_feature, 6)
    records[2][number_feature["name"]] = number_feature["maximum"] + 1
    records[4][number_feature["name"]] = float("nan")
    as_json = await client.post(
        "/predict/batch",
        content=json.dumps({"records": records}),
        headers={"Content-Type": "application/json"},
    )
    as_arrow = await client.post(
        "/predict/batch", content=ipc_stream(records_table(records, metadata)), headers=ARROW
    )
    assert as_arrow.status_code == as_json.status_code == 422
    assert as_arrow.json() == as_json.json()


async def test_an_unknown_arrow_column_is_refused_by_name(
    client: httpx.AsyncClient, example: dict[str, Any], metadata: dict[str, Any]
) -> None:
    table = records_table([example], metadata).append_column("not_a_feature", pa.array([1]))
    response = await client.post("/predict/batch", content=ipc_stream(table), headers=ARROW)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("not_a_feature: is not a field")


async def test_arrow_bodies_are_held_to_their_own_record_limit(
    client: httpx.AsyncClient, app: Any, example: dict[str, Any], metadata: dict[str, Any]
) -> None:
    limit = app.state.service.settings.max_arrow_records
    assert limit > app.state.service.settings.max_batch_records
    table = records_table([example], metadata)
    at_limit = pa.concat_tables([table] * limit).combine_chunks()
    assert (
        await client.post("/predict/batch", content=ipc_stream(at_limit), headers=ARROW)
    ).status_code == 200
    over = pa.concat_tables([at_limit, table]).combine_chunks()
    response = await client.post("/predict/batch", content=ipc_stream(over), headers=ARROW)
    assert response.status_code == 422
    assert str(limit) in response.json()["detail"][0]["msg"]
    empty = table.slice(0, 0)
    response = await client.post("/predict/batch", content=ipc_stream(empty), headers=ARROW)
    assert response.status_code == 422


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
async def test_a_compressed_arrow_stream_is_refused_before_it_is_decompressed(
    client: httpx.AsyncClient, example: dict[str, Any], metadata: dict[str, Any], compression: str
) -> None:
    table = records_table([example], metadata)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    response = await client.post(
        "/predict/batch", content=sink.getvalue().to_pybytes(), headers=ARROW
    )
    assert response.status_code == 422
    assert "compressed" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    "body", [b"", b"not arrow", b"\xff\xff\xff\xff\x10\x00\x00\x00" + bytes(16)]
)
async def test_a_body_that_is_no_arrow_stream_is_a_422(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post("/predict/batch", content=body, headers=ARROW)
    assert response.status_code == 422
    assert len(response.content) < 2048


async def test_openapi_documents_the_arrow_body_and_answer(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/predict/batch"]["post"]
    assert ARROW_STREAM in operation["requestBody"]["content"]
    assert ARROW_STREAM in operation["responses"]["200"]["content"]
    assert "application/json" in operation["responses"]["200"]["content"]
