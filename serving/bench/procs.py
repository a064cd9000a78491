"""Starting, probing, measuring and stopping the servers the benchmark and tests run."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import imagecmd

MIB = 1024 * 1024


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This interpreter's scripts (gunicorn, uvicorn) first on PATH, plus `extra`."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **(extra or {})}


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    """Whether something accepts connections on the loopback `port` within `timeout`;
    False at once when `process` (the server that should listen there) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def service_command() -> tuple[list[str], Path]:
    """The image's CMD and the local directory that stands for its WORKDIR."""
    return imagecmd.read(), imagecmd.SERVING_DIR


def naive_command(port: int) -> tuple[list[str], Path]:
    argv = [sys.executable, "-m", "uvicorn", "bench.naive_app:app", "--host", "127.0.0.1"]
    return [*argv, "--port", str(port), "--log-level", "warning"], imagecmd.SERVING_DIR


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class LoopbackClient:
    """GET and POST (JSON) to a server on a loopback port: the same calls against the service
    as a process and as a container, so the over-HTTP tests run against both."""

    port: int

    def get(self, path: str) -> tuple[int, bytes]:
        return request(self.port, "GET", path)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        status, payload = request(self.port, "POST", path, json.dumps(body).encode())
        return status, json.loads(payload)


def wait_ok(
    process: subprocess.Popen[bytes],
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> float:
    """Polls `method path` until it is answered 200 and returns perf_counter() then; fails
    when `process` (the server) exits first or after `timeout` seconds."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request(port, method, path, body, timeout=2.0, headers=headers)[0] == 200:
                return time.perf_counter()
        time.sleep(0.01)
    raise TimeoutError(f"{method} {path} not answered 200 within {timeout:g} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def running(
    argv: list[str], cwd: Path, env: Mapping[str, str], log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The process, stopped on the way out whatever happens."""
    with log.open("wb") if log else contextlib.nullcontext(subprocess.DEVNULL) as output:
        process = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=output, stderr=output)
        try:
            yield process
        finally:
            stop(process)


@dataclass(frozen=True)
class Memory:
    processes: int
    rss_mib: float  # summed over the processes: a page shared after fork counts in each
    pss_mib: float  # shared pages split between their sharers: what the service occupies
    pss_per_worker_mib: float  # the mean PSS of the processes that serve requests


def memory(pid: int) -> Memory:
    parent = psutil.Process(pid)
    workers = parent.children() or [parent]
    # PSS is Linux's (psutil reads /proc/<pid>/smaps_rollup).
    full = {p.pid: p.memory_full_info() for p in {parent, *workers}}
    per_worker = sum(full[w.pid].pss for w in workers) / len(workers)
    return Memory(
        processes=len(full),
        rss_mib=sum(m.rss for m in full.values()) / MIB,
        pss_mib=sum(m.pss for m in full.values()) / MIB,
        pss_per_worker_mib=per_worker / MIB,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its live children."""
    parent = psutil.Process(pid)
    total = 0.0
    for process in (parent, *parent.children()):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def read_response(connection: socket.socket) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Status, headers and body of the next response on a raw socket, for tests that write
    the request bytes themselves. A close without a response raises ConnectionResetError."""
    response = http.client.HTTPResponse(connection)
    response.begin()
    return response.status, response.headers, response.read()
