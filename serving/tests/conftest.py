"""Fixtures every package's tests share: the trained model the service would serve and its
data (app, bench and container tests all run against it), and moto's S3 server."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from app.artifacts import EXPORT_FILE, METADATA_FILE
from app.settings import DEFAULT_MODEL_DIR, Settings
from bench import procs


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
def task(metadata: dict[str, Any]) -> str:
    """The served model's task: a metadata without one is a classifier's (older files)."""
    return str(metadata.get("task", "classification"))


@pytest.fixture(scope="session")
def export_record(model_dir: Path) -> dict[str, Any]:
    """What the export stage recorded for the served model: its ONNX graph, or why none."""
    path = model_dir / EXPORT_FILE
    if not path.is_file():
        pytest.fail(f"{path} is missing: the `export` stage of `make train` writes it")
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


@pytest.fixture(scope="session")
def fast_path(export_record: dict[str, Any]) -> None:
    """Skips a test of the ONNX fast path when the model has none (an estimator a fork picked
    that skl2onnx cannot convert faithfully): the service then serves the Pipeline."""
    if export_record["status"] != "exported":
        reason = export_record["reason"]
        pytest.skip(f"the export stage found no fast path for this model: {reason}")


@pytest.fixture(scope="session")
def tolerance(export_record: dict[str, Any]) -> float:
    """How far a served probability may be from the Pipeline's: the tolerance the export
    proved the ONNX graph within (a tree ensemble's output is float32); rounding alone when
    the Pipeline serves (no graph, or one that failed its parity check)."""
    if export_record["status"] != "exported":
        return 1e-9
    return float(export_record["parity"]["prepared_data"]["tolerance"])


@pytest.fixture(autouse=True)
def classification_only(request: pytest.FixtureRequest) -> None:
    """Skips a test marked `classification_only("where the regressor's side is tested")`
    when the served model is a regressor, saying so and where."""
    marker = request.node.get_closest_marker("classification_only")
    if marker is None:
        return
    task = request.getfixturevalue("task")
    if task != "classification":
        pytest.skip(
            f"classification only, the model's task is {task}; regression: {marker.args[0]}"
        )


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


@pytest.fixture(scope="module")
def s3(request: pytest.FixtureRequest) -> Iterator[Any]:
    """moto's S3 server on a free loopback port with the test module's BUCKET; a client for
    it, whose `env` holds the variables that point a process (the scorer) at it."""
    import boto3  # only the S3 tests pay for importing it

    port = procs.free_port()
    moto = str(Path(sys.executable).with_name("moto_server"))
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    try:
        if not procs.wait_listening(port, server):
            pytest.fail("moto's S3 server did not start")
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=request.module.BUCKET)
        client.env = env
        yield client
    finally:
        procs.stop(server)


def random_date(first: str, last: str, rng: random.Random) -> str:
    """An ISO date drawn between two ISO dates, as a date feature is sent."""
    low, high = date.fromisoformat(first).toordinal(), date.fromisoformat(last).toordinal()
    return date.fromordinal(rng.randint(low, high)).isoformat()
