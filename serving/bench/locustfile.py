"""Load test for any deployment of the service: `make load-test URL=http://host:port`.

Each simulated user sends valid random records, built from the input schema of the model
this checkout ships (`serving/app/data/model_metadata.json`: `GET /model` is not public
through the load balancer): mostly single predictions, some small batches, and `/health`.
With `API_KEY` set in the environment (`make load-test URL=... API_KEY=...`), every request
carries it, as deployed clients do. A response other than 200 counts as a failure, so the
summary's failure column is the error rate under load.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

METADATA = Path(__file__).resolve().parents[1] / "app" / "data" / "model_metadata.json"


def random_record(features: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    """A valid record within the range training observed, about one value in ten missing."""
    record: dict[str, Any] = {}
    for feature in features:
        if rng.random() < 0.1:
            record[feature["name"]] = None
        elif feature["type"] == "number":
            bounds = feature.get("observed", feature)
            record[feature["name"]] = round(rng.uniform(bounds["minimum"], bounds["maximum"]), 2)
        else:
            record[feature["name"]] = rng.choice(feature["categories"])
    return record


class ServiceUser(FastHttpUser):
    # Roughly what a client in a request/response loop does; raise the user count for load.
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        metadata = json.loads(METADATA.read_text(encoding="utf-8"))
        self.features: list[dict[str, Any]] = metadata["input_schema"]["features"]
        key = os.environ.get("API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.rng = random.Random()  # noqa: S311 - test data, not secrets

    @task(10)
    def predict(self) -> None:
        self.client.post(
            "/predict",
            json=random_record(self.features, self.rng),
            headers=self.headers,
            name="POST /predict",
        )

    @task(2)
    def predict_batch(self) -> None:
        records = [random_record(self.features, self.rng) for _ in range(self.rng.randint(10, 100))]
        self.client.post(
            "/predict/batch",
            json={"records": records},
            headers=self.headers,
            name="POST /predict/batch",
        )

    @task(1)
    def health(self) -> None:
        self.client.get("/health", name="GET /health")


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _fail_on_errors(environment: Any, **_: Any) -> None:
    """Exit non-zero when any request failed, so the make target can gate on it."""
    if environment.stats.total.fail_ratio > 0:
        environment.process_exit_code = 1
