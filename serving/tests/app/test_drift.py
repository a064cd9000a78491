"""Drift and data-quality counters, and the per-request metrics, in-process.

The counters observe: every test here also checks the status the request would have had
without them. That the real server sums its workers' counters: test_server.py.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app import drift, metrics
from app.artifacts import PROFILE_FILE, ModelIntegrityError, load_metadata, load_profile
from app.drift import InputMonitor
from app.factory import create_app
from app.settings import Settings
from tests.conftest import random_date

from .conftest import in_process

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
DRIFT_METRICS = (
    "model_input_out_of_range",
    "model_records_out_of_range",
    "model_input_unseen_category",
    "model_input_missing",
)


@pytest.fixture(scope="module")
def profile(model_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((model_dir / PROFILE_FILE).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def numeric(profile: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in profile["features"] if f["type"] == "number"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels (creation times,
    which single-process mode adds, left out)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


class Deltas:
    """What a block of requests added to the app's Prometheus samples."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __aenter__(self) -> Deltas:
        self.before = samples((await self.client.get("/metrics")).text)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.after = samples((await self.client.get("/metrics")).text)

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.after.get(key, 0.0) - self.before.get(key, 0.0)

    def drift(self) -> dict[Any, float]:
        return {
            key: value - self.before.get(key, 0.0)
            for key, value in self.after.items()
            if key[0].startswith(DRIFT_METRICS) and value != self.before.get(key, 0.0)
        }


def in_range_records(profile: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """Complete records drawn inside the training range and categories."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        record: dict[str, Any] = {}
        for feature in profile["features"]:
            if feature["type"] == "number":
                record[feature["name"]] = rng.uniform(feature["minimum"], feature["maximum"])
            elif feature["type"] == "date":
                record[feature["name"]] = random_date(feature["minimum"], feature["maximum"], rng)
            else:
                record[feature["name"]] = rng.choice(sorted(feature["categories"]))
        records.append(record)
    return records


@pytest.fixture(scope="module")
def beyond_training(numeric: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, float]:
    """Per number feature, a value above the training maximum that the service still accepts:
    none when train.schema_margin is 0, the accepted bounds then being the training range."""
    accepted = {f["name"]: f.get("maximum") for f in metadata["input_schema"]["features"]}
    values = {}
    for feature in numeric:
        value = (feature["maximum"] + accepted[feature["name"]]) / 2
        if feature["maximum"] < value < accepted[feature["name"]]:
            values[feature["name"]] = float(value)
    return values


async def test_in_range_values_move_no_drift_counter(
    client: httpx.AsyncClient, profile: dict[str, Any]
) -> None:
    records = in_range_records(profile, drift.VECTORISE_FROM + 16, seed=3)
    async with Deltas(client) as delta:
        assert (await client.post("/predict", json=records[0])).status_code == 200
        assert (await client.post("/predict/batch", json={"records": records})).status_code == 200
    assert delta.drift() == {}


@pytest.mark.parametrize(
    "batch",
    [1, 12, drift.VECTORISE_FROM + 36],
    ids=["single record", "batch counted by a loop", "batch counted vectorised"],
)
async def test_values_outside_the_training_range_are_scored_and_counted(
    client: httpx.AsyncClient,
    profile: dict[str, Any],
    beyond_training: dict[str, float],
    metadata: dict[str, Any],
    batch: int,
) -> None:
    if not beyond_training:
        pytest.skip("train.schema_margin is 0: the service accepts no number outside training's")
    name, value = next(iter(beyond_training.items()))
    version = metadata["model_version"]
    records = in_range_records(profile, batch, seed=4)
    outside = records[: max(1, batch // 3)]
    for record in outside:
        record[name] = value
    async with Deltas(client) as delta:
        if batch == 1:
            response = await client.post("/predict", json=records[0])
        else:
            response = await client.post("/predict/batch", json={"records": records})
    assert response.status_code == 200
    assert delta("model_input_out_of_range_total", feature=name, model_version=version) == len(
        outside
    )
    assert delta("model_records_out_of_range_total", model_version=version) == len(outside)
    assert set(delta.drift()) == {
        ("model_input_out_of_range_total", (("feature", name), ("model_version", version))),
        ("model_records_out_of_range_total", (("model_version", version),)),
    }


async def test_unseen_category_is_still_rejected_and_is_counted(
    client: httpx.AsyncClient, example: dict[str, Any], category_feature: dict[str, Any]
) -> None:
    name = category_feature["name"]
    async with Deltas(client) as delta:
        response = await client.post("/predict", json={**example, name: "Atlantis"})
        batch = await client.post(
            "/predict/batch", json={"records": [{**example, name: "Atlantis"}] * 3}
        )
    assert response.status_code == batch.status_code == 422
    version = response.headers["x-model-version"]
    labels = {"feature": name, "model_version": version}
    assert delta("model_input_unseen_category_total", **labels) == 4
    assert delta("http_validation_errors_total", field=name, model_version=version) == 4


async def test_missing_values_are_counted_per_feature(
    client: httpx.AsyncClient, example: dict[str, Any], metadata: dict[str, Any]
) -> None:
    version = metadata["model_version"]
    names = [f["name"] for f in metadata["input_schema"]["features"]]
    sparse = {k: v for k, v in example.items() if k != names[0]} | {names[-1]: None}
    async with Deltas(client) as delta:
        assert (await client.post("/predict", json=sparse)).status_code == 200
    assert delta("model_input_missing_total", feature=names[0], model_version=version) == 1
    assert delta("model_input_missing_total", feature=names[-1], model_version=version) == 1
    assert delta("model_input_missing_total", feature=names[1], model_version=version) == 0


async def test_validation_errors_are_counted_by_field_never_by_a_client_chosen_name(
    client: httpx.AsyncClient,
    example: dict[str, Any],
    number_feature: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    async with Deltas(client) as delta:
        for body in (
            json.dumps({**example, "made_up_field_x1": 1}).encode(),
            json.dumps({**example, number_feature["name"]: -1e9}).encode(),
            b"{not json",
        ):
            assert (await client.post("/predict", content=body, headers=JSON)).status_code == 422
    version = metadata["model_version"]
    for field in ("unknown_field", number_feature["name"], "body"):
        assert delta("http_validation_errors_total", field=field, model_version=version) == 1
    assert not any("made_up" in str(key) for key in delta.after)


async def test_request_log_line_carries_the_requests_metrics_as_emf(
    client: httpx.AsyncClient,
    profile: dict[str, Any],
    beyond_training: dict[str, float],
    metadata: dict[str, Any],
    task: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = in_range_records(profile, 3, seed=5)
    outside = next(iter(beyond_training), None)  # None when train.schema_margin is 0
    if outside is not None:
        records[1][outside] = beyond_training[outside]
    with caplog.at_level(logging.INFO, logger="app.requests"):
        response = await client.post("/predict/batch", json={"records": records})
    (record,) = [r for r in caplog.records if r.name == "app.requests"]
    line = vars(record)
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "PredictionService"
    assert [list(d) for d in directive["Dimensions"]] == [["Service"], ["Service", "ModelVersion"]]
    assert (line["Service"], line["ModelVersion"]) == (
        "prediction-service",
        metadata["model_version"],
    )
    assert line["Requests"] == line["Status2xx"] == 1
    assert line["RecordsScored"] == line["BatchRecords"] == 3
    if task == "regression":  # per bin of the training predictions (test_regression.py)
        assert sum(v for k, v in line.items() if k.startswith("PredictionBin_")) == 3
    else:
        predicted = {p["prediction"] for p in response.json()["predictions"]}
        assert sum(line[f"Predicted_{c}"] for c in predicted) == 3
    if outside is not None:
        assert line[f"OutOfRange_{outside}"] == line["OutOfRangeRecords"] == 1
    assert line["Latency"] > 0
    defined = {m["Name"] for m in directive["Metrics"]}
    assert "Status5xx" not in defined
    assert "Status5xx" not in line
    assert {"Requests", "Latency", "RecordsScored"} <= defined
    assert ("OutOfRangeRecords" in defined) == (outside is not None)


async def test_model_shows_the_reference_profile(
    client: httpx.AsyncClient, profile: dict[str, Any]
) -> None:
    model = (await client.get("/model")).json()
    assert model["reference_profile"] == profile


@pytest.mark.parametrize("directory", ["model_dir", "dated_model_dir"])
def test_counting_a_batch_vectorised_equals_counting_record_by_record(
    directory: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir: Path = request.getfixturevalue(directory)
    metadata = load_metadata(model_dir)
    reference = load_profile(model_dir, metadata)
    assert reference is not None
    monitor = InputMonitor(metadata, reference)
    rng = random.Random(7)
    columns: dict[str, list[Any]] = {}
    for feature in reference.model_dump()["features"]:
        if feature["type"] == "number":
            low, high = feature["minimum"], feature["maximum"]
            spread = high - low
            choices = [low, high, low - spread / 10, high + spread / 10, None, (low + high) / 2]
            columns[feature["name"]] = [rng.choice(choices) for _ in range(200)]
        elif feature["type"] == "date":
            low, high = (date.fromisoformat(feature[k]) for k in ("minimum", "maximum"))
            day = timedelta(days=1)
            choices = [str(d) for d in (low, high, low - day, high + day)] + [None]
            columns[feature["name"]] = [rng.choice(choices) for _ in range(200)]
        else:
            columns[feature["name"]] = [
                rng.choice([*feature["categories"], None]) for _ in range(200)
            ]
    counted: list[dict[str, Any]] = []

    def capture(version: str, **signals: Any) -> None:
        counted.append({k: v if isinstance(v, int) else dict(v) for k, v in signals.items()})

    monkeypatch.setattr(metrics, "count_drift", capture)
    for threshold in (10**9, 0):  # every record through the loop, then all vectorised
        monkeypatch.setattr(drift, "VECTORISE_FROM", threshold)
        monitor.observe_records(columns, 200)
    loop, vectorised = counted
    assert loop == vectorised
    assert loop["out_of_range_records"] > 0
    # A date outside the training range is counted as a number outside it is.
    assert set(metadata.dates) <= set(loop["out_of_range"])
    assert all(v > 0 for v in loop["missing"].values())


# --- the profile's absence, corruption or mismatch ------------------------------------


@pytest.fixture
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(model_dir, copy)
    return copy


def profile_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "profile" in r.message]


async def assert_counts_no_drift(
    app: FastAPI,
    example: dict[str, Any],
    feature: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The app answers as usual, shows no profile, and its request lines carry no drift."""
    assert not app.state.service.monitor.counts_drift
    outside = {**example, feature["name"]: feature["maximum"]}
    outside[list(example)[-1]] = None
    async with in_process(app) as http:
        assert (await http.get("/model")).json()["reference_profile"] is None
        with caplog.at_level(logging.INFO, logger="app.requests"):
            assert (await http.post("/predict", json=outside)).status_code == 200
    (line,) = [vars(r) for r in caplog.records if r.name == "app.requests"]
    assert line["RecordsScored"] == 1
    assert not [k for k in line if k.startswith(("OutOfRange", "Missing_", "UnseenCategory_"))]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.unlink(), id="missing"),
        pytest.param(lambda path: path.write_text("{not json"), id="not JSON"),
        pytest.param(
            lambda path: path.write_text(json.dumps({"schema_version": 1, "features": []})),
            id="not a profile",
        ),
    ],
)
async def test_missing_or_malformed_profile_starts_without_drift_with_one_warning(
    model_copy: Path,
    damage: Any,
    example: dict[str, Any],
    number_feature: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    damage(model_copy / PROFILE_FILE)
    with caplog.at_level(logging.WARNING):
        app = create_app(Settings(model_dir=model_copy))
    (warning,) = profile_warnings(caplog)
    assert "without drift counters" in warning.message
    caplog.clear()
    await assert_counts_no_drift(app, example, number_feature, caplog)


def test_profile_of_another_model_is_refused(model_copy: Path) -> None:
    path = model_copy / PROFILE_FILE
    profile = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**profile, "model_sha256": "f" * 64}), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="belongs to another model"):
        create_app(Settings(model_dir=model_copy))
