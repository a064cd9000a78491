"""The built image, run by a real container engine: fixtures and helpers.

`make image-test` (and `make test`) build the image first and pass what these tests need:
CONTAINER_ENGINE (docker or podman), CONTAINER_IMAGE (the tag) and CONTAINER_BUILD_FLAGS (the
flags `make image` built with, for the variants built here). Run alone, the tests look for an
engine themselves and use prediction-service:local. Without an engine or without the image
they skip and say why, except in CI (CI=true), where either is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import imagecmd, procs
from container import engine as container_engine

# test_http.py runs tests/app's HTTP tests against the container and test_lifecycle.py uses
# tests/deployment's Dockerfile helper: import them while `tests` still names serving/tests
# (the root tests/ directory, collected later, would otherwise take the name).
from tests.app import test_api  # noqa: F401
from tests.deployment import conftest  # noqa: F401

START_TIMEOUT = 90.0
COMMAND_TIMEOUT = 600.0
# Every container and image these tests create carries this prefix and a random suffix.
NAME_PREFIX = "prediction-service-test"


def unavailable(reason: str) -> None:
    """Skip, except in CI, where the container tests must run. The words "not run here:" put
    the skip in the summary that closes `make test` (the root conftest.py)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(f"not run here: {reason}")


@dataclass(frozen=True)
class Engine:
    command: str

    @property
    def is_podman(self) -> bool:
        return Path(self.command).name == "podman"

    def run(
        self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [self.command, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and completed.returncode != 0:
            pytest.fail(
                f"`{self.command} {shlex.join(args)}` exited with {completed.returncode}:\n"
                f"{completed.stdout[-3000:]}{completed.stderr[-3000:]}",
                pytrace=False,
            )
        return completed

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.run(kind, "inspect", name).stdout)
        return found[0]

    def build(self, context: Path, tag: str, *args: str) -> None:
        """Build `context` as `make image` does (its flags come in CONTAINER_BUILD_FLAGS)."""
        flags = os.environ.get("CONTAINER_BUILD_FLAGS")
        default = ["--format", "docker"] if self.is_podman else []
        self.run("build", *(shlex.split(flags) if flags is not None else default), *args,
                 "--tag", tag, str(context))  # fmt: skip

    def remove_container(self, name: str) -> None:
        # Killed at once: a test that wants a graceful stop asks for it itself.
        timeout = ["--time", "0"] if self.is_podman else []
        self.run("rm", "--force", "--volumes", *timeout, name, check=False)


@dataclass
class Container(procs.LoopbackClient):
    """A running container, published on a free loopback port. Duck-types the `Server` of
    tests/app/test_server.py, so its over-HTTP tests run here too."""

    engine: Engine
    name: str
    port: int

    def output(self) -> str:
        logs = self.engine.run("logs", self.name, check=False)
        return logs.stdout + logs.stderr

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.engine.inspect("container", self.name)["State"]
        return state

    def exec(
        self, *argv: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        variables = [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.engine.run("exec", *variables, self.name, *argv, check=False)

    def last_lines(self, count: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-count:])


def container_port(engine: Engine, image: str) -> int:
    """The port the image exposes (the one its Dockerfile names)."""
    exposed = list(engine.inspect("image", image)["Config"].get("ExposedPorts") or {})
    assert len(exposed) == 1, f"{image} exposes {exposed}, not one port"
    return int(exposed[0].split("/")[0])


def wait_until_ready(container: Container, timeout: float = START_TIMEOUT) -> None:
    """Until GET /ready answers 200; fails with the last log lines if the container exits or
    is not ready in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and container.state().get("Running", False):
        with contextlib.suppress(OSError, ValueError):
            if container.get("/ready")[0] == 200:
                return
        time.sleep(0.1)
    state = container.state()
    ended = f"not ready within {timeout} s"
    if not state.get("Running", False):
        ended = f"exited with {state.get('ExitCode')} before it was ready"
    lines = container.last_lines()
    pytest.fail(f"container {container.name} {ended}; its last lines:\n{lines}", pytrace=False)


@contextlib.contextmanager
def running(
    engine: Engine,
    image: str,
    *,
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
    ready: bool = True,
) -> Iterator[Container]:
    """The image running as ECS runs it (read-only root, non-root user, its own /tmp volume),
    removed on the way out whatever happens."""
    name = f"{NAME_PREFIX}-{uuid.uuid4().hex[:12]}"
    container = Container(engine, name, procs.free_port())
    args = ["run", "--detach", "--name", name, "--read-only"]
    if engine.is_podman:
        # podman would add tmpfs mounts on /tmp, /var/tmp and /run to a read-only container;
        # ECS mounts only the task volume on /tmp, which the image's VOLUME stands for here.
        args.append("--read-only-tmpfs=false")
    args += ["--publish", f"127.0.0.1:{container.port}:{container_port(engine, image)}"]
    args += [f"--env={key}={value}" for key, value in (env or {}).items()]
    try:
        engine.run(*args, *extra, image)
        if ready:
            wait_until_ready(container)
        yield container
    finally:
        engine.remove_container(name)


@pytest.fixture(scope="session")
def engine() -> Engine:
    found = container_engine.detect()
    if found is None:
        unavailable("no container engine: looked for docker (with a running daemon) and podman")
    assert found is not None
    return Engine(found)


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    """The built image."""
    tag = container_engine.image()
    if engine.run("image", "inspect", tag, check=False).returncode != 0:
        unavailable(f"image {tag} not built: run `make image-test` (or `make image` first)")
    return tag


@pytest.fixture(scope="module")
def service(engine: Engine, image: str, request: pytest.FixtureRequest) -> Iterator[Container]:
    """One container of the image with its defaults, shared by a module's tests, checked to
    serve the model in serving/app/data."""
    expected = request.getfixturevalue("metadata")["model_version"]
    with running(engine, image) as container:
        status, body = container.get("/model")
        assert status == 200
        served = json.loads(body)["model_version"]
        assert served == expected, (
            f"{image} serves model {served}, but serving/app/data holds {expected}: the image "
            "is stale, run `make image`"
        )
        yield container


@pytest.fixture(scope="module")
async def client(service: Container) -> AsyncIterator[httpx.AsyncClient]:
    """The in-process tests' `client`, pointed at the container over real HTTP."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30) as http:
        yield http


@pytest.fixture
def server(service: Container) -> Container:
    """The over-HTTP tests' `server`, as the container."""
    return service


def build_context(tmp_path: Path) -> Path:
    """A copy of the image's build context (serving/app) to alter and build."""
    context = tmp_path / "context"
    shutil.copytree(
        imagecmd.SERVING_DIR / "app", context, ignore=shutil.ignore_patterns("__pycache__")
    )
    return context


@contextlib.contextmanager
def built(engine: Engine, context: Path, *args: str) -> Iterator[str]:
    """An image built from `context` under a unique tag, removed on the way out."""
    tag = f"localhost/{NAME_PREFIX}:{uuid.uuid4().hex[:12]}"
    try:
        engine.build(context, tag, *args)
        yield tag
    finally:
        engine.run("rmi", "--force", tag, check=False)
