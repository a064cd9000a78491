"""The JSON log format: one valid JSON object per line, whatever the fields hold."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import pytest

from app.logs import JsonFormatter, skip_unused_record_attributes


def format_line(**fields: object) -> str:
    record = logging.LogRecord("app.requests", logging.INFO, __file__, 1, "GET /x 200", (), None)
    for key, value in fields.items():
        setattr(record, key, value)
    return JsonFormatter().format(record)


def test_line_is_one_json_object_with_the_extra_fields() -> None:
    line = format_line(status=200, latency_ms=1.5, path="/predict")
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["status"], parsed["latency_ms"], parsed["path"]) == (200, 1.5, "/predict")
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "info",
        "app.requests",
        "GET /x 200",
    )


def refuse_non_json_constant(token: str) -> None:
    # Python's json accepts NaN and Infinity, which are not JSON: CloudWatch would not.
    raise ValueError(f"{token} is not JSON")


def test_non_finite_numbers_and_foreign_objects_still_give_valid_json() -> None:
    line = format_line(latency_ms=math.nan, where=Path("/srv/app"), species="Ådélie")
    parsed = json.loads(line, parse_constant=refuse_non_json_constant)
    assert parsed["latency_ms"] is None
    assert parsed["where"] == "/srv/app"
    assert parsed["species"] == "Ådélie"


def test_traceback_stays_inside_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "app.requests", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def test_records_skip_the_caller_lookup_and_the_thread_and_process_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`logging._srcfile = None` is private by name but is the switch the logging HOWTO's
    "Optimization" section documents; if a Python release stops honouring it, this fails
    (docs/development.md, "Private internals")."""
    for switch in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, switch, getattr(logging, switch))  # restored afterwards
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("tests.app.test_logs.switches")
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[assignment, method-assign]
    logger.addHandler(handler)
    try:
        skip_unused_record_attributes()
        logger.warning("a line")
    finally:
        logger.removeHandler(handler)
    [record] = records
    assert (record.pathname, record.lineno, record.funcName) == (
        "(unknown file)",
        0,
        "(unknown function)",
    )
    assert (record.thread, record.threadName, record.process, record.processName) == (
        None,
        None,
        None,
        None,
    )
