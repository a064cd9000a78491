"""Fixtures of the service's tests: the app in-process, a client, the regression model's app,
the EMF check (the model and its data are in ../conftest.py, shared with the bench and
container tests)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pyarrow as pa
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.artifacts import METADATA_FILE
from app.columnar import ARROW_STREAM, ipc_stream
from app.factory import create_app
from app.settings import Settings


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` in-process, after its lifespan's warm-up, as a worker runs it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            yield http


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(app) as http:
        yield http


# Every body encoding POST /predict/batch accepts, as (Content-Type, encode records). The
# authentication tests run over each: a new format is one line here.
BATCH_ENCODINGS: dict[str, tuple[str, Callable[[list[dict[str, Any]]], bytes]]] = {
    "json": ("application/json", lambda records: json.dumps({"records": records}).encode()),
    "json-suffix": (
        "application/vnd.batch+json",
        lambda records: json.dumps({"records": records}).encode(),
    ),
    "arrow": (ARROW_STREAM, lambda records: ipc_stream(pa.Table.from_pylist(records))),
}


# --- the regression model (`regression_model_dir`, in the root conftest.py) ----------


@pytest.fixture(scope="session")
def regression_metadata(regression_model_dir: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((regression_model_dir / METADATA_FILE).read_text())
    return raw


@pytest.fixture(scope="session")
def regression_app(regression_model_dir: Path) -> FastAPI:
    return create_app(Settings(model_dir=regression_model_dir, backend="sklearn"))


@pytest.fixture(scope="session")
async def regression_client(regression_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(regression_app) as http:
        yield http


# --- CloudWatch Embedded Metric Format ------------------------------------------------

EMF_UNITS = [
    *("Seconds", "Microseconds", "Milliseconds", "Percent", "Count", "None"),
    *(
        f"{size}{per}"
        for size in ("Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes")
        for per in ("", "/Second")
    ),
    *(
        f"{size}{per}"
        for size in ("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits")
        for per in ("", "/Second")
    ),
    "Count/Second",
]
# The structure the specification requires of a log event's `_aws` member:
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
# What JSON Schema cannot say (every referenced name is a top-level member of the right
# type) is checked by `assert_emf` below.
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 255},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 1024,
                                        },
                                        "Unit": {"enum": EMF_UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def _assert_emf(line: dict[str, Any]) -> None:
    """`line` is an EMF document: the schema above, plus its target members."""
    jsonschema.validate(line, EMF_SCHEMA)
    for directive in line["_aws"]["CloudWatchMetrics"]:
        for dimension in {key for keys in directive["Dimensions"] for key in keys}:
            assert isinstance(line.get(dimension), str), dimension
            assert 0 < len(line[dimension]) <= 1024, dimension
        for metric in directive["Metrics"]:
            value = line.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= 100, metric
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values), (
                metric,
                value,
            )


@pytest.fixture(scope="session")
def assert_emf() -> Callable[[dict[str, Any]], None]:
    """Asserts that a log line is an EMF document, per the published specification."""
    return _assert_emf


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the Prometheus samples `name` whose labels include `labels` (0: none)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )
