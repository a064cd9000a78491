"""The benchmark's parts stay runnable: the ceiling and the naive baseline answer with the
service's schema, wrk's figures are read back, and a wrk run counts what it sent and what
failed. No timing is asserted."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import get_settings
from bench import load, procs, run


def test_wrk_figures_are_read_from_the_scripts_json_line() -> None:
    output = (
        "Running 1s test @ http://127.0.0.1:1/predict\n  1 threads and 4 connections\n"
        '{"requests":2000,"duration_us":1000000,"p50_us":450,"p99_us":2100,"mean_us":500.0,'
        '"non_2xx":3,"socket_errors":1,"timeouts":1}\n'
    )
    run = load.parse(output, cpu_seconds=0.05)
    assert run.requests == 2000
    assert run.requests_per_second == 2000.0
    assert (run.p50_ms, run.p99_ms) == (0.45, 2.1)
    assert run.errors == 5
    assert run.cpu_seconds == 0.05


def test_runs_on_fresh_connections_combine_into_one_figure() -> None:
    runs = [
        load.Run(1000, 2.0, 500.0, 1.0, 4.0, 1.2, errors=0, cpu_seconds=0.02),
        load.Run(3000, 2.0, 1500.0, 0.5, 9.0, 0.6, errors=2, cpu_seconds=0.05),
        load.Run(2000, 2.0, 1000.0, 0.8, 3.0, 0.9, errors=1, cpu_seconds=0.03),
    ]
    combined = load.combine(runs)
    assert (combined.requests, combined.seconds) == (6000, 6.0)
    assert combined.requests_per_second == 1000.0
    assert combined.p50_ms == 0.8  # the median of the runs' figures
    assert combined.p99_ms == 4.0
    assert combined.mean_ms == pytest.approx((1.2 * 1000 + 0.6 * 3000 + 0.9 * 2000) / 6000)
    assert combined.errors == 3
    assert combined.cpu_seconds == pytest.approx(0.10)


def test_wrk_output_without_figures_is_an_error() -> None:
    with pytest.raises(ValueError, match="no figures"):
        load.parse("unable to connect to 127.0.0.1:1 Connection refused\n", cpu_seconds=0)


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """The bench apps read the settings when imported: from this test's environment."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _fresh(module: str, monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> Any:
    monkeypatch.setenv("SERVICE_MODEL_DIR", str(model_dir))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return importlib.import_module(module)


@pytest.mark.anyio
@pytest.mark.usefixtures("fresh_settings")
async def test_naive_baseline_answers_single_and_batch(
    model_dir: Path, example: dict[str, Any], task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    naive_app = _fresh("bench.naive_app", monkeypatch, model_dir)
    transport = httpx.ASGITransport(app=naive_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://naive") as client:
        single = await client.post("/predict", json=example)
        batch = await client.post("/predict/batch", json={"records": [example, example]})
    assert single.status_code == 200
    assert batch.status_code == 200
    repeated: Any = [single.json()["prediction"]] * 2
    if task == "regression":  # to rounding: a batch is one matrix product
        repeated = pytest.approx(repeated, rel=1e-12)
    assert [p["prediction"] for p in batch.json()["predictions"]] == repeated


@pytest.mark.anyio
@pytest.mark.usefixtures("fresh_settings")
async def test_ceiling_validates_the_services_schema_and_runs_no_model(
    model_dir: Path,
    example: dict[str, Any],
    category_feature: dict[str, Any],
    task: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ceiling_app = _fresh("bench.ceiling_app", monkeypatch, model_dir)
    transport = httpx.ASGITransport(app=ceiling_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ceiling") as client:
        single = await client.post("/predict", json=example)
        batch = await client.post("/predict/batch", json={"records": [example] * 3})
        unseen = await client.post("/predict", json={**example, category_feature["name"]: "?"})
        unknown = await client.post("/predict", json={**example, "not_a_feature": 1})
    assert single.status_code == 200
    # The service's answer's shape: a regressor's has no probabilities.
    probabilities = {"probability", "probabilities"} if task == "classification" else set()
    assert set(single.json()) == {"prediction", "model_version", *probabilities}
    assert len(batch.json()["predictions"]) == 3
    # The same validation as the service: what it would reject costs the ceiling a 422 too.
    assert unseen.status_code == 422
    assert unknown.status_code == 422


@pytest.mark.slow
@pytest.mark.needs("wrk")
def test_wrk_counts_every_response_and_every_failure(tmp_path: Path, model_dir: Path) -> None:
    """wrk against the naive baseline (one uvicorn process, quick to start): a valid body is
    answered 200 every time, an invalid one is counted as an error every time."""
    port = procs.free_port()
    argv, cwd = procs.naive_command(port)
    valid, invalid = tmp_path / "valid.json", tmp_path / "invalid.json"
    valid.write_text(json.dumps({"records": [{}]}))
    invalid.write_text("not json")
    env = procs.tool_env({"SERVICE_MODEL_DIR": str(model_dir)})
    with procs.running(argv, cwd, env) as naive:
        # A first answer before wrk's clock starts: its lazy first-call costs took longer than
        # a 1-second run on a loaded machine, which then counted no request at all.
        procs.wait_ok(naive, port, "POST", "/predict/batch", valid.read_bytes(), timeout=60)
        url = f"http://127.0.0.1:{port}/predict/batch"
        good = load.drive(url, valid, connections=2, seconds=2)
        bad = load.drive(url, invalid, connections=2, seconds=1)
    assert good.requests > 0
    assert good.errors == 0
    assert good.p50_ms <= good.p99_ms
    assert bad.requests > 0
    assert bad.errors == bad.requests


def _measured(name: str, rps: float, p99_ms: float) -> run.Measured:
    target = run.Target(name, ["true"], Path(), {}, 0)
    result = run.Measured(target, cold_start_s=1.0, backend=name)
    result.memory = procs.Memory(3, 300.0, 150.0, 50.0)
    for _, rows, connections in run.SCENARIOS:
        figures = load.Run(int(rps * 5), 5.0, rps, 1.0, p99_ms, 1.0, errors=0, cpu_seconds=0.1)
        result.runs[(rows, connections)] = run.Result(figures, server_cpu_seconds=rps * 5e-4)
    return result


def _four() -> list[run.Measured]:
    return [
        _measured("ceiling", 10_000, 2.0),
        _measured("onnx", 6_000, 4.0),
        _measured("sklearn", 500, 80.0),
        _measured("naive", 100, 700.0),
    ]


ARGS = argparse.Namespace(seconds=6.0, warmup=1.0, rounds=3, load_before="0.5 0.5 0.5")


@pytest.mark.parametrize("markdown", [False, True])
def test_report_states_same_run_ratios_and_the_targets(markdown: bool) -> None:
    measured = _four()
    text = run.report(measured, ARGS, wrk_cpu_us=25.0, markdown=markdown)
    assert "0.60x" in text  # onnx throughput / ceiling
    assert "60.00x" in text  # onnx throughput / naive
    assert "2.00x" in text  # onnx p99 / ceiling
    # Every target met but the cold start, equal to the naive baseline's here.
    assert text.count("NOT met") == 1
    assert "1.00 s (1.00x)" in text
    assert ("|---|" in text) == markdown


def test_a_run_with_errors_is_no_figure_no_ratio_and_no_target_and_is_named() -> None:
    """Refused requests are not throughput: `make bench` printed rows/s and ratios for
    batches the service refused, every one."""
    measured = _four()
    refused = load.Run(940, 2.0, 470.0, 1.0, 2.0, 1.0, errors=940, cpu_seconds=0.1)
    measured[1].runs[(run.BATCH_ROWS, 16)] = run.Result(refused, server_cpu_seconds=0.5)
    text = run.report(measured, ARGS, wrk_cpu_us=25.0)
    row = next(line.split() for line in text.splitlines() if "940" in line)
    assert row == ["onnx", "n/a", "n/a", "n/a", "n/a", "940", "n/a", "n/a", "n/a"]
    batch_target = next(line for line in text.splitlines() if line.startswith("batch of"))
    assert batch_target.split()[-5:] == ["n/a", ">=", "1,000,000", "NOT", "met"]
    assert "470" not in text
    ok = measured[1].runs[(run.BATCH_ROWS, 1)]
    assert "n/a" in run.columnar_report([ok, ok], run.Result(refused, 0.5), [3e6], False)
    assert run.failures(measured, ok) == [
        f"onnx, batch ({run.BATCH_ROWS} rows), 16 conn: 940 errors in 940 requests"
    ]


@pytest.mark.usefixtures("fresh_settings")
def test_batches_are_no_larger_than_the_services_under_test_accept(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.setenv("SERVICE_MAX_BATCH_RECORDS", "500")
    monkeypatch.setenv("SERVICE_MAX_ARROW_RECORDS", "700")
    monkeypatch.setattr("bench.run", run)  # restored after the fresh import replaces it
    bench = _fresh("bench.run", monkeypatch, model_dir)
    assert (bench.BATCH_ROWS, bench.ARROW_ROWS) == (500, 700)
    assert {rows for _, rows, _ in bench.SCENARIOS} == {1, 500}
