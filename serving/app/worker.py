"""The gunicorn worker class: uvicorn-worker's, without the `server` response header."""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):  # type: ignore[misc]  # subclassing an untyped class
    # Naming the server software in every response tells a scanner which vulnerabilities
    # to try, and tells clients nothing they need.
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
    }
