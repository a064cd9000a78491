"""The contract between training and serving: what training writes, serving reads.

The two sides share no code (the service imports nothing from `training`, training nothing
from `app`); this test is the one place that imports both. It trains a small model with the
train and profile stages' own functions and checks that the service's pydantic models
accept the files as written, then that the committed artifacts do too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.artifacts import (
    METADATA_FILE,
    PROFILE_FILE,
    ReferenceProfile,
    load_metadata,
    load_profile,
    verify_model_file,
)
from training import paths
from training.data import BUNDLED_SOURCE, clean, load_dataset
from training.io import write_json
from training.params import read_params
from training.profile import build_profile
from training.train import fit_and_save


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory as the train and profile stages write it, from the bundled data."""
    params = read_params(paths.PARAMS)
    prepare = params.prepare
    frame = clean(
        load_dataset(BUNDLED_SOURCE, paths.ROOT), prepare.target, prepare.drop_columns, prepare.task
    )
    directory = tmp_path_factory.mktemp("data")
    _, metadata = fit_and_save(frame, params, directory)
    write_json(directory / PROFILE_FILE, build_profile(frame, metadata, params.profile.quantiles))
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
    assert profile.model_dump(mode="json") == json.loads(
        (written / PROFILE_FILE).read_text(encoding="utf-8")
    )


@pytest.mark.parametrize("name", [METADATA_FILE, PROFILE_FILE])
def test_committed_artifacts_satisfy_the_contract(name: str) -> None:
    if not (paths.ARTIFACTS_DIR / name).is_file():
        pytest.fail(f"{name} is missing: run `make train`")
    metadata = load_metadata(paths.ARTIFACTS_DIR)
    assert load_profile(paths.ARTIFACTS_DIR, metadata) is not None


def test_neither_side_imports_the_other() -> None:
    for root, forbidden in (
        (paths.ROOT / "serving" / "app", ("from training", "import training")),
        (paths.ROOT / "training", ("from app", "import app")),
    ):
        for source in root.rglob("*.py"):
            if "tests" in source.parts:
                continue
            lines = source.read_text(encoding="utf-8").splitlines()
            assert not [line for line in lines if line.lstrip().startswith(forbidden)], source
