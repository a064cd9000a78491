"""A date feature (`app.dates`): the request sends the date as ISO text, a bad date is a 422
naming the field, and either backend answers from the date's numeric parts.

The model is `dated_model_dir` (conftest.py at the root): trained, profiled and exported by
the training stages' own functions on data whose date column is text. (The columnar
contract's agreement with /predict on dates is in test_contract.py, drift in test_drift.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.artifacts import EXPORT_FILE, METADATA_FILE
from app.factory import create_app
from app.schemas import RECORD_SCHEMA
from app.settings import Settings
from tests.app.conftest import in_process

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def dated_metadata(dated_model_dir: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((dated_model_dir / METADATA_FILE).read_text())
    return raw


@pytest.fixture(scope="module")
def date_feature(dated_metadata: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in dated_metadata["input_schema"]["features"] if f["type"] == "date")


@pytest.fixture(scope="module")
def dated_example(dated_metadata: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: f["example"] for f in dated_metadata["input_schema"]["features"]}


@pytest.fixture(scope="module")
async def clients(dated_model_dir: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per backend; "onnx" fails to start unless the graph serves the date model."""
    apps = {
        b: create_app(Settings(model_dir=dated_model_dir, backend=b)) for b in ("sklearn", "onnx")
    }
    async with in_process(apps["sklearn"]) as sklearn, in_process(apps["onnx"]) as onnx:
        yield {"sklearn": sklearn, "onnx": onnx}


def _days(feature: dict[str, Any]) -> list[str]:
    """Dates across the training range, missing included."""
    first, last = (date.fromisoformat(feature["observed"][k]) for k in ("earliest", "latest"))
    return [str(first + (last - first) * i / 4) for i in range(5)]


async def test_both_backends_answer_from_the_date_alike_and_the_date_moves_the_answer(
    clients: dict[str, httpx.AsyncClient],
    dated_model_dir: Path,
    date_feature: dict[str, Any],
    dated_example: dict[str, Any],
) -> None:
    # The training range, missing, and days far outside it, which are accepted too.
    days = [*_days(date_feature), None, "0001-01-01", "9999-12-31"]
    records = [{**dated_example, date_feature["name"]: d} for d in days]
    answers = {}
    for backend, client in clients.items():
        assert (await client.get("/model")).json()["backend"] == backend
        response = await client.post("/predict/batch", json={"records": records})
        assert response.status_code == 200, response.text
        answers[backend] = np.array(
            [list(p["probabilities"].values()) for p in response.json()["predictions"]]
        )
    tolerance = json.loads((dated_model_dir / EXPORT_FILE).read_text())["parity"]
    np.testing.assert_allclose(
        answers["onnx"], answers["sklearn"], rtol=0, atol=tolerance["prepared_data"]["tolerance"]
    )
    # The parts reach the model: the same car on another date is answered otherwise.
    assert len({tuple(row.round(9)) for row in answers["sklearn"][:5]}) > 1


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("1970-02-30", "date_parsing"),  # no such day
        ("1970-1-1", "date_parsing"),
        ("1970-W01-1", "date_parsing"),  # ISO, but a week date
        ("1970-01-01T00:00:00", "date_parsing"),
        ("", "date_parsing"),
        (19700101, "string_type"),
    ],
)
async def test_a_bad_date_is_a_422_naming_the_field(
    clients: dict[str, httpx.AsyncClient],
    date_feature: dict[str, Any],
    dated_example: dict[str, Any],
    value: Any,
    kind: str,
) -> None:
    name = date_feature["name"]
    response = await clients["onnx"].post("/predict", json={**dated_example, name: value})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", name], kind)
    assert error["msg"].startswith(f"{name}: ")


async def test_openapi_and_model_describe_the_date_as_iso_text(
    clients: dict[str, httpx.AsyncClient], date_feature: dict[str, Any]
) -> None:
    client = clients["onnx"]
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"][RECORD_SCHEMA]
    field = schema["properties"][date_feature["name"]]
    assert {"type": "string", "format": "date"}.items() <= field["anyOf"][0].items()
    assert field["examples"] == [date_feature["example"]]
    model = (await client.get("/model")).json()
    [described] = [f for f in model["input_schema"]["features"] if f["type"] == "date"]
    assert described == date_feature
    [profiled] = [f for f in model["reference_profile"]["features"] if f["type"] == "date"]
    observed = date_feature["observed"]
    assert (profiled["minimum"], profiled["maximum"]) == (observed["earliest"], observed["latest"])
