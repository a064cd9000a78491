"""The HTTP contract, in-process: every endpoint and every way a request can be wrong."""

from __future__ import annotations

import json
import logging
import math
import random
import re
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from starlette.types import Message

from app import errors
from app.dates import expand, model_names
from app.messages import MAX_ERROR_BODY_BYTES
from tests.conftest import random_date

from .conftest import in_process, sample

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


def assert_prediction(result: dict[str, Any], classes: list[str], tolerance: float) -> None:
    """A classifier's answer; with no classes, a regressor's: a finite number, nothing more."""
    if not classes:
        assert math.isfinite(result["prediction"])
        assert "probabilities" not in result
        return
    assert result["prediction"] in classes
    assert list(result["probabilities"]) == classes
    # Each within `tolerance` of the Pipeline's, which sum to 1.
    total = sum(result["probabilities"].values())
    assert math.isclose(total, 1.0, abs_tol=len(classes) * tolerance)
    assert result["probability"] == max(result["probabilities"].values())
    assert result["probability"] == result["probabilities"][result["prediction"]]


def random_records(metadata: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """Valid records over the whole accepted range, about a fifth of the values missing."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        record: dict[str, Any] = {}
        for feature in metadata["input_schema"]["features"]:
            roll = rng.random()
            if roll < 0.1:
                continue  # omitted
            if roll < 0.2:
                record[feature["name"]] = None
            elif feature["type"] == "number":
                record[feature["name"]] = rng.uniform(feature["minimum"], feature["maximum"])
            elif feature["type"] == "date":
                record[feature["name"]] = random_date("0001-01-01", "9999-12-31", rng)
            else:
                record[feature["name"]] = rng.choice(feature["categories"])
        records.append(record)
    return records


# --- predictions ---------------------------------------------------------------------


@pytest.mark.classification_only(
    "test_regression.py::test_predict_answers_the_pipelines_number_and_the_model_version_only"
)
async def test_predict_returns_class_probabilities_and_model_version(
    client: httpx.AsyncClient, example: dict[str, Any], metadata: dict[str, Any], tolerance: float
) -> None:
    response = await client.post("/predict", json=example)
    assert response.status_code == 200
    body = response.json()
    assert_prediction(body, metadata["classes"], tolerance)
    assert body["model_version"] == metadata["model_version"]
    assert response.headers["x-model-version"] == metadata["model_version"]


async def test_predictions_equal_the_pipelines_own(
    client: httpx.AsyncClient,
    model_dir: Any,
    metadata: dict[str, Any],
    task: str,
    tolerance: float,
) -> None:
    """Same probabilities (a regressor: numbers) as calling the joblib Pipeline on a
    DataFrame, missing values included: catches a wrong column order, dtype or
    missing-value marker."""
    records = random_records(metadata, 300, seed=1)
    response = await client.post("/predict/batch", json={"records": records})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    features = metadata["input_schema"]["features"]
    # A date reaches the Pipeline as its numeric parts, derived by app.dates.
    dated = [f["name"] for f in features if f["type"] == "date"]
    rows = [{f["name"]: r.get(f["name"]) for f in features} for r in records]
    names = model_names((f["name"], f["type"]) for f in features)
    frame = pd.DataFrame(expand({n: [r[n] for r in rows] for n in rows[0]}, dated), columns=names)
    frame = frame.fillna(np.nan)  # None -> NaN, as training's DataFrame had
    numeric = [
        n for n in names if n not in {f["name"] for f in features if f["type"] == "category"}
    ]
    frame[numeric] = frame[numeric].astype("float64")
    pipeline = joblib.load(model_dir / metadata["model_file"])
    if task == "regression":
        # Within the export's tolerance relative to the value, as its parity check allows.
        values = [p["prediction"] for p in predictions]
        np.testing.assert_allclose(values, pipeline.predict(frame), rtol=tolerance, atol=tolerance)
        return
    served = np.array([[p["probabilities"][c] for c in metadata["classes"]] for p in predictions])
    expected = pipeline.predict_proba(frame)
    np.testing.assert_allclose(served, expected, rtol=0, atol=tolerance)
    assert [p["prediction"] for p in predictions] == [
        metadata["classes"][i] for i in expected.argmax(axis=1)
    ]


async def test_every_field_may_be_null_or_omitted(
    client: httpx.AsyncClient, metadata: dict[str, Any], tolerance: float
) -> None:
    nulls = {f["name"]: None for f in metadata["input_schema"]["features"]}
    for record in ({}, nulls):
        response = await client.post("/predict", json=record)
        assert response.status_code == 200, response.text
        assert_prediction(response.json(), metadata["classes"], tolerance)


async def test_batch_answers_each_record_in_order(
    client: httpx.AsyncClient, metadata: dict[str, Any], task: str
) -> None:
    records = random_records(metadata, 25, seed=2)
    response = await client.post("/predict/batch", json={"records": records})
    assert response.status_code == 200
    batch = response.json()
    assert batch["model_version"] == metadata["model_version"]
    assert len(batch["predictions"]) == len(records)
    for record, result in zip(records, batch["predictions"], strict=True):
        single = (await client.post("/predict", json=record)).json()
        if task == "regression":
            assert result["prediction"] == pytest.approx(single["prediction"], rel=1e-12)
        else:
            assert result["probabilities"] == pytest.approx(single["probabilities"], abs=1e-12)
            assert result["prediction"] == single["prediction"]


async def test_batch_accepts_exactly_the_configured_maximum(
    client: httpx.AsyncClient, settings: Any, example: dict[str, Any]
) -> None:
    at_limit = {"records": [example] * settings.max_batch_records}
    response = await client.post("/predict/batch", json=at_limit)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == settings.max_batch_records


# --- bad input: 4xx naming the field, never a 500 ------------------------------------


def messages(response: httpx.Response) -> str:
    return " | ".join(issue["msg"] for issue in response.json()["detail"])


async def test_unknown_field_is_rejected_by_name(
    client: httpx.AsyncClient, example: dict[str, Any]
) -> None:
    response = await client.post("/predict", json={**example, "colour": "blue"})
    assert response.status_code == 422
    assert messages(response).startswith("colour: ")


@pytest.mark.parametrize("value", ["long", "44.5", True, [1.0], {"mm": 44.5}])
async def test_mistyped_number_is_rejected_by_name(
    client: httpx.AsyncClient, number_feature: dict[str, Any], value: Any
) -> None:
    response = await client.post("/predict", json={number_feature["name"]: value})
    assert response.status_code == 422
    assert messages(response).startswith(f"{number_feature['name']}: ")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_numbers_are_422_not_500(
    client: httpx.AsyncClient, number_feature: dict[str, Any], literal: str
) -> None:
    """Python's JSON parser accepts these; FastAPI's default handler then 500s echoing them."""
    name = number_feature["name"]
    response = await client.post("/predict", content=f'{{"{name}": {literal}}}', headers=JSON)
    assert response.status_code == 422
    assert messages(response) == f"{name}: Input should be a finite number"
    json.loads(response.text, parse_constant=lambda c: pytest.fail(f"response holds {c}"))


async def test_negative_and_absurd_measurements_are_rejected_with_the_bound(
    client: httpx.AsyncClient, number_feature: dict[str, Any]
) -> None:
    name = number_feature["name"]
    for value, relation, bound in (
        (-5, "greater", "minimum"),
        (number_feature["maximum"] * 100, "less", "maximum"),
    ):
        response = await client.post("/predict", json={name: value})
        assert response.status_code == 422
        message, _, shown = messages(response).rpartition(" ")
        assert message == f"{name}: Input should be {relation} than or equal to"
        # The bound in full: 8375.258 is not rounded to 8375.26.
        assert float(shown) == number_feature[bound]


async def test_unknown_category_is_rejected_listing_the_allowed_values(
    client: httpx.AsyncClient, category_feature: dict[str, Any]
) -> None:
    name = category_feature["name"]
    response = await client.post("/predict", json={name: "Atlantis"})
    assert response.status_code == 422
    message = messages(response)
    assert message.startswith(f"{name}: ")
    for allowed in category_feature["categories"]:
        assert f"'{allowed}'" in message


async def test_invalid_record_in_a_batch_is_named_by_its_index(
    client: httpx.AsyncClient, example: dict[str, Any], category_feature: dict[str, Any]
) -> None:
    records = [example, example, {**example, category_feature["name"]: "Atlantis"}]
    response = await client.post("/predict/batch", json={"records": records})
    assert response.status_code == 422
    assert messages(response).startswith(f"records[2].{category_feature['name']}: ")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "body: the request body is empty"),
        (b"   ", "body: the request body is empty"),
        (b"penguin", "body: Invalid JSON"),
        (b'{"island": ', "body: Invalid JSON"),
        (b'{"island": "Dr\xffeam"}', "body: Invalid JSON"),  # invalid UTF-8
        (b"[1, 2]", "body: Input should be an object"),
        (b"null", "body: Input should be an object"),
    ],
)
async def test_empty_non_json_and_non_utf8_bodies_are_422(
    client: httpx.AsyncClient, body: bytes, expected: str
) -> None:
    response = await client.post("/predict", content=body, headers=JSON)
    assert response.status_code == 422
    assert messages(response).startswith(expected)


async def test_many_invalid_records_are_reported_without_flooding_the_response(
    client: httpx.AsyncClient, category_feature: dict[str, Any]
) -> None:
    bad = {"records": [{category_feature["name"]: "Atlantis"}] * 200}
    response = await client.post("/predict/batch", json=bad)
    assert response.status_code == 422
    detail = response.json()["detail"]
    # As many as fit the size bound (a long list of allowed categories fits fewer), then
    # one entry counting the rest.
    shown = len(detail) - 1
    assert 1 <= shown <= errors.MAX_REPORTED_ERRORS
    assert len(response.content) <= MAX_ERROR_BODY_BYTES
    assert detail[0]["msg"].startswith(f"records[0].{category_feature['name']}: ")
    assert detail[-1]["msg"] == f"body: {200 - shown} more errors not shown"


async def test_batch_without_records_or_with_none_is_rejected(client: httpx.AsyncClient) -> None:
    missing = await client.post("/predict/batch", json={})
    assert missing.status_code == 422
    assert messages(missing) == "records: Field required"
    empty = await client.post("/predict/batch", json={"records": []})
    assert empty.status_code == 422
    assert messages(empty).startswith("records: List should have at least 1 item")


async def test_batch_over_the_limit_is_rejected(client: httpx.AsyncClient, settings: Any) -> None:
    too_many: dict[str, Any] = {"records": [{}] * (settings.max_batch_records + 1)}
    response = await client.post("/predict/batch", json=too_many)
    assert response.status_code == 422
    assert messages(response).startswith(
        f"records: List should have at most {settings.max_batch_records} items"
    )


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/" + "z" * 8000]
)
async def test_body_not_declared_as_json_is_415_without_echoing_the_content_type(
    client: httpx.AsyncClient, example: dict[str, Any], content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/predict", content=json.dumps(example), headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert len(response.content) < 512
    assert "zzzz" not in response.text


async def test_body_over_the_limit_is_413_by_content_length(
    client: httpx.AsyncClient, settings: Any
) -> None:
    body = b'{"island": "' + b"x" * settings.max_body_bytes + b'"}'
    response = await client.post("/predict", content=body, headers=JSON)
    assert response.status_code == 413
    assert str(settings.max_body_bytes) in response.json()["detail"]
    assert "x-model-version" in response.headers


async def test_streamed_body_over_the_limit_is_413_without_content_length(
    app: FastAPI, settings: Any
) -> None:
    """A chunked upload declares no length; the limit counts bytes as they arrive and stops
    reading at the limit instead of buffering the rest."""
    chunk = b" " * 65536
    chunks_needed = settings.max_body_bytes // len(chunk) + 2
    sent = 0
    messages_out: list[Message] = []

    async def receive() -> Message:
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < chunks_needed * 10}

    async def send(message: Message) -> None:
        messages_out.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("service", 80),
        "state": {},
    }
    await app(scope, receive, send)
    assert messages_out[0]["type"] == "http.response.start"
    assert messages_out[0]["status"] == 413
    assert sent <= chunks_needed  # stopped at the limit, did not read all ten times more


async def test_error_responses_never_echo_input_or_leak_internals(
    client: httpx.AsyncClient, category_feature: dict[str, Any]
) -> None:
    marker = "zz-secret-marker-zz"
    response = await client.post("/predict", json={category_feature["name"]: marker, marker: 1})
    assert response.status_code == 422
    assert marker not in messages(response).replace(f"{marker}: ", "", 1)
    for issue in response.json()["detail"]:
        assert set(issue) == {"loc", "msg", "type"}
    assert "Traceback" not in response.text


# --- failures inside the service are 500s without details, and logged ------------------


class FailingPredictor:
    backend = "failing"

    def predict_proba(self, columns: dict[str, list[Any]]) -> np.ndarray:
        raise RuntimeError("model exploded: internal detail")


class WrongShapePredictor:
    backend = "wrong-shape"

    def predict_proba(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return np.full((1, 1), 0.5)


@pytest.mark.parametrize("predictor", [FailingPredictor(), WrongShapePredictor()])
async def test_predictor_failure_is_a_logged_500_without_details(
    settings: Any, example: dict[str, Any], caplog: pytest.LogCaptureFixture, predictor: Any
) -> None:
    from app.factory import create_app

    app = create_app(settings, predictor=predictor)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        with caplog.at_level(logging.ERROR, logger="app.requests"):
            response = await http.post("/predict", content=json.dumps(example), headers=JSON)
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json() == {"detail": f"internal server error (request id {request_id})"}
    assert response.headers["x-model-version"] == app.state.service.model_version
    assert "exploded" not in response.text
    (record,) = [r for r in caplog.records if r.name == "app.requests"]
    assert record.status == 500  # type: ignore[attr-defined]
    assert record.request_id == request_id  # type: ignore[attr-defined]
    assert record.exc_info is not None


# --- the event loop stays free ----------------------------------------------------------


async def test_health_answers_while_a_large_batch_is_predicted(
    settings: Any, example: dict[str, Any]
) -> None:
    """The batch blocks in the model thread until the test releases it; /health must answer
    meanwhile. Answering a body this large on the event loop would deadlock here."""
    import threading

    import anyio

    from app.factory import create_app
    from app.predictor import load_predictor

    real = load_predictor(settings.model_dir, _metadata(settings), "sklearn")
    started, release = threading.Event(), threading.Event()
    records = [example] * settings.max_batch_records
    body = json.dumps({"records": records})
    assert len(body) > settings.inline_max_bytes

    class BlockingPredictor:
        backend = "blocking"

        def held(self, answer: Any, columns: dict[str, list[Any]]) -> np.ndarray:
            if len(columns[next(iter(columns))]) == len(records):  # the batch, not the warm-up
                started.set()
                if not release.wait(10):
                    raise TimeoutError("never released")
            result: np.ndarray = answer(columns)
            return result

        def predict_proba(self, columns: dict[str, list[Any]]) -> np.ndarray:
            return self.held(real.predict_proba, columns)

        def predict(self, columns: dict[str, list[Any]]) -> np.ndarray:
            return self.held(real.predict, columns)

    app = create_app(settings, predictor=BlockingPredictor())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        results: dict[str, int] = {}

        async def predict() -> None:
            response = await http.post("/predict/batch", content=body, headers=JSON)
            results["predict"] = response.status_code

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(predict)
            await anyio.to_thread.run_sync(started.wait, 10)
            health = await http.get("/health")
            assert health.status_code == 200
            assert "predict" not in results  # still predicting
            release.set()
        assert results["predict"] == 200


@pytest.mark.parametrize(
    ("path", "records", "on_the_loop"),
    [("/predict", None, True), ("/predict/batch", 2, True), ("/predict/batch", 1000, False)],
)
async def test_small_bodies_are_answered_on_the_event_loop_large_ones_on_the_model_thread(
    settings: Any,
    example: dict[str, Any],
    path: str,
    records: int | None,
    on_the_loop: bool,
) -> None:
    import threading

    from app.factory import create_app
    from app.predictor import load_predictor

    real = load_predictor(settings.model_dir, _metadata(settings), "auto")
    threads: list[threading.Thread] = []

    class RecordingPredictor:
        backend = "recording"

        def predict_proba(self, columns: dict[str, list[Any]]) -> np.ndarray:
            threads.append(threading.current_thread())
            return real.predict_proba(columns)

        def predict(self, columns: dict[str, list[Any]]) -> np.ndarray:
            threads.append(threading.current_thread())
            return real.predict(columns)

    app = create_app(settings, predictor=RecordingPredictor())
    body = json.dumps(example if records is None else {"records": [example] * records})
    assert (len(body) <= settings.inline_max_bytes) == on_the_loop
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            threads.clear()  # the warm-up ran on the model thread
            response = await http.post(path, content=body, headers=JSON)
    assert response.status_code == 200
    (thread,) = threads
    assert (thread is threading.current_thread()) == on_the_loop
    assert thread.name.startswith("model") != on_the_loop


def _metadata(settings: Any) -> Any:
    from app.artifacts import load_metadata

    return load_metadata(settings.model_dir)


# --- health, readiness, model, metrics, docs --------------------------------------------


async def test_health_and_readiness_after_warm_up(
    client: httpx.AsyncClient, metadata: dict[str, Any]
) -> None:
    for path, status in (("/health", "ok"), ("/ready", "ready")):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": status, "model_version": metadata["model_version"]}


async def test_not_ready_until_the_warm_up_prediction(settings: Any) -> None:
    from app.factory import create_app

    app = create_app(settings)  # lifespan not run: no warm-up yet
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        assert (await http.get("/health")).status_code == 200
        response = await http.get("/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "warming up"


async def test_model_reports_provenance_metrics_and_schema(
    client: httpx.AsyncClient, metadata: dict[str, Any]
) -> None:
    response = await client.get("/model")
    assert response.status_code == 200
    model = response.json()
    for key in (
        "model_version",
        "model_sha256",
        "classes",
        "library_versions",
        "input_schema",
        "target",
    ):
        assert model[key] == metadata[key], key
    assert model["backend"] in {"sklearn", "onnx"}
    assert model["metrics"] is None or "model" in model["metrics"]
    assert model["limits"]["max_batch_records"] >= 1


async def test_model_reports_the_deployed_revision_from_git_revision(
    model_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.factory import create_app
    from app.settings import Settings

    monkeypatch.setenv("GIT_REVISION", "0123456789abcdef0123456789abcdef01234567")
    app = create_app(Settings(model_dir=model_dir))
    async with in_process(app) as http:
        model = (await http.get("/model")).json()
    assert model["deployed_revision"] == "0123456789abcdef0123456789abcdef01234567"


async def test_metrics_count_requests_errors_and_predictions(
    client: httpx.AsyncClient, metadata: dict[str, Any], example: dict[str, Any], task: str
) -> None:
    version = metadata["model_version"]
    before = (await client.get("/metrics")).text
    batch = await client.post("/predict/batch", json={"records": [example] * 7})
    predicted = batch.json()["predictions"][0]["prediction"]
    await client.post("/predict", json={"colour": "blue"})
    after = (await client.get("/metrics")).text

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    # Every sample by this model's version: other tests' apps share the process's registry.
    answered = {"route": "/predict/batch", "status": "200", "model_version": version}
    assert delta("http_requests_total", **answered) == 1
    assert delta("http_request_duration_seconds_count", **answered) == 1
    refused = {"route": "/predict", "kind": "client", "model_version": version}
    assert delta("http_request_errors_total", **refused) == 1
    if task == "regression":  # per bin of the training predictions (test_regression.py)
        assert delta("model_prediction_bin_total", model_version=version) == 7
    else:
        by_class = {"predicted_class": predicted, "model_version": version}
        assert delta("model_predictions_total", **by_class) == 7
    assert delta("model_batch_records_count", model_version=version) == 1
    backend = (await client.get("/model")).json()["backend"]
    assert sample(after, "model_info", model_version=version, backend=backend) == 1


async def test_every_response_carries_model_version_and_request_id(
    client: httpx.AsyncClient, metadata: dict[str, Any]
) -> None:
    for method, path in (("GET", "/health"), ("GET", "/nowhere"), ("POST", "/predict")):
        response = await client.request(method, path)
        assert response.headers["x-model-version"] == metadata["model_version"], path
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), path


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {
                "X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678",
                "X-Request-Id": "client-id",
            },
            "Root=1-67891233-abcdef012345678912345678",
        ),
        ({"X-Request-Id": "client-id-42"}, "client-id-42"),
    ],
)
async def test_request_id_comes_from_the_load_balancer_then_the_client(
    client: httpx.AsyncClient, headers: dict[str, str], expected: str
) -> None:
    response = await client.get("/health", headers=headers)
    assert response.headers["x-request-id"] == expected


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-Id": 'x" injected=1 <br>'})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_generated_request_ids_are_unique_within_and_across_forked_workers() -> None:
    """gunicorn forks its workers from one master: each must draw its own id prefix."""
    import os

    from app.middleware import RequestIds

    ids = RequestIds()
    before_fork = ids.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, ids.next().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = [ids.next() for _ in range(3)]
    for rid in (before_fork, child, *parent):
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert len({before_fork, child, *parent}) == 5
    assert child[:16] != parent[0][:16]
    assert parent[0][:16] == before_fork[:16]


async def test_each_request_is_logged_once_with_its_context(
    client: httpx.AsyncClient,
    metadata: dict[str, Any],
    example: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="app.requests"):
        await client.post(
            "/predict", content=json.dumps(example), headers={**JSON, "X-Request-Id": "log-test-1"}
        )
    (record,) = [r for r in caplog.records if r.name == "app.requests"]
    fields = vars(record)
    assert fields["request_id"] == "log-test-1"
    assert (fields["method"], fields["path"], fields["status"]) == ("POST", "/predict", 200)
    assert fields["model_version"] == metadata["model_version"]
    assert fields["latency_ms"] > 0


async def test_openapi_examples_work_as_written(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    tried = 0
    for path in ("/predict", "/predict/batch"):
        content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert content["schema"]["$ref"].rsplit("/", 1)[1] in document["components"]["schemas"]
        for example in content["examples"].values():
            response = await client.post(path, json=example["value"])
            assert response.status_code == 200, (path, example, response.text)
            tried += 1
    assert tried >= 3


async def test_docs_pages_are_served_only_when_api_docs_is_on(
    client: httpx.AsyncClient, model_dir: Any
) -> None:
    from app.factory import create_app
    from app.settings import Settings

    # Off by default: the pages load their scripts from a CDN.
    assert (await client.get("/docs")).status_code == 404
    assert (await client.get("/redoc")).status_code == 404
    app = create_app(Settings(model_dir=model_dir, api_docs=True))
    async with in_process(app) as http:
        docs = await http.get("/docs")
        redoc = await http.get("/redoc")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert redoc.status_code == 200


async def test_a_feature_marked_not_nullable_must_be_sent(
    model_dir: Any, tmp_path: Any, category_feature: dict[str, Any], example: dict[str, Any]
) -> None:
    """Training marks every imputed feature nullable; the schema honours one that is not."""
    import shutil

    from app.factory import create_app
    from app.settings import Settings

    copy = tmp_path / "data"
    shutil.copytree(model_dir, copy)
    raw = json.loads((copy / "model_metadata.json").read_text())
    for feature in raw["input_schema"]["features"]:
        if feature["name"] == category_feature["name"]:
            feature["nullable"] = False
    (copy / "model_metadata.json").write_text(json.dumps(raw))
    app = create_app(Settings(model_dir=copy))
    name = category_feature["name"]
    async with in_process(app) as http:
        omitted = await http.post("/predict", json={k: v for k, v in example.items() if k != name})
        null = await http.post("/predict", json={**example, name: None})
        complete = await http.post("/predict", json=example)
    assert omitted.status_code == 422
    assert messages(omitted) == f"{name}: Field required"
    assert null.status_code == 422
    assert messages(null).startswith(f"{name}: Input should be")
    assert complete.status_code == 200
