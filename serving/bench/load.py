"""Drives a server with wrk, the C load generator (Debian's `wrk`), for a bounded time.

One wrk thread keeps N keep-alive connections each sending one request at a time (the
same closed loop a pool of synchronous clients makes), and `wrk.lua` reports the run as
JSON: completed requests, latency percentiles from wrk's histogram (microsecond
resolution), and errors. wrk costs a few microseconds of CPU per request, so on a small
machine it leaves the servers it measures almost all of the CPU; `make bench` prints what
it used.

    python -m bench.load --url http://127.0.0.1:8000/predict --body-file r.json \
        --connections 16 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk.lua")
# A request slower than this is counted as a timeout instead of a latency: far beyond any
# figure the bench reports, so only a stalled server reaches it.
TIMEOUT_SECONDS = 30


class WrkMissing(RuntimeError):
    """wrk is not on PATH."""


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int
    """Responses other than 2xx/3xx, socket errors and timeouts."""
    cpu_seconds: float
    """CPU time wrk itself used (user + system)."""


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing("wrk is not installed: `make system-packages` installs it (Debian: wrk)")
    return path


def command(
    url: str, body: Path, connections: int, seconds: float, headers: tuple[str, ...] = ()
) -> list[str]:
    return [
        wrk_path(),
        *(option for header in headers for option in ("--header", header)),
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{TIMEOUT_SECONDS}s",
        "--script",
        str(SCRIPT),
        url,
        "--",
        str(body),
    ]


def parse(output: str, cpu_seconds: float) -> Run:
    """The figures from wrk's output: the JSON line wrk.lua writes last."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"no figures in wrk's output:\n{output}")
    figures = json.loads(lines[-1])
    seconds = figures["duration_us"] / 1e6
    return Run(
        requests=figures["requests"],
        seconds=seconds,
        requests_per_second=figures["requests"] / seconds if seconds else 0.0,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        mean_ms=figures["mean_us"] / 1000,
        errors=figures["non_2xx"] + figures["socket_errors"] + figures["timeouts"],
        cpu_seconds=cpu_seconds,
    )


def combine(runs: list[Run]) -> Run:
    """Consecutive runs against one server as one: requests, time, errors and CPU summed,
    p50 and p99 the medians of the runs' own (wrk reports percentiles, which do not pool;
    the median is the typical run, where the lowest would flatter and the highest would
    report one run's stall as the rule)."""
    requests = sum(r.requests for r in runs)
    seconds = sum(r.seconds for r in runs)
    return Run(
        requests=requests,
        seconds=seconds,
        requests_per_second=requests / seconds if seconds else 0.0,
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        mean_ms=sum(r.mean_ms * r.requests for r in runs) / requests if requests else 0.0,
        errors=sum(r.errors for r in runs),
        cpu_seconds=sum(r.cpu_seconds for r in runs),
    )


def drive(
    url: str, body: Path, connections: int, seconds: float, headers: tuple[str, ...] = ()
) -> Run:
    """One wrk run, sending `headers` ("Name: value") with every request; its CPU time is
    read from the kernel's accounting of the child."""
    before = os.times()
    completed = subprocess.run(
        command(url, body, connections, seconds, headers),
        capture_output=True,
        text=True,
        check=True,
    )
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return parse(completed.stdout, cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", type=Path, required=True, help="POST this file's bytes")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    run = drive(args.url, args.body_file, args.connections, args.seconds)
    json.dump(asdict(run), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
