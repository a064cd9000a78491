"""The settings the deployment passes by name (the EMF namespace, the service name), and the
limits that must agree."""

from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from app import columnar
from app.factory import create_app
from app.settings import Settings


def test_metric_namespace_and_service_name_come_from_the_variables_the_stack_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVICE_METRICS_NAMESPACE", "Team/Penguins")
    monkeypatch.setenv("SERVICE_NAME", "penguins-prod")
    settings = Settings()
    assert (settings.metrics_namespace, settings.name) == ("Team/Penguins", "penguins-prod")


def test_defaults_are_the_ones_the_stack_assumes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICE_METRICS_NAMESPACE", raising=False)
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    settings = Settings()
    assert (settings.metrics_namespace, settings.name) == (
        "PredictionService",
        "prediction-service",
    )


@pytest.mark.parametrize("namespace", ["AWS/ECS", "", "bad|namespace", "x" * 256])
def test_namespace_cloudwatch_would_refuse_stops_the_start(namespace: str) -> None:
    with pytest.raises(ValidationError, match="metrics_namespace"):
        Settings(metrics_namespace=namespace)


def _body_limit_warnings(
    settings: Settings, caplog: pytest.LogCaptureFixture, **limits: int
) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app"):
        create_app(settings.model_copy(update=limits))
    return [r.getMessage() for r in caplog.records if "SERVICE_MAX_BODY_BYTES" in r.getMessage()]


def test_a_batch_limit_the_body_limit_cannot_hold_is_named_at_start(
    settings: Settings, example: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Else raising SERVICE_MAX_BATCH_RECORDS alone advertises batches answered 413."""
    fitting = settings.max_body_bytes // len(json.dumps(example))
    arrow_fits = {"max_arrow_records": 1}  # a wide record warns of Arrow at the defaults
    assert _body_limit_warnings(settings, caplog, max_batch_records=fitting, **arrow_fits) == []
    (warning,) = _body_limit_warnings(settings, caplog, max_batch_records=fitting + 1, **arrow_fits)
    assert f"SERVICE_MAX_BATCH_RECORDS={fitting + 1} " in warning


def test_an_arrow_record_limit_the_body_limit_cannot_hold_is_named_at_start(
    settings: Settings, example: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The same for SERVICE_MAX_ARROW_RECORDS: a wide record makes 10,000 of them megabytes."""

    def arrow_bytes(records: int) -> int:
        return len(columnar.ipc_stream(pa.Table.from_pylist([example] * records)))

    per_record = (arrow_bytes(2000) - arrow_bytes(1000)) / 1000
    fitting, over = (int(settings.max_body_bytes / per_record * f) for f in (0.95, 1.05))
    assert arrow_bytes(fitting) <= settings.max_body_bytes < arrow_bytes(over)
    json_fits = {"max_batch_records": 1}
    assert _body_limit_warnings(settings, caplog, max_arrow_records=fitting, **json_fits) == []
    (warning,) = _body_limit_warnings(settings, caplog, max_arrow_records=over, **json_fits)
    assert f"SERVICE_MAX_ARROW_RECORDS={over} " in warning
