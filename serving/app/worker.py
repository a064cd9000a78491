"""The gunicorn worker class: uvicorn-worker's, with the HTTP edge this service needs.

- no `server` response header;
- `X-Content-Type-Options: nosniff` on every response, uvicorn's own 400s and 500s and the
  connection-level 408s and 431s included (uvicorn's default headers);
- the header size, header count and slow-client limits of `app.protocol`, from the
  settings (gunicorn's `limit_request_*` settings do not reach uvicorn's parser).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from app.protocol import limited_protocol
from app.settings import get_settings

# Every response, including those no application code writes.
DEFAULT_HEADERS = [("X-Content-Type-Options", "nosniff")]


class Worker(UvicornWorker):  # type: ignore[misc]  # subclassing an untyped class
    # Naming the server software in every response tells a scanner which vulnerabilities
    # to try, and tells clients nothing they need.
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
        "headers": DEFAULT_HEADERS,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The settings are read when gunicorn creates the worker, not at import. uvicorn
        # resolves `http` when the worker's server starts (`Config.load`), after this.
        settings = get_settings()
        self.config.http = limited_protocol(
            max_header_bytes=settings.max_header_bytes,
            max_header_fields=settings.max_header_fields,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
        )
