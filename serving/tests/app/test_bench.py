"""The benchmark's parts stay runnable: the naive baseline answers, the load generator
parses responses and counts what it sent. No timing is asserted."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import loadgen, procs
from bench.imagecmd import SERVING_DIR


def test_response_head_parsing() -> None:
    head = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: x\r\nContent-Length: 17\r\n\r\n"
    assert loadgen.parse_head(head) == (422, 17)
    assert loadgen.parse_head(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, 0)


def test_percentiles_pick_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 0.50) == 50.0
    assert loadgen.percentile(values, 0.99) == 99.0
    assert loadgen.percentile([3.0], 0.99) == 3.0


@pytest.mark.anyio
async def test_naive_baseline_answers_single_and_batch(
    model_dir: Path, example: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_MODEL_DIR", str(model_dir))
    monkeypatch.delitem(sys.modules, "bench.naive_app", raising=False)
    from bench import naive_app

    transport = httpx.ASGITransport(app=naive_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://naive") as client:
        single = await client.post("/predict", json=example)
        batch = await client.post("/predict/batch", json={"records": [example, example]})
    assert single.status_code == 200
    assert batch.status_code == 200
    assert [p["prediction"] for p in batch.json()["predictions"]] == [
        single.json()["prediction"]
    ] * 2


@pytest.mark.slow
def test_load_generator_counts_every_response(tmp_path: Path) -> None:
    port = procs.free_port()
    server = [sys.executable, "-m", "bench.noop_server", str(port)]
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"x": 1}))
    with procs.running(server, SERVING_DIR, procs.tool_env()):
        for _ in range(200):
            try:
                procs.request(port, "GET", "/")
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/"
        result = loadgen.summary(asyncio.run(loadgen.run(url, body.read_bytes(), 4, 0.3, 0.1)))
    assert result["requests"] > 0
    assert result["errors"] == 0
    assert result["statuses"] == {200: result["requests"]}
