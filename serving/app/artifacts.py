"""Reading and verifying what training wrote into the model directory.

`model_metadata.json` is tracked by git, so the sha256 it records for `model.joblib` is the
one reviewed in the pull request and built into the image. The service refuses to start
(see `ModelIntegrityError`) rather than serve a model that is missing, differs from that
record, or was pickled by another scikit-learn than the one installed: unpickling across
versions is unsupported and can silently change predictions.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

METADATA_FILE = "model_metadata.json"
METRICS_FILE = "metrics.json"
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})


class ModelIntegrityError(RuntimeError):
    """The model artifacts cannot be served; the message says which check failed and why."""


@dataclass(frozen=True)
class Feature:
    """One input field, as training described it."""

    name: str
    type: Literal["number", "category"]
    nullable: bool
    example: float | int | str | None
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelMetadata:
    """`model_metadata.json`, with the fields the service relies on checked and typed."""

    raw: dict[str, Any]
    model_version: str
    model_file: str
    model_sha256: str
    classes: tuple[str, ...]
    target: str
    features: tuple[Feature, ...]
    sklearn_version: str

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    def example_record(self) -> dict[str, Any]:
        """A record made of every feature's example value: valid by construction."""
        return {feature.name: feature.example for feature in self.features}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ModelIntegrityError(f"{where}: field {key!r} is missing or not a {kind}")
    return value


def _parse_feature(entry: Any, index: int) -> Feature:
    where = f"{METADATA_FILE}: input_schema.features[{index}]"
    if not isinstance(entry, dict):
        raise ModelIntegrityError(f"{where} is not an object")
    name = _require(entry, "name", str, where)
    kind = entry.get("type")
    nullable = bool(entry.get("nullable", True))
    example = entry.get("example")
    if kind == "number":
        minimum = float(_require(entry, "minimum", (int, float), where))
        maximum = float(_require(entry, "maximum", (int, float), where))
        if not (math.isfinite(minimum) and math.isfinite(maximum) and minimum <= maximum):
            raise ModelIntegrityError(f"{where}: bounds [{minimum}, {maximum}] are not a range")
        return Feature(name, "number", nullable, example, minimum=minimum, maximum=maximum)
    if kind == "category":
        categories = _require(entry, "categories", list, where)
        if not categories or not all(isinstance(c, str) for c in categories):
            raise ModelIntegrityError(f"{where}: categories must be a non-empty list of strings")
        return Feature(name, "category", nullable, example, categories=tuple(categories))
    raise ModelIntegrityError(f"{where}: type {kind!r} is neither 'number' nor 'category'")


def parse_metadata(raw: dict[str, Any]) -> ModelMetadata:
    where = METADATA_FILE
    schema_version = raw.get("schema_version")
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ModelIntegrityError(
            f"{where}: schema_version {schema_version!r} is not one this service reads "
            f"({sorted(SUPPORTED_SCHEMA_VERSIONS)})"
        )
    schema = _require(raw, "input_schema", dict, where)
    entries = _require(schema, "features", list, f"{where}: input_schema")
    features = tuple(_parse_feature(entry, i) for i, entry in enumerate(entries))
    if not features:
        raise ModelIntegrityError(f"{where}: input_schema.features is empty")
    classes = _require(raw, "classes", list, where)
    if len(classes) < 2:
        raise ModelIntegrityError(f"{where}: classes lists fewer than two labels")
    versions = _require(raw, "library_versions", dict, where)
    return ModelMetadata(
        raw=raw,
        model_version=_require(raw, "model_version", str, where),
        model_file=_require(raw, "model_file", str, where),
        model_sha256=_require(raw, "model_sha256", str, where).lower(),
        classes=tuple(str(c) for c in classes),
        target=str(raw.get("target", "target")),
        features=features,
        sklearn_version=_require(versions, "scikit-learn", str, f"{where}: library_versions"),
    )


def load_metadata(model_dir: Path) -> ModelMetadata:
    path = model_dir / METADATA_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelIntegrityError(
            f"model metadata {path} is missing: run `make train` (or `dvc pull`)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelIntegrityError(f"model metadata {path} is unreadable: {error}") from None
    if not isinstance(raw, dict):
        raise ModelIntegrityError(f"model metadata {path} is not a JSON object")
    return parse_metadata(raw)


def contained_model_path(model_dir: Path, model_file: str) -> Path:
    """`model_file` inside `model_dir`; refused when it resolves anywhere else (`..`, an
    absolute path, a symlink pointing out), before anything is read from it."""
    directory = model_dir.resolve()
    path = (directory / model_file).resolve()
    if not path.is_relative_to(directory):
        raise ModelIntegrityError(
            f"{METADATA_FILE}: model_file {model_file[:200]!r} resolves to {path}, outside "
            f"the model directory {directory}"
        )
    return path


def verify_model_file(model_dir: Path, metadata: ModelMetadata) -> Path:
    """Return the model's path once it is present, intact and loadable by this scikit-learn.

    Runs before anything unpickles the file: a file whose hash differs from the reviewed
    record is never loaded at all.
    """
    path = contained_model_path(model_dir, metadata.model_file)
    if not path.is_file():
        raise ModelIntegrityError(
            f"model file {path} is missing: run `make train`, or `dvc pull` to fetch it"
        )
    actual = sha256_file(path)
    if actual != metadata.model_sha256:
        raise ModelIntegrityError(
            f"model file {path} has sha256 {actual}, but {METADATA_FILE} records "
            f"{metadata.model_sha256}: the file is not the model that was trained and reviewed"
        )
    # Read from the installed distribution: importing scikit-learn costs seconds of cold
    # start, and the fast path never needs it.
    installed = version("scikit-learn")
    if metadata.sklearn_version != installed:
        raise ModelIntegrityError(
            f"model was trained with scikit-learn {metadata.sklearn_version} but "
            f"{installed} is installed: retrain, or install the version "
            "Pipfile.lock pins"
        )
    return path


def load_metrics(model_dir: Path) -> dict[str, Any] | None:
    """The evaluation metrics, when the evaluate stage wrote them (informational only)."""
    try:
        metrics = json.loads((model_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None
