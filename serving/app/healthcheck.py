"""The container's health check: `python -m app.healthcheck` exits 0 when GET /health answers
200 on the port the server binds, 1 otherwise.

It reads the bind address from the same settings as gunicorn, so the image's HEALTHCHECK and
the ECS task's health check follow SERVICE_BIND wherever it points; neither names a port.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from app.settings import get_settings

HEALTH_PATH = "/health"
TIMEOUT_SECONDS = 2.0
# A wildcard bind accepts connections on loopback too.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - addresses compared, not bound


def health_url(bind: str) -> str:
    """`http://host:port/health` for a gunicorn bind address `HOST:PORT`."""
    host, separator, port = bind.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"SERVICE_BIND={bind!r} is not HOST:PORT")
    if host in _WILDCARDS:
        host = "127.0.0.1"
    return f"http://{host}:{port}{HEALTH_PATH}"


def main() -> int:
    url = health_url(get_settings().bind)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            status = int(response.status)
    except (OSError, urllib.error.URLError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
