"""What the dashboard charts per model: its classes and features, read from the metadata
training writes (`serving/app/data/model_metadata.json`, the one contract between training and
serving), and for a regressor the bins of its training predictions, from the reference profile
beside it. The stack reads the files as data; it imports nothing from the service or training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Written beside the metadata by the profile stage; the service counts a regressor's
# predictions in the bins it names, plus these two outside the training predictions' range.
PROFILE_FILE = "reference_profile.json"
OUTSIDE_BINS = ("below", "above")


class ModelMetadataError(ValueError):
    """The model metadata is missing or does not say what the dashboard needs."""


class _Feature(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    type: Literal["number", "category", "date"]


class _InputSchema(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    features: tuple[_Feature, ...] = Field(min_length=1)


class _PredictionProfile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    bins: dict[str, float] = Field(min_length=1)


class _Profile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    predictions: _PredictionProfile | None = None


class ModelSignals(BaseModel):
    """The per-class, per-bin and per-feature metric names the service emits for this model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task: Literal["classification", "regression"] = "classification"
    classes: tuple[str, ...] = ()
    input_schema: _InputSchema
    prediction_bins: tuple[str, ...] = ()
    """A regressor's bins, from the reference profile; none without a profile (the service
    then counts none)."""

    @model_validator(mode="after")
    def _classes_fit_the_task(self) -> ModelSignals:
        if self.task == "classification" and not self.classes:
            raise ValueError("a classification model needs its classes")
        return self

    @classmethod
    def read(cls, path: Path) -> ModelSignals:
        try:
            signals = cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ModelMetadataError(
                f"{path} is missing: run `make train` (or `dvc pull`) before synthesizing; the "
                "dashboard charts the model's classes and features"
            ) from None
        except ValidationError as error:
            raise ModelMetadataError(f"{path}: {error}") from None
        if signals.task != "regression":
            return signals
        profile_path = path.parent / PROFILE_FILE
        try:
            predictions = _Profile.model_validate_json(profile_path.read_bytes()).predictions
        except FileNotFoundError:
            return signals
        except ValidationError as error:
            raise ModelMetadataError(f"{profile_path}: {error}") from None
        if predictions is None:
            return signals
        bins = (OUTSIDE_BINS[0], *predictions.bins, OUTSIDE_BINS[1])
        return signals.model_copy(update={"prediction_bins": bins})

    @property
    def ranged_features(self) -> list[str]:
        """Numbers and dates: the service counts their values outside the training range."""
        return [f.name for f in self.input_schema.features if f.type in ("number", "date")]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.input_schema.features if f.type == "category"]

    @property
    def features(self) -> list[str]:
        return [f.name for f in self.input_schema.features]
