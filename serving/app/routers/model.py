"""What model answers: provenance, evaluation, input schema and which backend runs it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.dependencies import get_service
from app.service import ModelService

router = APIRouter(tags=["model"])


class ModelInfo(BaseModel):
    model_version: str = Field(description="First 12 hex digits of the model file's sha256.")
    model_sha256: str
    backend: str = Field(description='Which path answers: "sklearn" (the Pipeline) or "onnx".')
    deployed_revision: str | None = Field(
        description="The commit the running service was deployed from (GIT_REVISION); its "
        "dvc.lock records this model's hash."
    )
    estimator: str | None
    hyperparameters: dict[str, Any] | None
    task: str = Field(description='"classification" or "regression".')
    target: str
    classes: list[str] = Field(description="A classifier's classes; empty for a regressor.")
    metrics: dict[str, Any] | None = Field(description="metrics.json from the evaluate stage.")
    training_data: dict[str, Any] | None
    library_versions: dict[str, Any] | None = Field(
        description="Versions the model was trained and pickled with."
    )
    input_schema: dict[str, Any] | None = Field(
        description="Every feature with its type, accepted bounds or categories, and example."
    )
    reference_profile: dict[str, Any] | None = Field(
        description=(
            "The training split the drift counters compare live inputs with: per feature its "
            "range and quantiles or categories, its missing rate, and the class priors. Null "
            "when the model has no profile (then no drift is counted)."
        )
    )
    limits: dict[str, int]


@router.get("/model", response_model=ModelInfo, summary="The model this service runs")
async def model(service: Annotated[ModelService, Depends(get_service)]) -> Response:
    # Serialised once per process: it cannot change while the process runs.
    return Response(service.description_json, media_type="application/json")
