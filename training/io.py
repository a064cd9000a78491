"""Writing JSON artifacts, hashing files and ending a stage, the same way in every stage."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.data import DataError
from training.params import ParamsError


def rounded(value: float) -> float:
    """Six decimals: stable across platforms' last-bit noise in git-tracked artifacts, precise
    enough to compare and readable in a pull request's diff."""
    return round(float(value), 6)


def sha256_file(path: Path) -> str:
    """The hex sha256 by which the metadata and the export record name the files they pin."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Indented with a trailing newline, so diffs of committed artifacts stay readable."""
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def run_stage(main: Callable[[], None]) -> None:
    """A stage's entry point. A problem with params.yaml or the data is the user's to fix,
    not a bug: it ends the stage as one log line naming the key or column, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Python hides DeprecationWarnings raised outside __main__; a deprecated key in the
    # user's params.yaml is for the user to see.
    warnings.filterwarnings("default", message="params.yaml", category=DeprecationWarning)
    try:
        main()
    except (ParamsError, DataError) as error:
        logging.getLogger(main.__module__).error("%s", error)
        sys.exit(2)
