"""The deploy smoke test against a stand-in service on a free loopback port: it passes only
when health, the model version and a real, authenticated prediction are all right, and it
waits (boundedly) while an old version drains. It reads the model from the committed
metadata, never from GET /model, which the load balancer does not forward."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench import procs

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / ".github" / "scripts" / "smoke_test.py"

FEATURES: list[dict[str, Any]] = [
    {"name": "bill_length_mm", "type": "number", "example": 44.5},
    {"name": "island", "type": "category", "example": "Biscoe"},
    {"name": "sex", "type": "category", "example": "male"},
]
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
KEY = "k" * 43


def metadata(version: str) -> dict[str, Any]:
    return {"model_version": version, "classes": CLASSES, "input_schema": {"features": FEATURES}}


@dataclass
class Behaviour:
    """How the stand-in answers; tests change it to simulate each failure."""

    version: str = "abc123def456"
    # Versions answering the first predictions (an old task still in the pool).
    earlier_versions: list[str] = field(default_factory=list)
    # The API key the stand-in requires (None: it requires none).
    key: str | None = KEY
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
        else:
            self.reply(404, {"detail": "not found"}, b.version)

    def do_POST(self) -> None:
        b = self.behaviour
        length = int(self.headers.get("Content-Length", "0"))
        record = json.loads(self.rfile.read(length))
        if b.key is not None and self.headers.get("Authorization") != f"Bearer {b.key}":
            self.reply(401, {"detail": "an API key is required"}, b.version)
            return
        b.predictions.append(record)
        version = b.earlier_versions.pop(0) if b.earlier_versions else b.version
        if b.predict_status != 200:
            self.reply(b.predict_status, {"detail": "model failed"}, b.version)
            return
        self.reply(
            200,
            {
                "prediction": b.label,
                "probability": max(b.probabilities.values()),
                "probabilities": b.probabilities,
                "model_version": version,
            },
            b.header_version or version,
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


def run_smoke(script, base: str, expected: str, timeout: float = 2.0, key: str | None = KEY) -> str:
    smoke = script("smoke_test")
    model = smoke.Expected(expected, {f["name"]: f["example"] for f in FEATURES}, CLASSES)
    version: str = smoke.run(
        base, model, timeout=timeout, interval=0.05, log=lambda _message: None, key=key
    )
    return version


def test_passes_when_the_expected_version_answers_a_real_prediction(script, service):
    base, behaviour = service
    assert run_smoke(script, base, "abc123def456") == "abc123def456"
    # The prediction used the example record from the committed metadata's input schema.
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
        ({"header_version": "999999999999"}, "runs model 999999999999 .X-Model-Version."),
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


@pytest.mark.parametrize(
    ("key", "change", "status"),
    [(None, {}, 401), ("w" * 43, {}, 401), (KEY, {"predict_status": 403}, 403)],
    ids=["no-key", "wrong-key", "forbidden"],
)
def test_a_refused_key_fails_at_once_naming_the_variable_and_never_printing_it(
    script, service, key, change, status
):
    """A refused key stays refused: no retrying it until the timeout (300 s in CI)."""
    base, behaviour = service
    for name, value in change.items():
        setattr(behaviour, name, value)
    smoke = script("smoke_test")
    attempts: list[str] = []
    model = smoke.Expected("abc123def456", {}, CLASSES)
    with pytest.raises(smoke.SmokeTestError, match=f"answered {status}") as raised:
        smoke.run(base, model, timeout=5, interval=0.05, log=attempts.append, key=key)
    assert "SMOKE_TEST_API_KEY" in str(raised.value)
    assert attempts == []  # not retried
    assert KEY not in str(raised.value)
    assert "w" * 43 not in str(raised.value)


@pytest.mark.parametrize(
    ("secret", "key"),
    [(json.dumps({"initial": KEY, "later": "x"}), KEY), (f"ci:{KEY},other:y", KEY)],
    ids=["json", "name-colon-key"],
)
def test_the_first_key_of_the_secret_is_used_in_either_form(script, secret, key):
    assert script("smoke_test").first_key(secret) == key


def test_fails_in_bounded_time_when_nothing_listens(script):
    smoke = script("smoke_test")
    with pytest.raises(smoke.SmokeTestError, match="gave up after"):
        run_smoke(script, f"http://127.0.0.1:{procs.free_port()}", "abc123def456", timeout=0.3)


def cli(*args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMOKE_TEST_API_KEY"}
    if key is not None:
        env["SMOKE_TEST_API_KEY"] = key
    argv = [sys.executable, str(SMOKE), "--interval", "0.05", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_cli_reads_the_url_from_cdk_outputs_and_the_version_from_metadata(service, tmp_path):
    base, _ = service
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps({"PenguinsService": {"ServiceUrl": base + "/", "LogGroup": "x"}}))
    committed = tmp_path / "model_metadata.json"
    committed.write_text(json.dumps(metadata("abc123def456")))
    result = cli("--cdk-outputs", str(outputs), "--metadata", str(committed), "--timeout", "5")
    assert result.returncode == 0, result.stderr
    assert "serves model abc123def456" in result.stdout


def test_cli_exits_1_when_the_deployed_version_is_not_this_commits(service, tmp_path):
    base, _ = service
    committed = tmp_path / "model_metadata.json"
    committed.write_text(json.dumps(metadata("0123456789ab")))
    result = cli("--url", base, "--metadata", str(committed), "--timeout", "0.3")
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


REAL_KEY = "r" * 21 + "S" * 22


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
            # API keys on, as deployed.
            "SERVICE_API_KEYS": f"smoke:{REAL_KEY}",
        }
    )
    log = home / "server.log"
    argv, cwd = procs.service_command()
    url = f"http://127.0.0.1:{port}"
    with procs.running(argv, cwd, env, log) as process:
        # The server listens once the model is loaded; the smoke test retries /health anyway.
        if not procs.wait_listening(port, process, timeout=60):
            pytest.fail(
                f"service not listening within 60 s (exit {process.poll()}): {log.read_text()}"
            )
        yield url


@pytest.mark.slow
def test_make_smoke_test_passes_against_the_real_service(real_service, make_env):
    argv = ["make", "--no-print-directory", "smoke-test", f"URL={real_service}"]
    env = {**make_env, "SMOKE_TEST_API_KEY": REAL_KEY}
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    committed = json.loads((ROOT / "serving/app/data/model_metadata.json").read_text())
    assert f"serves model {committed['model_version']}" in result.stdout
    assert REAL_KEY not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("served_model_dir", ["regression"], indirect=True)
def test_smoke_test_passes_against_a_real_regression_service(real_service, served_model_dir):
    result = cli(
        "--url",
        real_service,
        "--metadata",
        str(served_model_dir / "model_metadata.json"),
        key=REAL_KEY,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metadata = json.loads((served_model_dir / "model_metadata.json").read_text())
    assert f"serves model {metadata['model_version']}" in result.stdout


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"prediction": "151.2"}, "not a number"),
        ({"prediction": True}, "not a number"),
        ({"prediction": None}, "not a number"),
        ({"prediction": float("nan")}, "not a finite number"),
        ({"prediction": float("inf")}, "not a finite number"),
        ({"prediction": 1.5, "probabilities": {}}, "more than a number"),
    ],
)
def test_a_regressors_answer_must_be_a_finite_number_and_nothing_else(script, answer, message):
    smoke = script("smoke_test")
    with pytest.raises(smoke.SmokeTestError, match=message):
        smoke.check_answer({**answer, "model_version": "v"}, [])


def test_a_regressors_number_is_its_answer(script):
    smoke = script("smoke_test")
    assert smoke.check_answer({"prediction": 151.25, "model_version": "v"}, []) == "151.25"
    assert smoke.check_answer({"prediction": 3, "model_version": "v"}, []) == "3"
