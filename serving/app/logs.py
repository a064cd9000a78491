"""JSON logs on stdout, one object per line, so CloudWatch Logs Insights can query fields.

gunicorn installs this configuration (`gunicorn.conf.py` passes `logging_config()` as its
`logconfig_dict`) before it imports the app, so the master's lines, the workers' lines, the
request lines and the refusal to start all share one format.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
# uvicorn adds `color_message`, the message again with terminal colour codes.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            # The traceback stays inside the one JSON line, not spread over many.
            payload["exception"] = self.formatException(record.exc_info)
        # pydantic-core's encoder: a request line carries its metrics (EMF), and this runs
        # once per request; it is several times faster than `json.dumps`, writes UTF-8
        # rather than \u escapes, and writes a non-finite float as null, never as the
        # invalid JSON token NaN. Anything it cannot encode is written as its str().
        return to_json(payload, fallback=str, inf_nan_mode="null").decode()


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the whole process, gunicorn's loggers included."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": handler},
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stdout"], "propagate": False},
            # The app writes its own request line (app.requests) with the request id and
            # model version; gunicorn's and uvicorn's access lines would only duplicate it.
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
