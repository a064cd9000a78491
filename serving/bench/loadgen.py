"""A lean HTTP/1.1 load generator: N keep-alive connections, each sending one request at a
time for a fixed duration, with every latency recorded.

It runs in its own process (the benchmark starts it with `python -m bench.loadgen`), so it
never shares an interpreter lock with what it measures, and speaks raw HTTP over asyncio
(uvloop when installed) with the request bytes encoded once, so its own cost per request
stays a few tens of microseconds. `make bench` reports its ceiling against a no-op server,
to show it is not the bottleneck.

    python -m bench.loadgen --url http://127.0.0.1:8000/predict --body-file r.json \
        --connections 16 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0


def build_request(host: str, port: int, path: str, body: bytes | None) -> bytes:
    method = "POST" if body is not None else "GET"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


def parse_head(head: bytes) -> tuple[int, int]:
    """Status code and Content-Length of a response head (ending with a blank line)."""
    status_line, _, header_block = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, length


async def _connection(
    host: str, port: int, request: bytes, stop_at: float, record_from: float, result: Result
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (started := time.perf_counter()) < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status, length = parse_head(head)
            if length:
                await reader.readexactly(length)
            finished = time.perf_counter()
            if started >= record_from:
                result.latencies.append(finished - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status != 200:
                    result.errors += 1
    finally:
        writer.close()


async def run(
    url: str, body: bytes | None, connections: int, seconds: float, warmup: float
) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = build_request(host, port, parts.path or "/", body)
    result = Result()
    now = time.perf_counter()
    record_from, stop_at = now + warmup, now + warmup + seconds
    await asyncio.gather(
        *(
            _connection(host, port, request, stop_at, record_from, result)
            for _ in range(connections)
        )
    )
    result.elapsed = seconds
    return result


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summary(result: Result) -> dict[str, Any]:
    latencies = sorted(result.latencies)
    return {
        "requests": len(latencies),
        "errors": result.errors,
        "statuses": result.statuses,
        "seconds": result.elapsed,
        "requests_per_second": len(latencies) / result.elapsed if result.elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", type=Path, help="POST this file's bytes (else GET)")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes() if args.body_file else None
    work = run(args.url, body, args.connections, args.seconds, args.warmup)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(work)
    else:
        result = uvloop.run(work)
    json.dump(summary(result), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
