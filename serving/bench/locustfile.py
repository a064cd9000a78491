"""Load test for any deployment of the service: `make load-test URL=http://host:port`.

Each simulated user reads the input schema from `GET /model` and sends valid random
records: mostly single predictions, some small batches, and the load balancer's health
check. A response other than 200 counts as a failure, so the summary's failure column is
the error rate under load.
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, between, events, task


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
        with self.client.get("/model", name="GET /model", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"GET /model answered {response.status_code}")
                raise RuntimeError("cannot read the input schema from GET /model")
            self.features: list[dict[str, Any]] = response.json()["input_schema"]["features"]
        self.rng = random.Random()  # noqa: S311 - test data, not secrets

    @task(10)
    def predict(self) -> None:
        self.client.post(
            "/predict", json=random_record(self.features, self.rng), name="POST /predict"
        )

    @task(2)
    def predict_batch(self) -> None:
        records = [random_record(self.features, self.rng) for _ in range(self.rng.randint(10, 100))]
        self.client.post("/predict/batch", json={"records": records}, name="POST /predict/batch")

    @task(1)
    def health(self) -> None:
        self.client.get("/health", name="GET /health")


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _fail_on_errors(environment: Any, **_: Any) -> None:
    """Exit non-zero when any request failed, so the make target can gate on it."""
    if environment.stats.total.fail_ratio > 0:
        environment.process_exit_code = 1
