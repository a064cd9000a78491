"""Fixtures shared by the training tests: the raw data and the artifacts `make train` wrote.

`raw_data` and `data` are whatever `prepare.source` names, so a fork's data runs the
template's tests; `raw_penguins` and `penguins` are the bundled example, for the tests
marked `example_data` that state facts about it."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from training import paths
from training.data import BUNDLED_SOURCE, clean, load_dataset
from training.evaluate import evaluate
from training.params import Params, Prepare, parse, read_params
from training.prepare import split
from training.train import fit_and_save


@pytest.fixture(scope="session")
def prepare_params() -> Prepare:
    return read_params(paths.PARAMS).prepare


@pytest.fixture(scope="session")
def target(prepare_params: Prepare) -> str:
    return prepare_params.target


@pytest.fixture(scope="session")
def raw_data(prepare_params: Prepare) -> pd.DataFrame:
    return load_dataset(prepare_params.source, paths.ROOT)


@pytest.fixture(scope="session")
def data(raw_data: pd.DataFrame, prepare_params: Prepare) -> pd.DataFrame:
    """The configured data set as `prepare` cleans it, before the split."""
    p = prepare_params
    return clean(raw_data, p.target, p.drop_columns, p.task)


@pytest.fixture(scope="session")
def raw_penguins() -> pd.DataFrame:
    return load_dataset(BUNDLED_SOURCE, paths.ROOT)


@pytest.fixture(scope="session")
def penguins(raw_penguins: pd.DataFrame) -> pd.DataFrame:
    return clean(raw_penguins, "species", ["year"])


@pytest.fixture(scope="session")
def stage_env() -> dict[str, str]:
    """The environment dvc.yaml runs a stage in: the service's package (app.dates) importable."""
    return {**os.environ, "PYTHONPATH": str(paths.ROOT / "serving")}


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


@pytest.fixture(scope="session")
def committed_params() -> dict[str, Any]:
    """params.yaml as committed, raw: tests change a copy and validate it like a stage does."""
    loaded: dict[str, Any] = yaml.safe_load(paths.PARAMS.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="session")
def params_with(committed_params: dict[str, Any]) -> Callable[..., Params]:
    """The committed params with some keys of some blocks replaced, validated:
    `params_with(prepare={"task": "regression"}, train={"estimator": None})`."""

    def replace(**blocks: dict[str, Any]) -> Params:
        raw = copy.deepcopy(committed_params)
        for block, values in blocks.items():
            raw[block].update(values)
        return parse(raw)

    return replace


@dataclass
class Trained:
    """What the prepare, train and evaluate stages make of a data set, in memory."""

    params: Params
    directory: Path
    train: pd.DataFrame
    test: pd.DataFrame
    model: Any
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    predicted: np.ndarray
    report: str


def train_on(frame: pd.DataFrame, params: Params, directory: Path) -> Trained:
    """What `dvc repro` makes of a fork's data: `frame` written to the file `prepare.source`
    names (Parquet), then the stages' own functions in their order, into `directory`."""
    prepare = params.prepare
    frame.to_parquet(directory / prepare.source, index=False)
    cleaned = clean(
        load_dataset(prepare.source, directory), prepare.target, prepare.drop_columns, prepare.task
    )
    train, test = split(cleaned, prepare.target, prepare.test_size, prepare.seed, prepare.task)
    model, metadata = fit_and_save(train, params, directory)
    metrics, predicted, report = evaluate(model, metadata, train, test, params)
    return Trained(params, directory, train, test, model, metadata, metrics, predicted, report)


@pytest.fixture(scope="session")
def trained_on() -> Callable[[pd.DataFrame, Params, Path], Trained]:
    return train_on
