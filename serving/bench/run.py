"""`make bench`: the service against the framework's ceiling and a naive baseline, on this
machine, in one run.

Four servers, each on a free loopback port, started one after the other (the cold start,
launch to first successful prediction, is measured alone):

- ceiling: a typed FastAPI app with the service's record schema and no model, under the
  service's own gunicorn configuration and worker class (bench/ceiling_app.py): HTTP,
  routing and validation, what no model work can make cheaper;
- service (onnx) and service (sklearn): the image's command, as deployed (request logs at
  info, Prometheus and EMF metrics on), with `SERVICE_BACKEND` forcing each backend;
- naive: the tutorial pattern (bench/naive_app.py);
- baseline, with `--baseline DIR`: the image's command run from another checkout's serving/
  directory (the commit before a change, with a model in its app/data), on ONNX, so a change
  is compared with what it replaces in the same run.

The services require an API key, as deployed (`SERVICE_API_KEYS`), and every request of every
target carries one (`Authorization: Bearer`), so the request bytes are the same for all.

Then, scenario by scenario, wrk drives each server in turn (bench/load.py: a warm-up, then
three runs on fresh connections), so the ratios compare servers measured seconds apart
under the same background load. For each: requests/s, rows/s, p50/p99 latency, errors, and the
server's CPU time per request (its processes' user + system time over the run, from
psutil): a figure that stays put when other work on the machine takes CPU away. Prints
figures and the issue's targets; nothing here is asserted. A run with errors (answers other
than 2xx, socket errors, timeouts) measures nothing: its figures read n/a, and the command
exits 1 naming each.

    python -m bench.run [--seconds 6] [--warmup 1] [--rounds 3] [--markdown] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from app.auth import new_key
from app.settings import Settings
from bench import load, procs
from bench.imagecmd import SERVING_DIR

# The servers started here read this environment, so a batch is at most what they accept
# (SERVICE_MAX_BATCH_RECORDS, SERVICE_MAX_ARROW_RECORDS): larger, it would measure refusals.
ACCEPTED = Settings()
BATCH_ROWS = min(1000, ACCEPTED.max_batch_records)
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
BASELINE = "baseline"

# Issue 15's targets, for the service on its fast path.
TARGET_THROUGHPUT_VS_CEILING = 0.5
TARGET_P99_MS = 10.0
TARGET_P50_1CONN_MS = 1.0
# Issue 21's: with authentication on, at least this share of the pre-change commit's
# single-row throughput at 16 connections (or the ceiling share above, whichever is lower).
TARGET_VS_BASELINE = 0.95
TARGET_BATCH_ROWS_PER_S = 1_000_000


# Issue 22's targets: Arrow bodies over HTTP, and `make score` on a Parquet file.
ARROW_ROWS = min(10_000, ACCEPTED.max_arrow_records)
ARROW_CONNECTIONS = 4
TARGET_ARROW_ROWS_PER_S = 1_000_000
SCORE_ROWS = int(os.environ.get("BENCH_SCORE_ROWS", "10000000"))
SCORE_RUNS = 3
TARGET_SCORE_ROWS_PER_S = 2_000_000


def model_dir() -> Path:
    return Path(os.environ.get("SERVICE_MODEL_DIR", SERVING_DIR / "app" / "data"))


def random_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Valid records spread over the range training observed, every field set."""
    metadata = json.loads((model_dir() / "model_metadata.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets

    def value(feature: dict[str, Any]) -> Any:
        if feature["type"] != "number":
            return rng.choice(feature["categories"])
        bounds = feature.get("observed", feature)
        return round(rng.uniform(bounds["minimum"], bounds["maximum"]), 2)

    features = metadata["input_schema"]["features"]
    return [{feature["name"]: value(feature) for feature in features} for _ in range(count)]


@dataclass(frozen=True)
class Target:
    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    port: int
    headers: dict[str, str] = field(default_factory=dict)


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


def targets(baseline: Path | None = None) -> list[Target]:
    """The four servers (five with a baseline), each on its own free port, the services
    requiring the one API key every request carries."""
    key = new_key()
    headers = {"Authorization": f"Bearer {key}"}
    service, cwd = procs.service_command()
    if APP_MODULE not in service:
        raise RuntimeError(f"the image's command {service} does not serve {APP_MODULE}")
    ceiling = [CEILING_MODULE if word == APP_MODULE else word for word in service]

    def served(name: str, argv: list[str], where: Path, extra: dict[str, str]) -> Target:
        port = procs.free_port()
        extra |= {"SERVICE_BIND": f"127.0.0.1:{port}", "SERVICE_API_KEYS": f"bench:{key}"}
        return Target(name, argv, where, procs.tool_env(extra), port, headers)

    port = procs.free_port()
    naive, naive_cwd = procs.naive_command(port)
    found = [
        served("ceiling", ceiling, cwd, {}),
        served("onnx", service, cwd, {"SERVICE_BACKEND": "onnx"}),
        served("sklearn", service, cwd, {"SERVICE_BACKEND": "sklearn"}),
        Target("naive", naive, naive_cwd, procs.tool_env(), port, headers),
    ]
    if baseline is not None:
        model = {"SERVICE_BACKEND": "onnx", "SERVICE_MODEL_DIR": str(baseline / "app" / "data")}
        found.append(served(BASELINE, service, baseline, model))
    return found


@contextmanager
def started(target: Target, single: bytes, log: Path) -> Iterator[Measured]:
    launched = time.perf_counter()
    with procs.running(target.argv, target.cwd, target.env, log=log) as process:
        measured = Measured(target, pid=process.pid)
        answered = procs.wait_ok(
            process, target.port, "POST", "/predict", single, 60, target.headers
        )
        measured.cold_start_s = answered - launched
        status, payload = procs.request(target.port, "GET", "/model", headers=target.headers)
        if status == 200:
            measured.backend = json.loads(payload).get("backend", "")
        yield measured


def drive(measured: Measured, rows: int, body: Path, connections: int, args: Any) -> Result:
    """A warm-up, then `args.rounds` runs on fresh connections, combined.

    Fresh connections each round because the kernel hands a burst of new connections to
    whichever worker wakes first: one run's 16 connections may all land on one worker, the
    next run's split evenly. Several rounds measure the usual placement, not one draw."""
    path = "/predict" if rows == 1 else "/predict/batch"
    url = f"http://127.0.0.1:{measured.target.port}{path}"
    headers = tuple(f"{name}: {value}" for name, value in measured.target.headers.items())
    load.drive(url, body, connections, args.warmup, headers)
    runs, cpu = [], 0.0
    for _ in range(args.rounds):
        before = procs.cpu_seconds(measured.pid)
        runs.append(load.drive(url, body, connections, args.seconds / args.rounds, headers))
        cpu += procs.cpu_seconds(measured.pid) - before
    return Result(load.combine(runs), cpu)


# What a figure from a run with errors reads: refused or failed requests measure nothing.
NOT_A_RESULT = "n/a"


def _ok(*results: Result) -> bool:
    return all(result.run.errors == 0 for result in results)


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else NOT_A_RESULT


def render(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    """A table as aligned text, or as a Markdown table (first column left, others right)."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [line(header)] + [line(row) for row in rows]


def _scenario(label: str, rows: int, connections: int) -> str:
    return f"{label}{f' ({rows} rows)' if rows > 1 else ''}, {connections} conn"


def report(measured: list[Measured], args: Any, wrk_cpu_us: float, markdown: bool = False) -> str:
    by_name = {m.target.name: m for m in measured}
    ceiling, naive, service = by_name["ceiling"], by_name["naive"], by_name["onnx"]
    lines = [
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; load average before the "
        f"run {args.load_before}",
        f"each figure: wrk on 127.0.0.1, a {args.warmup:g} s warm-up, then {args.rounds} runs "
        f"on fresh connections, {args.seconds:g} s in all (p50 and p99: the median of the "
        f"runs'); wrk used {wrk_cpu_us:.0f} us of CPU per request (mean)",
        "services: " + ", ".join(f"{m.target.name} answered by {m.backend}" for m in measured[1:3]),
        "",
    ]
    header = ["scenario", "target", "req/s", "rows/s", "p50 ms", "p99 ms", "errors"]
    header += ["CPU ms/req", "vs ceiling", "vs naive"]
    rows = []
    for label, rows_per_request, connections in SCENARIOS:
        key = (rows_per_request, connections)
        scenario = _scenario(label, rows_per_request, connections)
        for m in measured:
            result = m.runs[key]
            run = result.run
            cells = [
                f"{run.requests_per_second:,.0f}",
                f"{run.requests_per_second * rows_per_request:,.0f}",
                f"{run.p50_ms:.2f}",
                f"{run.p99_ms:.2f}",
                str(run.errors),
                f"{result.cpu_ms_per_request:.3f}",
            ]
            if run.errors:
                cells = [NOT_A_RESULT] * 4 + [str(run.errors), NOT_A_RESULT]
            ratios = ["", ""]
            if m.target.name in (*SERVICES, BASELINE):
                ratios = [
                    _ratio(run.requests_per_second, of.runs[key].run.requests_per_second)
                    if _ok(result, of.runs[key])
                    else NOT_A_RESULT
                    for of in (ceiling, naive)
                ]
            rows.append([scenario, m.target.name, *cells, *ratios])
            scenario = ""
    lines += render(header, rows, markdown)
    if not all(_ok(*m.runs.values()) for m in measured):
        lines.append(f"{NOT_A_RESULT}: a run with errors is not a result")

    header = ["target", "cold start s", "processes", "RSS MiB", "PSS MiB", "PSS MiB per worker"]
    rows = []
    for m in measured:
        assert m.memory is not None
        figures = (f"{value:.0f}" for value in astuple(m.memory))  # processes, then MiB
        rows.append([m.target.name, f"{m.cold_start_s:.2f}", *figures])
    lines += ["", *render(header, rows, markdown)]

    header = ["scenario", "target", "throughput", "p50 latency", "p99 latency", "CPU per request"]
    rows = []
    for label, rows_per_request, connections in SCENARIOS:
        key = (rows_per_request, connections)
        ref = ceiling.runs[key]
        scenario = _scenario(label, rows_per_request, connections)
        for name in SERVICES:
            here = by_name[name].runs[key]
            pairs = [
                (here.run.requests_per_second, ref.run.requests_per_second),
                (here.run.p50_ms, ref.run.p50_ms),
                (here.run.p99_ms, ref.run.p99_ms),
                (here.cpu_ms_per_request, ref.cpu_ms_per_request),
            ]
            ratios = [_ratio(value, of) if _ok(here, ref) else NOT_A_RESULT for value, of in pairs]
            rows.append([scenario, name, *ratios])
            scenario = ""
    lines += ["", "service / ceiling, same run:", "", *render(header, rows, markdown)]

    single16, single1 = service.runs[(1, 16)].run, service.runs[(1, 1)].run
    batches = [service.runs[(BATCH_ROWS, c)] for c in (1, 16)]
    batch = max(result.run.requests_per_second for result in batches)
    ceiling16 = ceiling.runs[(1, 16)].run.requests_per_second
    share = single16.requests_per_second / ceiling16 if ceiling16 else 0.0
    header = ["target (service on onnx)", "measured", "goal", ""]
    rows = [
        _target(
            "single row, 16 conn, throughput vs ceiling",
            f"{share:.2f}x",
            f">= {TARGET_THROUGHPUT_VS_CEILING}x",
            share >= TARGET_THROUGHPUT_VS_CEILING,
            service.runs[(1, 16)],
            ceiling.runs[(1, 16)],
        ),
        _target(
            "single row, 16 conn, p99",
            f"{single16.p99_ms:.2f} ms (ceiling {ceiling.runs[(1, 16)].run.p99_ms:.2f})",
            f"<= {TARGET_P99_MS:g} ms",
            single16.p99_ms <= TARGET_P99_MS,
            service.runs[(1, 16)],
        ),
        _target(
            "single row, 1 conn, p50",
            f"{single1.p50_ms:.2f} ms (ceiling {ceiling.runs[(1, 1)].run.p50_ms:.2f})",
            f"<= {TARGET_P50_1CONN_MS:g} ms",
            single1.p50_ms <= TARGET_P50_1CONN_MS,
            service.runs[(1, 1)],
        ),
        _target(
            f"batch of {BATCH_ROWS} rows, rows/s (best of 1 and 16 conn)",
            f"{batch * BATCH_ROWS:,.0f}",
            f">= {TARGET_BATCH_ROWS_PER_S:,}",
            batch * BATCH_ROWS >= TARGET_BATCH_ROWS_PER_S,
            *batches,
        ),
        _target(
            "cold start vs naive",
            f"{service.cold_start_s:.2f} s ({service.cold_start_s / naive.cold_start_s:.2f}x)",
            "< naive",
            service.cold_start_s < naive.cold_start_s,
        ),
    ]
    if BASELINE in by_name:
        # Issue 21: the lower of half the ceiling and 95 % of the pre-change commit.
        before = by_name[BASELINE].runs[(1, 16)].run
        kept = _ratio(single16.requests_per_second, before.requests_per_second)
        floor = min(
            TARGET_THROUGHPUT_VS_CEILING * ceiling16,
            TARGET_VS_BASELINE * before.requests_per_second,
        )
        rows.append(
            _target(
                "single row, 16 conn, with keys vs baseline",
                f"{kept} (baseline {_ratio(before.requests_per_second, ceiling16)} ceiling, "
                f"p99 {before.p99_ms:.2f} ms)",
                f">= {floor:,.0f} req/s",
                single16.requests_per_second >= floor,
                service.runs[(1, 16)],
                ceiling.runs[(1, 16)],
                by_name[BASELINE].runs[(1, 16)],
            )
        )
    lines += ["", "issue 15's and 21's targets:", "", *render(header, rows, markdown)]
    return "\n".join(lines)


def write_arrow_body(path: Path, records: list[dict[str, Any]]) -> None:
    import pyarrow as pa

    table = pa.Table.from_pylist(records)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def score_rates(work: Path, rows: int, runs: int) -> list[float]:
    """`python -m app.score` end to end (start, read, check, predict, write) on a Parquet
    file of `rows` rows, `runs` times: rows/s of each run, from its summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunk = pa.Table.from_pylist(random_records(min(rows, 100_000), seed=1))
    source = work / "score-input.parquet"
    with pq.ParquetWriter(source, chunk.schema) as writer:
        for start in range(0, rows, chunk.num_rows):
            writer.write_table(chunk.slice(0, min(chunk.num_rows, rows - start)))
    rates = []
    for _ in range(runs):
        argv = [sys.executable, "-m", "app.score", "--input", str(source)]
        argv += ["--output", str(work / "score-output.parquet"), "--force"]
        done = subprocess.run(argv, cwd=SERVING_DIR, capture_output=True, text=True, check=True)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        rates.append(summary["rows"] / summary["seconds"])
    return rates


def columnar_report(
    json_batches: list[Result], arrow: Result, scores: list[float], markdown: bool
) -> str:
    score = statistics.median(scores)
    json_rows = max(result.run.requests_per_second for result in json_batches) * BATCH_ROWS
    arrow_rows = arrow.run.requests_per_second * ARROW_ROWS
    header = ["issue 22: batch paths (service on onnx)", "rows/s", "goal", ""]
    rows = [
        [
            f"JSON batch of {BATCH_ROWS} rows (best of 1 and 16 conn)",
            f"{json_rows:,.0f}" if _ok(*json_batches) else NOT_A_RESULT,
            "",
            "",
        ],
        _target(
            f"Arrow batch of {ARROW_ROWS:,} rows, Arrow answers, {ARROW_CONNECTIONS} conn",
            f"{arrow_rows:,.0f}",
            f">= {TARGET_ARROW_ROWS_PER_S:,}",
            arrow_rows >= TARGET_ARROW_ROWS_PER_S,
            arrow,
        ),
        _target(
            f"make score, {SCORE_ROWS:,}-row Parquet (median of {len(scores)})",
            f"{score:,.0f}",
            f">= {TARGET_SCORE_ROWS_PER_S:,}",
            score >= TARGET_SCORE_ROWS_PER_S,
        ),
    ]
    return "\n".join(["", *render(header, rows, markdown)])


def _target(what: str, value: str, goal: str, met: bool, *measured: Result) -> list[str]:
    """A target's row: n/a and not met when a run it is measured from had errors."""
    if not _ok(*measured):
        return [what, NOT_A_RESULT, goal, "NOT met"]
    return [what, value, goal, "met" if met else "NOT met"]


def failures(measured: list[Measured], arrow: Result) -> list[str]:
    """Each run with errors, by target and scenario: none of them is a result."""
    runs = [
        (m.target.name, _scenario(label, rows, connections), m.runs[(rows, connections)])
        for label, rows, connections in SCENARIOS
        for m in measured
    ]
    runs.append(("onnx", f"Arrow batch ({ARROW_ROWS} rows), {ARROW_CONNECTIONS} conn", arrow))
    return [
        f"{name}, {scenario}: {result.run.errors} errors in {result.run.requests} requests"
        for name, scenario, result in runs
        if result.run.errors
    ]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark the service against the ceiling and the naive baseline."
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="measured time per figure")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs on fresh connections making up each figure"
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout's serving/ directory (with its model) to measure alongside",
    )
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
        for target in targets(args.baseline):
            progress(f"starting {target.name}: {' '.join(target.argv)}")
            log = work / f"{target.name}.log"
            measured.append(servers.enter_context(started(target, bodies[1].read_bytes(), log)))

        wrk_cpu = 0.0
        requests = 0
        for label, rows, connections in SCENARIOS:
            for m in measured:
                progress(f"  {m.target.name}: {label}, {connections} connection(s)...")
                result = drive(m, rows, bodies[rows], connections, args)
                m.runs[(rows, connections)] = result
                wrk_cpu += result.run.cpu_seconds
                requests += result.run.requests
        for m in measured:
            m.memory = procs.memory(m.pid)
        onnx = next(m for m in measured if m.target.name == "onnx")
        arrow_body = work / "batch.arrows"
        write_arrow_body(arrow_body, random_records(ARROW_ROWS, seed=2))
        progress(f"  {onnx.target.name}: Arrow batches...")
        arrow = drive(onnx, ARROW_ROWS, arrow_body, ARROW_CONNECTIONS, args)
    with tempfile.TemporaryDirectory(prefix="bench-score-") as scratch:
        progress(f"make score on {SCORE_ROWS:,} rows, {SCORE_RUNS} runs...")
        scores = score_rates(Path(scratch), SCORE_ROWS, SCORE_RUNS)

    print(report(measured, args, wrk_cpu / requests * 1e6 if requests else 0.0, args.markdown))
    json_batches = [onnx.runs[(BATCH_ROWS, c)] for c in (1, 16)]
    print(columnar_report(json_batches, arrow, scores, args.markdown))
    failed = failures(measured, arrow)
    if failed:
        sys.exit("make bench: runs with errors are not results:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
