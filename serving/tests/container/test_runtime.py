"""The running image as ECS runs it: its user, its read-only root, what it writes, what it
contains, and its health check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Container, Engine, running

pytestmark = pytest.mark.slow

# Paths the engine itself writes into every container (name resolution, its own markers).
ENGINE_WRITES = {
    "/etc",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/run",
    "/run/.containerenv",
}


def test_runs_as_the_dockerfiles_non_root_user(service: Container) -> None:
    ids = service.exec("python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert ids.stdout.split() == ["10001", "10001"]


def test_root_filesystem_is_read_only_and_the_service_leaves_tmp_empty(
    service: Container, example: dict[str, Any]
) -> None:
    """It serves under --read-only; onnxruntime's telemetry (a device id under $HOME=/tmp and
    /tmp/.ses) stays off, so the writable /tmp volume holds nothing after predictions; only
    the engine's own files differ from the image."""
    for _ in range(5):
        assert service.post("/predict", example)[0] == 200
    refused = service.exec("python", "-c", "open('/srv/app/written', 'w')")
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    listing = service.exec("find", "/tmp", "-mindepth", "1")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split() == []
    changed = service.engine.run("diff", service.name).stdout.split("\n")
    paths = {line.split(maxsplit=1)[1] for line in changed if line.strip()}
    assert paths <= ENGINE_WRITES, sorted(paths - ENGINE_WRITES)


def test_pip_setuptools_and_compilers_are_not_in_the_runtime_image(service: Container) -> None:
    modules = ["pip", "setuptools", "wheel"]
    tools = ["pip", "pip3", "gcc", "cc", "c++", "g++", "clang", "make", "ld"]
    script = (
        "import importlib.util, json, shutil, sys\n"
        "modules, tools = json.loads(sys.argv[1])\n"
        "print(json.dumps({'modules': [m for m in modules if importlib.util.find_spec(m)],\n"
        "                  'tools': [t for t in tools if shutil.which(t)]}))\n"
    )
    found = service.exec("python", "-c", script, json.dumps([modules, tools]))
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == {"modules": [], "tools": []}


def test_the_scikit_learn_backend_predicts_in_the_image_as_the_default_does(
    engine: Engine, image: str, service: Container, example: dict[str, Any]
) -> None:
    """The trimmed virtualenv still unpickles and runs the Pipeline (joblib, pandas, scipy,
    scikit-learn): the backend that serves a model the fast path cannot take."""
    with running(engine, image, env={"SERVICE_BACKEND": "sklearn"}) as fallback:
        status, body = fallback.get("/model")
        assert status == 200
        assert json.loads(body)["backend"] == "sklearn"
        status, predicted = fallback.post("/predict", example)
        assert status == 200, predicted
    status, default = service.post("/predict", example)
    assert status == 200, default
    assert predicted["prediction"] == pytest.approx(default["prediction"])


def test_the_app_is_readable_but_not_writable_by_the_service_user(service: Container) -> None:
    """Whatever the modes in the checkout the image was built from (umask 077 included)."""
    script = (
        "import os, pathlib\n"
        "files = [p for p in pathlib.Path('/srv/app').rglob('*')]\n"
        "print(sum(not os.access(p, os.R_OK) for p in files),"
        " sum(os.access(p, os.W_OK) for p in files), len(files))\n"
    )
    unreadable, writable, total = service.exec("python", "-c", script).stdout.split()
    assert (unreadable, writable) == ("0", "0")
    assert int(total) > 10


def test_health_check_is_in_the_image_and_passes_on_a_healthy_container(
    engine: Engine, image: str, service: Container
) -> None:
    """Built with --format docker: in OCI format buildah would have dropped it."""
    config = engine.inspect("image", image)
    healthcheck = config.get("Healthcheck") or config["Config"].get("Healthcheck")
    assert healthcheck, f"{image} has no HEALTHCHECK"
    assert healthcheck["Test"] == ["CMD", "python", "-m", "app.healthcheck"]
    passed = service.exec(*healthcheck["Test"][1:])
    assert passed.returncode == 0, passed.stderr
    if engine.is_podman:
        run = engine.run("healthcheck", "run", service.name, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
