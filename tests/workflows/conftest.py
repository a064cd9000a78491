"""Shared fixtures for the CI/CD tests: parsed workflows and the scripts (the Makefile's
targets and environment come from tests/conftest.py).

Test modules get these as fixtures rather than imports: pytest runs with
--import-mode=importlib, where test directories are not importable packages."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
SCRIPTS_DIR = ROOT / ".github" / "scripts"
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.yml"))


def load_script(name: str) -> ModuleType:
    """Import .github/scripts/<name>.py (not a package: `.github` is no valid module name)."""
    module_name = f"ci_scripts_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, SCRIPTS_DIR / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules, so register before executing.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), f"unexpected `on:` {on!r}"
    return on


@pytest.fixture(scope="session")
def script() -> Callable[[str], ModuleType]:
    """Import a script of .github/scripts by name."""
    return load_script


@pytest.fixture(scope="session")
def triggers() -> Callable[[dict[Any, Any]], dict[str, Any]]:
    """The `on:` block of a parsed workflow, as a dict of event -> settings."""
    return _triggers


@pytest.fixture(scope="session")
def workflow_files() -> list[Path]:
    return WORKFLOW_FILES


@pytest.fixture(scope="session")
def workflows() -> dict[str, dict[Any, Any]]:
    assert WORKFLOW_FILES, f"no workflows in {WORKFLOWS_DIR}"
    return {path.name: yaml.safe_load(path.read_text(encoding="utf-8")) for path in WORKFLOW_FILES}
