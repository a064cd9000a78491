"""The settings the deployment passes by name: the EMF namespace and the service name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
