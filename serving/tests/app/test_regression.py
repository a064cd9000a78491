"""A regression model served: a number per record, no probabilities, its OpenAPI document,
its output checked, and its predictions counted against the training predictions' bins.

The model is the `regression_model_dir` fixture (a Pipeline fitted on scikit-learn's bundled
diabetes data), not the committed example model.
"""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.artifacts import PROFILE_FILE, load_metadata, load_profile
from app.drift import VECTORISE_FROM, InputMonitor
from app.factory import create_app
from app.settings import Settings

from .conftest import in_process

pytestmark = pytest.mark.anyio


def records(metadata: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """Valid records over the accepted range, about a tenth of the values missing."""
    rng = random.Random(seed)
    return [
        {
            f["name"]: None if rng.random() < 0.1 else rng.uniform(f["minimum"], f["maximum"])
            for f in metadata["input_schema"]["features"]
        }
        for _ in range(count)
    ]


def pipeline_predictions(
    model_dir: Path, metadata: dict[str, Any], sent: list[dict[str, Any]]
) -> list[float]:
    names = [f["name"] for f in metadata["input_schema"]["features"]]
    frame = pd.DataFrame([{n: r.get(n) for n in names} for r in sent], columns=names, dtype=float)
    return [float(v) for v in joblib.load(model_dir / "model.joblib").predict(frame)]


def bin_counts(text: str, model_version: str) -> dict[str, float]:
    return {
        s.labels["bin"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "model_prediction_bin_total" and s.labels["model_version"] == model_version
    }


async def test_predict_answers_the_pipelines_number_and_the_model_version_only(
    regression_client: httpx.AsyncClient,
    regression_model_dir: Path,
    regression_metadata: dict[str, Any],
) -> None:
    (record,) = records(regression_metadata, 1, seed=1)
    response = await regression_client.post("/predict", json=record)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"prediction", "model_version"}
    assert body["model_version"] == regression_metadata["model_version"]
    assert response.headers["x-model-version"] == regression_metadata["model_version"]
    (expected,) = pipeline_predictions(regression_model_dir, regression_metadata, [record])
    assert body["prediction"] == expected


async def test_batch_answers_one_number_per_record_in_order(
    regression_client: httpx.AsyncClient,
    regression_model_dir: Path,
    regression_metadata: dict[str, Any],
) -> None:
    sent = records(regression_metadata, 150, seed=2)
    response = await regression_client.post("/predict/batch", json={"records": sent})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"predictions", "model_version"}
    assert all(set(p) == {"prediction"} for p in body["predictions"])
    expected = pipeline_predictions(regression_model_dir, regression_metadata, sent)
    assert [p["prediction"] for p in body["predictions"]] == expected


async def test_openapi_documents_a_number_and_no_probabilities(
    regression_client: httpx.AsyncClient, regression_metadata: dict[str, Any]
) -> None:
    document = (await regression_client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    prediction = schemas["Prediction"]["properties"]
    assert set(prediction) == {"prediction"}
    assert prediction["prediction"]["type"] == "number"
    assert regression_metadata["target"] in prediction["prediction"]["description"]
    assert set(schemas["PredictionResponse"]["properties"]) == {"prediction", "model_version"}
    batch = schemas["BatchPredictionResponse"]["properties"]["predictions"]
    assert batch["items"] == {"$ref": "#/components/schemas/Prediction"}
    assert "probabilit" not in json.dumps(document["components"]["schemas"])
    assert "a number" in document["info"]["description"]


class NotFinitePredictor:
    backend = "test"

    def predict(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return np.full(len(next(iter(columns.values()))), np.nan)


class WrongShapePredictor:
    backend = "test"

    def predict(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return np.zeros((len(next(iter(columns.values()))), 1))


@pytest.mark.parametrize("predictor", [NotFinitePredictor(), WrongShapePredictor()])
async def test_a_regressors_bad_output_is_a_500_never_sent(
    regression_model_dir: Path, regression_metadata: dict[str, Any], predictor: Any
) -> None:
    app = create_app(Settings(model_dir=regression_model_dir), predictor=predictor)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        response = await http.post("/predict", json=records(regression_metadata, 1, seed=3)[0])
    assert response.status_code == 500
    assert "prediction" not in response.text


async def test_predictions_are_counted_per_bin_of_the_training_predictions(
    regression_client: httpx.AsyncClient,
    regression_model_dir: Path,
    regression_metadata: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    profile = json.loads((regression_model_dir / PROFILE_FILE).read_text())["predictions"]
    version = regression_metadata["model_version"]
    sent = records(regression_metadata, 40, seed=4)
    before = bin_counts((await regression_client.get("/metrics")).text, version)
    with caplog.at_level(logging.INFO, logger="app.requests"):
        response = await regression_client.post("/predict/batch", json={"records": sent})
    after = bin_counts((await regression_client.get("/metrics")).text, version)
    added = {b: after[b] - before.get(b, 0.0) for b in after if after[b] != before.get(b, 0.0)}
    # Each prediction lands in exactly the bin its value falls in.
    edges = [profile["minimum"], *profile["quantiles"].values(), profile["maximum"]]
    names = ["below", *profile["bins"], "above"]
    expected: dict[str, float] = {}
    for p in response.json()["predictions"]:
        value = p["prediction"]
        index = 0 if value < edges[0] else sum(value >= e for e in edges[1:-1]) + 1
        index = len(names) - 1 if value > edges[-1] else index
        expected[names[index]] = expected.get(names[index], 0) + 1
    assert added == expected
    (line,) = [vars(r) for r in caplog.records if r.name == "app.requests"]
    emf = {
        k.removeprefix("PredictionBin_"): v
        for k, v in line.items()
        if k.startswith("PredictionBin_")
    }
    assert emf == expected
    assert line["RecordsScored"] == len(sent)


class ConstantPredictor:
    backend = "test"

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return np.full(len(next(iter(columns.values()))), self.value)


@pytest.mark.parametrize("where", ["below", "above"])
async def test_predictions_outside_the_training_predictions_range_are_counted(
    regression_model_dir: Path, regression_metadata: dict[str, Any], where: str
) -> None:
    profile = json.loads((regression_model_dir / PROFILE_FILE).read_text())["predictions"]
    value = profile["minimum"] - 1 if where == "below" else profile["maximum"] + 1
    predictor: Any = ConstantPredictor(value)  # a regressor's half of the Protocol
    app = create_app(Settings(model_dir=regression_model_dir), predictor=predictor)
    version = regression_metadata["model_version"]
    async with in_process(app) as http:
        before = bin_counts((await http.get("/metrics")).text, version).get(where, 0.0)
        sent = records(regression_metadata, 3, seed=5)
        response = await http.post("/predict/batch", json={"records": sent})
        after = bin_counts((await http.get("/metrics")).text, version).get(where, 0.0)
    assert response.status_code == 200
    assert after - before == 3


def test_counting_predictions_vectorised_equals_counting_one_by_one(
    regression_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metadata = load_metadata(regression_model_dir)
    monitor = InputMonitor(metadata, load_profile(regression_model_dir, metadata))
    profile = monitor.profile.predictions if monitor.profile else None
    assert profile is not None
    edges = [profile.minimum, *profile.quantiles.values(), profile.maximum]
    # Every edge exactly, and values between and beyond them.
    values = np.array([*edges, *np.linspace(edges[0] - 10, edges[-1] + 10, 200)])
    assert len(values) >= VECTORISE_FROM
    counted: list[dict[str, int]] = []
    monkeypatch.setattr(
        metrics, "count_prediction_bins", lambda _, counts: counted.append(dict(counts))
    )
    monitor.observe_predictions(values)
    for value in values:
        monitor.observe_predictions(np.array([value]))
    vectorised, one_by_one = counted[0], counted[1:]
    summed = {name: sum(c[name] for c in one_by_one) for name in vectorised}
    assert summed == vectorised
    assert sum(vectorised.values()) == len(values)
    assert vectorised["below"] == vectorised["above"] == sum(values < edges[0])


async def test_no_class_mix_is_counted_for_a_regressor(
    regression_client: httpx.AsyncClient, regression_metadata: dict[str, Any]
) -> None:
    await regression_client.post("/predict", json=records(regression_metadata, 1, seed=6)[0])
    text = (await regression_client.get("/metrics")).text
    version = regression_metadata["model_version"]
    assert f'model_version="{version}"' in text
    assert not [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "model_predictions_total" and s.labels["model_version"] == version
    ]


async def test_model_says_regression_with_no_classes(
    regression_client: httpx.AsyncClient,
) -> None:
    model = (await regression_client.get("/model")).json()
    assert (model["task"], model["classes"]) == ("regression", [])
    assert math.isclose(sum(model["reference_profile"]["predictions"]["bins"].values()), 1.0)
