"""The one locked environment: the Pipfile, its lock and the serving image's requirements agree."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "Pipfile.lock"
REQUIREMENTS = ROOT / "serving" / "app" / "requirements.txt"


@pytest.fixture(scope="module")
def lock() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(LOCK.read_text(encoding="utf-8"))
    return loaded


def _categories(lock: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: section for name, section in lock.items() if name != "_meta"}


def test_lock_pins_python_311_and_every_category(lock: dict[str, Any]) -> None:
    assert lock["_meta"]["requires"]["python_version"] == "3.11"
    assert set(_categories(lock)) == {"default", "develop", "training", "serving", "deployment"}


def test_a_package_locked_in_two_categories_has_one_version(lock: dict[str, Any]) -> None:
    # Categories are installed together into one .venv; two pins of one package would make
    # the result depend on install order.
    versions: dict[str, dict[str, str]] = {}
    for category, packages in _categories(lock).items():
        for name, entry in packages.items():
            if "version" in entry:
                versions.setdefault(name, {})[category] = entry["version"]
    conflicts = {name: seen for name, seen in versions.items() if len(set(seen.values())) > 1}
    assert conflicts == {}


def test_every_locked_package_carries_hashes(lock: dict[str, Any]) -> None:
    unhashed = [
        f"{category}:{name}"
        for category, packages in _categories(lock).items()
        for name, entry in packages.items()
        if not entry.get("hashes")
    ]
    assert unhashed == []


def make(*args: str) -> None:
    argv = ["make", "--no-print-directory", "-s", *args]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_lock_matches_the_pipfile() -> None:
    make("verify-lock")


def test_serving_requirements_are_generated_from_the_lock(tmp_path: Path) -> None:
    regenerated = tmp_path / "requirements.txt"
    make("requirements", f"SERVING_REQUIREMENTS={regenerated}")
    assert REQUIREMENTS.read_text() == regenerated.read_text(), (
        "serving/app/requirements.txt drifted from Pipfile.lock: run `make requirements`"
    )


def test_image_gets_the_model_runtime_versions_training_used(lock: dict[str, Any]) -> None:
    requirements = REQUIREMENTS.read_text()
    for package in ("scikit-learn", "joblib", "numpy", "scipy", "pandas"):
        pinned = lock["default"][package]["version"]
        assert re.search(rf"^{package}{re.escape(pinned)}[; ]", requirements, re.MULTILINE), package
    assert "--hash=sha256:" in requirements
    # Training-only and test-only packages stay out of the image.
    for excluded in ("dvc", "palmerpenguins", "pytest", "aws-cdk-lib", "skl2onnx"):
        assert not re.search(rf"^{excluded}==", requirements, re.MULTILINE), excluded
