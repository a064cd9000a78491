"""The image's life under the engine: a graceful stop, a refused model, another port."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from bench import procs
from deployment.stack.application import build
from tests.deployment.conftest import TRIAL_CONTEXT, with_port

from .conftest import Engine, build_context, built, running

pytestmark = pytest.mark.slow

IN_FLIGHT = 8
RECORDS = 2000
# What ECS gives the container between SIGTERM and SIGKILL (the stack's STOP_TIMEOUT).
STOP_TIMEOUT = 30


def test_stop_lets_eight_in_flight_requests_finish_with_200(
    engine: Engine, image: str, example: dict[str, Any]
) -> None:
    """`<engine> stop` sends SIGTERM as ECS does: requests already in flight, whose bodies
    end only after the signal, all complete with 200, and the container exits 0."""
    env = {
        "SERVICE_MAX_BATCH_RECORDS": str(RECORDS),
        "SERVICE_MAX_BODY_BYTES": str(16 * 1024 * 1024),
    }
    body = json.dumps({"records": [example] * RECORDS}).encode()
    with running(engine, image, env=env) as container:
        head = (
            f"POST /predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        connections = []
        try:
            for _ in range(IN_FLIGHT):
                connection = socket.create_connection(("127.0.0.1", container.port), timeout=60)
                connections.append(connection)
                # A first answer on the connection proves a worker owns it...
                connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert procs.read_response(connection)[0] == 200
                # ...so this request is in flight, awaiting the rest of its body.
                connection.sendall(head + body[:-1])
            time.sleep(0.5)
            stopped: dict[str, Any] = {}
            stopper = threading.Thread(
                target=lambda: stopped.update(
                    result=engine.run("stop", "--time", str(STOP_TIMEOUT), container.name)
                )
            )
            stopper.start()
            time.sleep(1.0)
            for connection in connections:
                connection.sendall(body[-1:])
            results = [procs.read_response(connection) for connection in connections]
        finally:
            for connection in connections:
                connection.close()
        stopper.join(STOP_TIMEOUT + 30)
        assert [status for status, _, _ in results] == [200] * IN_FLIGHT, container.last_lines()
        for _, _, payload in results:
            assert len(json.loads(payload)["predictions"]) == RECORDS
        assert not stopper.is_alive(), "the engine did not stop the container"
        state = container.state()
        assert state["ExitCode"] == 0, container.last_lines()
        assert "SIGTERM" in container.output() or "Shutting down" in container.output()


def test_an_image_whose_model_changed_by_one_byte_exits_78_and_is_never_ready(
    engine: Engine, tmp_path: Path
) -> None:
    context = build_context(tmp_path)
    model = context / "data" / "model.joblib"
    content = bytearray(model.read_bytes())
    content[len(content) // 2] ^= 0x01
    model.write_bytes(bytes(content))
    with built(engine, context) as tampered, running(engine, tampered, ready=False) as container:
        deadline = time.monotonic() + 60
        while container.state().get("Running") and time.monotonic() < deadline:
            try:
                status = container.get("/ready")[0]
            except OSError:
                status = None
            assert status != 200, "a tampered model reported ready"
            time.sleep(0.1)
        state = container.state()
        assert not state.get("Running"), container.last_lines()
        assert state["ExitCode"] == 78, container.last_lines()
        assert re.search(r"refusing to start: .*sha256", container.output()), container.last_lines()


def test_another_port_in_the_dockerfile_gives_a_healthy_container_and_a_matching_stack(
    engine: Engine, tmp_path: Path
) -> None:
    """The port is written in the Dockerfile only (SERVICE_BIND and EXPOSE, which the stack
    checks agree): changed there, the image exposes and serves the new port, its health check
    passes, and the stack synthesized from the same Dockerfile maps the same port."""
    port = 9123
    context = build_context(tmp_path)
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(with_port(dockerfile.read_text(encoding="utf-8"), port), "utf-8")
    with built(engine, context) as tag:
        config = engine.inspect("image", tag)["Config"]
        assert list(config["ExposedPorts"]) == [f"{port}/tcp"]
        with running(engine, tag) as container:
            passed = container.exec("python", "-m", "app.healthcheck")
            assert passed.returncode == 0, passed.stderr
            if engine.is_podman:
                assert engine.run("healthcheck", "run", container.name).returncode == 0

    app = cdk.App(
        context={**TRIAL_CONTEXT, "gitRevision": "0123456789ab"}, outdir=str(tmp_path / "out")
    )
    template = Template.from_stack(build(app, region="eu-west-1", image_directory=context))
    (task,) = template.find_resources("AWS::ECS::TaskDefinition").values()
    (definition,) = task["Properties"]["ContainerDefinitions"]
    assert definition["PortMappings"] == [{"ContainerPort": port, "Protocol": "tcp"}]
    assert definition["HealthCheck"]["Command"] == ["CMD", "python", "-m", "app.healthcheck"]
    (service,) = template.find_resources("AWS::ECS::Service").values()
    assert service["Properties"]["LoadBalancers"][0]["ContainerPort"] == port


def test_an_image_built_from_a_checkout_made_with_umask_077_serves(
    engine: Engine, tmp_path: Path, example: dict[str, Any]
) -> None:
    """COPY keeps the context's modes: files only their owner (root) may read must still be
    readable by the image's non-root user."""
    context = build_context(tmp_path)
    # requirements.txt keeps its mode: only root reads it, in the build stage, and an
    # unchanged file lets the build reuse the cached virtualenv layer.
    for path in [context, *context.rglob("*")]:
        if path.name != "requirements.txt":
            path.chmod(0o700 if path.is_dir() else 0o600)
    with built(engine, context) as tag, running(engine, tag) as container:
        assert container.post("/predict", example)[0] == 200
