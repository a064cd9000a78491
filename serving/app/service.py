"""The loaded model and everything a request needs from it, built once per process group."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app import metrics
from app.artifacts import ModelMetadata
from app.predictor import Predictor
from app.schemas import Schemas
from app.settings import Settings

log = logging.getLogger(__name__)


class PredictorOutputError(RuntimeError):
    """The predictor returned something other than one probability row per record."""


@dataclass
class ModelService:
    settings: Settings
    metadata: ModelMetadata
    predictor: Predictor
    schemas: Schemas
    evaluation: dict[str, Any] | None = None
    ready: bool = field(default=False)
    """Set in each worker once its warm-up prediction succeeded."""

    @property
    def model_version(self) -> str:
        return self.metadata.model_version

    def __post_init__(self) -> None:
        self._encoder = ResultEncoder(self.metadata.classes, self.model_version)

    def predict_columns(
        self, records: list[dict[str, Any]], *, counted: bool = True
    ) -> tuple[np.ndarray, list[int]]:
        """Probabilities (n, classes) and the index of the best class, for n records, from a
        single predictor call; checked before anything reaches a client."""
        columns = {name: [r.get(name) for r in records] for name in self.metadata.feature_names}
        probabilities = self.predictor.predict_proba(columns)
        classes = self.metadata.classes
        if (
            probabilities.shape != (len(records), len(classes))
            or not np.isfinite(probabilities).all()
        ):
            raise PredictorOutputError(
                f"{self.predictor.backend} predictor returned shape {probabilities.shape} "
                f"(finite: {bool(np.isfinite(probabilities).all())}) for "
                f"{len(records)} records and {len(classes)} classes"
            )
        best = probabilities.argmax(axis=1)
        if counted:
            metrics.count_predictions(self.model_version, classes, best)
        return probabilities, best.tolist()

    # The two handlers below run in a worker thread: parsing, validation, prediction and
    # serialisation all stay off the event loop.

    def predict_one_json(self, body: bytes) -> bytes:
        record = _validate(self.schemas.record.validate_json, body)
        probabilities, best = self.predict_columns([record])
        return self._encoder.single(probabilities, best)

    def predict_batch_json(self, body: bytes) -> tuple[bytes, int]:
        batch = _validate(self.schemas.batch.validate_json, body)
        records: list[dict[str, Any]] = batch["records"]
        probabilities, best = self.predict_columns(records)
        return self._encoder.batch(probabilities, best), len(records)

    def warm_up(self) -> None:
        """A real prediction on the metadata's example, so the first client does not pay for
        lazy initialisation, and readiness means the model has answered once."""
        self.predict_columns(
            [self.schemas.record_example, self.schemas.sparse_example], counted=False
        )
        self.ready = True

    @cached_property
    def description_json(self) -> bytes:
        return json.dumps(self.describe(), separators=(",", ":")).encode()

    def describe(self) -> dict[str, Any]:
        raw = self.metadata.raw
        return {
            "model_version": self.model_version,
            "model_sha256": self.metadata.model_sha256,
            "backend": self.predictor.backend,
            "git_revision": raw.get("git_revision"),
            "deployed_revision": self.settings.deployed_revision,
            "trained_at": raw.get("trained_at"),
            "estimator": raw.get("estimator"),
            "hyperparameters": raw.get("hyperparameters"),
            "target": self.metadata.target,
            "classes": list(self.metadata.classes),
            "metrics": self.evaluation,
            "training_data": raw.get("training_data"),
            "library_versions": raw.get("library_versions"),
            "input_schema": raw.get("input_schema"),
            "limits": {
                "max_batch_records": self.settings.max_batch_records,
                "max_body_bytes": self.settings.max_body_bytes,
            },
        }


def _validate(validator: Any, body: bytes) -> dict[str, Any]:
    try:
        value: dict[str, Any] = validator(body)
    except ValidationError as error:
        if not body.strip():
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "the request body is empty"}]
            ) from None
        # `include_input=False`: a validation error never echoes what the client sent
        # (it may be megabytes, or a NaN that JSON cannot encode).
        raise RequestValidationError(
            [
                {**detail, "loc": ("body", *detail["loc"])}
                for detail in error.errors(include_url=False, include_input=False)
            ]
        ) from None
    return value


class ResultEncoder:
    """Writes prediction responses as JSON text straight from the probability array.

    Building a dict per record and handing the list to `json.dumps` costs more than the
    model itself on a 1,000-record batch; one precompiled %-template per record writes the
    same JSON (floats by `repr`, as `json.dumps` writes them, and checked finite above)
    several times faster.
    """

    def __init__(self, classes: tuple[str, ...], model_version: str) -> None:
        self._labels = [json.dumps(label) for label in classes]
        probabilities = ",".join(f"{label}:%r" for label in self._labels)
        # One record without its closing brace, which the callers add.
        self._row = '{"prediction":%s,"probability":%r,"probabilities":{' + probabilities + "}"
        self._version = json.dumps(model_version)

    def _rows(self, probabilities: np.ndarray, best: list[int]) -> list[str]:
        labels, row = self._labels, self._row
        return [
            row % (labels[index], values[index], *values)
            for index, values in zip(best, probabilities.tolist(), strict=True)
        ]

    def single(self, probabilities: np.ndarray, best: list[int]) -> bytes:
        (row,) = self._rows(probabilities, best)
        return f'{row},"model_version":{self._version}}}'.encode()

    def batch(self, probabilities: np.ndarray, best: list[int]) -> bytes:
        rows = "},".join(self._rows(probabilities, best))
        return f'{{"predictions":[{rows}}}],"model_version":{self._version}}}'.encode()
