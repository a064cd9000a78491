"""The real server: the Dockerfile's command and working directory, over real HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from app import auth
from bench import imagecmd, procs
from container import dockerfile

from .conftest import BATCH_ENCODINGS, sample

pytestmark = pytest.mark.slow

START_TIMEOUT = 60.0


@dataclass
class Server(procs.LoopbackClient):
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    home: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


# Helpers over a server's port and output: test_http.py runs some of these tests against the
# container, whose server is another class.


def log_lines(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.output().splitlines() if line.strip()]


def metric(server: Server, name: str, **labels: str) -> float:
    """Sample `name` summed over every worker and every label set that holds `labels`."""
    return sample(server.get("/metrics")[1].decode(), name, **labels)


def request_lines(
    server: Server, rid: str, count: int = 1, wait: float = 10.0
) -> list[dict[str, Any]]:
    """The request log lines whose request id starts with `rid`, once `count` are written:
    each worker writes its line after the response is sent, so a moment late and in any
    order. What is absent from the log is looked for only after these lines are in."""
    deadline = time.monotonic() + wait
    while True:
        # Only the lines naming `rid` are parsed: a container's log may hold others.
        mentioned = [json.loads(text) for text in server.output().splitlines() if rid in text]
        found = [
            line
            for line in mentioned
            if line.get("logger") == "app.requests" and line["request_id"].startswith(rid)
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@contextlib.contextmanager
def serving(tmp: Path, model_dir: Path, **env: str) -> Iterator[Server]:
    """The image's command on a free port, once it is ready; stopped on leaving."""
    port = procs.free_port()
    argv, cwd = procs.service_command()
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    environment = procs.tool_env(
        {
            "SERVICE_BIND": f"127.0.0.1:{port}",
            "SERVICE_MODEL_DIR": str(model_dir),
            "SERVICE_WORKERS": "2",
            # gunicorn >= 25 would put a control socket under $HOME; the config disables it.
            "HOME": str(home),
            **env,
        }
    )
    environment.pop("XDG_RUNTIME_DIR", None)
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp / "server.log"
    with procs.running(argv, cwd, environment, log) as process:
        server = Server(process, port, log, home)
        try:
            procs.wait_ok(process, port, "GET", "/ready", timeout=START_TIMEOUT)
        except (RuntimeError, TimeoutError) as error:
            pytest.fail(f"{error}:\n{server.output()}")
        yield server


# The EMF namespace and Service dimension, set as the deployment sets them.
NAMESPACE = "Template/ServerTest"
SERVICE_NAME = "server-test"


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(
        tmp_path_factory.mktemp("server"),
        model_dir,
        SERVICE_METRICS_NAMESPACE=NAMESPACE,
        SERVICE_NAME=SERVICE_NAME,
    ) as running:
        yield running


def workers(server: Server) -> list[int]:
    return sorted(child.pid for child in psutil.Process(server.process.pid).children())


def test_predict_and_batch_over_http(
    server: Server, example: dict[str, Any], metadata: dict[str, Any], task: str
) -> None:
    status, single = server.post("/predict", example)
    assert status == 200
    assert single["model_version"] == metadata["model_version"]
    status, batch = server.post("/predict/batch", {"records": [example, {}, example]})
    assert status == 200
    repeated = [p["prediction"] for p in batch["predictions"]][0::2]
    if task == "regression":
        assert math.isfinite(single["prediction"])
        assert repeated == pytest.approx([single["prediction"]] * 2, rel=1e-12)
    else:
        assert single["prediction"] in metadata["classes"]
        assert repeated == [single["prediction"]] * 2
    status, error = server.post("/predict", {"x": 1})
    assert status == 422
    assert error["detail"][0]["msg"].startswith("x: ")


def test_responses_name_the_model_version_but_not_the_server_software(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    with contextlib.closing(connection):
        connection.request("GET", "/health")
        response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("x-model-version")
    assert response.getheader("server") is None


def test_health_ready_and_model_over_http(server: Server, metadata: dict[str, Any]) -> None:
    assert server.get("/health")[0] == 200
    assert server.get("/ready")[0] == 200
    status, payload = server.get("/model")
    assert status == 200
    assert json.loads(payload)["model_version"] == metadata["model_version"]


def test_metrics_sum_every_workers_requests(server: Server, example: dict[str, Any]) -> None:
    """Each request opens a new connection, so both workers answer some; the exposition
    must still count every one, whichever worker serves /metrics."""

    def count() -> float:
        return metric(server, "http_requests_total", route="/predict", status="200")

    before = count()
    run, body = uuid.uuid4().hex, json.dumps(example).encode()
    for _ in range(40):
        sent = procs.request(server.port, "POST", "/predict", body, headers={"X-Request-Id": run})
        assert sent[0] == 200
    # A request is counted as its log line is written, just after its answer.
    assert len(request_lines(server, run, 40)) == 40
    assert count() - before == 40


def test_logs_are_json_lines_with_request_context(server: Server, example: dict[str, Any]) -> None:
    rid = f"logs-{uuid.uuid4().hex}"
    body = json.dumps(example).encode()
    procs.request(server.port, "POST", "/predict", body, headers={"X-Request-Id": rid})
    (line,) = request_lines(server, rid)
    assert {"request_id", "method", "path", "status", "latency_ms", "model_version"} <= set(line)


def test_no_control_socket_is_created(server: Server) -> None:
    assert not list(server.home.rglob("*.ctl"))


def test_killed_worker_is_replaced_and_service_keeps_answering(
    server: Server, example: dict[str, Any]
) -> None:
    deadline = time.monotonic() + 30
    # Ready as soon as one worker answers: the other may still be booting.
    while len(before := workers(server)) != 2:
        assert time.monotonic() < deadline, before
        time.sleep(0.05)
    os.kill(before[0], signal.SIGKILL)
    while time.monotonic() < deadline:
        now = workers(server)
        if len(now) == 2 and before[0] not in now:
            break
        # The surviving worker answers throughout.
        assert server.post("/predict", example)[0] == 200
        time.sleep(0.05)
    else:
        pytest.fail(f"worker {before[0]} not replaced: {workers(server)}")
    while server.get("/ready")[0] != 200:
        time.sleep(0.05)
    for _ in range(10):
        assert server.post("/predict", example)[0] == 200


def test_sigterm_lets_the_in_flight_request_finish_then_exits_zero(
    model_dir: Path, tmp_path: Path, example: dict[str, Any]
) -> None:
    """A large batch whose last byte arrives after SIGTERM: the request is in flight when
    the signal lands, and its prediction runs during the shutdown. It must complete with
    200, and the master must exit 0 within graceful_timeout."""
    records = 20000
    graceful = 20
    with serving(
        tmp_path,
        model_dir,
        SERVICE_MAX_BATCH_RECORDS=str(records),
        SERVICE_MAX_BODY_BYTES=str(64 * 1024 * 1024),
        SERVICE_GRACEFUL_TIMEOUT_SECONDS=str(graceful),
    ) as server:
        body = json.dumps({"records": [example] * records}).encode()
        head = (
            f"POST /predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as connection:
            # A first request on the same keep-alive connection proves a worker owns it...
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert procs.read_response(connection)[0] == 200
            # ...so this head is parsed at once and the request is in flight, awaiting its body.
            connection.sendall(head + body[:-1])
            time.sleep(0.5)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            connection.sendall(body[-1:])
            status, _, payload = procs.read_response(connection)
        assert status == 200, payload[:500]
        assert len(json.loads(payload)["predictions"]) == records
        assert server.process.wait(graceful + 5) == 0
        assert time.monotonic() - signalled < graceful


# --- a model that must not be served stops the service --------------------------------


def broken(model_dir: Path, tmp: Path, how: str) -> Path:
    copy = tmp / how
    shutil.copytree(model_dir, copy)
    metadata_path = copy / "model_metadata.json"
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    if how == "missing-model":
        (copy / "model.joblib").unlink()
    elif how == "altered-model":
        with (copy / "model.joblib").open("r+b") as handle:
            handle.seek(100)
            handle.write(b"\x00corrupted\x00")
    elif how == "wrong-sha256":
        metadata["model_sha256"] = "f" * 64
    elif how == "other-sklearn":
        metadata["library_versions"]["scikit-learn"] = "0.24.2"
    elif how == "missing-metadata":
        metadata_path.unlink()
        return copy
    elif how == "malformed-metadata":
        del metadata["input_schema"]["features"][0]["maximum"]
    elif how == "foreign-profile":
        profile_path = copy / "reference_profile.json"
        profile = json.loads(profile_path.read_text(encoding="utf-8"))
        profile_path.write_text(json.dumps({**profile, "model_sha256": "e" * 64}), "utf-8")
    elif how.startswith("model-file-"):
        # The intact model, moved out of the model directory and named from inside it: the
        # hash matches, so only the path check stands between it and unpickling.
        outside = tmp / f"{how}.joblib"
        (copy / "model.joblib").rename(outside)
        if how == "model-file-parent":
            metadata["model_file"] = f"../{outside.name}"
        elif how == "model-file-absolute":
            metadata["model_file"] = str(outside)
        else:
            (copy / "model.joblib").symlink_to(outside)
    metadata_path.write_text(json.dumps(metadata), encoding="utf-8")
    return copy


REFUSALS = {
    "missing-model": r"model file \S+model\.joblib is missing",
    "altered-model": r"has sha256 [0-9a-f]{64}, but model_metadata\.json records",
    "wrong-sha256": r"but model_metadata\.json records f{64}",
    "other-sklearn": r"trained with scikit-learn 0\.24\.2 but \S+ is installed",
    "missing-metadata": r"model metadata \S+ is missing",
    "malformed-metadata": r"input_schema\.features\[0\]: a number needs a minimum and a maximum",
    "foreign-profile": r"reference_profile\.json describes model e{64}.* belongs to another model",
    "model-file-parent": r"model_file '\.\./model-file-parent\.joblib' resolves to \S+, outside",
    "model-file-absolute": r"model_file '/\S+/model-file-absolute\.joblib' resolves to \S+",
    "model-file-symlink": r"model_file 'model\.joblib' resolves to \S+model-file-symlink\.joblib, "
    r"outside the model directory",
}


def launch(model_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    """The image's command on a free port, its output piped: for a start that must fail."""
    argv, cwd = procs.service_command()
    bind = f"127.0.0.1:{procs.free_port()}"
    environment = procs.tool_env({"SERVICE_BIND": bind, "SERVICE_MODEL_DIR": str(model_dir), **env})
    return subprocess.Popen(
        argv, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def test_each_integrity_failure_stops_the_service_with_one_clear_line(
    model_dir: Path, tmp_path: Path
) -> None:
    launched = {how: launch(broken(model_dir, tmp_path, how)) for how in REFUSALS}
    outputs = {}
    deadline = time.monotonic() + 60
    try:
        for how, process in launched.items():
            try:
                wait = max(1.0, deadline - time.monotonic())
                outputs[how] = process.communicate(timeout=wait)[0].decode()
            except subprocess.TimeoutExpired:
                outputs[how] = "(still running: the model was served)"
    finally:
        # Every one, even after a failure: a service that did start must not outlive the test.
        for process in launched.values():
            procs.stop(process)
    for how, output in outputs.items():
        assert launched[how].returncode == 78, (how, output)
        lines = [json.loads(line) for line in output.splitlines() if line.strip()]
        critical = [line for line in lines if line["level"] == "critical"]
        assert len(critical) == 1, (how, lines)
        assert critical[0]["message"].startswith("refusing to start: ")
        assert re.search(REFUSALS[how], critical[0]["message"]), (how, critical[0]["message"])
        assert not any("Traceback" in line["message"] for line in lines), how
        assert not any("Booting worker" in line["message"] for line in lines), how


def test_health_check_command_exits_0_against_the_running_server(server: Server) -> None:
    """The image's HEALTHCHECK (and ECS's) command, pointed where this server binds."""
    command = dockerfile.read(imagecmd.DOCKERFILE).require_healthcheck()
    completed = subprocess.run(
        command,
        cwd=imagecmd.SERVING_DIR,
        env=procs.tool_env({"SERVICE_BIND": f"127.0.0.1:{server.port}"}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


# --- CloudWatch EMF in the request lines; no drift counted without a profile -----------


def test_every_request_line_is_an_emf_document_with_the_contracts_metrics(
    server: Server,
    example: dict[str, Any],
    category_feature: dict[str, Any],
    assert_emf: Callable[[dict[str, Any]], None],
    task: str,
) -> None:
    exchanges = [
        ("POST", "/predict", example, 200),
        ("POST", "/predict/batch", {"records": [example, {}, example]}, 200),
        ("POST", "/predict", {**example, "made_up": 1}, 422),
        ("POST", "/predict", {**example, category_feature["name"]: "Atlantis"}, 422),
        ("GET", "/health", None, 200),
        ("GET", "/nowhere", None, 404),
    ]
    run = uuid.uuid4().hex
    for index, (method, path, body, expected) in enumerate(exchanges):
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-Request-Id": f"{run}-{index}"}
        assert procs.request(server.port, method, path, data, headers=headers)[0] == expected
    by_id = {line["request_id"]: line for line in request_lines(server, run, len(exchanges))}
    lines = [by_id[f"{run}-{index}"] for index in range(len(exchanges))]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        (method, path, status) for method, path, _, status in exchanges
    ]
    for line in lines:
        assert_emf(line)
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [["Service"], ["Service", "ModelVersion"]]
        assert (line["Service"], line["ModelVersion"]) == (SERVICE_NAME, line["model_version"])
        names = [metric["Name"] for metric in directive["Metrics"]]
        assert len(names) == len(set(names))
        assert line["Requests"] == 1
        assert line[f"Status{line['status'] // 100}xx"] == 1
        assert line["Latency"] == line["latency_ms"]
    single, batch, unknown, unseen, _, not_found = lines
    assert single["RecordsScored"] == 1
    assert "BatchRecords" not in single
    assert batch["RecordsScored"] == batch["BatchRecords"] == 3
    # A class's count, or a regressor's per bin of the training predictions.
    counted = "PredictionBin_" if task == "regression" else "Predicted_"
    assert sum(v for k, v in batch.items() if k.startswith(counted)) == 3
    assert unknown["ValidationErrors"] == unknown["ValidationErrors_unknown_field"] == 1
    name = category_feature["name"]
    assert unseen[f"UnseenCategory_{name}"] == unseen[f"ValidationErrors_{name}"] == 1
    assert "RecordsScored" not in unseen
    assert not_found["Status4xx"] == 1


def test_without_a_profile_the_service_starts_warns_once_and_counts_no_drift(
    model_dir: Path, tmp_path: Path, example: dict[str, Any], number_feature: dict[str, Any]
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(model_dir, copy)
    (copy / "reference_profile.json").unlink()
    with serving(tmp_path, copy) as server:
        outside = {**example, number_feature["name"]: number_feature["maximum"]}
        assert server.post("/predict", outside)[0] == 200
        assert server.post("/predict", {**example, "island": "Atlantis"})[0] == 422
        drift = r"^model_(input_\w+|records_out_of_range)_total\{"
        assert not re.search(drift, server.get("/metrics")[1].decode(), re.MULTILINE)
        assert json.loads(server.get("/model")[1])["reference_profile"] is None
        warnings = [line for line in log_lines(server) if "reference profile" in line["message"]]
        assert [line["level"] for line in warnings] == ["warning"]


# --- API keys, as the deployment sets them ---------------------------------------------


def test_api_keys_over_http_refuse_without_and_accept_each_key_never_logging_one(
    model_dir: Path, tmp_path: Path, example: dict[str, Any]
) -> None:
    keys = {"alpha": auth.new_key(), "beta": auth.new_key()}
    wrong = auth.new_key()
    with serving(
        tmp_path, model_dir, SERVICE_API_KEYS=",".join(f"{n}:{k}" for n, k in keys.items())
    ) as server:
        single = json.dumps(example).encode()
        batches = [
            (content_type, encode([example, example]))
            for content_type, encode in BATCH_ENCODINGS.values()
        ]

        run = uuid.uuid4().hex

        def answers(headers: dict[str, str]) -> list[int]:
            headers = {**headers, "X-Request-Id": run}
            statuses = [procs.request(server.port, "POST", "/predict", single, headers=headers)[0]]
            for content_type, body in batches:
                sent = {**headers, "Content-Type": content_type}
                statuses.append(
                    procs.request(server.port, "POST", "/predict/batch", body, headers=sent)[0]
                )
            return statuses

        everything = 1 + len(batches)
        assert answers({}) == [401] * everything
        assert answers({"Authorization": f"Bearer {wrong}"}) == [401] * everything
        assert answers({"Authorization": f"Bearer {keys['alpha']}"}) == [200] * everything
        assert answers({"X-API-Key": keys["beta"]}) == [200] * everything
        assert server.get("/metrics")[0] == 401
        assert server.get("/ready")[0] == 200
        named = [line.get("api_key") for line in request_lines(server, run, 4 * everything)]
        assert named.count("alpha") == named.count("beta") == everything
        output = server.output()
        for key in (*keys.values(), wrong):
            assert key not in output


def test_a_short_api_key_stops_the_service_with_one_line_that_does_not_quote_it(
    model_dir: Path,
) -> None:
    short = "s3cr3t-but-far-too-short"
    process = launch(model_dir, SERVICE_API_KEYS=f"ci:{short}")
    try:
        output = process.communicate(timeout=60)[0].decode()
    finally:
        procs.stop(process)
    assert process.returncode == 78, output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    (critical,) = [line for line in lines if line["level"] == "critical"]
    assert critical["message"].startswith("refusing to start: SERVICE_API_KEYS: key 'ci' is 24")
    assert short not in output
