"""Reading and verifying what training wrote into the model directory.

`model_metadata.json` is tracked by git, so the sha256 it records for `model.joblib` is the
one reviewed in the pull request and built into the image. The service refuses to start
(`ModelIntegrityError`; docs/serving.md, "Model integrity at startup", lists each case)
rather than serve a model that differs from that record or was pickled by other versions of
the libraries it needs: unpickling across versions can silently change predictions.

The metadata, the reference profile and the ONNX export record are pydantic models: the
contract training writes to (a test validates training's output against them; the service
imports nothing from training). Fields the service does not rely on are kept as written
(`extra="allow"`), so training can add information without breaking a running service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.dates import is_date, model_names
from app.messages import field_path

METADATA_FILE = "model_metadata.json"
METRICS_FILE = "metrics.json"
PROFILE_FILE = "reference_profile.json"
EXPORT_FILE = "onnx_export.json"
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
SUPPORTED_PROFILE_VERSIONS = frozenset({1})
# 2: each input names the graph's own name for its feature.
EXPORT_VERSION = 2
SUPPORTED_EXPORT_VERSIONS = frozenset({EXPORT_VERSION})

log = logging.getLogger(__name__)

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
# The model's hash, compared with `sha256_file`'s lower-case digest.
ModelSha256 = Annotated[Sha256, AfterValidator(str.lower)]


def _readable(supported: frozenset[int]) -> AfterValidator:
    def check(value: int) -> int:
        if value not in supported:
            raise ValueError(
                f"schema_version {value!r} is not one this service reads ({sorted(supported)})"
            )
        return value

    return AfterValidator(check)


class ModelIntegrityError(RuntimeError):
    """The model artifacts cannot be served; the message says which check failed and why."""


class _Artifact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", strict=True)


_ArtifactT = TypeVar("_ArtifactT", bound=_Artifact)


class Feature(_Artifact):
    """One input field, as training described it."""

    name: str = Field(min_length=1)
    type: Literal["number", "category", "date"]
    nullable: bool = True
    example: float | int | str | None = None
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _complete_for_its_type(self) -> Feature:
        if self.type == "number":
            low, high = self.minimum, self.maximum
            if low is None or high is None:
                raise ValueError("a number needs a minimum and a maximum")
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"bounds [{low}, {high}] are not a range")
        elif self.type == "category" and not self.categories:
            raise ValueError("a category needs a non-empty list of categories")
        return self


class InputSchema(_Artifact):
    features: tuple[Feature, ...] = Field(min_length=1)


class LibraryVersions(_Artifact):
    scikit_learn: str = Field(alias="scikit-learn")


class ModelMetadata(_Artifact):
    """`model_metadata.json`: what the service relies on, checked and typed."""

    schema_version: Annotated[int, _readable(SUPPORTED_SCHEMA_VERSIONS)]
    model_version: str = Field(min_length=1)
    model_file: str = Field(min_length=1)
    model_sha256: ModelSha256
    # Absent in metadata written before regression existed: those models classify.
    task: Literal["classification", "regression"] = "classification"
    target: str = "target"
    # The labels in the order of predict_proba's columns; empty for regression.
    classes: tuple[str, ...]
    input_schema: InputSchema
    library_versions: LibraryVersions

    @model_validator(mode="after")
    def _classes_fit_the_task(self) -> ModelMetadata:
        if self.task == "classification" and len(self.classes) < 2:
            raise ValueError("a classification model needs at least two classes")
        if self.task == "regression" and self.classes:
            raise ValueError("a regression model has no classes")
        return self

    @property
    def features(self) -> tuple[Feature, ...]:
        return self.input_schema.features

    def library_versions_to_check(self) -> dict[str, str]:
        """Every library the pickle needs, as training recorded it (the interpreter's own
        version is informational: the image pins it)."""
        recorded = self.library_versions.model_dump(by_alias=True)
        return {k: v for k, v in recorded.items() if k != "python" and isinstance(v, str)}

    @cached_property
    def raw(self) -> dict[str, Any]:
        """The metadata as JSON values, every field training wrote included."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def dates(self) -> tuple[str, ...]:
        """The date features, which the model reads as their parts (`app.dates.expand`)."""
        return tuple(f.name for f in self.features if f.type == "date")

    @property
    def model_names(self) -> list[str]:
        """The model's input columns: the features, a date's parts in its place."""
        return model_names((f.name, f.type) for f in self.features)

    def example_record(self) -> dict[str, Any]:
        """A record made of every feature's example value: valid by construction."""
        return {feature.name: feature.example for feature in self.features}


Share = Annotated[float, Field(ge=0, le=1)]


class NumberProfile(_Artifact):
    name: str
    type: Literal["number"]
    missing_rate: Share
    minimum: float
    maximum: float
    quantiles: dict[str, float] = {}

    @model_validator(mode="after")
    def _a_range(self) -> NumberProfile:
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum)):
            raise ValueError("minimum and maximum must be finite")
        if self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        return self


class CategoryProfile(_Artifact):
    name: str
    type: Literal["category"]
    missing_rate: Share
    categories: dict[str, Share] = Field(min_length=1)


class DateProfile(_Artifact):
    name: str
    type: Literal["date"]
    missing_rate: Share
    minimum: str
    maximum: str

    @model_validator(mode="after")
    def _a_range(self) -> DateProfile:
        if not (is_date(self.minimum) and is_date(self.maximum)):
            raise ValueError("minimum and maximum must be ISO dates")
        if self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is after maximum {self.maximum}")
        return self


class PredictionProfile(_Artifact):
    """A regressor's predictions on the training split, cut at their quantiles into bins:
    live predictions are counted per bin (`app.drift`) and compared with `bins`' shares."""

    minimum: float
    maximum: float
    quantiles: dict[str, float] = Field(min_length=1)
    """The inner bin edges, ascending."""
    bins: dict[str, Share]
    """Each bin's name and share of the training predictions; one more than the edges."""

    @model_validator(mode="after")
    def _bins_between_the_edges(self) -> PredictionProfile:
        edges = [self.minimum, *self.quantiles.values(), self.maximum]
        if not all(math.isfinite(e) for e in edges) or edges != sorted(edges):
            raise ValueError(f"minimum, quantiles and maximum {edges} are not ascending")
        if len(self.bins) != len(self.quantiles) + 1:
            raise ValueError(
                f"{len(self.bins)} bins for {len(self.quantiles)} quantiles: expected one more"
            )
        return self


class ReferenceProfile(_Artifact):
    """`reference_profile.json`: the training split the drift counters compare with."""

    schema_version: Annotated[int, _readable(SUPPORTED_PROFILE_VERSIONS)]
    model_sha256: ModelSha256
    target: str
    rows: int = Field(ge=1)
    class_priors: dict[str, Share]
    """A classifier's classes and their shares in training; empty for a regressor."""
    # A classifier has none, and its profile is dumped as training wrote it, without one.
    predictions: PredictionProfile | None = Field(default=None, exclude_if=lambda v: v is None)
    """A regressor's training predictions; None for a classifier."""
    features: tuple[
        Annotated[NumberProfile | CategoryProfile | DateProfile, Field(discriminator="type")], ...
    ] = Field(min_length=1)


class GraphInput(_Artifact):
    """One input of the ONNX graph: the feature it carries and the name the graph gives it
    (skl2onnx turns a column name such as "mean radius" into an identifier)."""

    name: str = Field(min_length=1)
    graph_name: str = Field(min_length=1)
    type: Literal["double", "string", "int64"]


class Parity(_Artifact):
    passed: bool
    rows_checked: int = Field(ge=0)


class ExportRecord(_Artifact):
    """`onnx_export.json`: whether the Pipeline has an ONNX graph that predicts as it does,
    and if not, why. Written by training's `export` stage, read by app.onnx_predictor."""

    schema_version: Annotated[int, _readable(SUPPORTED_EXPORT_VERSIONS)]
    status: Literal["exported", "unavailable"]
    reason: str | None = None
    model_sha256: Sha256
    onnx_file: str | None = None
    onnx_sha256: Sha256 | None = None
    opsets: dict[str, int] | None = None
    inputs: tuple[GraphInput, ...]
    output: str
    classes: tuple[str, ...]
    missing_category: str
    category_codes: tuple[str, ...] | None = None
    """The strings the graph's int64 category inputs stand for (code = position); None when
    the graph takes the strings themselves, `strings_reason` saying why."""
    strings_reason: str | None = None
    parity: Parity | None = None
    library_versions: dict[str, str]


def _explain(error: ValidationError, where: str) -> str:
    """Every problem as `file: path.to[0].field: message`, the input never echoed."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(f"{field_path(detail['loc'])}: {message}" if detail["loc"] else message)
    return f"{where}: " + "; ".join(problems)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _validate(model: type[_ArtifactT], raw: Any) -> _ArtifactT:
    # Validated as JSON, strictly: arrays become tuples, but a string is never taken for a
    # number nor a boolean for either, as a hand-edited or foreign file might try.
    return model.model_validate_json(json.dumps(raw))


def parse_metadata(raw: Any) -> ModelMetadata:
    try:
        return _validate(ModelMetadata, raw)
    except ValidationError as error:
        raise ModelIntegrityError(_explain(error, METADATA_FILE)) from None


def load_metadata(model_dir: Path) -> ModelMetadata:
    path = model_dir / METADATA_FILE
    try:
        raw = _read_json(path)
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
    record is never loaded at all. Hashes the file, so it runs once per start.
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
    for library, trained_with in metadata.library_versions_to_check().items():
        # Read from the installed distribution: importing scikit-learn costs seconds of cold
        # start, and the fast path never needs it.
        try:
            installed = version(library)
        except PackageNotFoundError:
            installed = "none"
        if trained_with != installed:
            raise ModelIntegrityError(
                f"model was trained with {library} {trained_with} but {installed} is "
                "installed: retrain (`make train`), or install the version Pipfile.lock pins"
            )
    return path


def load_profile(model_dir: Path, metadata: ModelMetadata) -> ReferenceProfile | None:
    """The reference profile of this model, or None (with one warning) when there is none
    usable. Raises `ModelIntegrityError` when it was written for another model."""
    path = model_dir / PROFILE_FILE
    try:
        profile = _validate(ReferenceProfile, _read_json(path))
    except FileNotFoundError:
        log.warning(
            "no reference profile %s: the service runs without drift counters "
            "(re-run `make train` to write one)",
            path,
            extra={"reference_profile": None},
        )
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = f"{path} is unreadable: {error}"
    except ValidationError as error:
        reason = _explain(error, PROFILE_FILE)
    else:
        if profile.model_sha256 != metadata.model_sha256:
            raise ModelIntegrityError(
                f"{PROFILE_FILE} describes model {profile.model_sha256}, but {METADATA_FILE} "
                f"records {metadata.model_sha256}: the profile belongs to another model"
            )
        names = [feature.name for feature in profile.features]
        if names == metadata.feature_names:
            return profile
        reason = (
            f"{PROFILE_FILE} profiles features {names}, the model reads {metadata.feature_names}"
        )
    log.warning(
        "reference profile ignored, the service runs without drift counters: %s",
        reason,
        extra={"reference_profile": None},
    )
    return None


def parse_export_record(raw: Any) -> ExportRecord:
    """Raises ValueError naming every problem, as `file: path: message`."""
    try:
        return _validate(ExportRecord, raw)
    except ValidationError as error:
        raise ValueError(_explain(error, EXPORT_FILE)) from None


def load_metrics(model_dir: Path) -> dict[str, Any] | None:
    """The evaluation metrics, when the evaluate stage wrote them (informational only)."""
    try:
        metrics = _read_json(model_dir / METRICS_FILE)
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None
