"""Request and response shapes, built from the model metadata rather than written by hand.

A user who retrains on other data gets a service that validates their fields, bounds and
categories without editing this file. Records are `TypedDict`s validated straight from the
request bytes by pydantic-core (`TypeAdapter.validate_json`): parsing and validating in Rust
is several times faster than `json.loads` plus model validation, yields the plain dicts the
predictor turns into columns, and runs in the worker thread with the prediction instead of
on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Required

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from typing_extensions import TypedDict

from app.artifacts import Feature, ModelMetadata

RECORD_SCHEMA = "Features"
BATCH_SCHEMA = "BatchRequest"


# TypedDict's functional form, called with names and fields known only at run time, which a
# static checker cannot follow.
_typed_dict: Any = TypedDict


def _describe(feature: Feature) -> str:
    if feature.type == "number":
        text = f"Number between {feature.minimum:g} and {feature.maximum:g}."
    else:
        allowed = ", ".join(feature.categories)
        text = (
            f"One of: {allowed}. Any other value is rejected with 422 and this list, "
            "because the model never saw it and would answer from the other fields alone."
        )
    if feature.nullable:
        return f"{text} Null or omitted: imputed from the training data."
    return f"{text} Required."


def _annotation(feature: Feature) -> Any:
    if feature.type == "number":
        # strict: "44.5" and true are rejected instead of coerced; allow_inf_nan=False turns
        # the NaN, Infinity and 1e400 that Python's JSON would accept into a 422.
        base: Any = Annotated[
            float,
            Field(ge=feature.minimum, le=feature.maximum, allow_inf_nan=False, strict=True),
        ]
    else:
        base = Literal[feature.categories]
    example = [] if feature.example is None else [feature.example]
    info = Field(description=_describe(feature), examples=example)
    if feature.nullable:
        return Annotated[base | None, info]
    # Training's contract marks every imputed feature nullable; one that is not must be sent.
    return Required[Annotated[base, info]]


def record_type(metadata: ModelMetadata) -> type:
    """A TypedDict of every feature, unknown keys forbidden; nullable features may also be
    omitted."""
    fields = {feature.name: _annotation(feature) for feature in metadata.features}
    # The functional form accepts any column name, including ones that are not identifiers.
    record = _typed_dict(RECORD_SCHEMA, fields, total=False)
    record.__pydantic_config__ = ConfigDict(extra="forbid", title=RECORD_SCHEMA)
    return record  # type: ignore[no-any-return]


def batch_type(record: type, max_records: int) -> type:
    batch = _typed_dict(
        BATCH_SCHEMA,
        {
            "records": Annotated[
                list[record],  # type: ignore[valid-type]
                Field(
                    min_length=1,
                    max_length=max_records,
                    description=f"1 to {max_records} records; one prediction each, in order.",
                ),
            ]
        },
    )
    batch.__pydantic_config__ = ConfigDict(extra="forbid", title=BATCH_SCHEMA)
    return batch  # type: ignore[no-any-return]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong with the request.")


@dataclass(frozen=True)
class Schemas:
    """Everything the routes validate against or document, for one model."""

    record: TypeAdapter[dict[str, Any]]
    batch: TypeAdapter[dict[str, Any]]
    prediction: type[BaseModel]
    prediction_response: type[BaseModel]
    batch_response: type[BaseModel]
    components: dict[str, Any]
    """JSON Schemas of the request bodies, for the OpenAPI document's components."""
    record_example: dict[str, Any]
    sparse_example: dict[str, Any]


def _prediction_models(
    metadata: ModelMetadata,
) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    label: Any = Literal[metadata.classes]
    prediction = create_model(
        "Prediction",
        __config__=ConfigDict(extra="forbid"),
        prediction=(label, Field(description=f"The predicted {metadata.target}.")),
        probability=(float, Field(ge=0, le=1, description="The predicted class's probability.")),
        probabilities=(
            dict[str, float],
            Field(description="Every class's probability, in the model's class order."),
        ),
    )
    version = (str, Field(description="The model that answered (also in X-Model-Version)."))
    single = create_model(
        "PredictionResponse",
        __base__=prediction,
        model_version=version,
    )
    batch = create_model(
        "BatchPredictionResponse",
        __config__=ConfigDict(extra="forbid"),
        predictions=(list[prediction], Field(description="One per record, in request order.")),  # type: ignore[valid-type]
        model_version=version,
    )
    return prediction, single, batch


def build_schemas(metadata: ModelMetadata, max_batch_records: int) -> Schemas:
    record = record_type(metadata)
    batch = batch_type(record, max_batch_records)
    record_adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(record)
    batch_adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(batch)
    template = "#/components/schemas/{model}"
    components = {RECORD_SCHEMA: record_adapter.json_schema(ref_template=template)}
    batch_schema = batch_adapter.json_schema(ref_template=template)
    components.update(batch_schema.pop("$defs", {}))
    components[BATCH_SCHEMA] = batch_schema

    example = metadata.example_record()
    # The same record with the fields the Pipeline imputes left out or null.
    sparse = dict(list(example.items())[::2])
    sparse[metadata.features[-1].name] = None
    prediction, single, batch_response = _prediction_models(metadata)
    return Schemas(
        record=record_adapter,
        batch=batch_adapter,
        prediction=prediction,
        prediction_response=single,
        batch_response=batch_response,
        components=components,
        record_example=example,
        sparse_example=sparse,
    )
