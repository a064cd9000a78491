"""Model integrity checks and the choice of backend, without starting a server."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn

from app.artifacts import (
    METADATA_FILE,
    ModelIntegrityError,
    load_metadata,
    sha256_file,
    verify_model_file,
)
from app.dates import expand
from app.predictor import SklearnPredictor, load_predictor


@pytest.fixture
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the model directory, safe to break."""
    copy = tmp_path / "data"
    shutil.copytree(model_dir, copy)
    return copy


def edit_metadata(directory: Path, *keys: str, value: Any) -> None:
    """Sets `raw[keys[0]][keys[1]]... = value` in the model metadata."""
    path = directory / METADATA_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    parent = raw
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = value
    path.write_text(json.dumps(raw), encoding="utf-8")


def test_intact_model_passes_every_check(model_dir: Path) -> None:
    metadata = load_metadata(model_dir)
    path = verify_model_file(model_dir, metadata)
    assert sha256_file(path) == metadata.model_sha256
    assert metadata.model_version == metadata.model_sha256[:12]
    # The libraries whose versions the pickle needs, each refused below when it differs.
    assert {"scikit-learn", "numpy", "joblib", "scipy"} <= set(metadata.raw["library_versions"])


def test_missing_model_file_is_refused(model_copy: Path) -> None:
    (model_copy / "model.joblib").unlink()
    with pytest.raises(ModelIntegrityError, match=r"model\.joblib is missing"):
        verify_model_file(model_copy, load_metadata(model_copy))


def test_altered_model_file_is_refused_before_unpickling(model_copy: Path) -> None:
    with (model_copy / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="is not the model that was trained"):
        load_predictor(model_copy, load_metadata(model_copy), "sklearn")


@pytest.mark.parametrize(
    ("keys", "value", "message"),
    [
        (("model_sha256",), "0" * 64, "records 0000000000"),
        (("library_versions", "scikit-learn"), "0.0.1", f"0.0.1 but {sklearn.__version__}"),
        (("library_versions", "numpy"), "0.0.1", r"trained with numpy 0\.0\.1 but "),
        (("library_versions", "joblib"), "0.0.1", r"trained with joblib 0\.0\.1 but "),
        (("library_versions", "scipy"), "0.0.1", r"trained with scipy 0\.0\.1 but "),
        (("library_versions", "xgboost-not-installed"), "2.0.0", r"2\.0\.0 but none"),
    ],
)
def test_a_model_other_than_recorded_or_for_other_libraries_is_refused(
    model_copy: Path, keys: tuple[str, ...], value: str, message: str
) -> None:
    edit_metadata(model_copy, *keys, value=value)
    with pytest.raises(ModelIntegrityError, match=message):
        verify_model_file(model_copy, load_metadata(model_copy))


def test_missing_or_unreadable_metadata_is_refused(model_copy: Path) -> None:
    (model_copy / METADATA_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="unreadable"):
        load_metadata(model_copy)
    (model_copy / METADATA_FILE).unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        load_metadata(model_copy)


def test_unsupported_metadata_schema_version_is_refused(model_copy: Path) -> None:
    edit_metadata(model_copy, "schema_version", value=99)
    with pytest.raises(ModelIntegrityError, match="schema_version 99"):
        load_metadata(model_copy)


@pytest.mark.classification_only("test_predictor.py::test_metadata_classes_must_fit_its_task")
def test_classes_differing_from_the_model_are_refused(model_copy: Path) -> None:
    edit_metadata(model_copy, "classes", value=["a", "b", "c"])
    metadata = load_metadata(model_copy)
    with pytest.raises(ModelIntegrityError, match="predicts classes"):
        load_predictor(model_copy, metadata, "sklearn")


@pytest.mark.classification_only(
    "test_predictor.py::test_regressor_predicts_one_float64_per_record_with_missing_values"
)
def test_sklearn_predictor_returns_float64_rows_in_class_order(
    model_dir: Path, metadata: dict[str, Any]
) -> None:
    loaded = load_metadata(model_dir)
    predictor = load_predictor(model_dir, loaded, "sklearn")
    assert isinstance(predictor, SklearnPredictor)
    columns = {f["name"]: [f["example"], None] for f in metadata["input_schema"]["features"]}
    # The predictor reads a date as its parts, derived before either backend.
    probabilities = predictor.predict_proba(expand(columns, loaded.dates))
    assert probabilities.dtype == np.float64
    assert probabilities.shape == (2, len(metadata["classes"]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def fake_fast_path(monkeypatch: pytest.MonkeyPatch, behaviour: Any) -> None:
    """Install a stand-in `app.onnx_predictor` whose loader does `behaviour`."""
    module = types.ModuleType("app.onnx_predictor")

    class FastPathUnavailable(Exception):
        pass

    module.FastPathUnavailable = FastPathUnavailable  # type: ignore[attr-defined]
    module.load_onnx_predictor = lambda data_dir, metadata: behaviour(FastPathUnavailable)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.onnx_predictor", module)


def test_fast_path_answers_when_it_applies(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fast = types.SimpleNamespace(backend="onnx", predict_proba=lambda columns: None)
    fake_fast_path(monkeypatch, lambda unavailable: fast)
    with caplog.at_level(logging.INFO, logger="app.predictor"):
        predictor = load_predictor(model_dir, load_metadata(model_dir), "auto")
    assert predictor is fast
    assert "model backend: onnx" in caplog.text


def test_falls_back_to_the_pipeline_saying_why(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(unavailable: type[Exception]) -> Any:
        raise unavailable("estimator RandomForest has no converter here")

    fake_fast_path(monkeypatch, refuse)
    with caplog.at_level(logging.INFO, logger="app.predictor"):
        predictor = load_predictor(model_dir, load_metadata(model_dir), "auto")
    assert predictor.backend == "sklearn"
    assert "has no converter here" in caplog.text


def test_falls_back_when_the_fast_path_module_is_absent(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "app.onnx_predictor", None)  # import raises ImportError
    with caplog.at_level(logging.INFO, logger="app.predictor"):
        predictor = load_predictor(model_dir, load_metadata(model_dir), "auto")
    assert predictor.backend == "sklearn"
    assert "is not installed" in caplog.text


def test_required_fast_path_that_cannot_apply_is_refused(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "app.onnx_predictor", None)
    with pytest.raises(ModelIntegrityError, match="SERVICE_BACKEND=onnx"):
        load_predictor(model_dir, load_metadata(model_dir), "onnx")


def edit_feature(directory: Path, index: int, **changes: Any) -> None:
    path = directory / METADATA_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    feature = raw["input_schema"]["features"][index]
    for key, value in changes.items():
        if value is None:
            feature.pop(key, None)
        else:
            feature[key] = value
    path.write_text(json.dumps(raw), encoding="utf-8")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"minimum": None}, r"input_schema\.features\[0\]: a number needs a minimum"),
        ({"minimum": "19.85"}, r"input_schema\.features\[0\]\.minimum: Input should be a valid"),
        ({"maximum": True}, r"input_schema\.features\[0\]\.maximum: Input should be a valid"),
        ({"minimum": 100.0, "maximum": 1.0}, r"bounds \[100\.0, 1\.0\] are not a range"),
        ({"type": "text"}, r"input_schema\.features\[0\]\.type: Input should be 'number'"),
    ],
)
def test_malformed_feature_is_refused_naming_its_path(
    model_copy: Path, changes: dict[str, Any], message: str
) -> None:
    edit_feature(model_copy, 0, **changes)
    with pytest.raises(ModelIntegrityError, match=rf"^{METADATA_FILE}: .*{message}"):
        load_metadata(model_copy)


def test_category_without_categories_is_refused(model_copy: Path, metadata: dict[str, Any]) -> None:
    edit_feature(model_copy, 0, type="category", categories=[])
    with pytest.raises(ModelIntegrityError, match="a category needs a non-empty list"):
        load_metadata(model_copy)


def test_missing_required_fields_are_all_named(model_copy: Path) -> None:
    path = model_copy / METADATA_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    del raw["model_sha256"], raw["input_schema"]
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(
        ModelIntegrityError, match=r"model_sha256: Field required; input_schema: Field"
    ):
        load_metadata(model_copy)


def test_model_file_is_hashed_once_per_start(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import artifacts

    hashed: list[Path] = []
    real = artifacts.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(artifacts, "sha256_file", counting)
    load_predictor(model_dir, load_metadata(model_dir), "sklearn")
    load_predictor(model_dir, load_metadata(model_dir), "auto")
    assert hashed == [model_dir / "model.joblib"] * 2
