"""The image and its server configuration, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app import healthcheck
from app.settings import Settings
from bench import imagecmd, procs
from container import dockerfile

APP_DIR = imagecmd.SERVING_DIR / "app"
REPO = imagecmd.SERVING_DIR.parent


def test_command_and_workdir_are_read_from_the_dockerfile() -> None:
    assert imagecmd.read() == ["gunicorn", "-c", "app/gunicorn.conf.py", "app.main:app"]
    # The local stand-in for WORKDIR holds what the image copies there.
    assert (imagecmd.SERVING_DIR / "app" / "gunicorn.conf.py").is_file()
    assert (imagecmd.SERVING_DIR / "app" / "main.py").is_file()


def test_shell_form_cmd_or_a_moved_app_is_rejected(tmp_path: Path) -> None:
    text = imagecmd.DOCKERFILE.read_text()
    shell_form = tmp_path / "shell"
    shell_form.write_text(re.sub(r"^CMD .*$", "CMD gunicorn app.main:app", text, flags=re.M))
    with pytest.raises(ValueError, match="exec"):
        imagecmd.read(shell_form)
    moved = tmp_path / "moved"
    moved.write_text(text.replace("/srv/app app/", "/srv/app service/"))
    assert moved.read_text() != text
    with pytest.raises(ValueError, match=r"app copied to /srv/app"):
        imagecmd.read(moved)


def test_image_has_a_healthcheck_and_a_tmp_volume_on_a_digest_pinned_slim_base() -> None:
    image = dockerfile.read(imagecmd.DOCKERFILE)
    base = dockerfile.default_base_image(imagecmd.DOCKERFILE)
    pinned = r"docker\.io/library/python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}"
    assert re.fullmatch(pinned, base), base
    assert image.require_healthcheck() == ["python", "-m", "app.healthcheck"]
    assert {"/tmp"} == image.volumes


def test_the_image_and_a_local_run_listen_on_the_same_port() -> None:
    """`make serve` (settings' default bind) and the image (the Dockerfile's port) agree."""
    default_port = int(Settings.model_fields["bind"].default.rpartition(":")[2])
    assert dockerfile.service_port(imagecmd.DOCKERFILE) == default_port


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("0.0.0.0:8000", "http://127.0.0.1:8000/health"),
        ("[::]:9000", "http://127.0.0.1:9000/health"),
        ("10.0.0.5:81", "http://10.0.0.5:81/health"),
    ],
)
def test_health_check_probes_the_port_the_server_binds(bind: str, url: str) -> None:
    assert healthcheck.health_url(bind) == url


def test_health_check_reads_service_bind_else_the_settings_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVICE_BIND", "127.0.0.1:8123")
    assert healthcheck.bind_address() == "127.0.0.1:8123"
    monkeypatch.delenv("SERVICE_BIND")
    assert healthcheck.bind_address() == Settings.model_fields["bind"].default


def test_health_check_refuses_a_bind_without_a_port() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        healthcheck.health_url("unix:/run/app.sock")


def test_health_check_exits_1_when_nothing_listens() -> None:
    port = procs.free_port()
    completed = subprocess.run(
        [sys.executable, "-m", "app.healthcheck"],
        cwd=imagecmd.SERVING_DIR,
        env=procs.tool_env({"SERVICE_BIND": f"0.0.0.0:{port}"}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 1
    assert f"unhealthy: http://127.0.0.1:{port}/health" in completed.stderr


def test_dependencies_install_only_the_hashed_lock() -> None:
    text = imagecmd.DOCKERFILE.read_text()
    assert "--require-hashes" in text
    assert "--no-deps" in text
    assert "requirements.txt" in text


def test_requirements_are_the_locked_runtime_and_serving_packages() -> None:
    """requirements.txt is `make requirements` output: every package of the lock's default
    and serving categories, pinned to the locked version, with hashes; nothing else."""
    lock_path = REPO / "Pipfile.lock"
    if not lock_path.is_file():
        pytest.fail("Pipfile.lock is missing: the image cannot be built reproducibly")
    lock = json.loads(lock_path.read_text())
    expected = {
        name.lower().replace("_", "-"): spec["version"].lstrip("=")
        for category in ("default", "serving")
        for name, spec in lock.get(category, {}).items()
    }
    text = (APP_DIR / "requirements.txt").read_text()
    pinned = dict(re.findall(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", text, re.M))
    assert {n.lower().replace("_", "-"): v for n, v in pinned.items()} == expected, (
        "serving/app/requirements.txt is stale: run `make requirements`"
    )
    requirements = [line for line in text.splitlines() if "==" in line.split(" ", 1)[0]]
    assert len(requirements) == len(expected)
    for requirement in requirements:
        assert "--hash=sha256:" in requirement, requirement.split(" ", 1)[0]


def test_requirements_name_no_index_so_a_mirror_configured_for_pip_is_used() -> None:
    text = (APP_DIR / "requirements.txt").read_text()
    options = re.findall(r"^\s*(-i|--index-url|--extra-index-url)\b", text, re.M)
    assert options == [], "an index option in requirements.txt overrides PIP_INDEX_URL"


def test_dockerignore_keeps_caches_and_evaluation_outputs_out() -> None:
    ignored = (APP_DIR / ".dockerignore").read_text().splitlines()
    for pattern in ("**/__pycache__", "data/test_predictions.csv", ".env"):
        assert pattern in ignored


def gunicorn_settings(**env: str) -> dict[str, Any]:
    """gunicorn's view of its configuration, loaded from the image's command line as gunicorn
    loads it (without starting), in a fresh process (the config file sets environment
    variables and registers an exit handler)."""
    script = (
        "import json, sys\n"
        "from gunicorn.app.wsgiapp import WSGIApplication\n"
        "sys.argv = json.loads(sys.argv[1])\n"
        "settings = WSGIApplication().cfg.settings\n"
        "names = ['bind', 'workers', 'worker_class', 'preload_app', 'graceful_timeout',\n"
        "         'timeout', 'keepalive', 'worker_tmp_dir', 'forwarded_allow_ips',\n"
        "         'control_socket_disable', 'accesslog', 'errorlog']\n"
        "values = {n: settings[n].get() for n in names}\n"
        "values['worker_class'] = settings['worker_class'].value\n"
        "json.dump(values, sys.stdout, default=str)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(imagecmd.read())],
        cwd=imagecmd.SERVING_DIR,
        env=procs.tool_env(env),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def test_gunicorn_configuration_matches_the_deployment() -> None:
    config = gunicorn_settings()
    assert config["bind"] == ["0.0.0.0:8000"]
    assert config["worker_class"] == "app.worker.Worker"
    assert config["preload_app"] is True
    assert config["workers"] >= 1
    # ECS waits 30 s by default between SIGTERM and SIGKILL.
    assert config["graceful_timeout"] < 30
    # The load balancer's idle timeout is 60 s.
    assert config["keepalive"] > 60
    assert config["control_socket_disable"] is True
    # X-Forwarded-For is believed from loopback only unless the deployment names its proxies.
    assert config["forwarded_allow_ips"] == ["127.0.0.1", "::1"]
    assert config["accesslog"] is None
    assert config["errorlog"] == "-"
    if Path("/dev/shm").is_dir():
        assert config["worker_tmp_dir"] == "/dev/shm"


def test_gunicorn_settings_come_from_the_environment() -> None:
    config = gunicorn_settings(
        SERVICE_WORKERS="5", SERVICE_BIND="127.0.0.1:9999", SERVICE_GRACEFUL_TIMEOUT_SECONDS="7"
    )
    assert config["workers"] == 5
    assert config["bind"] == ["127.0.0.1:9999"]
    assert config["graceful_timeout"] == 7
