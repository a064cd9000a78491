"""The contract between training and serving: what training writes, serving reads.

The two sides share no code (the service imports nothing from `training`, training nothing
from `app`); this test is the one place that imports both. It trains a small model with the
train and profile stages' own functions and checks that the service's pydantic models
accept the files as written, then that the committed artifacts do too.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from app.artifacts import (
    METADATA_FILE,
    PROFILE_FILE,
    ReferenceProfile,
    load_metadata,
    load_profile,
    verify_model_file,
)
from training import paths
from training.io import write_json
from training.params import read_params
from training.profile import build_profile, training_predictions
from training.train import fit_and_save
from training.versions import BASE, library_versions


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, data: pd.DataFrame) -> Path:
    """A model directory as the train and profile stages write it, from the configured data."""
    params = read_params(paths.PARAMS)
    directory = tmp_path_factory.mktemp("data")
    _, metadata = fit_and_save(data, params, directory)
    predictions = training_predictions(data, metadata, directory)
    profile = build_profile(data, metadata, params.profile.quantiles, predictions)
    write_json(directory / PROFILE_FILE, profile)
    return directory


def test_metadata_training_writes_is_what_the_service_reads(written: Path) -> None:
    raw: dict[str, Any] = json.loads((written / METADATA_FILE).read_text(encoding="utf-8"))
    metadata = load_metadata(written)
    assert metadata.model_sha256 == raw["model_sha256"]
    assert list(metadata.classes) == raw["classes"]
    assert metadata.feature_names == [f["name"] for f in raw["input_schema"]["features"]]
    # Fields the service does not model are kept, and round-trip unchanged.
    assert metadata.raw == raw
    assert verify_model_file(written, metadata) == written / raw["model_file"]


def test_profile_training_writes_is_what_the_service_reads(written: Path) -> None:
    metadata = load_metadata(written)
    profile = load_profile(written, metadata)
    assert isinstance(profile, ReferenceProfile)
    assert [f.name for f in profile.features] == metadata.feature_names
    # Unset, not None: a classifier's profile has no `predictions` key at all.
    assert profile.model_dump(mode="json", exclude_unset=True) == json.loads(
        (written / PROFILE_FILE).read_text(encoding="utf-8")
    )


@pytest.mark.parametrize("name", [METADATA_FILE, PROFILE_FILE])
def test_committed_artifacts_satisfy_the_contract(name: str) -> None:
    if not (paths.ARTIFACTS_DIR / name).is_file():
        pytest.fail(f"{name} is missing: run `make train`")
    metadata = load_metadata(paths.ARTIFACTS_DIR)
    assert load_profile(paths.ARTIFACTS_DIR, metadata) is not None


def test_train_depends_on_exactly_the_library_versions_the_model_records() -> None:
    """`dvc repro` retrains when the file changes; the service checks what the metadata
    records: the two must be the same dict, or `make train` could say "up to date" for a
    model the service refuses."""
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    recorded = json.loads(paths.LIBRARY_VERSIONS.read_text(encoding="utf-8"))
    assert recorded == metadata["library_versions"]
    stages = yaml.safe_load((paths.ROOT / "dvc.yaml").read_text())["stages"]
    assert str(paths.LIBRARY_VERSIONS.relative_to(paths.ROOT)) in stages["train"]["deps"]
    assert "Pipfile.lock" not in stages["train"]["deps"]
    assert str(paths.DATA_DIR.relative_to(paths.ROOT)) in stages["prepare"]["deps"]


def test_library_versions_name_the_estimators_own_package() -> None:
    from sklearn.linear_model import Ridge

    class Foreign:  # stands in for an estimator shipped by another distribution
        __module__ = "pytest.fake"

    assert set(library_versions(Ridge)) == {"python", *BASE}
    assert "pytest" in library_versions(Foreign)


def _imports(source: Path) -> set[str]:
    """Every module `source` imports, wherever in the file (functions included)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def _sources(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.py") if "tests" not in p.relative_to(root).parts]


WEB_FRAMEWORK = {"fastapi", "starlette", "uvicorn", "gunicorn"}


def test_service_imports_nothing_from_training() -> None:
    offending = {
        str(source.relative_to(paths.ROOT)): sorted(found)
        for source in _sources(paths.ROOT / "serving" / "app")
        if (found := {m for m in _imports(source) if m.split(".")[0] == "training"})
    }
    assert offending == {}


def test_training_imports_only_the_services_framework_free_modules() -> None:
    """Training shares the ONNX feed and the artifact models with the service; importing
    them must not pull in the web framework (nor anything that imports it)."""
    app_dir = paths.ROOT / "serving" / "app"
    wanted = {m for s in _sources(paths.ROOT / "training") for m in _imports(s)}
    pending = [m for m in wanted if m.split(".")[0] == "app"]
    assert pending, "training is expected to import app.onnx_predictor"
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        imported = _imports(app_dir.joinpath(*module.split(".")[1:]).with_suffix(".py"))
        assert not {m.split(".")[0] for m in imported} & WEB_FRAMEWORK, module
        pending += [m for m in imported if m.split(".")[0] == "app"]
