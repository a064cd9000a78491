"""The ASGI application the image runs: `gunicorn -c app/gunicorn.conf.py app.main:app`.

A model that must not be served, or invalid settings, stop the process here, with one log
line and a non-zero exit, so an ECS deployment fails its start and the circuit breaker
rolls it back. (Under gunicorn, its configuration reads the settings first and refuses
the same way.)
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from app.artifacts import ModelIntegrityError
from app.factory import create_app
from app.settings import EXIT_REFUSED, describe_invalid

try:
    app = create_app()
except ModelIntegrityError as error:
    logging.getLogger("app").critical("refusing to start: %s", error)
    sys.exit(EXIT_REFUSED)
except ValidationError as error:
    logging.getLogger("app").critical("refusing to start: %s", describe_invalid(error))
    sys.exit(EXIT_REFUSED)
