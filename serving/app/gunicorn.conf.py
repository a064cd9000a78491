"""gunicorn's configuration for the service: `gunicorn -c app/gunicorn.conf.py app.main:app`.

Values come from `app.settings` (SERVICE_* environment variables), so the image, `make serve`
and the tests configure the server and the app in one place.
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# gunicorn reads this file before it puts the working directory on sys.path; the package
# root is this file's parent's parent wherever the service runs from.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import ValidationError

from app.logs import logging_config, skip_unused_record_attributes
from app.settings import EXIT_REFUSED, describe_invalid, get_settings

try:
    settings = get_settings()
except ValidationError as error:
    # One JSON line and the service's refusal code, as for a model that must not be served;
    # gunicorn would print a traceback (quoting the values) and exit 1.
    logging.config.dictConfig(logging_config("info"))
    logging.getLogger("app").critical("refusing to start: %s", describe_invalid(error))
    sys.exit(EXIT_REFUSED)

bind = settings.bind
workers = settings.workers
# uvicorn-worker's UvicornWorker, the maintained home of uvicorn's gunicorn worker
# (`uvicorn.workers` is deprecated), minus the `server` header (app/worker.py).
worker_class = "app.worker.Worker"
# Import the app (and so load and verify the model) once, in the master: a bad model stops
# the service before it listens, and workers share the model's memory after the fork.
preload_app = True
# On SIGTERM, workers finish in-flight requests for up to this long; ECS's container stop
# timeout (the deployment sets it) must be longer, or SIGKILL cuts the requests off.
graceful_timeout = settings.graceful_timeout_seconds
# A worker whose event loop stops answering gunicorn for this long is killed and replaced.
# Predictions run in threads, so only a hung worker misses it.
timeout = 30
# Longer than the load balancer's 60 s idle timeout: the balancer, not the service, closes
# idle connections, so it never sends a request into a connection being closed (a 502).
keepalive = 75
# The heartbeat file each worker touches; on a read-only root filesystem only tmpfs works.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108
# uvicorn's proxy-headers middleware logs the rightmost address outside this set as the
# client (settings.py says why).
forwarded_allow_ips = settings.forwarded_allow_ips
# gunicorn's limit_request_line/fields/field_size do not reach uvicorn's parser: the worker
# (app/worker.py) enforces settings.max_header_bytes and max_header_fields instead, and the
# header and body deadlines.
# gunicorn >= 25 opens a control socket in $XDG_RUNTIME_DIR or ~/.gunicorn by default,
# shared by every instance run by the same user, and unwritable on a read-only root.
control_socket_disable = True

loglevel = settings.log_level
errorlog = "-"
accesslog = None  # app.middleware logs each request, with its id and model version
logconfig_dict = logging_config(settings.log_level)
skip_unused_record_attributes()
proc_name = "prediction-service"


def _prometheus_dir() -> tuple[str, bool]:
    """An empty directory for the workers' metric files, and whether this run created it.

    Set before the app (and prometheus_client) is imported, which selects the multi-process
    mode. Files left by an earlier run would be summed into this one's counters.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return str(path), False
    parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108
    return tempfile.mkdtemp(prefix="prometheus-", dir=parent), True


_metrics_dir, _created_metrics_dir = _prometheus_dir()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
_master_pid = os.getpid()


@atexit.register
def _remove_metrics_dir() -> None:
    # atexit rather than on_exit: it also runs when the app refuses to start. Workers are
    # forked from the master and inherit this handler; only the master removes the files.
    if _created_metrics_dir and os.getpid() == _master_pid:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    # Drops the dead worker's live gauges; its counters stay in the totals.
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
