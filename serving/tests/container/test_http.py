"""The HTTP contract, against the container: the in-process API tests and the real server's
over-HTTP tests, run unchanged through the engine's port mapping.

Every test of tests/app/test_api.py that speaks only HTTP (it needs `client` and the model's
data fixtures, nothing in-process such as the app object, caplog or a patched predictor) is
collected here as well, with `client` pointed at the container (conftest.py). So a test added
there runs against the image too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from tests.app import test_api, test_server

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

# Fixtures the container's conftest provides with the in-process meaning.
HTTP_FIXTURES = {
    "client",
    "example",
    "metadata",
    "model_dir",
    "settings",
    "number_feature",
    "category_feature",
    "task",
    "tolerance",
}


def _parametrized(function: Callable[..., Any]) -> set[str]:
    names: set[str] = set()
    for mark in getattr(function, "pytestmark", []):
        if mark.name == "parametrize":
            argnames = mark.args[0]
            names.update(
                argnames.replace(" ", "").split(",") if isinstance(argnames, str) else argnames
            )
    return names


def _speaks_only_http(function: Callable[..., Any]) -> bool:
    parameters = set(inspect.signature(function).parameters)
    return "client" in parameters and parameters <= HTTP_FIXTURES | _parametrized(function)


_API_TESTS = {
    name: function
    for name, function in vars(test_api).items()
    if name.startswith("test_") and callable(function) and _speaks_only_http(function)
}
globals().update(_API_TESTS)

# The real server's tests that need only its port and output, not its process.
for _name in (
    "test_predict_and_batch_over_http",
    "test_responses_name_the_model_version_but_not_the_server_software",
    "test_health_ready_and_model_over_http",
    "test_metrics_sum_every_workers_requests",
    "test_logs_are_json_lines_with_request_context",
):
    globals()[_name] = getattr(test_server, _name)


def test_the_api_tests_run_here_include_the_contract_the_issue_names() -> None:
    """Known records, bad inputs named by field, 413, the batch limit, /ready, /model and
    /metrics: if a rename in test_api.py drops one from this module, this fails."""
    expected = {
        "test_predictions_equal_the_pipelines_own",
        "test_unknown_field_is_rejected_by_name",
        "test_body_over_the_limit_is_413_by_content_length",
        "test_batch_over_the_limit_is_rejected",
        "test_health_and_readiness_after_warm_up",
        "test_model_reports_provenance_metrics_and_schema",
        "test_metrics_count_requests_errors_and_predictions",
    }
    assert expected <= set(_API_TESTS), sorted(expected - set(_API_TESTS))
