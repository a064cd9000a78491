"""Reading a stage's params, writing JSON artifacts and hashing files, the same way in every
stage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from training.params import read_params


def load_params(stage: str, path: Path) -> dict[str, Any]:
    """One stage's block as a dict, validated by `training.params` (defaults filled in).

    For code not yet moved to the typed `training.params.read_params(path).<stage>`.
    """
    block: dict[str, Any] = getattr(read_params(path), stage).model_dump()
    return block


def sha256_file(path: Path) -> str:
    """The hex sha256 by which the metadata and the export record name the files they pin."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Indented with a trailing newline, so diffs of committed artifacts stay readable."""
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
