"""Reading a stage's params and writing JSON artifacts, the same way in every stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def load_params(stage: str, path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        params = yaml.safe_load(handle)
    block = params.get(stage)
    if not isinstance(block, dict):
        raise KeyError(f"{path.name} has no block for stage {stage!r}")
    return block


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Indented with a trailing newline, so diffs of committed artifacts stay readable."""
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
