"""`make bench`: the service against the framework's ceiling and a naive baseline, on this
machine, in one run.

Four servers, each on a free loopback port, started one after the other (the cold start,
launch to first successful prediction, is measured alone):

- ceiling: a typed FastAPI app with the service's record schema and no model, under the
  service's own gunicorn configuration and worker class (bench/ceiling_app.py): HTTP,
  routing and validation, what no model work can make cheaper;
- service (onnx) and service (sklearn): the image's command, as deployed (request logs at
  info, Prometheus and EMF metrics on), with `SERVICE_BACKEND` forcing each backend;
- naive: the tutorial pattern (bench/naive_app.py).

Then, scenario by scenario, wrk drives each server in turn (bench/load.py: a warm-up, then
the measured run), so the ratios compare servers measured seconds apart under the same
background load. For each run: requests/s, rows/s, p50/p99 latency, errors, and the
server's CPU time per request (its processes' user + system time over the run, from
/proc): a figure that stays put when other work on the machine takes CPU away. Prints
figures and the issue's targets; nothing here is asserted.

    python -m bench.run [--seconds 5] [--warmup 1]     # from serving/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load, procs
from bench.imagecmd import SERVING_DIR

BATCH_ROWS = 1000
SINGLE = ("single row", 1)
BATCH = ("batch", BATCH_ROWS)
# (label, rows per request, connections)
SCENARIOS = (
    (*SINGLE, 1),
    (*SINGLE, 16),
    (*BATCH, 1),
    (*BATCH, 16),
)
APP_MODULE = "app.main:app"
CEILING_MODULE = "bench.ceiling_app:app"
SERVICES = ("onnx", "sklearn")

# Issue 15's targets, for the service on its fast path.
TARGET_THROUGHPUT_VS_CEILING = 0.5
TARGET_P99_MS = 10.0
TARGET_P50_1CONN_MS = 1.0
TARGET_BATCH_ROWS_PER_S = 1_000_000


def model_dir() -> Path:
    return Path(os.environ.get("SERVICE_MODEL_DIR", SERVING_DIR / "app" / "data"))


def random_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Valid records spread over the range training observed, every field set."""
    metadata = json.loads((model_dir() / "model_metadata.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    records = []
    for _ in range(count):
        record: dict[str, Any] = {}
        for feature in metadata["input_schema"]["features"]:
            if feature["type"] == "number":
                bounds = feature.get("observed", feature)
                record[feature["name"]] = round(
                    rng.uniform(bounds["minimum"], bounds["maximum"]), 2
                )
            else:
                record[feature["name"]] = rng.choice(feature["categories"])
        records.append(record)
    return records


@dataclass(frozen=True)
class Target:
    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    port: int


@dataclass
class Measured:
    target: Target
    pid: int = 0
    cold_start_s: float = 0.0
    backend: str = ""
    memory: procs.Memory | None = None
    runs: dict[tuple[int, int], Result] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    run: load.Run
    server_cpu_seconds: float

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_seconds / self.run.requests * 1000 if self.run.requests else 0.0


def targets() -> list[Target]:
    """The four servers, each on its own free port."""
    service, cwd = procs.service_command()
    if APP_MODULE not in service:
        raise RuntimeError(f"the image's command {service} does not serve {APP_MODULE}")
    ceiling = [CEILING_MODULE if word == APP_MODULE else word for word in service]
    found = []
    for name, argv, backend in (
        ("ceiling", ceiling, None),
        ("onnx", service, "onnx"),
        ("sklearn", service, "sklearn"),
    ):
        port = procs.free_port()
        extra = {"SERVICE_BIND": f"127.0.0.1:{port}"}
        if backend:
            extra["SERVICE_BACKEND"] = backend
        found.append(Target(name, argv, cwd, procs.tool_env(extra), port))
    port = procs.free_port()
    naive, naive_cwd = procs.naive_command(port)
    found.append(Target("naive", naive, naive_cwd, procs.tool_env(), port))
    return found


@contextmanager
def started(target: Target, single: bytes, log: Path) -> Iterator[Measured]:
    launched = time.perf_counter()
    with procs.running(target.argv, target.cwd, target.env, log=log) as process:
        measured = Measured(target, pid=process.pid)
        measured.cold_start_s = procs.wait_for_prediction(
            process, target.port, single, since=launched
        )
        status, payload = procs.request(target.port, "GET", "/model")
        if status == 200:
            measured.backend = json.loads(payload).get("backend", "")
        yield measured


def drive(measured: Measured, rows: int, body: Path, connections: int, args: Any) -> Result:
    path = "/predict" if rows == 1 else "/predict/batch"
    url = f"http://127.0.0.1:{measured.target.port}{path}"
    load.drive(url, body, connections, args.warmup)
    before = procs.cpu_seconds(measured.pid)
    run = load.drive(url, body, connections, args.seconds)
    return Result(run, procs.cpu_seconds(measured.pid) - before)


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "n/a"


def report(measured: list[Measured], args: Any, wrk_cpu_us: float) -> str:
    by_name = {m.target.name: m for m in measured}
    ceiling, naive, service = by_name["ceiling"], by_name["naive"], by_name["onnx"]
    lines = [
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; load average before the "
        f"run {args.load_before}",
        f"each run: wrk, {args.seconds:g} s after a {args.warmup:g} s warm-up, on 127.0.0.1; "
        f"wrk used {wrk_cpu_us:.0f} us of CPU per request (mean)",
        "services: " + ", ".join(f"{m.target.name} answered by {m.backend}" for m in measured[1:3]),
        "",
        f"{'scenario':<27}{'target':<9}{'req/s':>9}{'rows/s':>11}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'errors':>7}{'CPU ms/req':>11}{'vs ceiling':>11}{'vs naive':>10}",
    ]
    for label, rows, connections in SCENARIOS:
        key = (rows, connections)
        scenario = f"{label}{f' ({rows} rows)' if rows > 1 else ''}, {connections} conn"
        for m in measured:
            result = m.runs[key]
            run = result.run
            is_service = m.target.name in SERVICES
            vs_ceiling = (
                _ratio(run.requests_per_second, ceiling.runs[key].run.requests_per_second)
                if is_service
                else ""
            )
            vs_naive = (
                _ratio(run.requests_per_second, naive.runs[key].run.requests_per_second)
                if is_service
                else ""
            )
            lines.append(
                f"{scenario:<27}{m.target.name:<9}{run.requests_per_second:>9,.0f}"
                f"{run.requests_per_second * rows:>11,.0f}{run.p50_ms:>8.2f}{run.p99_ms:>8.2f}"
                f"{run.errors:>7}{result.cpu_ms_per_request:>11.3f}{vs_ceiling:>11}{vs_naive:>10}"
            )
            scenario = ""
    lines += [
        "",
        f"{'':<27}{'target':<9}{'cold start s':>13}{'processes':>10}{'RSS MiB':>9}"
        f"{'PSS MiB':>9}{'PSS MiB per worker':>20}",
    ]
    for m in measured:
        memory = m.memory
        assert memory is not None
        lines.append(
            f"{'':<27}{m.target.name:<9}{m.cold_start_s:>13.2f}{memory.processes:>10}"
            f"{memory.rss_mib:>9.0f}{memory.pss_mib:>9.0f}{memory.pss_per_worker_mib:>20.0f}"
        )
    single16, single1 = service.runs[(1, 16)], service.runs[(1, 1)]
    batch = max(service.runs[(BATCH_ROWS, c)].run.requests_per_second for c in (1, 16))
    share = single16.run.requests_per_second / ceiling.runs[(1, 16)].run.requests_per_second
    lines += ["", "service / ceiling, same run (throughput; p50 and p99 latency):"]
    for label, rows, connections in SCENARIOS:
        key = (rows, connections)
        top = ceiling.runs[key].run
        scenario = f"{label}{f' ({rows} rows)' if rows > 1 else ''}, {connections} conn"
        for name in SERVICES:
            run = by_name[name].runs[key].run
            lines.append(
                f"  {scenario:<27}{name:<9}throughput "
                f"{_ratio(run.requests_per_second, top.requests_per_second):>7}   p50 "
                f"{_ratio(run.p50_ms, top.p50_ms):>7}   p99 {_ratio(run.p99_ms, top.p99_ms):>7}"
            )
            scenario = ""
    lines += [
        "",
        "issue 15's targets, service on the onnx backend:",
        _target(
            "single row, 16 conn, throughput vs ceiling",
            f"{share:.2f}x",
            f">= {TARGET_THROUGHPUT_VS_CEILING}x",
            share >= TARGET_THROUGHPUT_VS_CEILING,
        ),
        _target(
            "single row, 16 conn, p99",
            f"{single16.run.p99_ms:.2f} ms (ceiling {ceiling.runs[(1, 16)].run.p99_ms:.2f})",
            f"<= {TARGET_P99_MS:g} ms",
            single16.run.p99_ms <= TARGET_P99_MS,
        ),
        _target(
            "single row, 1 conn, p50",
            f"{single1.run.p50_ms:.2f} ms (ceiling {ceiling.runs[(1, 1)].run.p50_ms:.2f})",
            f"<= {TARGET_P50_1CONN_MS:g} ms",
            single1.run.p50_ms <= TARGET_P50_1CONN_MS,
        ),
        _target(
            f"batch of {BATCH_ROWS} rows, rows/s (best of 1 and 16 conn)",
            f"{batch * BATCH_ROWS:,.0f}",
            f">= {TARGET_BATCH_ROWS_PER_S:,}",
            batch * BATCH_ROWS >= TARGET_BATCH_ROWS_PER_S,
        ),
        f"  cold start service/naive: {service.cold_start_s / naive.cold_start_s:.2f} "
        "(below 1: the service is ready sooner)",
    ]
    return "\n".join(lines)


def _target(what: str, value: str, goal: str, met: bool) -> str:
    return f"  {what:<52}{value:<30}{goal:<14}{'met' if met else 'NOT met'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark the service against the ceiling and the naive baseline."
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each run")
    args = parser.parse_args(argv)
    load.wrk_path()  # fail before starting anything when wrk is missing
    args.load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch, ExitStack() as servers:
        work = Path(scratch)
        records = random_records(BATCH_ROWS)
        bodies = {1: work / "single.json", BATCH_ROWS: work / "batch.json"}
        bodies[1].write_text(json.dumps(records[0]))
        bodies[BATCH_ROWS].write_text(json.dumps({"records": records}))

        measured = []
        for target in targets():
            print(f"starting {target.name}: {' '.join(target.argv)}", file=sys.stderr, flush=True)
            log = work / f"{target.name}.log"
            measured.append(servers.enter_context(started(target, bodies[1].read_bytes(), log)))

        wrk_cpu = 0.0
        requests = 0
        for label, rows, connections in SCENARIOS:
            for m in measured:
                print(
                    f"  {m.target.name}: {label}, {connections} connection(s)...",
                    file=sys.stderr,
                    flush=True,
                )
                result = drive(m, rows, bodies[rows], connections, args)
                m.runs[(rows, connections)] = result
                wrk_cpu += result.run.cpu_seconds
                requests += result.run.requests
        for m in measured:
            m.memory = procs.memory(m.pid)

    print(report(measured, args, wrk_cpu / requests * 1e6 if requests else 0.0))


if __name__ == "__main__":
    main()
