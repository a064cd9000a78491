"""Fixtures every package's tests share: the trained model the service would serve and its
data (app, bench and container tests all run against it)."""

from __future__ import annotations

import json
import os
import random
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from app.artifacts import METADATA_FILE
from app.settings import DEFAULT_MODEL_DIR, Settings


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The model the service would serve: SERVICE_MODEL_DIR, else serving/app/data."""
    directory = Path(os.environ.get("SERVICE_MODEL_DIR", DEFAULT_MODEL_DIR))
    missing = [n for n in (METADATA_FILE, "model.joblib") if not (directory / n).is_file()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing from {directory}: the service tests need a trained "
            "model; run `make train` (or `dvc pull`) first",
            pytrace=False,
        )
    return directory


@pytest.fixture(scope="session")
def metadata(model_dir: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))
    return raw


@pytest.fixture(scope="session")
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, backend="auto")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def example(metadata: dict[str, Any]) -> dict[str, Any]:
    """A valid record with every field set: the metadata's examples."""
    return {f["name"]: f["example"] for f in metadata["input_schema"]["features"]}


@pytest.fixture(scope="session")
def number_feature(metadata: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in metadata["input_schema"]["features"] if f["type"] == "number")


@pytest.fixture(scope="session")
def category_feature(metadata: dict[str, Any]) -> dict[str, Any]:
    categories: list[dict[str, Any]] = [
        f for f in metadata["input_schema"]["features"] if f["type"] == "category"
    ]
    if not categories:
        pytest.skip("the model has no category feature")
    return categories[0]


def random_date(first: str, last: str, rng: random.Random) -> str:
    """An ISO date drawn between two ISO dates, as a date feature is sent."""
    low, high = date.fromisoformat(first).toordinal(), date.fromisoformat(last).toordinal()
    return date.fromordinal(rng.randint(low, high)).isoformat()
