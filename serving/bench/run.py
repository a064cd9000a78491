"""`make bench`: the service against the naive baseline, on this machine, in one run.

Starts the real service (the Dockerfile's command) and then the naive baseline (one uvicorn
process, `async def`, `predict` then `predict_proba`: bench/naive_app.py), each on a free
loopback port. For each it measures the cold start (launch to first successful prediction),
drives single-row and 1,000-row batch requests at 1 and 16 connections for a bounded time,
and reads the memory of its processes. Prints figures only; nothing here is asserted.

    python -m bench.run [--seconds 5] [--warmup 1]     # from serving/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.imagecmd import SERVING_DIR

BATCH_ROWS = 1000
SCENARIOS = (
    ("single row", 1, 1),
    ("single row", 16, 1),
    ("batch", 1, BATCH_ROWS),
    ("batch", 16, BATCH_ROWS),
)


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


@dataclass
class TargetResult:
    name: str
    cold_start_s: float
    memory: procs.Memory
    runs: dict[tuple[str, int], dict[str, Any]]
    backend: str = ""


def drive(
    port: int, path: str, body: Path, connections: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """One load-generator run, in its own process."""
    argv = [sys.executable, "-m", "bench.loadgen", "--url", f"http://127.0.0.1:{port}{path}"]
    argv += ["--body-file", str(body), "--connections", str(connections)]
    argv += ["--seconds", str(seconds), "--warmup", str(warmup)]
    completed = subprocess.run(
        argv, cwd=SERVING_DIR, env=procs.tool_env(), capture_output=True, check=True
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def loadgen_ceiling(body: Path, seconds: float) -> float:
    port = procs.free_port()
    argv = [sys.executable, "-m", "bench.noop_server", str(port)]
    with procs.running(argv, SERVING_DIR, procs.tool_env()):
        deadline = time.perf_counter() + 10
        while True:
            try:
                procs.request(port, "GET", "/")
                break
            except OSError:
                if time.perf_counter() > deadline:
                    raise
                time.sleep(0.05)
        return float(drive(port, "/", body, 16, seconds, 0.5)["requests_per_second"])


def measure(
    name: str,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    port: int,
    bodies: dict[int, Path],
    seconds: float,
    warmup: float,
    log: Path,
) -> TargetResult:
    single = bodies[1].read_bytes()
    launched = time.perf_counter()
    with procs.running(argv, cwd, env, log=log) as process:
        cold = procs.wait_for_prediction(process, port, single, since=launched)
        backend = ""
        status, payload = procs.request(port, "GET", "/model")
        if status == 200:
            backend = json.loads(payload).get("backend", "")
        runs = {}
        for label, connections, rows in SCENARIOS:
            path = "/predict" if rows == 1 else "/predict/batch"
            print(f"  {name}: {label}, {connections} connection(s)...", file=sys.stderr, flush=True)
            runs[(label, connections)] = drive(
                port, path, bodies[rows], connections, seconds, warmup
            )
        memory = procs.memory(process.pid)
    return TargetResult(name, cold, memory, runs, backend)


def _ratio(new: float, old: float) -> str:
    return f"{new / old:.1f}x" if old else "n/a"


def report(service: TargetResult, naive: TargetResult, ceiling: float, seconds: float) -> str:
    lines = [
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"each run: {seconds:g} s after a warm-up, on 127.0.0.1; load generator ceiling "
        f"{ceiling:,.0f} req/s (16 connections to a no-op server)",
        f"service backend: {service.backend or 'unknown'}",
        "",
        f"{'scenario':<28}{'target':<9}{'req/s':>10}{'rows/s':>12}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}{'vs naive':>10}",
    ]
    for label, connections, rows in SCENARIOS:
        key = (label, connections)
        scenario = f"{label}{f' ({rows} rows)' if rows > 1 else ''}, {connections} conn"
        for target in (service, naive):
            run = target.runs[key]
            ratio = (
                _ratio(run["requests_per_second"], naive.runs[key]["requests_per_second"])
                if target is service
                else ""
            )
            lines.append(
                f"{scenario:<28}{target.name:<9}{run['requests_per_second']:>10,.0f}"
                f"{run['requests_per_second'] * rows:>12,.0f}{run['p50_ms']:>9.2f}"
                f"{run['p99_ms']:>9.2f}{run['errors']:>8}{ratio:>10}"
            )
            scenario = ""
    lines += [
        "",
        f"{'':<28}{'target':<9}{'cold start s':>13}{'processes':>11}{'RSS MiB':>10}{'PSS MiB':>10}",
    ]
    for target in (service, naive):
        lines.append(
            f"{'':<28}{target.name:<9}{target.cold_start_s:>13.2f}{target.memory.processes:>11}"
            f"{target.memory.rss_mib:>10.0f}{target.memory.pss_mib:>10.0f}"
        )
    lines.append(
        f"cold start service/naive: {service.cold_start_s / naive.cold_start_s:.2f} "
        "(below 1: the service is ready sooner)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark the service against the naive baseline."
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each run")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        records = random_records(BATCH_ROWS)
        bodies = {1: work / "single.json", BATCH_ROWS: work / "batch.json"}
        bodies[1].write_text(json.dumps(records[0]))
        bodies[BATCH_ROWS].write_text(json.dumps({"records": records}))

        print("measuring the load generator's ceiling...", file=sys.stderr, flush=True)
        ceiling = loadgen_ceiling(bodies[1], min(args.seconds, 3.0))

        port = procs.free_port()
        command, cwd = procs.service_command()
        env = procs.tool_env({"SERVICE_BIND": f"127.0.0.1:{port}", "SERVICE_LOG_LEVEL": "warning"})
        print(
            f"service: {' '.join(command)} (workers: {env.get('SERVICE_WORKERS', 'default')})",
            file=sys.stderr,
        )
        service = measure(
            "service",
            command,
            cwd,
            env,
            port,
            bodies,
            args.seconds,
            args.warmup,
            work / "service.log",
        )

        port = procs.free_port()
        command, cwd = procs.naive_command(port)
        naive = measure(
            "naive",
            command,
            cwd,
            procs.tool_env(),
            port,
            bodies,
            args.seconds,
            args.warmup,
            work / "naive.log",
        )

    print(report(service, naive, ceiling, args.seconds))


if __name__ == "__main__":
    main()
