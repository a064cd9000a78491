"""The per-request metrics and their EMF form, without a server."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from app import metrics
from app.logs import JsonFormatter
from app.metrics import EMF_MAX_METRICS, RequestMetrics


def log_record(fields: dict[str, Any]) -> logging.LogRecord:
    record = logging.LogRecord("app.requests", logging.INFO, __file__, 1, "POST", (), None)
    record.__dict__.update(fields)
    return record


@pytest.fixture
def request_metrics() -> RequestMetrics:
    return RequestMetrics("Template/Test", "test-service", "0123456789ab")


def test_a_request_with_more_metrics_than_one_directive_holds_is_split(
    request_metrics: RequestMetrics, assert_emf: Callable[[dict[str, Any]], None]
) -> None:
    values = {f"Missing_feature_{i}": 1.0 for i in range(2 * EMF_MAX_METRICS + 17)}
    # As the log line carries it.
    line = json.loads(JsonFormatter().format(log_record(request_metrics.emf_members(values))))
    assert_emf(line)
    directives = line["_aws"]["CloudWatchMetrics"]
    assert [len(d["Metrics"]) for d in directives] == [EMF_MAX_METRICS, EMF_MAX_METRICS, 17]
    assert [m["Name"] for d in directives for m in d["Metrics"]] == list(values)


def test_values_counted_during_a_request_land_in_its_line_only(
    request_metrics: RequestMetrics,
) -> None:
    token = request_metrics.begin()
    metrics.count_drift("0123456789ab", out_of_range=[("size", 2)], out_of_range_records=1)
    metrics.observe_batch("0123456789ab", 5)
    line = request_metrics.finish(token, "POST", "/predict/batch", 200, 0.0125)
    assert (line["OutOfRange_size"], line["OutOfRangeRecords"], line["BatchRecords"]) == (2, 1, 5)
    assert (line["Requests"], line["Status2xx"], line["Latency"]) == (1, 1, 12.5)
    units = {m["Name"]: m["Unit"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["Latency"] == "Milliseconds"
    assert units["OutOfRange_size"] == "Count"
    # Outside a request nothing is tallied, and the next request starts from zero.
    metrics.count_drift("0123456789ab", out_of_range=[("size", 9)])
    token = request_metrics.begin()
    line = request_metrics.finish(token, "GET", "/health", 200, 0.001)
    assert "OutOfRange_size" not in line


@pytest.mark.parametrize(
    ("status", "counted_as"),
    [
        (200, "Status2xx"),
        (307, "Status3xx"),
        (422, "Status4xx"),
        (499, "ClientAborts"),
        (500, "Status5xx"),
        (503, "Status5xx"),
    ],
)
def test_status_classes_keep_client_aborts_apart(status: int, counted_as: str) -> None:
    assert metrics.status_class(status) == counted_as
