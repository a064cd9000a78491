"""Prometheus metrics, labelled by model version so a rollout's two versions stay apart.

Under gunicorn every worker is its own process: `gunicorn.conf.py` points
PROMETHEUS_MULTIPROC_DIR at an empty directory before this module is first imported, each
worker writes its samples there, and `/metrics` sums them, whichever worker answers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["method", "route", "status", "model_version"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to its last response byte.",
    ["method", "route", "status", "model_version"],
    # A prediction takes milliseconds; the tail buckets catch queueing under overload.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter(
    "http_request_errors_total",
    "Requests answered with an error: kind is client (4xx), server (5xx), or aborted "
    "(499: the client closed the connection before its request was read).",
    ["route", "kind", "model_version"],
)
# nginx's "client closed request": the client's doing, and no answer was sent.
CLIENT_CLOSED_REQUEST = 499
PREDICTIONS = Counter(
    "model_predictions_total",
    "Records predicted, by predicted class.",
    ["predicted_class", "model_version"],
)
BATCH_RECORDS = Histogram(
    "model_batch_records",
    "Records per /predict/batch request.",
    ["model_version"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 10000),
)
MODEL_INFO = Gauge(
    "model_info",
    "Always 1; the labels say which model and backend this service runs.",
    ["model_version", "backend"],
    multiprocess_mode="max",
)


def observe_request(
    method: str, route: str, status: int, model_version: str, seconds: float
) -> None:
    labels = (method, route, str(status), model_version)
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)
    if status >= 400:
        if status >= 500:
            kind = "server"
        elif status == CLIENT_CLOSED_REQUEST:
            kind = "aborted"
        else:
            kind = "client"
        ERRORS.labels(route, kind, model_version).inc()


def count_predictions(model_version: str, classes: Sequence[str], best: np.ndarray) -> None:
    for index, count in enumerate(np.bincount(best, minlength=len(classes)).tolist()):
        if count:
            PREDICTIONS.labels(classes[index], model_version).inc(count)


def observe_batch(model_version: str, records: int) -> None:
    BATCH_RECORDS.labels(model_version).observe(records)


def render() -> tuple[bytes, str]:
    """The exposition text: every worker's samples in multi-process mode, else this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
