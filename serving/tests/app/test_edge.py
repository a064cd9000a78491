"""The HTTP edge of the real server, tried as a careless or hostile client would: raw
sockets where an HTTP client would hide the behaviour (partial bodies, trickled bytes,
huge headers). The server runs the image's command with short deadlines, so the slow-client
cases take about a second each."""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from http.client import HTTPMessage
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.messages import MAX_ERROR_BODY_BYTES
from bench import procs

from .test_server import Server, log_lines, metric, request_lines, serving

pytestmark = pytest.mark.slow

# Short enough for fast tests, long enough that a loaded CI machine never trips them on a
# request sent whole.
DEADLINE_SECONDS = 1.0


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(
        tmp_path_factory.mktemp("edge"),
        model_dir,
        SERVICE_HEADER_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
        SERVICE_BODY_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
    ) as running:
        yield running


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def exchange(server: Server, raw: bytes) -> tuple[int, HTTPMessage, bytes]:
    """Sends `raw` (a whole request) and returns the response's status, headers and body."""
    with connect(server) as connection:
        # Refused before it was all sent: the response may still be readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(raw)
        return procs.read_response(connection)


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    fields = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        fields.setdefault("Content-Type", "application/json")
        fields["Content-Length"] = str(len(body))
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body


def cut_short(rid: str) -> bytes:
    """/predict announcing 1,000 body bytes and sending 11: in flight until the client quits."""
    head = request_bytes("POST", "/predict", headers={"X-Request-Id": rid})
    return head.replace(b"Content-Length: 0", b"Content-Length: 1000") + b'{"field": 4'


def refused_count(server: Server, reason: str) -> float:
    return metric(server, "http_connections_refused_total", reason=reason)


def error_count(server: Server, kind: str) -> float:
    return metric(server, "http_request_errors_total", kind=kind)


def test_a_500_kb_unknown_field_name_gets_a_small_422_quoting_it_cut(
    server: Server, example: dict[str, Any]
) -> None:
    name = "x" * 500_000
    body = json.dumps({**example, name: 1}).encode()
    status, _, payload = exchange(server, request_bytes("POST", "/predict", body))
    assert status == 422
    assert len(payload) <= MAX_ERROR_BODY_BYTES
    (error,) = json.loads(payload)["detail"]
    assert error["loc"] == ["body", "x" * 64 + "…[cut]"]
    assert error["msg"].startswith("x" * 64 + "…[cut]: is not a field")


def test_client_disconnect_mid_body_is_logged_once_as_499_not_as_a_server_error(
    server: Server,
) -> None:
    server_errors, aborted = error_count(server, "server"), error_count(server, "aborted")
    rid = f"abort-{uuid.uuid4().hex}"
    with connect(server) as connection:
        connection.sendall(cut_short(rid))
        time.sleep(0.3)  # the request is in flight, awaiting the rest of its body
    # The request's own line ends it: what it logged as an error would be there by now.
    lines = request_lines(server, rid)
    assert [(line["status"], line["level"]) for line in lines] == [(499, "info")]
    assert "exception" not in lines[0]
    assert not [line for line in log_lines(server) if line["level"] in ("error", "critical")]
    assert error_count(server, "server") == server_errors
    assert error_count(server, "aborted") == aborted + 1


@pytest.mark.parametrize(
    "headers",
    [{"X-Big": "a" * (8 << 20)}, {f"X-Field-{i}": "1" for i in range(50_000)}],
    ids=["one-8-MiB-field", "50000-fields"],
)
def test_a_huge_head_is_refused_quickly_and_counted_apart_from_errors(
    server: Server, headers: dict[str, str]
) -> None:
    before = refused_count(server, "head_too_large"), error_count(server, "server")
    started = time.monotonic()
    # A 431, or the connection closed without one while the rest was still being sent.
    with contextlib.suppress(ConnectionResetError):
        assert exchange(server, request_bytes("GET", "/health", headers=headers))[0] == 431
    assert time.monotonic() - started < 5
    after = refused_count(server, "head_too_large"), error_count(server, "server")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)


def test_90_fields_of_45_kib_are_answered_and_101_small_fields_get_431(server: Server) -> None:
    # 90 fields, 45 KiB: what a browser behind two proxies might send, and more.
    within = {f"X-F{i}": "v" * 500 for i in range(90)}
    assert exchange(server, request_bytes("GET", "/health", headers=within))[0] == 200
    over = request_bytes("GET", "/health", headers={f"X-F{i}": "1" for i in range(101)})
    status, headers, payload = exchange(server, over)
    assert status == 431
    assert headers["connection"] == "close"
    assert b"100 fields" in payload


def test_a_silent_connection_is_closed_after_the_header_deadline_and_counted(
    server: Server,
) -> None:
    before = refused_count(server, "no_request")
    with connect(server, timeout=DEADLINE_SECONDS + 5) as connection:
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):  # closed without a response
            procs.read_response(connection)
        assert time.monotonic() - started < DEADLINE_SECONDS + 3
    assert refused_count(server, "no_request") - before == 1


def trickle(connection: socket.socket, data: bytes, interval: float = 0.1) -> None:
    """Sends `data` a byte at a time until it is all sent or the server closes."""
    for index in range(len(data)):
        try:
            connection.sendall(data[index : index + 1])
        except (BrokenPipeError, ConnectionResetError):
            return
        time.sleep(interval)


def test_headers_trickled_a_byte_at_a_time_get_408(server: Server) -> None:
    head = request_bytes("GET", "/health", headers={"X-Padding": "p" * 100})
    with connect(server) as connection:
        started = time.monotonic()
        trickle(connection, head)
        assert procs.read_response(connection)[0] == 408
    # 150 bytes would take 15 s; the deadline cut it off after about one.
    assert time.monotonic() - started < DEADLINE_SECONDS + 3


def test_a_body_trickled_a_byte_at_a_time_gets_408_logged_as_a_client_error(
    server: Server, example: dict[str, Any]
) -> None:
    server_errors = error_count(server, "server")
    rid = f"slow-body-{uuid.uuid4().hex}"
    body = json.dumps(example).encode()
    raw = request_bytes("POST", "/predict", body, {"X-Request-Id": rid})
    with connect(server) as connection:
        connection.sendall(raw[: -len(body)])
        started = time.monotonic()
        trickle(connection, body)
        assert procs.read_response(connection)[0] == 408
    assert time.monotonic() - started < DEADLINE_SECONDS + 3
    assert [line["status"] for line in request_lines(server, rid)] == [408]
    assert error_count(server, "server") == server_errors


def test_an_idle_keep_alive_connection_outlives_the_header_deadline(server: Server) -> None:
    """Between requests the keep-alive timeout (75 s, above the ALB's 60 s) applies, not
    the header deadline: the balancer, not the service, closes idle connections."""
    keep_alive = request_bytes("GET", "/health", headers={"Connection": "keep-alive"})
    with connect(server) as connection:
        for _ in range(2):
            connection.sendall(keep_alive)
            assert procs.read_response(connection)[0] == 200
            time.sleep(DEADLINE_SECONDS * 1.5)


def test_a_request_sent_in_time_is_answered_however_late_the_server_reads_it(
    server: Server,
) -> None:
    """The deadlines time the client, not the server: a request that arrived in time and
    waits unread while the workers are busy (here: stopped past the deadline) is answered."""
    workers = psutil.Process(server.process.pid).children()
    with connect(server) as connection:
        local = connection.getsockname()
        # Accepted by a worker, so the connection's deadline is running.
        give_up = time.monotonic() + 10
        while not any(c.raddr == local for w in workers for c in w.net_connections()):
            assert time.monotonic() < give_up, "no worker accepted the connection"
            time.sleep(0.01)
        for worker in workers:
            worker.suspend()
        try:
            connection.sendall(request_bytes("GET", "/health"))
            time.sleep(DEADLINE_SECONDS * 1.5)
        finally:
            for worker in workers:
                worker.resume()
        assert procs.read_response(connection)[0] == 200


def logged_client(server: Server, forwarded_for: str) -> str:
    rid = f"xff-{uuid.uuid4().hex}"
    headers = {"X-Forwarded-For": forwarded_for, "X-Request-Id": rid}
    assert exchange(server, request_bytes("GET", "/health", headers=headers))[0] == 200
    (line,) = request_lines(server, rid)
    return str(line["client"])


def test_the_logged_client_is_the_rightmost_address_not_a_trusted_proxy(server: Server) -> None:
    # The peer (loopback) is the trusted proxy by default; 203.0.113.66 is what the client
    # wrote into the header itself, 198.51.100.7 what the proxy saw and appended.
    assert logged_client(server, "203.0.113.66, 198.51.100.7") == "198.51.100.7"


def test_forwarded_for_from_an_untrusted_peer_is_ignored(model_dir: Path, tmp_path: Path) -> None:
    with serving(
        tmp_path, model_dir, SERVICE_FORWARDED_ALLOW_IPS="192.0.2.1,10.0.0.0/16"
    ) as untrusting:
        assert logged_client(untrusting, "203.0.113.66") == "127.0.0.1"


def test_a_slashed_path_is_a_404_not_a_redirect_to_the_host_header(server: Server) -> None:
    raw = request_bytes("GET", "/health/", headers={"Host": "evil.example"})
    status, headers, _ = exchange(server, raw)
    assert status == 404
    assert "location" not in headers


def test_every_response_says_nosniff_and_predictions_say_no_store(
    server: Server, example: dict[str, Any]
) -> None:
    record = json.dumps(example).encode()
    answers = {
        "predict": request_bytes("POST", "/predict", record),
        "batch": request_bytes(
            "POST", "/predict/batch", json.dumps({"records": [example]}).encode()
        ),
        "health": request_bytes("GET", "/health"),
        "422": request_bytes("POST", "/predict", b'{"x": 1}'),
        "404": request_bytes("GET", "/nowhere"),
        "unparseable": b"NOT HTTP AT ALL\r\n\r\n",
        "431": request_bytes("GET", "/health", headers={f"X-F{i}": "1" for i in range(101)}),
    }
    for name, raw in answers.items():
        status, headers, _ = exchange(server, raw)
        assert headers.get("x-content-type-options") == "nosniff", (name, status)
        if name in ("predict", "batch"):
            assert status == 200
            assert headers.get("cache-control") == "no-store", name


def test_request_ids_and_paths_cannot_forge_log_lines(server: Server) -> None:
    """What holds in process holds over real HTTP: an unsafe request id is replaced, and a path
    carrying an encoded newline and JSON stays inside its own log line: one JSON object each."""
    forged = '{"level": "critical", "message": "forged"}'
    unsafe_id = 'x" injected=1 <br>' + "y" * 300
    path = "/health%0A" + forged.replace(" ", "%20").replace('"', "%22")
    status, headers, _ = exchange(
        server, request_bytes("GET", path, headers={"X-Request-Id": unsafe_id})
    )
    assert status == 404
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    (line,) = request_lines(server, headers["x-request-id"])
    assert line["path"] == "/health\n" + forged
    assert not [entry for entry in log_lines(server) if entry.get("message") == "forged"]


# Far more connections than workers, each sending requests back to back, while others give
# up half-way through a body: what one impatient client fleet does without a firewall.
FLOOD_CONNECTIONS = 400
FLOOD_REQUESTS_EACH = 5
FLOOD_QUITTERS = 50


async def _keep_sending(port: int, raw: bytes, statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(FLOOD_REQUESTS_EACH):
            writer.write(raw)
            status_line, _, fields = (await reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
            await reader.readexactly(int(email.message_from_bytes(fields)["content-length"]))
            statuses.append(int(status_line.split()[1]))
    finally:
        writer.close()


async def _quit_mid_body(port: int, rid: str) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(cut_short(rid))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()


def test_a_flood_with_quitters_is_answered_200_and_counts_no_server_error(
    server: Server, example: dict[str, Any]
) -> None:
    server_errors = error_count(server, "server")
    raw = request_bytes(
        "POST", "/predict", json.dumps(example).encode(), {"Connection": "keep-alive"}
    )
    quitters = [f"quit-{uuid.uuid4().hex}" for _ in range(FLOOD_QUITTERS)]
    statuses: list[int] = []

    async def flood() -> None:
        await asyncio.gather(
            *(_keep_sending(server.port, raw, statuses) for _ in range(FLOOD_CONNECTIONS)),
            *(_quit_mid_body(server.port, rid) for rid in quitters),
        )

    asyncio.run(asyncio.wait_for(flood(), timeout=120))
    assert statuses == [200] * (FLOOD_CONNECTIONS * FLOOD_REQUESTS_EACH)
    assert server.get("/ready")[0] == 200
    # Every quitter's own 499 line, before looking for errors they might have caused.
    assert all(request_lines(server, rid, wait=30.0) for rid in quitters)
    assert error_count(server, "server") == server_errors
    assert not [line for line in log_lines(server) if line["level"] in ("error", "critical")]
