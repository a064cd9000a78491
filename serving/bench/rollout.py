"""`make rollout-test`: a rolling deployment and a bad-model rollout, rehearsed on one machine
with real parts, under load.

HAProxy stands in for the Application Load Balancer. It checks every instance with
`GET /ready` using the stack's own health-check interval, timeout and thresholds, and drains a
leaving instance for the stack's deregistration delay: the values `cdk synth` reads (cdk.json
through `deployment.stack.settings`), divided by `TIME_SCALE` so the rehearsal takes seconds,
not minutes. Like the ALB, a new instance takes no traffic until it has passed the healthy
threshold (it is registered in HAProxy's DRAIN state, health forced down, and enabled only
once HAProxy's own checks report it up).

HAProxy also forwards only what the stack's listener forwards (`PUBLIC_PATHS`, exact paths
as the ALB's path-pattern rule matches them) and answers everything else 404 itself, and the
instances require API keys as deployed: the rehearsal checks that the operational endpoints
and their encoded, doubled-slash and differently-cased spellings are refused through it.

Three rollouts, with `CLIENTS` clients posting authenticated predictions through HAProxy the
whole time:

1. Rolling replacements that rotate the API key, in the documented order: the new instance
   starts, passes health, takes traffic; the old one is drained (no new requests; open ones
   finish), then gets SIGTERM, as ECS does. The first adds the new key next to the old one,
   the clients then move to the new key, and the second removes the old key; no request
   fails, and the old key is refused at the end.
2. A tampered model (one byte changed in a copy of the model directory): the new instance
   refuses to start, never passes health, takes no traffic; the old one keeps serving, as
   ECS's circuit breaker leaves it.

Each instance is a container of the image `make image` built (CONTAINER_ENGINE and
CONTAINER_IMAGE as for the container tests; the tampered release is that image with one byte of
its model changed), run as ECS runs it, with a read-only root filesystem. `make rollout-test`
builds the image first, so the rehearsal runs this checkout; run directly, this module runs the
image as it is, however old. Where no engine or no image exists, each is the image's command
(its CMD in its WORKDIR, `bench.imagecmd`) as a gunicorn process, with the tampered model in a
copy of the model directory. The first line of output says which ran. Each listens on a free
loopback port. Exits non-zero unless every phase passes with 0 failed requests.

    python -m bench.rollout        # from serving/
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.auth import new_key
from bench import procs
from bench.imagecmd import SERVING_DIR
from container import engine as container_engine
from deployment.stack.settings import (
    PUBLIC_PATHS,
    READINESS_PATH,
    STOP_TIMEOUT_SECONDS,
    DeploymentSettings,
)

# The rehearsal runs the stack's timings this many times faster: 10 s between checks become
# 1 s, a 30 s deregistration delay 3 s. Thresholds (how many checks) are not scaled.
TIME_SCALE = 10
# Concurrent clients through HAProxy for the whole rehearsal, each pausing between requests
# so the load stays bounded on a small CI machine.
CLIENTS = 20
CLIENT_PAUSE_SECONDS = 0.02
# How long a new instance may take to pass health before the rollout is called failed: the
# stack's health-check grace period (service.STARTUP_ALLOWANCE), not scaled, since a cold
# start here takes as long as on Fargate.
STARTUP_DEADLINE_SECONDS = 60.0
# Before the first rollout, traffic flows this long through the first instance alone.
WARMUP_SECONDS = 1.5
# The new instance must have answered at least this many requests before the old one drains.
MIN_REQUESTS_TO_NEW = 20

MODEL_DIR = SERVING_DIR / "app" / "data"
CDK_JSON = SERVING_DIR / "deployment" / "cdk.json"
BACKEND = "service"
# Requests the load balancer must answer 404 without forwarding: the operational endpoints, and
# spellings the service would decode or a proxy might normalise into them.
PRIVATE_REQUESTS = (
    *("/metrics", "/model", "/openapi.json", "/docs", "/redoc", "/ready"),
    *("/%6Dodel", "//model", "/Model", "/metrics?x", "/predict/../model", "/health/"),
)


@dataclass(frozen=True)
class Timing:
    """The stack's health check, scaled for the rehearsal."""

    path: str
    interval_ms: int
    timeout_ms: int
    rise: int
    fall: int
    drain_seconds: float

    @property
    def settle_seconds(self) -> float:
        """How long traffic keeps flowing after an instance leaves, before the phase's counts
        are taken: long enough for HAProxy to mark an instance that died in rotation down, so
        the requests such an instance fails are counted in the phase that caused them."""
        return (self.fall + 1) * self.interval_ms / 1000

    @classmethod
    def scaled(cls, stack: DeploymentSettings, scale: int = TIME_SCALE) -> Timing:
        return cls(
            path=READINESS_PATH,
            interval_ms=stack.health_check_interval_seconds * 1000 // scale,
            timeout_ms=stack.health_check_timeout_seconds * 1000 // scale,
            rise=stack.healthy_threshold_count,
            fall=stack.unhealthy_threshold_count,
            drain_seconds=stack.deregistration_delay_seconds / scale,
        )


def stack_settings() -> DeploymentSettings:
    """The settings `cdk synth` builds from cdk.json's defaults (plain HTTP accepted: the
    rehearsal runs on loopback)."""
    context = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return DeploymentSettings.from_context({**context, "allowPlainHttp": True}.get)


# --- HAProxy ----------------------------------------------------------------------------------


class HAProxy:
    """HAProxy on a free loopback port, driven through its admin socket (the runtime API)."""

    def __init__(self, workdir: Path, timing: Timing, public_paths: tuple[str, ...]) -> None:
        binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
        if binary is None:
            sys.exit("haproxy is not installed: run `make system-packages` (Debian: haproxy)")
        self.binary = binary
        self.port = procs.free_port()
        self.socket = workdir / "admin.sock"
        self.config = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self.timing = timing
        self.public_paths = public_paths
        # The listener's rule: the exact paths (no query string, not decoded, case-sensitive)
        # go to the service, the rest is answered 404 here; none with the paths opened.
        routing = f"    default_backend {BACKEND}\n"
        if public_paths:
            routing = (
                f"    acl public path {' '.join(public_paths)}\n"
                f"    use_backend {BACKEND} if public\n"
                "    http-request return status 404 content-type application/json "
                'string \'{"detail":"Not Found"}\' if !public\n'
            )
        # An ALB closes idle client connections after 60 s; HTTP keep-alive on both sides, each
        # request balanced on its own. No redispatch: a request sent to a dead instance fails,
        # as it would behind the ALB.
        self.config.write_text(
            f"""global
    stats socket {self.socket} mode 600 level admin
    maxconn 1000

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 60s

frontend public
    bind 127.0.0.1:{self.port}
{routing}
backend {BACKEND}
    balance roundrobin
    option httpchk GET {timing.path}
    http-check expect status 200
    timeout check {timing.timeout_ms}ms
""",
            encoding="utf-8",
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[HAProxy]:
        check = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(self.config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"invalid HAProxy configuration:\n{check.stderr}")
        with procs.running([self.binary, "-db", "-f", str(self.config)], Path.cwd(), {}, self.log):
            # Ready when its admin socket answers: the socket file exists a moment before
            # HAProxy listens on it (connections are refused in between).
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.command("show info")
                    break
                except OSError as error:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"HAProxy did not start: {self.log.read_text()}"
                        ) from error
                    time.sleep(0.05)
            yield self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(self.socket))
            client.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server(self, name: str) -> dict[str, str]:
        """The `show stat` row of one server: status, check_status, stot (sessions), scur..."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            fields = line.split(",")
            if fields[:2] == [BACKEND, name]:
                return dict(zip(header, fields, strict=False))
        raise KeyError(name)

    def register(self, name: str, port: int) -> None:
        """Add an instance as the ALB registers a target: checked, but sent no request
        until HAProxy's own checks have passed `rise` times (see `wait_healthy`)."""
        t = self.timing
        self.command(
            f"add server {BACKEND}/{name} 127.0.0.1:{port} check inter {t.interval_ms}ms "
            f"rise {t.rise} fall {t.fall}"
        )
        # Added servers start in maintenance. DRAIN takes no new requests but runs checks;
        # health forced down means `rise` passing checks before it counts as up.
        self.command(f"set server {BACKEND}/{name} state drain")
        self.command(f"set server {BACKEND}/{name} health down")
        self.command(f"enable health {BACKEND}/{name}")

    def passed_health(self, name: str) -> bool:
        row = self.server(name)
        # "DRAIN" alone (not "DOWN", "DOWN 1/2" or "DRAIN 1/3"): up, by HAProxy's checks.
        return row["status"] == "DRAIN" and row["check_status"] == "L7OK"

    def take_traffic(self, name: str) -> None:
        self.command(f"set server {BACKEND}/{name} state ready")

    def drain(self, name: str) -> None:
        self.command(f"set server {BACKEND}/{name} state drain")

    def deregister(self, name: str) -> None:
        self.command(f"set server {BACKEND}/{name} state maint")
        self.command(f"del server {BACKEND}/{name}")


# --- Load -----------------------------------------------------------------------------------


class Load:
    """`CLIENTS` keep-alive clients posting one prediction after another through HAProxy."""

    def __init__(self, port: int, body: bytes, key: str) -> None:
        self.port = port
        self.body = body
        self.key = key
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            # The key each request sends is read afresh: setting `key` switches every client.
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"}
            try:
                connection.request("POST", "/predict", body=self.body, headers=headers)
                response = connection.getresponse()
                response.read()
                outcome = "ok" if response.status == 200 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            with self._lock:
                self.outcomes[outcome] += 1
            time.sleep(CLIENT_PAUSE_SECONDS)
        connection.close()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.outcomes)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=15)


# --- Instances ------------------------------------------------------------------------------
# One task of the service: a container of the image, or the image's command as a process where
# no engine or image is available. `exit_code` is None while it runs; `stop` is SIGTERM, then
# SIGKILL after the task's stop timeout, as ECS stops a task, and returns the exit code.


@dataclass
class ProcessInstance:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def exit_code(self) -> int | None:
        return self.process.poll()

    def stop(self) -> int:
        return procs.stop(self.process, timeout=STOP_TIMEOUT_SECONDS)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _engine(engine: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([engine, *args], capture_output=True, text=True, timeout=600, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{engine} {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")
    return done


@dataclass
class ContainerInstance:
    name: str
    port: int
    engine: str
    container: str

    def exit_code(self) -> int | None:
        running_and_code = "{{.State.Running}} {{.State.ExitCode}}"
        inspected = _engine(self.engine, "inspect", "--format", running_and_code, self.container)
        state = inspected.stdout.split()
        return None if not state or state[0] == "true" else int(state[1])

    def stop(self) -> int:
        _engine(self.engine, "stop", "--time", str(STOP_TIMEOUT_SECONDS), self.container)
        code = self.exit_code()
        return -1 if code is None else code

    def output(self) -> str:
        logs = _engine(self.engine, "logs", self.container)
        return logs.stdout + logs.stderr


Instance = ProcessInstance | ContainerInstance


class ProcessLauncher:
    """The image's CMD in its WORKDIR (`bench.imagecmd`), as `make serve` runs it."""

    def __init__(self, workdir: Path, why: str) -> None:
        self.workdir = workdir
        self.kind = f"gunicorn processes started with the image's CMD ({why})"
        self.instances: list[ProcessInstance] = []

    def start(self, name: str, env: dict[str, str], tampered: bool = False) -> Instance:
        argv, cwd = procs.service_command()
        port = procs.free_port()
        model_dir = tampered_copy(self.workdir) if tampered else MODEL_DIR
        variables = procs.tool_env(
            {**env, "SERVICE_BIND": f"127.0.0.1:{port}", "SERVICE_MODEL_DIR": str(model_dir)}
        )
        # Each instance keeps its own Prometheus files, as each container does.
        variables.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = self.workdir / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(argv, cwd=cwd, env=variables, stdout=output, stderr=output)
        self.instances.append(ProcessInstance(name, port, process, log))
        return self.instances[-1]

    def close(self) -> None:
        for instance in self.instances:
            instance.stop()


class ContainerLauncher:
    """Containers of the image `make image` built, run as ECS runs them (read-only root
    filesystem, the image's user and its /tmp volume), each on a free loopback port."""

    def __init__(self, engine: str, image: str, workdir: Path) -> None:
        self.engine = engine
        self.image = image
        self.workdir = workdir
        self.kind = f"containers of {image} ({Path(engine).name})"
        self.podman = Path(engine).name == "podman"
        self._tampered_image: str | None = None
        self.instances: list[ContainerInstance] = []

    def _config(self, image: str) -> dict[str, Any]:
        found = json.loads(_engine(self.engine, "image", "inspect", image, check=True).stdout)
        config: dict[str, Any] = found[0]["Config"]
        return config

    def _tampered(self) -> str:
        """The image with one byte of its model file changed: a release whose model was
        corrupted or replaced after training."""
        if self._tampered_image is None:
            context = self.workdir / "tampered-image"
            context.mkdir()
            model_dir = tampered_copy(self.workdir)
            metadata = json.loads((model_dir / "model_metadata.json").read_text("utf-8"))
            model_file = metadata["model_file"]
            shutil.copy(model_dir / model_file, context / model_file)
            target = f"{self._config(self.image)['WorkingDir'].rstrip('/')}/app/data/{model_file}"
            dockerfile = f"FROM {self.image}\nCOPY {model_file} {target}\n"
            (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
            tag = f"localhost/rollout-tampered:{uuid.uuid4().hex[:12]}"
            podman = ["--format", "docker"] if self.podman else []
            _engine(self.engine, "build", *podman, "--tag", tag, str(context), check=True)
            self._tampered_image = tag
        return self._tampered_image

    def start(self, name: str, env: dict[str, str], tampered: bool = False) -> Instance:
        image = self._tampered() if tampered else self.image
        exposed = list(self._config(image).get("ExposedPorts") or {})
        container_port = exposed[0].split("/")[0] if exposed else "8000"
        port = procs.free_port()
        container = f"rollout-{name}-{uuid.uuid4().hex[:12]}"
        args = ["run", "--detach", "--name", container, "--read-only"]
        if self.podman:
            # Only the image's /tmp volume is writable, as on Fargate; podman would otherwise
            # add tmpfs mounts of its own to a read-only container.
            args.append("--read-only-tmpfs=false")
        args += ["--publish", f"127.0.0.1:{port}:{container_port}"]
        args += [f"--env={key}={value}" for key, value in env.items()]
        self.instances.append(ContainerInstance(name, port, self.engine, container))
        _engine(self.engine, *args, image, check=True)
        return self.instances[-1]

    def close(self) -> None:
        for instance in self.instances:
            _engine(self.engine, "rm", "--force", "--volumes", instance.container)
        if self._tampered_image is not None:
            _engine(self.engine, "rmi", "--force", self._tampered_image)


Launcher = ProcessLauncher | ContainerLauncher


def choose_launcher(workdir: Path) -> Launcher:
    """Containers of the image where an engine and the image exist, else processes."""
    engine = container_engine.detect()  # for podman, sets CONTAINERS_CONF as the Makefile does
    image = container_engine.image()
    if engine is None:
        return ProcessLauncher(workdir, "no container engine")
    if _engine(engine, "image", "inspect", image).returncode != 0:
        return ProcessLauncher(workdir, f"{Path(engine).name} has no image {image}: `make image`")
    return ContainerLauncher(engine, image, workdir)


def tampered_copy(workdir: Path) -> Path:
    """The model directory with one byte of the model file changed."""
    copy = workdir / "tampered-model"
    shutil.copytree(MODEL_DIR, copy)
    metadata = json.loads((copy / "model_metadata.json").read_text(encoding="utf-8"))
    model = copy / metadata["model_file"]
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    return copy


def example_body() -> bytes:
    metadata = json.loads((MODEL_DIR / "model_metadata.json").read_text(encoding="utf-8"))
    record = {f["name"]: f["example"] for f in metadata["input_schema"]["features"]}
    return json.dumps(record).encode()


# --- The rehearsal --------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    outcomes: Counter[str]
    notes: list[str]
    passed: bool

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.requests - self.outcomes["ok"]


def wait_healthy(balancer: HAProxy, instance: Instance) -> float | None:
    """Seconds until HAProxy's checks pass, or None when the instance exits or never does."""
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_DEADLINE_SECONDS:
        if balancer.passed_health(instance.name):
            return time.monotonic() - started
        if instance.exit_code() is not None:
            return None
        time.sleep(0.1)
    return None


def served(balancer: HAProxy, name: str) -> int:
    return int(balancer.server(name)["stot"])


def rolling_replacement(
    balancer: HAProxy, load: Load, old: Instance, new: Instance, name: str
) -> Phase:
    before = load.snapshot()
    notes = []
    balancer.register(new.name, new.port)
    healthy_after = wait_healthy(balancer, new)
    if healthy_after is None:
        balancer.deregister(new.name)
        return Phase(name, load.snapshot() - before, ["new never healthy"], False)
    served_before_ready = served(balancer, new.name)
    balancer.take_traffic(new.name)
    notes.append(f"{new.name} passed health after {healthy_after:.1f} s")
    deadline = time.monotonic() + 10
    while served(balancer, new.name) < MIN_REQUESTS_TO_NEW and time.monotonic() < deadline:
        time.sleep(0.05)
    took_traffic = served(balancer, new.name) >= MIN_REQUESTS_TO_NEW

    # Deregistration: no new requests to the old one; open ones finish, for at most the delay.
    balancer.drain(old.name)
    drain_started = time.monotonic()
    while (
        int(balancer.server(old.name)["scur"]) > 0
        and time.monotonic() - drain_started < balancer.timing.drain_seconds
    ):
        time.sleep(0.02)
    time.sleep(0.1)
    drained_in = time.monotonic() - drain_started
    balancer.deregister(old.name)
    exit_code = old.stop()
    time.sleep(balancer.timing.settle_seconds)
    outcomes = load.snapshot() - before
    notes += [
        f"{new.name} answered nothing before it passed health ({served_before_ready} requests)",
        f"{new.name} took traffic ({served(balancer, new.name)} requests so far)",
        f"{old.name} drained in {drained_in:.1f} s, exited {exit_code} after SIGTERM",
    ]
    passed = served_before_ready == 0 and took_traffic and exit_code == 0 and outcomes["ok"] > 0
    return Phase(name, outcomes, notes, passed)


def bad_model_rollout(balancer: HAProxy, load: Load, current: Instance, bad: Instance) -> Phase:
    before = load.snapshot()
    serving_before = served(balancer, current.name)
    balancer.register(bad.name, bad.port)
    healthy_after = wait_healthy(balancer, bad)
    exit_code = bad.exit_code()
    # However it ended, the checks keep probing a while longer: still never healthy.
    time.sleep((balancer.timing.rise + 1) * balancer.timing.interval_ms / 1000)
    never_healthy = healthy_after is None and not balancer.passed_health(bad.name)
    bad_served = served(balancer, bad.name)
    status = balancer.server(bad.name)
    balancer.deregister(bad.name)
    bad.stop()
    time.sleep(balancer.timing.settle_seconds)
    outcomes = load.snapshot() - before
    kept_serving = served(balancer, current.name) - serving_before
    notes = [
        f"{bad.name} "
        + (f"exited {exit_code} at start" if exit_code is not None else "kept running")
        + f"; HAProxy: {status['status']}, last check {status['check_status']}",
        f"{bad.name} answered {bad_served} requests",
        f"{current.name} kept serving ({kept_serving} requests meanwhile)",
    ]
    passed = never_healthy and bad_served == 0 and kept_serving > 0
    return Phase("tampered model", outcomes, notes, passed)


def report(phase: Phase) -> None:
    failures = {k: v for k, v in phase.outcomes.items() if k != "ok"}
    print(
        f"{phase.name}: {phase.requests} requests, {phase.failed} failed"
        + (f" {dict(failures)}" if failures else "")
        + ("" if phase.passed else "  <- FAILED")
    )
    for note in phase.notes:
        print(f"  - {note}")


def status_through(balancer: HAProxy, path: str, key: str | None, method: str = "GET") -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = example_body() if method == "POST" else None
    return procs.request(balancer.port, method, path, body, headers=headers)[0]


def access_phase(balancer: HAProxy, key: str) -> Phase:
    """What the load balancer lets through, with and without a key."""
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    expected = dict.fromkeys(PRIVATE_REQUESTS if balancer.public_paths else (), 404)
    expected |= {"POST /predict (no key)": 401, "POST /predict": 200, "/health": 200}
    for request, status in expected.items():
        if request.startswith("POST "):
            got = status_through(balancer, "/predict", None if "no key" in request else key, "POST")
        else:
            got = status_through(balancer, request, key)
        outcomes["ok" if got == status else f"{request} answered {got}"] += 1
        if got != status:
            wrong.append(f"{request}: {got}, expected {status}")
    private = sum(1 for status in expected.values() if status == 404)
    notes = [f"{private} private paths and spellings answered 404 by HAProxy, with a key"]
    notes += ["POST /predict: 401 without a key, 200 with one; /health open", *wrong]
    return Phase("private paths and keys", outcomes, notes, not wrong)


def rehearse(launcher: Launcher, balancer: HAProxy, env: dict[str, str]) -> list[Phase]:
    phases: list[Phase] = []
    old_key, new_key_ = new_key(), new_key()
    before, both, after = (
        {**env, "SERVICE_API_KEYS": keys}
        for keys in (
            f"client:{old_key}",
            f"client:{old_key},client-next:{new_key_}",
            f"client-next:{new_key_}",
        )
    )
    blue = launcher.start("blue", before)
    balancer.register(blue.name, blue.port)
    if wait_healthy(balancer, blue) is None:
        print(blue.output()[-3000:])
        print("the first instance never passed health")
        return phases
    balancer.take_traffic(blue.name)
    phases.append(access_phase(balancer, old_key))
    with Load(balancer.port, example_body(), old_key).running() as load:
        time.sleep(WARMUP_SECONDS)
        current = blue
        for name, keys, move in (
            ("new key added", both, new_key_),
            ("old key removed", after, None),
        ):
            replacement = launcher.start("green" if current is blue else "teal", keys)
            phase = rolling_replacement(balancer, load, current, replacement, name)
            phases.append(phase)
            if not phase.passed:
                for instance in (current, replacement):
                    print(f"--- {instance.name}, last lines\n{instance.output()[-2000:]}")
                return phases
            current = replacement
            if move is not None:
                load.key = move
                phase.notes.append("clients moved to the new key")
        refused = status_through(balancer, "/predict", old_key, "POST")
        phases[-1].notes.append(f"the old key is now refused: {refused}")
        phases[-1].passed &= refused == 401
        tampered = launcher.start("tampered", after, tampered=True)
        phases.append(bad_model_rollout(balancer, load, current, tampered))
    return phases


def main() -> int:
    # A SIGTERM (CI cancelling the job) unwinds like Ctrl-C: every instance and HAProxy stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = stack_settings()
    timing = Timing.scaled(settings)
    # What the stack puts in the task's environment that shapes serving.
    env = {
        "SERVICE_WORKERS": str(settings.workers),
        "SERVICE_METRICS_NAMESPACE": settings.metrics_namespace,
        "SERVICE_NAME": settings.service_name,
        "SERVICE_LOG_LEVEL": "warning",
    }
    workdir = Path(tempfile.mkdtemp(prefix="rollout-"))
    launcher = choose_launcher(workdir)
    print(f"rollout-test: instances are {launcher.kind}")
    print(
        f"HAProxy checks GET {timing.path} every {timing.interval_ms} ms (timeout "
        f"{timing.timeout_ms} ms), healthy after {timing.rise}, unhealthy after {timing.fall}; "
        f"drain up to {timing.drain_seconds:g} s: the stack's values (cdk.json) / {TIME_SCALE}; "
        f"{CLIENTS} clients; {settings.workers} workers per instance"
    )
    phases: list[Phase] = []
    try:
        public = () if settings.public_operational_endpoints else PUBLIC_PATHS
        balancer = HAProxy(workdir, timing, public)
        with balancer.running():
            phases = rehearse(launcher, balancer, env)
    except RuntimeError as error:  # an engine or HAProxy that would not start
        print(f"rollout-test: {error}")
    finally:
        launcher.close()
        shutil.rmtree(workdir, ignore_errors=True)
    for phase in phases:
        report(phase)
    ok = len(phases) == 4 and all(phase.passed and phase.failed == 0 for phase in phases)
    print("rollout-test: " + ("passed, 0 failed requests" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
