"""Property-based tests from the OpenAPI document: generated requests never get a 5xx, and
every response matches the documented status codes, content types and schemas."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("served", ["app", "regression_app"])
def test_every_operation_conforms_to_the_openapi_document(
    request: pytest.FixtureRequest, served: str
) -> None:
    """Each operation of the live document, with schemathesis's default checks (no server
    error, documented status code, content type, headers and response schema), for the
    committed classifier and the fixtures' regressor.

    The schema is loaded from the app fixture rather than at import, so a missing model is
    the fixture's clear failure, not a collection error.
    """
    app: FastAPI = request.getfixturevalue(served)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /predict",
        "POST /predict/batch",
        "GET /health",
        "GET /ready",
        "GET /model",
        "GET /metrics",
    }
    for operation in operations:
        # Bounded so the whole run stays well under a minute; derandomized so a failure
        # reproduces exactly.
        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            case.call_and_validate()

        conforms()
