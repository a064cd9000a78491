"""The deploy smoke test against a stand-in service on a free loopback port: it passes only
when health, the model version and a real prediction are all right, and it waits (boundedly)
while an old version drains."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench import procs

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / ".github" / "scripts" / "smoke_test.py"

FEATURES = [
    {"name": "bill_length_mm", "type": "number", "example": 44.5},
    {"name": "island", "type": "category", "example": "Biscoe"},
    {"name": "sex", "type": "category", "example": "male"},
]


@dataclass
class Behaviour:
    """How the stand-in answers; tests change it to simulate each failure."""

    version: str = "abc123def456"
    # Versions answered by the first GET /model calls (an old task still in the pool).
    earlier_versions: list[str] = field(default_factory=list)
    health_failures: int = 0
    predict_status: int = 200
    header_version: str | None = None
    probabilities: dict[str, float] = field(
        default_factory=lambda: {"Adelie": 0.9, "Chinstrap": 0.07, "Gentoo": 0.03}
    )
    label: str = "Adelie"
    predictions: list[dict[str, Any]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, format: str, *args: Any) -> None:  # silence the test output
        pass

    def reply(self, status: int, body: Any, version: str) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Model-Version", version)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        b = self.behaviour
        if self.path == "/health":
            if b.health_failures > 0:
                b.health_failures -= 1
                self.reply(503, {"status": "starting"}, b.version)
            else:
                self.reply(200, {"status": "ok"}, b.version)
        elif self.path == "/model":
            version = b.earlier_versions.pop(0) if b.earlier_versions else b.version
            self.reply(
                200,
                {
                    "model_version": version,
                    "classes": ["Adelie", "Chinstrap", "Gentoo"],
                    "input_schema": {"features": FEATURES},
                },
                version,
            )
        else:
            self.reply(404, {"detail": "not found"}, b.version)

    def do_POST(self) -> None:
        b = self.behaviour
        length = int(self.headers.get("Content-Length", "0"))
        record = json.loads(self.rfile.read(length))
        b.predictions.append(record)
        if b.predict_status != 200:
            self.reply(b.predict_status, {"detail": "model failed"}, b.version)
            return
        self.reply(
            200,
            {
                "prediction": b.label,
                "probability": max(b.probabilities.values()),
                "probabilities": b.probabilities,
                "model_version": b.version,
            },
            b.header_version or b.version,
        )


@pytest.fixture
def service() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    handler = type("BoundHandler", (Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_smoke(script, base: str, expected: str | None, timeout: float = 2.0) -> str:
    smoke = script("smoke_test")
    version: str = smoke.run(
        base, expected, timeout=timeout, interval=0.05, log=lambda _message: None
    )
    return version


def test_passes_when_the_expected_version_answers_a_real_prediction(script, service):
    base, behaviour = service
    assert run_smoke(script, base, "abc123def456") == "abc123def456"
    # The prediction used the example record from the service's own input schema.
    assert behaviour.predictions == [{"bill_length_mm": 44.5, "island": "Biscoe", "sex": "male"}]


def test_waits_for_health_and_for_the_old_version_to_drain(script, service):
    base, behaviour = service
    behaviour.health_failures = 3
    behaviour.earlier_versions = ["000000000000", "000000000000"]
    assert run_smoke(script, base, "abc123def456") == "abc123def456"


def test_fails_when_the_old_version_keeps_answering(script, service):
    base, _ = service
    smoke = script("smoke_test")
    with pytest.raises(smoke.SmokeTestError, match="this commit ships ffffffffffff"):
        run_smoke(script, base, "ffffffffffff", timeout=0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"predict_status": 500}, "POST /predict answered 500"),
        ({"header_version": "999999999999"}, "X-Model-Version header"),
        ({"probabilities": {"Adelie": 0.5, "Chinstrap": 0.2, "Gentoo": 0.1}}, "sum to"),
        ({"probabilities": {"Adelie": 0.9, "Gentoo": 0.1}}, "do not cover the classes"),
        ({"label": "Penguin"}, "not one of the classes"),
    ],
)
def test_fails_on_a_wrong_prediction_answer(script, service, change, message):
    base, behaviour = service
    for key, value in change.items():
        setattr(behaviour, key, value)
    smoke = script("smoke_test")
    with pytest.raises(smoke.SmokeTestError, match=message):
        run_smoke(script, base, "abc123def456", timeout=0.3)


def test_fails_in_bounded_time_when_nothing_listens(script, unused_port):
    smoke = script("smoke_test")
    with pytest.raises(smoke.SmokeTestError, match="gave up after"):
        run_smoke(script, f"http://127.0.0.1:{unused_port}", None, timeout=0.3)


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), "--interval", "0.05", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_cli_reads_the_url_from_cdk_outputs_and_the_version_from_metadata(service, tmp_path):
    base, _ = service
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps({"PenguinsService": {"ServiceUrl": base + "/", "LogGroup": "x"}}))
    metadata = tmp_path / "model_metadata.json"
    metadata.write_text(json.dumps({"model_version": "abc123def456"}))
    result = cli("--cdk-outputs", str(outputs), "--metadata", str(metadata), "--timeout", "5")
    assert result.returncode == 0, result.stderr
    assert "serves model abc123def456" in result.stdout


def test_cli_exits_1_when_the_deployed_version_is_not_this_commits(service, tmp_path):
    base, _ = service
    metadata = tmp_path / "model_metadata.json"
    metadata.write_text(json.dumps({"model_version": "0123456789ab"}))
    result = cli("--url", base, "--metadata", str(metadata), "--timeout", "0.3")
    assert result.returncode == 1
    assert "this commit ships 0123456789ab" in result.stderr


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"Stack": {"Other": "x"}}, "found 0"),
        ({"A": {"ServiceUrl": "http://a"}, "B": {"ServiceUrl": "http://b"}}, "found 2"),
        ({"Stack": {"ServiceUrl": "file:///etc/passwd"}}, "not an http"),
    ],
)
def test_cli_rejects_missing_ambiguous_or_non_http_urls(tmp_path, outputs, message):
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps(outputs))
    result = cli("--cdk-outputs", str(path), "--metadata", str(tmp_path / "none.json"))
    assert result.returncode == 1
    assert message in result.stderr


# Against the real service, started the way the image starts it, so the smoke test is proven
# to agree with the API it checks in production.


@pytest.fixture(scope="module")
def served_model_dir(request: pytest.FixtureRequest) -> Path:
    """The committed model, or the regression fixture's for a test parametrized with
    `served_model_dir="regression"` (indirect)."""
    if getattr(request, "param", None) == "regression":
        directory: Path = request.getfixturevalue("regression_model_dir")
        return directory
    return ROOT / "serving" / "app" / "data"


@pytest.fixture(scope="module")
def real_service(tmp_path_factory: pytest.TempPathFactory, served_model_dir: Path) -> Iterator[str]:
    """The service started as the image starts it (the Dockerfile's CMD, read by the bench's
    helpers) on a free loopback port, stopped by its PID on the way out."""
    data = served_model_dir
    missing = [n for n in ("model.joblib", "model_metadata.json") if not (data / n).is_file()]
    if missing:
        pytest.fail(f"{missing} missing from {data}: run `make train` (or `make dvc-pull`) first")
    port = procs.free_port()
    home = tmp_path_factory.mktemp("home")
    env = procs.tool_env(
        {
            "SERVICE_BIND": f"127.0.0.1:{port}",
            "SERVICE_MODEL_DIR": str(data),
            "SERVICE_WORKERS": "1",
            "HOME": str(home),
        }
    )
    log = home / "server.log"
    argv, cwd = procs.service_command()
    url = f"http://127.0.0.1:{port}"
    with procs.running(argv, cwd, env, log) as process:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"service exited {process.returncode}: {log.read_text()}")
            try:
                # A loopback http:// URL built above.
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"service not healthy within 60 s: {log.read_text()}")
            time.sleep(0.1)
        yield url


@pytest.mark.slow
def test_make_smoke_test_passes_against_the_real_service(real_service):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "--no-print-directory", "smoke-test", f"URL={real_service}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metadata = json.loads((ROOT / "serving/app/data/model_metadata.json").read_text())
    assert f"serves model {metadata['model_version']}" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("served_model_dir", ["regression"], indirect=True)
def test_smoke_test_passes_against_a_real_regression_service(real_service, served_model_dir):
    result = cli("--url", real_service, "--metadata", str(served_model_dir / "model_metadata.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    metadata = json.loads((served_model_dir / "model_metadata.json").read_text())
    assert f"serves model {metadata['model_version']}" in result.stdout


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        ("151.2", "not a number"),
        (True, "not a number"),
        (None, "not a number"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
    ],
)
def test_a_regressors_answer_must_be_a_finite_number(script, prediction, message):
    smoke = script("smoke_test")
    with pytest.raises(smoke.SmokeTestError, match=message):
        smoke.check_answer({"prediction": prediction, "model_version": "v"}, [])


def test_a_regressors_answer_is_a_number_and_nothing_else(script):
    smoke = script("smoke_test")
    assert smoke.check_answer({"prediction": 151.25, "model_version": "v"}, []) == "151.25"
    assert smoke.check_answer({"prediction": 3, "model_version": "v"}, []) == "3"
    with pytest.raises(smoke.SmokeTestError, match="more than a number"):
        smoke.check_answer({"prediction": 1.5, "probabilities": {}, "model_version": "v"}, [])
