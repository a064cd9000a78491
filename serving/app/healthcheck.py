"""The container's health check: `python -m app.healthcheck` exits 0 when GET /health answers
200 on the port the server binds, 1 otherwise.

It reads the bind address gunicorn binds (SERVICE_BIND, else the settings' default), so the
image's HEALTHCHECK and the ECS task's health check follow it; neither names a port.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

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


def bind_address() -> str:
    """SERVICE_BIND as the image sets it. Read directly: importing the settings (pydantic)
    would triple the check's CPU time, spent every 10 s on a fraction of a vCPU."""
    bind = os.environ.get("SERVICE_BIND")
    if bind is None:
        from app.settings import get_settings

        bind = get_settings().bind
    return bind


def main() -> int:
    url = health_url(bind_address())
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
