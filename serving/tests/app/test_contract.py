"""The columnar contract refuses exactly the rows `/predict` refuses, with its words, and the
rows it accepts are predicted as the API predicts them.

Everything is derived from the model's metadata: the values generated are its bounds, its
categories and values just outside them. A copy of the model directory whose metadata marks
one feature of each type as required (not nullable) covers the required-field rules that
the example model, where everything is nullable, would leave untested. Each test runs on the
example model and on one with a date feature (`dated_model_dir`).
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from collections.abc import AsyncIterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app import columnar
from app.artifacts import METADATA_FILE, Feature, ModelMetadata
from app.contract import Contract, ContractError
from app.factory import create_app
from app.messages import describe
from app.settings import Settings

from .conftest import in_process

# Each generated row holds one kind of value per feature; a column holds one Arrow type.
NUMBER_COLUMNS = {
    "float": pa.float64(),
    "integer": pa.int64(),
    "text": pa.string(),
    "boolean": pa.bool_(),
}
CATEGORY_COLUMNS = {"text": pa.string(), "dictionary": pa.dictionary(pa.int32(), pa.string())}
CATEGORY_COLUMNS["integer"] = pa.int64()
DATE_COLUMNS = {
    "text": pa.string(),
    "integer": pa.int64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamp with a time zone": pa.timestamp("us", tz="UTC"),
}

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=["model_dir", "dated_model_dir"])
def strict_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model directory, with the first feature of each type required."""
    directory = tmp_path_factory.mktemp("strict-model")
    shutil.copytree(request.getfixturevalue(request.param), directory, dirs_exist_ok=True)
    raw = json.loads((directory / METADATA_FILE).read_text())
    for kind in ("number", "category", "date"):
        for feature in [f for f in raw["input_schema"]["features"] if f["type"] == kind][:1]:
            feature["nullable"] = False
    (directory / METADATA_FILE).write_text(json.dumps(raw))
    return directory


@pytest.fixture(scope="module")
def strict_app(strict_dir: Path) -> FastAPI:
    return create_app(Settings(model_dir=strict_dir))


@pytest.fixture(scope="module")
async def strict_client(strict_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(strict_app) as http:
        yield http


def _number_values(feature: Feature, kind: str, rng: random.Random) -> list[Any]:
    low, high = feature.minimum, feature.maximum
    assert low is not None
    assert high is not None
    pool: list[Any]
    if kind == "float":
        pool = [
            low,
            high,
            (low + high) / 2,
            rng.uniform(low, high),
            math.nextafter(low, -math.inf),
            math.nextafter(high, math.inf),
            low - abs(high - low) - 1,
            math.nan,
            math.inf,
            -math.inf,
            None,
        ]
    elif kind == "integer":
        pool = [math.ceil(low), math.floor(high), math.floor(low) - 1, math.ceil(high) + 1, None]
    elif kind == "text":
        pool = [f"{(low + high) / 2}", "not a number", "", None]
    else:
        pool = [True, False, None]
    return pool


def _category_values(feature: Feature, kind: str) -> list[Any]:
    if kind == "integer":
        return [0, 1, None]
    unseen = "".join(feature.categories) + "!"
    return [*feature.categories, unseen, feature.categories[0].upper() + " ", None]


def _date_values(feature: Feature, kind: str) -> list[Any]:
    if kind == "integer":
        return [0, 19700101, None]
    observed = feature.model_dump()["observed"]
    first, last = (date.fromisoformat(observed[k]) for k in ("earliest", "latest"))
    if kind == "date":
        return [first, last, first + (last - first) / 2, date.min, date.max, None]
    if kind.startswith("timestamp"):
        at = [datetime.combine(d, time()) for d in (first, last, first + (last - first) / 2)]
        return [*at, datetime.combine(last, time(10, 30)), None]
    return [
        *(str(d) for d in (first, last, first + (last - first) / 2, date.min, date.max)),
        f"{first.year}-02-30",
        f"{first.year}-1-1",
        f"{first.isoformat()}T00:00:00",
        "",
        None,
    ]


def generated_table(metadata: ModelMetadata, seed: int, rows: int) -> pa.Table:
    """Random rows mixing valid values with every kind of invalid one, each feature in a
    randomly chosen Arrow type, some features left out, and one column the model does not
    know."""
    rng = random.Random(seed)
    columns: dict[str, pa.Array] = {}
    for feature in metadata.features:
        if rng.random() < 0.1:
            continue  # an omitted field
        if feature.type == "number":
            kind = rng.choice(list(NUMBER_COLUMNS))
            pool = _number_values(feature, kind, rng)
            type_ = NUMBER_COLUMNS[kind]
        elif feature.type == "date":
            kind = rng.choice(list(DATE_COLUMNS))
            pool = _date_values(feature, kind)
            type_ = DATE_COLUMNS[kind]
        else:
            kind = rng.choice(list(CATEGORY_COLUMNS))
            pool = _category_values(feature, kind)
            type_ = CATEGORY_COLUMNS[kind]
        # Mostly valid-looking values, so that many rows are accepted.
        weights = [4 if i < 3 else 1 for i in range(len(pool))]
        values = rng.choices(pool, weights=weights, k=rows)
        columns[feature.name] = pa.array(values, type=type_, from_pandas=False)
    columns["not_a_feature"] = pa.array(range(rows))
    return pa.table(columns)


def _sent(value: Any) -> Any:
    """A value as a JSON client sends it: a day as its ISO date, pandas' way of writing one
    (a timestamp without a time zone at midnight) too, any other timestamp as ISO text."""
    if isinstance(value, datetime):
        midnight = value.time() == time() and value.tzinfo is None
        return value.date().isoformat() if midnight else value.isoformat()
    return value.isoformat() if isinstance(value, date) else value


def _records(table: pa.Table, features: frozenset[str]) -> list[dict[str, Any]]:
    """The rows as the JSON records a client would send: a null is null, a missing column
    an omitted field (unknown columns are ignored for files, so they are left out)."""
    kept = [name for name in table.column_names if name in features]
    return [{k: _sent(v) for k, v in row.items()} for row in table.select(kept).to_pylist()]


def _api_verdict(adapter: Any, record: dict[str, Any]) -> str | None:
    """What `/predict` says about `record`: None when accepted, else its 422 messages."""
    body = json.dumps(record).encode()  # NaN and Infinity as Python's JSON writes them
    try:
        adapter.validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        return "; ".join(describe(dict(e))["msg"] for e in errors)
    return None


@pytest.mark.parametrize("seed", range(12))
async def test_contract_accepts_exactly_the_rows_predict_accepts_and_predicts_them_alike(
    strict_app: FastAPI, strict_client: httpx.AsyncClient, seed: int
) -> None:
    service = strict_app.state.service
    metadata = service.metadata
    contract = Contract(metadata, service.schemas.record)
    table = generated_table(metadata, seed, rows=300)
    checked = contract.check(table)

    records = _records(table, contract.names)
    verdicts = [_api_verdict(service.schemas.record, record) for record in records]
    expected_rejected = [i for i, verdict in enumerate(verdicts) if verdict is not None]
    assert checked.rejected.tolist() == expected_rejected
    assert contract.messages(checked) == [verdicts[i] for i in expected_rejected]

    accepted = [record for record, verdict in zip(records, verdicts, strict=True) if not verdict]
    assert checked.n_accepted == len(accepted)
    if not accepted:
        return
    response = await strict_client.post("/predict/batch", json={"records": accepted})
    assert response.status_code == 200, response.text
    api = [
        [p["probabilities"][c] for c in metadata.classes] for p in response.json()["predictions"]
    ]
    ours = columnar.predict(service.predictor, metadata, checked.columns, checked.n_accepted)
    np.testing.assert_array_equal(ours.probabilities, np.array(api))


async def test_contract_errors_name_records_as_the_json_batch_does(
    strict_app: FastAPI, strict_client: httpx.AsyncClient
) -> None:
    service = strict_app.state.service
    contract = Contract(service.metadata, service.schemas.record)
    table = generated_table(service.metadata, seed=99, rows=50)
    checked = contract.check(table)
    assert len(checked.rejected), "the generated table has invalid rows"
    records = _records(table, contract.names)
    body = json.dumps({"records": records})  # NaN and Infinity as Python's JSON writes them
    response = await strict_client.post(
        "/predict/batch", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    api = [(tuple(e["loc"][1:]), e["type"]) for e in response.json()["detail"]]
    ours = [(e["loc"][1:], e["type"]) for e in contract.errors(checked)]
    # The API lists at most 50 problems, then counts the rest.
    shown = [entry for entry in api if entry[1] != "truncated"]
    assert ours[: len(shown)] == shown


def test_csv_text_is_parsed_with_the_contract_types(strict_app: FastAPI) -> None:
    """A CSV's number cell is parsed as a number; text that is no number is the API's
    refusal of a string, and NaN or inf text the refusal of a non-finite number."""
    service = strict_app.state.service
    contract = Contract(service.metadata, service.schemas.record)
    feature = next(f for f in service.metadata.features if f.type == "number")
    assert feature.minimum is not None
    texts = [str(feature.minimum), "abc", "nan", "-inf"]
    example = service.metadata.example_record()
    # As a CSV reader with the contract's types gives them: every cell as text.
    table = pa.table(
        {
            name: [None if value is None else str(value)] * len(texts)
            for name, value in example.items()
        }
        | {feature.name: texts}
    )
    checked = contract.check(table, parse_text=True)
    assert checked.rejected.tolist() == [1, 2, 3]
    assert checked.columns[feature.name][0] == feature.minimum
    adapter = service.schemas.record
    expected = [
        _api_verdict(adapter, {**example, feature.name: v}) for v in ("abc", math.nan, -math.inf)
    ]
    assert contract.messages(checked) == expected


def test_a_feature_column_given_twice_is_refused_for_the_whole_batch(
    strict_app: FastAPI,
) -> None:
    service = strict_app.state.service
    contract = Contract(service.metadata, service.schemas.record)
    name = service.metadata.feature_names[0]
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=[name, name])
    with pytest.raises(ContractError, match=re.escape(name)):
        contract.check(table)
