"""Check that a deployed service answers with the model this commit ships.

``GET /health``, then ``POST /predict`` with the example record of this commit's
``model_metadata.json`` (each feature's example): the model version, in the ``X-Model-Version``
header and the body, must be this commit's, and the answer the model's kind (``check_answer``).
``GET /model`` is not public through the load balancer, so it is not read.

The API key is ``SMOKE_TEST_API_KEY`` when set, else the first key in the Secrets Manager
secret the stack names in its ``ApiKeysSecretArn`` output, read with the AWS CLI (the deploy
identity may read that one secret); without either, no key is sent. A 401 or 403 fails at once:
waiting does not change the key.

Right after ``cdk deploy`` the old tasks may still be draining behind the load balancer, and a
rollback may be in progress, so every other step is retried until ``--timeout`` seconds have
passed; then the last failure is reported (exit status 1). Standard library only, so it runs
before (or without) the project's environment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

OUTPUT_KEY = "ServiceUrl"
SECRET_OUTPUT_KEY = "ApiKeysSecretArn"  # noqa: S105 - an output name
KEY_VARIABLE = "SMOKE_TEST_API_KEY"
REQUEST_TIMEOUT_SECONDS = 10.0


class SmokeTestError(Exception):
    """The service answered, but not as the deployed version should."""


class KeyRefused(SmokeTestError):
    """The service refused the request's API key, or its lack of one: not retried."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message  # its get() ignores the name's case
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except json.JSONDecodeError as error:
            raise SmokeTestError(f"response is not JSON: {self.body[:200]!r}") from error


@dataclass(frozen=True)
class Expected:
    """What this commit ships, from its model_metadata.json."""

    version: str
    record: dict[str, Any]
    classes: list[str]


def request(url: str, payload: Any = None, api_key: str | None = None) -> Response:
    """GET, or POST `payload` as JSON (urllib posts when there is data)."""
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, data, headers)  # noqa: S310 - service_url() checks the scheme
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_SECONDS) as resp:  # noqa: S310
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


def stack_outputs(outputs_file: Path) -> dict[str, Any]:
    try:
        stacks = json.loads(outputs_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SmokeTestError(f"cannot read {outputs_file}: {error}") from error
    found = [o for o in stacks.values() if isinstance(o, dict) and OUTPUT_KEY in o]
    if len(found) != 1:
        raise SmokeTestError(
            f"{outputs_file}: expected one stack output {OUTPUT_KEY}, found {len(found)}"
        )
    outputs: dict[str, Any] = found[0]
    return outputs


def service_url(url: str | None, outputs_file: Path | None) -> str:
    if not url:
        if outputs_file is None:
            raise SmokeTestError("give --url or --cdk-outputs")
        url = str(stack_outputs(outputs_file)[OUTPUT_KEY])
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SmokeTestError(f"not an http(s) URL: {url!r}")
    return url.rstrip("/")


def expected_model(metadata_file: Path) -> Expected:
    """The version, an example record and the classes of the model this commit ships."""
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SmokeTestError(f"cannot read the model metadata {metadata_file}: {error}") from error
    version = metadata.get("model_version")
    features = (metadata.get("input_schema") or {}).get("features")
    classes = metadata.get("classes")
    if not version or not isinstance(features, list) or not features:
        raise SmokeTestError(f"{metadata_file} has no model_version or input_schema.features")
    record = {}
    for feature in features:
        if not isinstance(feature, dict) or "name" not in feature or "example" not in feature:
            raise SmokeTestError(f"input_schema feature without name or example: {feature}")
        record[feature["name"]] = feature["example"]
    if not isinstance(classes, list):  # empty for a regressor
        raise SmokeTestError(f"{metadata_file} has no classes")
    return Expected(str(version), record, [str(c) for c in classes])


def api_key(outputs_file: Path | None) -> str | None:
    """SMOKE_TEST_API_KEY, else the first key of the stack's API-key secret, else None."""
    if os.environ.get(KEY_VARIABLE):
        return os.environ[KEY_VARIABLE]
    if outputs_file is None:
        return None
    secret = stack_outputs(outputs_file).get(SECRET_OUTPUT_KEY)
    if not secret:
        return None
    command = ["aws", "secretsmanager", "get-secret-value", "--secret-id", str(secret)]
    command += ["--query", "SecretString", "--output", "text"]
    try:
        read = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        # The message names the command's failure, never the secret's value.
        raise SmokeTestError(f"cannot read the API keys from {secret}: {error}") from None
    return first_key(read.stdout.strip())


def first_key(value: str) -> str:
    """The first key of `{"name": "key"}` or `name:key,name:key`."""
    if value.startswith("{"):
        keys = list(json.loads(value).values())
    else:
        keys = [entry.split(":", 1)[1] for entry in value.split(",") if ":" in entry]
    if not keys:
        raise SmokeTestError("the API-key secret holds no key")
    return str(keys[0])


def check_health(base: str) -> None:
    response = request(f"{base}/health")
    if response.status != 200:
        raise SmokeTestError(f"GET /health answered {response.status}")


def check_predict(base: str, expected: Expected, key: str | None) -> str:
    response = request(f"{base}/predict", expected.record, key)
    if response.status in (401, 403):
        raise KeyRefused(
            f"POST /predict answered {response.status} "
            + ("to the API key sent" if key else "without an API key")
            + f": set {KEY_VARIABLE} to a key the service accepts"
        )
    if response.status != 200:
        raise SmokeTestError(f"POST /predict answered {response.status}: {response.body[:300]!r}")
    version, classes = expected.version, expected.classes
    header = response.headers.get("x-model-version")
    if header != version:
        raise SmokeTestError(
            f"the service runs model {header} (X-Model-Version), this commit ships {version}"
        )
    body = response.json()
    if not isinstance(body, dict):
        raise SmokeTestError(f"POST /predict answered {body!r}, not an object")
    if body.get("model_version") != version:
        raise SmokeTestError(
            f"POST /predict body names model {body.get('model_version')}, X-Model-Version {version}"
        )
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
    expected: Expected,
    timeout: float,
    interval: float,
    log: Callable[[str], None] = print,
    key: str | None = None,
) -> str:
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            check_health(base)
            label = check_predict(base, expected, key)
        except KeyRefused:
            raise
        except (SmokeTestError, OSError) as error:
            # OSError covers refused connections, DNS not yet propagated and timeouts.
            if time.monotonic() + interval > deadline:
                raise SmokeTestError(f"gave up after {attempt} attempts: {error}") from error
            log(f"attempt {attempt}: {error}; retrying in {interval:g}s")
            time.sleep(interval)
            continue
        log(
            f"ok: {base} serves model {expected.version}; predicted {label!r} for the "
            "example record"
        )
        return expected.version


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
        help="this commit's model_metadata.json: the expected version and the example record",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between tries")
    args = parser.parse_args(argv)
    try:
        base = service_url(args.url, args.cdk_outputs)
        expected = expected_model(args.metadata)
        key = api_key(args.cdk_outputs)
        print(
            f"smoke test of {base}; expecting model {expected.version}; "
            + ("with an API key" if key else "without an API key")
        )
        run(base, expected, args.timeout, args.interval, key=key)
    except SmokeTestError as error:
        print(f"smoke test failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
