"""Check that a deployed service answers with the model this commit ships.

1. ``GET /health`` answers 200.
2. ``GET /model`` reports the expected model version (from ``model_metadata.json``, when the
   file is there) and gives the input schema with an example value per feature.
3. ``POST /predict`` with that example record answers 200 with the same model version in the
   body and in the ``X-Model-Version`` header, and the model's kind of answer: for a classifier
   a probability for each of its classes (summing to 1) and a ``prediction`` that is one of
   them; for a regressor (no classes) a ``prediction`` that is a finite number, and nothing else.

Right after ``cdk deploy`` the old tasks may still be draining behind the load balancer, and a
rollback may be in progress, so every step is retried until ``--timeout`` seconds have passed;
the last failure is then reported and the exit status is 1. Standard library only, so it runs
before (or without) the project's environment.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

OUTPUT_KEY = "ServiceUrl"
REQUEST_TIMEOUT_SECONDS = 10.0


class SmokeTestError(Exception):
    """The service answered, but not as the deployed version should."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except json.JSONDecodeError as error:
            raise SmokeTestError(f"response is not JSON: {self.body[:200]!r}") from error


def request(url: str, payload: Any = None) -> Response:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(  # noqa: S310 - the scheme is checked in service_url()
        url,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_SECONDS) as resp:  # noqa: S310
            return Response(
                resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
            )
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def service_url(url: str | None, outputs_file: Path | None) -> str:
    if not url:
        if outputs_file is None:
            raise SmokeTestError("give --url or --cdk-outputs")
        try:
            stacks = json.loads(outputs_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise SmokeTestError(f"cannot read {outputs_file}: {error}") from error
        found = [
            outputs[OUTPUT_KEY]
            for outputs in stacks.values()
            if isinstance(outputs, dict) and OUTPUT_KEY in outputs
        ]
        if len(found) != 1:
            raise SmokeTestError(
                f"{outputs_file}: expected one stack output {OUTPUT_KEY}, found {len(found)}"
            )
        url = str(found[0])
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SmokeTestError(f"not an http(s) URL: {url!r}")
    return url.rstrip("/")


def expected_version(metadata_file: Path | None) -> str | None:
    if metadata_file is None or not metadata_file.is_file():
        return None
    version = json.loads(metadata_file.read_text(encoding="utf-8")).get("model_version")
    return str(version) if version else None


def check_health(base: str) -> None:
    response = request(f"{base}/health")
    if response.status != 200:
        raise SmokeTestError(f"GET /health answered {response.status}")


def check_model(base: str, expected: str | None) -> tuple[str, dict[str, Any], list[str]]:
    response = request(f"{base}/model")
    if response.status != 200:
        raise SmokeTestError(f"GET /model answered {response.status}")
    info = response.json()
    version = info.get("model_version") if isinstance(info, dict) else None
    if not version:
        raise SmokeTestError("GET /model gave no model_version")
    if expected is not None and version != expected:
        raise SmokeTestError(f"the service runs model {version}, this commit ships {expected}")
    features = (info.get("input_schema") or {}).get("features")
    if not isinstance(features, list) or not features:
        raise SmokeTestError("GET /model gave no input_schema.features")
    record = {}
    for feature in features:
        if not isinstance(feature, dict) or "name" not in feature or "example" not in feature:
            raise SmokeTestError(f"input_schema feature without name or example: {feature}")
        record[feature["name"]] = feature["example"]
    classes = info.get("classes")
    if not isinstance(classes, list):  # empty for a regressor
        raise SmokeTestError("GET /model gave no classes")
    return str(version), record, [str(c) for c in classes]


def check_predict(base: str, version: str, record: dict[str, Any], classes: list[str]) -> str:
    response = request(f"{base}/predict", record)
    if response.status != 200:
        raise SmokeTestError(f"POST /predict answered {response.status}: {response.body[:300]!r}")
    body = response.json()
    if not isinstance(body, dict):
        raise SmokeTestError(f"POST /predict answered {body!r}, not an object")
    if body.get("model_version") != version:
        raise SmokeTestError(
            f"POST /predict was answered by model {body.get('model_version')}, "
            f"GET /model reported {version}"
        )
    header = response.headers.get("x-model-version")
    if header != version:
        raise SmokeTestError(f"X-Model-Version header is {header!r}, expected {version}")
    return check_answer(body, classes)


def check_answer(body: dict[str, Any], classes: list[str]) -> str:
    """The prediction in `body`, checked against the model's kind: a classifier's class with
    its probabilities, or (no classes) a regressor's finite number."""
    label = body.get("prediction")
    if not classes:
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise SmokeTestError(f"predicted {label!r}, not a number")
        if not math.isfinite(label):
            raise SmokeTestError(f"predicted {label!r}, not a finite number")
        if set(body) != {"prediction", "model_version"}:
            raise SmokeTestError(f"a regressor answered more than a number: {sorted(body)}")
        return str(label)
    probabilities = body.get("probabilities")
    if not isinstance(probabilities, dict) or sorted(probabilities) != sorted(classes):
        raise SmokeTestError(f"probabilities {probabilities!r} do not cover the classes {classes}")
    total = sum(float(p) for p in probabilities.values())
    if not math.isclose(total, 1.0, abs_tol=1e-3):
        raise SmokeTestError(f"class probabilities sum to {total}")
    if label not in classes:
        raise SmokeTestError(f"predicted {label!r}, not one of the classes {classes}")
    return str(label)


def run(
    base: str,
    expected: str | None,
    timeout: float,
    interval: float,
    log: Callable[[str], None] = print,
) -> str:
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            check_health(base)
            version, record, classes = check_model(base, expected)
            label = check_predict(base, version, record, classes)
        except (SmokeTestError, OSError) as error:
            # OSError covers refused connections, DNS not yet propagated and timeouts.
            if time.monotonic() + interval > deadline:
                raise SmokeTestError(f"gave up after {attempt} attempts: {error}") from error
            log(f"attempt {attempt}: {error}; retrying in {interval:g}s")
            time.sleep(interval)
            continue
        log(f"ok: {base} serves model {version}; predicted {label!r} for the example record")
        return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the service's base URL")
    parser.add_argument(
        "--cdk-outputs", type=Path, help=f"cdk-outputs.json to read the {OUTPUT_KEY} output from"
    )
    parser.add_argument(
        "--metadata",
        type=Path,
        default=Path("serving/app/data/model_metadata.json"),
        help="model_metadata.json giving the expected version, when present",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between tries")
    args = parser.parse_args(argv)
    try:
        base = service_url(args.url, args.cdk_outputs)
        expected = expected_version(args.metadata)
        print(f"smoke test of {base}; expecting model {expected or '(any: no metadata file)'}")
        run(base, expected, args.timeout, args.interval)
    except SmokeTestError as error:
        print(f"smoke test failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
