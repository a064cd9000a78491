"""API keys (app.auth), in-process: who is refused and how, which key is accepted, rotation,
and that a key never reaches a log line, a metric or a response."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import ValidationError

from app import auth
from app.factory import create_app
from app.logs import JsonFormatter
from app.settings import Settings, describe_invalid

from .conftest import BATCH_ENCODINGS, in_process

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
# Two clients, each with its own key, valid at once.
KEYS = {"alpha": auth.new_key(), "beta": auth.new_key()}
WRONG = auth.new_key()
OPERATIONAL = ["/model", "/metrics", "/openapi.json", "/no-such-route"]


def app_with(model_dir: Path, keys: dict[str, str]) -> FastAPI:
    return create_app(Settings(model_dir=model_dir, api_keys=keys))


@pytest.fixture(scope="module")
async def keyed(model_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(app_with(model_dir, KEYS)) as http:
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def predictions(
    http: httpx.AsyncClient, example: dict[str, Any], headers: dict[str, str]
) -> list[httpx.Response]:
    """POST /predict, then /predict/batch in every encoding it accepts."""
    answers = [
        await http.post("/predict", content=json.dumps(example), headers={**JSON, **headers})
    ]
    for content_type, encode in BATCH_ENCODINGS.values():
        answers.append(
            await http.post(
                "/predict/batch",
                content=encode([example, example]),
                headers={"content-type": content_type, **headers},
            )
        )
    return answers


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.url, response.text)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert set(response.json()) == {"detail"}
    assert response.headers["x-request-id"]


async def test_without_a_key_everything_but_health_and_ready_is_401(
    keyed: httpx.AsyncClient, example: dict[str, Any]
) -> None:
    for response in await predictions(keyed, example, {}):
        assert_refused(response)
        assert "API key is required" in response.json()["detail"]
    for path in OPERATIONAL:
        assert_refused(await keyed.get(path))
    for path in ("/health", "/ready"):
        assert (await keyed.get(path)).status_code == 200, path


@pytest.mark.parametrize(
    "headers",
    [
        bearer(WRONG),
        {"X-API-Key": WRONG},
        # A valid key cut short, extended, or sent under another scheme is no key.
        bearer(KEYS["alpha"][:-1]),
        bearer(KEYS["alpha"] + "x"),
        {"Authorization": f"Basic {KEYS['alpha']}"},
        {"Authorization": "Bearer"},
    ],
    ids=["bearer", "x-api-key", "cut", "extended", "basic-scheme", "empty-bearer"],
)
async def test_a_wrong_key_is_401(
    keyed: httpx.AsyncClient, example: dict[str, Any], headers: dict[str, str]
) -> None:
    for response in await predictions(keyed, example, headers):
        assert_refused(response)
    assert_refused(await keyed.get("/model", headers=headers))


@pytest.mark.parametrize("name", sorted(KEYS))
@pytest.mark.parametrize("header", ["bearer", "x-api-key", "lower-case-scheme"])
async def test_each_valid_key_is_accepted_by_either_header(
    keyed: httpx.AsyncClient, example: dict[str, Any], name: str, header: str
) -> None:
    key = KEYS[name]
    headers = {
        "bearer": bearer(key),
        "x-api-key": {"X-API-Key": key},
        "lower-case-scheme": {"authorization": f"bearer {key}"},
    }[header]
    answers = await predictions(keyed, example, headers)
    assert [r.status_code for r in answers] == [200] * (1 + len(BATCH_ENCODINGS))
    assert (await keyed.get("/model", headers=headers)).status_code == 200


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_refusals_are_counted_by_reason_and_keys_by_name_never_as_server_errors(
    keyed: httpx.AsyncClient,
    example: dict[str, Any],
    metadata: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    version = metadata["model_version"]
    watched = {
        "missing": ("http_authentication_refusals_total", {"reason": "missing"}),
        "invalid": ("http_authentication_refusals_total", {"reason": "invalid"}),
        "beta": ("http_api_key_requests_total", {"api_key": "beta"}),
        "server": ("http_request_errors_total", {"route": "unmatched", "kind": "server"}),
    }

    def counts() -> dict[str, float]:
        return {k: sample(n, **labels, model_version=version) for k, (n, labels) in watched.items()}

    before = counts()
    with caplog.at_level(logging.INFO, logger="app.requests"):
        await keyed.post("/predict", content=json.dumps(example), headers=JSON)
        await keyed.post("/predict", content=json.dumps(example), headers={**JSON, **bearer(WRONG)})
        await keyed.post(
            "/predict", content=json.dumps(example), headers={**JSON, **bearer(KEYS["beta"])}
        )
    after = counts()
    assert {k: after[k] - before[k] for k in before} == {
        "missing": 1,
        "invalid": 1,
        "beta": 1,
        "server": 0,
    }
    lines = [vars(r) for r in caplog.records if r.name == "app.requests"]
    assert [line["status"] for line in lines] == [401, 401, 200]
    assert [line.get("auth_refused") for line in lines] == ["missing", "invalid", None]
    assert [line.get("api_key") for line in lines] == [None, None, "beta"]
    # The EMF members: an authentication refusal and a 4xx, never a 5xx.
    assert [line.get("AuthRefusals") for line in lines] == [1, 1, None]
    assert all("Status5xx" not in line for line in lines)
    assert lines[2]["ApiKeyRequests_beta"] == 1


async def test_no_key_is_ever_logged_or_echoed(
    keyed: httpx.AsyncClient, example: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    secrets = [*KEYS.values(), WRONG]
    bodies = []
    with caplog.at_level(logging.DEBUG):
        for headers in (bearer(KEYS["alpha"]), {"X-API-Key": KEYS["beta"]}, bearer(WRONG), {}):
            bodies += [r.text for r in await predictions(keyed, example, headers)]
            bodies.append((await keyed.get("/model", headers=headers)).text)
            bodies.append(
                (await keyed.post("/predict", content=b"{", headers={**JSON, **headers})).text
            )
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert '"api_key":"alpha"' in logged  # the lines are there, with the names
    for secret in secrets:
        assert secret not in logged
        assert all(secret not in body for body in bodies)


async def test_rotation_add_the_new_key_move_clients_remove_the_old(
    model_dir: Path, example: dict[str, Any]
) -> None:
    old, new = auth.new_key(), auth.new_key()
    stages = [
        {"client-2025": old},  # before
        {"client-2025": old, "client-2026": new},  # the new key added: both work
        {"client-2026": new},  # clients moved, the old key removed
    ]
    answers = []
    for keys in stages:
        async with in_process(app_with(model_dir, keys)) as http:
            answers.append(
                [
                    (
                        await http.post(
                            "/predict", content=json.dumps(example), headers={**JSON, **bearer(key)}
                        )
                    ).status_code
                    for key in (old, new)
                ]
            )
    assert answers == [[200, 401], [200, 200], [401, 200]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "alpha:" + "k" * 42,
            "key 'alpha' is 42 characters: a key must be at least 32 random bytes",
        ),
        (f"alpha {KEYS['alpha']}", "each entry must be name:key"),
        (f"alpha:{KEYS['alpha']},alpha:{KEYS['beta']}", "the name 'alpha' is given twice"),
        (f"alpha:{KEYS['alpha']},beta:{KEYS['alpha']}", "two names share one key"),
        (f"al pha:{KEYS['alpha']}", "a key name must be"),
        ('{"alpha": 5}', "key 'alpha' is empty or holds spaces"),
    ],
    ids=["short", "no-colon", "duplicate-name", "shared-key", "bad-name", "json-not-a-string"],
)
def test_invalid_keys_are_refused_naming_the_variable_never_quoting_a_key(
    value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_API_KEYS", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    described = describe_invalid(raised.value)
    assert described.startswith("SERVICE_API_KEYS: ")
    assert message in described
    for secret in (*KEYS.values(), "k" * 42):
        assert secret not in described


def test_keys_are_read_in_either_form_and_held_only_as_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVICE_API_KEYS", ",".join(f"{n}:{k}" for n, k in KEYS.items()))
    listed = Settings()
    monkeypatch.setenv("SERVICE_API_KEYS", json.dumps(KEYS))
    assert Settings().api_keys == listed.api_keys == {n: auth.digest(k) for n, k in KEYS.items()}
    for key in KEYS.values():
        assert key not in repr(listed)
        assert key not in listed.model_dump_json()
    monkeypatch.setenv("SERVICE_API_KEYS", "")
    assert Settings().api_keys == {}


async def test_unset_authentication_is_off(
    client: httpx.AsyncClient, settings: Settings, example: dict[str, Any]
) -> None:
    assert settings.api_keys == {}
    for response in await predictions(client, example, {}):
        assert response.status_code == 200


def test_the_generated_key_is_32_random_bytes() -> None:
    keys = {auth.new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == auth.MIN_KEY_CHARS for k in keys)
    assert auth.parse({"generated": keys.pop()})


async def test_the_openapi_document_says_how_to_send_a_key_and_that_checks_need_none(
    keyed: httpx.AsyncClient,
) -> None:
    document = (await keyed.get("/openapi.json", headers=bearer(KEYS["alpha"]))).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"]["scheme"] == "bearer"
    for path in ("/predict", "/predict/batch", "/model"):
        operation = next(iter(document["paths"][path].values()))
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
        assert "401" in operation["responses"]
    for path in auth.OPEN_PATHS:
        assert "security" not in document["paths"][path]["get"]
    ref = document["paths"]["/predict"]["post"]["responses"]["401"]["content"]
    name = ref["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert name in document["components"]["schemas"]


async def test_without_keys_the_document_declares_none(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in document["components"]
    assert "401" not in document["paths"]["/predict"]["post"]["responses"]
