"""Fixtures shared by the training tests: the raw data and the artifacts `make train` wrote.

`raw_data` and `data` are whatever `prepare.source` names, so a fork's data runs the
template's tests; `raw_penguins` and `penguins` are the bundled example, for the tests
marked `example_data` that state facts about it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest

from training import paths
from training.data import BUNDLED_SOURCE, clean, load_dataset
from training.io import load_params


@pytest.fixture(scope="session")
def prepare_params() -> dict[str, Any]:
    return load_params("prepare", paths.PARAMS)


@pytest.fixture(scope="session")
def target(prepare_params: dict[str, Any]) -> str:
    name: str = prepare_params["target"]
    return name


@pytest.fixture(scope="session")
def raw_data(prepare_params: dict[str, Any]) -> pd.DataFrame:
    return load_dataset(prepare_params["source"], paths.ROOT)


@pytest.fixture(scope="session")
def data(raw_data: pd.DataFrame, prepare_params: dict[str, Any]) -> pd.DataFrame:
    """The configured data set as `prepare` cleans it, before the split."""
    return clean(
        raw_data,
        prepare_params["target"],
        list(prepare_params["drop_columns"]),
        prepare_params.get("task", "classification"),
    )


@pytest.fixture(scope="session")
def raw_penguins() -> pd.DataFrame:
    return load_dataset(BUNDLED_SOURCE, paths.ROOT)


@pytest.fixture(scope="session")
def penguins(raw_penguins: pd.DataFrame) -> pd.DataFrame:
    return clean(raw_penguins, "species", ["year"])


def _artifact(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path.relative_to(paths.ROOT)} is missing: run `make train` (or `dvc pull`)")
    return path


@pytest.fixture(scope="session")
def model() -> Any:
    return joblib.load(_artifact(paths.MODEL))


@pytest.fixture(scope="session")
def metadata() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_artifact(paths.METADATA).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="session")
def metrics() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_artifact(paths.METRICS).read_text(encoding="utf-8"))
    return loaded
