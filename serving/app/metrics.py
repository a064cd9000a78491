"""The service's metrics, defined once and recorded into two outputs:

- Prometheus (`GET /metrics`), labelled by model version so a rollout's two versions stay
  apart. Under gunicorn every worker is its own process: `gunicorn.conf.py` points
  PROMETHEUS_MULTIPROC_DIR at an empty directory before this module is first imported, each
  worker writes its samples there, and `/metrics` sums them, whichever worker answers.
- CloudWatch Embedded Metric Format (EMF): each recording function also adds its value to
  the current request's tally, and `RequestMetrics.finish` turns the tally into the EMF
  members of that request's one JSON log line. On ECS the awslogs driver ships the line and
  CloudWatch extracts the metrics: no agent, sidecar or API call.

Why EMF is written here rather than with AWS's `aws-embedded-metrics` library: the library
owns its output. Its `metric_scope` flushes each scope as a document of its own through a
sink it chooses from the environment (on ECS, a TCP/UDP CloudWatch agent unless
AWS_EMF_ENVIRONMENT=Local makes it print), asynchronously. Here the metrics must ride in
the request line the service already writes, so one line carries the request id, status,
latency and its metrics, and CloudWatch Logs Insights and metric extraction read the same
record. What that needs of the specification (the `_aws` metadata, metric values as
top-level members, at most 100 metrics per directive) is small, and a test validates every
line the real server writes against a JSON schema of the specification.

Every per-request value is counted in the request's own context (a `ContextVar` holding a
dict, set by the request middleware; `ModelService.run` carries it into the model thread),
so concurrent requests in one worker never mix their tallies.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from contextvars import ContextVar, Token
from typing import Any

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
CONNECTIONS_REFUSED = Counter(
    "http_connections_refused_total",
    "Connections closed before a request reached the application (app.protocol): reason "
    "is head_too_large (431), head_timeout (408) or no_request (silent after connecting). "
    "Client misbehaviour, never a server error.",
    ["reason"],
)
AUTH_REFUSALS = Counter(
    "http_authentication_refusals_total",
    "Requests answered 401 for a missing or wrong API key (app.auth): reason is missing or "
    "invalid. Client behaviour, never a server error.",
    ["reason", "model_version"],
)
API_KEY_REQUESTS = Counter(
    "http_api_key_requests_total",
    "Requests that presented a valid API key, by the key's name (never the key).",
    ["api_key", "model_version"],
)
PREDICTIONS = Counter(
    "model_predictions_total",
    "Records predicted, by predicted class.",
    ["predicted_class", "model_version"],
)
PREDICTION_BINS = Counter(
    "model_prediction_bin_total",
    "A regressor's predictions per bin of the training predictions' distribution (reference "
    "profile); 'below' and 'above' are outside its range.",
    ["bin", "model_version"],
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
VALIDATION_ERRORS = Counter(
    "http_validation_errors_total",
    "Problems found in rejected (422) request bodies, by field: a feature's name, "
    "'unknown_field' for a field the model does not have, or 'body'.",
    ["field", "model_version"],
)
# The drift counters exist only when the model has a reference profile (app.drift).
OUT_OF_RANGE = Counter(
    "model_input_out_of_range_total",
    "Scored values outside the training split's [minimum, maximum] (reference profile).",
    ["feature", "model_version"],
)
OUT_OF_RANGE_RECORDS = Counter(
    "model_records_out_of_range_total",
    "Scored records with at least one value outside the training range.",
    ["model_version"],
)
UNSEEN_CATEGORY = Counter(
    "model_input_unseen_category_total",
    "Categories never seen in training, sent in requests (rejected with 422).",
    ["feature", "model_version"],
)
MISSING = Counter(
    "model_input_missing_total",
    "Scored values that were null or omitted (imputed by the model).",
    ["feature", "model_version"],
)

# EMF metric names, as the deployment's alarms and dashboard read them; a per-key name is
# the prefix plus the key (a class, a feature).
EMF_PREDICTED = "Predicted_"
EMF_PREDICTION_BIN = "PredictionBin_"
EMF_VALIDATION = "ValidationErrors_"
EMF_OUT_OF_RANGE = "OutOfRange_"
EMF_UNSEEN = "UnseenCategory_"
EMF_MISSING = "Missing_"
EMF_API_KEY = "ApiKeyRequests_"
EMF_AUTH_REFUSALS = "AuthRefusals"
EMF_DIMENSIONS = [["Service"], ["Service", "ModelVersion"]]
# The specification's limit of metric definitions per directive.
EMF_MAX_METRICS = 100
_MILLISECONDS = frozenset({"Latency"})
_DIRECTIVE_CACHE_SIZE = 256

_tally: ContextVar[dict[str, float] | None] = ContextVar("request_metrics", default=None)


@functools.cache
def _child(metric: Any, *labels: str) -> Any:
    """The labelled series, looked up once: `labels()` takes a lock and checks its arguments
    on every call, and a request updates three or four series. Label values come from the
    model and the route table, so the cache stays as small as the set of series."""
    return metric.labels(*labels)


def _emf(name: str, value: float) -> None:
    """Adds to the current request's EMF values; a no-op outside a request (the warm-up)."""
    tally = _tally.get()
    if tally is not None:
        tally[name] = tally.get(name, 0) + value


def _count(
    counter: Counter, prefix: str, model_version: str, counts: Iterable[tuple[str, int]]
) -> None:
    for key, count in counts:
        if count:
            _child(counter, key, model_version).inc(count)
            _emf(prefix + key, count)


def observe_request(
    method: str, route: str, status: int, model_version: str, seconds: float
) -> None:
    labels = (method, route, str(status), model_version)
    _child(REQUESTS, *labels).inc()
    _child(LATENCY, *labels).observe(seconds)
    if status >= 400:
        if status >= 500:
            kind = "server"
        elif status == CLIENT_CLOSED_REQUEST:
            kind = "aborted"
        else:
            kind = "client"
        _child(ERRORS, route, kind, model_version).inc()


def count_api_key(model_version: str, name: str) -> None:
    _count(API_KEY_REQUESTS, EMF_API_KEY, model_version, [(name, 1)])


def count_authentication_refusal(model_version: str, reason: str) -> None:
    _child(AUTH_REFUSALS, reason, model_version).inc()
    _emf(EMF_AUTH_REFUSALS, 1)


def count_refused_connection(reason: str) -> None:
    _child(CONNECTIONS_REFUSED, reason).inc()


def count_predictions(model_version: str, classes: Sequence[str], best: np.ndarray) -> None:
    counts = np.bincount(best, minlength=len(classes)).tolist()
    _count(PREDICTIONS, EMF_PREDICTED, model_version, zip(classes, counts, strict=True))
    _emf("RecordsScored", len(best))


def count_records(records: int) -> None:
    """A regressor's scored records (a classifier's are counted by `count_predictions`)."""
    _emf("RecordsScored", records)


def count_prediction_bins(model_version: str, counts: Iterable[tuple[str, int]]) -> None:
    _count(PREDICTION_BINS, EMF_PREDICTION_BIN, model_version, counts)


def observe_batch(model_version: str, records: int) -> None:
    _child(BATCH_RECORDS, model_version).observe(records)
    _emf("BatchRecords", records)


def count_validation_errors(model_version: str, fields: Tally[str]) -> None:
    _count(VALIDATION_ERRORS, EMF_VALIDATION, model_version, fields.items())
    _emf("ValidationErrors", sum(fields.values()))


def count_drift(
    model_version: str,
    *,
    out_of_range: Iterable[tuple[str, int]] = (),
    out_of_range_records: int = 0,
    unseen: Iterable[tuple[str, int]] = (),
    missing: Iterable[tuple[str, int]] = (),
) -> None:
    _count(OUT_OF_RANGE, EMF_OUT_OF_RANGE, model_version, out_of_range)
    _count(UNSEEN_CATEGORY, EMF_UNSEEN, model_version, unseen)
    _count(MISSING, EMF_MISSING, model_version, missing)
    if out_of_range_records:
        _child(OUT_OF_RANGE_RECORDS, model_version).inc(out_of_range_records)
        _emf("OutOfRangeRecords", out_of_range_records)


def status_class(status: int) -> str:
    """The EMF count a status adds to. 499 (the client went away before the answer) is
    neither a 4xx the service sent nor a server error."""
    if status == CLIENT_CLOSED_REQUEST:
        return "ClientAborts"
    return f"Status{min(max(status // 100, 1), 5)}xx"


class RequestMetrics:
    """Begins and finishes one request's metrics; built once per app by the factory."""

    def __init__(self, namespace: str, service: str, model_version: str) -> None:
        self.model_version = model_version
        self._directive_base = {"Namespace": namespace, "Dimensions": EMF_DIMENSIONS}
        self._dimensions = {"Service": service, "ModelVersion": model_version}
        # Most requests repeat a few sets of metric names (a 200 predicting one class...):
        # their directives are built once. Read-only once built, and per process.
        self._directives: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    @staticmethod
    def begin() -> Token[dict[str, float] | None]:
        return _tally.set({})

    def finish(
        self,
        token: Token[dict[str, float] | None],
        method: str,
        route: str,
        status: int,
        seconds: float,
    ) -> dict[str, Any]:
        """Records the request in Prometheus and returns its EMF members for the log line."""
        observe_request(method, route, status, self.model_version, seconds)
        values = _tally.get() or {}
        _tally.reset(token)
        values["Requests"] = 1
        values[status_class(status)] = 1
        values["Latency"] = round(seconds * 1000, 3)
        return self.emf_members(values)

    def emf_members(self, values: dict[str, float]) -> dict[str, Any]:
        names = tuple(values)
        directives = self._directives.get(names)
        if directives is None:
            if len(self._directives) >= _DIRECTIVE_CACHE_SIZE:
                self._directives.clear()
            directives = self._directives[names] = [
                {
                    **self._directive_base,
                    "Metrics": [
                        {"Name": name, "Unit": "Milliseconds" if name in _MILLISECONDS else "Count"}
                        for name in names[start : start + EMF_MAX_METRICS]
                    ],
                }
                for start in range(0, len(names), EMF_MAX_METRICS)
            ]
        aws = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}
        return {"_aws": aws, **self._dimensions, **values}


def render() -> tuple[bytes, str]:
    """The exposition text: every worker's samples in multi-process mode, else this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
