"""What the dashboard charts per model: its classes and features, read from the metadata
training writes (`serving/app/data/model_metadata.json`, the one contract between training and
serving). The stack reads the file as data; it imports nothing from the service or training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ModelMetadataError(ValueError):
    """The model metadata is missing or does not say what the dashboard needs."""


class _Feature(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    type: Literal["number", "category"]


class _InputSchema(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    features: tuple[_Feature, ...] = Field(min_length=1)


class ModelSignals(BaseModel):
    """The per-class and per-feature metric names the service emits for this model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    classes: tuple[str, ...] = Field(min_length=1)
    input_schema: _InputSchema

    @classmethod
    def read(cls, path: Path) -> ModelSignals:
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ModelMetadataError(
                f"{path} is missing: run `make train` (or `dvc pull`) before synthesizing; the "
                "dashboard charts the model's classes and features"
            ) from None
        except ValidationError as error:
            raise ModelMetadataError(f"{path}: {error}") from None

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.input_schema.features if f.type == "number"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.input_schema.features if f.type == "category"]

    @property
    def features(self) -> list[str]:
        return [f.name for f in self.input_schema.features]
