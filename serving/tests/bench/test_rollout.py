"""The rollout rehearsal's parts: it reads the stack's health check, its HAProxy configuration
is valid, and its counting catches what it exists to catch (the control: an instance put into
rotation before it passes health fails requests, the rehearsal's registration does not), and
`make rollout-test` rehearses an image built from this checkout.

The instances here are processes of this checkout (the image's command), not containers: these
tests check HAProxy and the counting, and a container runs whatever its image was built from."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.auth import new_key
from bench import procs, rollout
from bench.imagecmd import SERVING_DIR
from deployment.stack.settings import PUBLIC_PATHS

CDK_CONTEXT = json.loads(rollout.CDK_JSON.read_text(encoding="utf-8"))["context"]
KEY = new_key()


def test_rehearsal_uses_the_stacks_health_check_scaled_down() -> None:
    scale = rollout.TIME_SCALE
    assert rollout.Timing.scaled(rollout.stack_settings()) == rollout.Timing(
        path="/ready",
        interval_ms=CDK_CONTEXT["healthCheckIntervalSeconds"] * 1000 // scale,
        timeout_ms=CDK_CONTEXT["healthCheckTimeoutSeconds"] * 1000 // scale,
        rise=CDK_CONTEXT["healthyThresholdCount"],
        fall=CDK_CONTEXT["unhealthyThresholdCount"],
        drain_seconds=CDK_CONTEXT["deregistrationDelaySeconds"] / scale,
    )


def test_tampered_copy_differs_from_the_model_in_exactly_one_byte(tmp_path: Path) -> None:
    copy = rollout.tampered_copy(tmp_path)
    metadata = json.loads((rollout.MODEL_DIR / "model_metadata.json").read_text("utf-8"))
    original = (rollout.MODEL_DIR / metadata["model_file"]).read_bytes()
    tampered = (copy / metadata["model_file"]).read_bytes()
    assert len(original) == len(tampered)
    assert sum(a != b for a, b in zip(original, tampered, strict=True)) == 1


@pytest.mark.parametrize("goal", ["rollout-test", "test"])
def test_make_rollout_test_runs_an_image_built_from_this_checkout_built_once(
    goal: str, make_env: dict[str, str]
) -> None:
    """Before the rehearsal, `make rollout-test` builds the image (a stale one would pass the
    rehearsal with the checkout's readiness broken); `make test` builds it once, before its
    parallel parts, and not again in the rehearsal, racing the container tests."""
    argv = ["make", "--dry-run", goal, "CONTAINER_ENGINE=test-engine", "IMAGE=test-image"]
    env = {name: value for name, value in make_env.items() if name != "IMAGE_BUILT"}
    cwd = SERVING_DIR.parent
    steps = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    build = "test-engine build"
    assert steps.stdout.count(build) == 1, steps.stdout
    assert steps.stdout.index(build) < steps.stdout.index("python -m bench.rollout")


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(params=[PUBLIC_PATHS], ids=["private"])
def balanced_instance(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[rollout.HAProxy, rollout.Load]]:
    """HAProxy, forwarding the paths the fixture's parameter names (none: every path), in
    front of one ready instance that requires an API key, under the rehearsal's load."""
    timing = rollout.Timing.scaled(rollout.stack_settings())
    balancer = rollout.HAProxy(tmp_path, timing, request.param)
    launcher = rollout.ProcessLauncher(tmp_path, "this checkout")
    try:
        instance = launcher.start(
            "blue", {"SERVICE_WORKERS": "1", "SERVICE_API_KEYS": f"test:{KEY}"}
        )
        with balancer.running():
            balancer.register(instance.name, instance.port)
            assert rollout.wait_healthy(balancer, instance) is not None, instance.output()
            balancer.take_traffic(instance.name)
            with rollout.Load(balancer.port, rollout.example_body(), KEY).running() as load:
                yield balancer, load
    finally:
        launcher.close()


@pytest.mark.slow
@pytest.mark.needs("haproxy")
def test_an_instance_in_rotation_before_passing_health_fails_requests_and_is_counted(
    balanced_instance: tuple[rollout.HAProxy, rollout.Load],
) -> None:
    balancer, load = balanced_instance
    # Nothing listens on this port: HAProxy's default for an added server is to send it
    # requests at once, before any check.
    balancer.command(
        f"add server {rollout.BACKEND}/ghost 127.0.0.1:{procs.free_port()} check "
        f"inter {balancer.timing.interval_ms}ms"
    )
    balancer.command(f"enable health {rollout.BACKEND}/ghost")
    before = load.snapshot()
    balancer.command(f"set server {rollout.BACKEND}/ghost state ready")
    wait_for(lambda: any(outcome != "ok" for outcome in load.snapshot() - before))


@pytest.mark.slow
@pytest.mark.needs("haproxy")
def test_a_registered_instance_that_never_listens_gets_no_request(
    balanced_instance: tuple[rollout.HAProxy, rollout.Load],
) -> None:
    balancer, load = balanced_instance
    before = load.snapshot()
    balancer.register("ghost", procs.free_port())
    # HAProxy's own events instead of a pause: its check of the ghost has run and failed,
    # then the load has had replies enough that round-robin would have sent the ghost some.
    wait_for(lambda: balancer.server("ghost")["check_status"].startswith("L4"))
    checked = load.snapshot()["ok"]
    wait_for(lambda: load.snapshot()["ok"] >= checked + 10)
    assert not balancer.passed_health("ghost")
    assert rollout.served(balancer, "ghost") == 0
    assert set(load.snapshot() - before) == {"ok"}  # requests answered, none failed


@pytest.mark.slow
@pytest.mark.needs("haproxy")
def test_the_proxy_refuses_private_paths_and_their_spellings_as_the_listener_does(
    balanced_instance: tuple[rollout.HAProxy, rollout.Load],
) -> None:
    balancer, _ = balanced_instance
    phase = rollout.access_phase(balancer, KEY)
    assert phase.passed, phase.notes
    assert phase.failed == 0
    assert phase.requests == len(rollout.PRIVATE_REQUESTS) + 3


@pytest.mark.slow
@pytest.mark.parametrize("balanced_instance", [()], ids=["open"], indirect=True)
@pytest.mark.needs("haproxy")
def test_with_the_paths_opened_the_operational_endpoints_answer_with_a_key(
    balanced_instance: tuple[rollout.HAProxy, rollout.Load],
) -> None:
    """The control: the 404s above are the proxy's rule, not the service's."""
    balancer, _ = balanced_instance
    assert rollout.status_through(balancer, "/model", KEY) == 200
    assert rollout.status_through(balancer, "/%6Dodel", KEY) == 200
    assert rollout.status_through(balancer, "/model", None) == 401
