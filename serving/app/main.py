"""The ASGI application the image runs: `gunicorn -c app/gunicorn.conf.py app.main:app`.

A model that must not be served stops the process here, with one log line and a non-zero
exit, so an ECS deployment fails its start and the circuit breaker rolls it back.
"""

from __future__ import annotations

import logging
import sys

from app.artifacts import ModelIntegrityError
from app.factory import create_app

# sysexits.h EX_CONFIG: distinct from gunicorn's own exit codes (1, 3, 4) in the task's
# stopped reason.
EXIT_MODEL_REFUSED = 78

try:
    app = create_app()
except ModelIntegrityError as error:
    logging.getLogger("app").critical("refusing to start: %s", error)
    sys.exit(EXIT_MODEL_REFUSED)
