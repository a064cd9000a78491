"""Request and response shapes, built from the model metadata rather than written by hand.

A user who retrains on other data gets a service that validates their fields, bounds and
categories without editing this file. Records are `TypedDict`s validated straight from the
request bytes by pydantic-core (`TypeAdapter.validate_json`): parsing and validating in Rust
is several times faster than `json.loads` plus model validation, yields the plain dicts the
predictor turns into columns, and runs in the worker thread with the prediction instead of
on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Required

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from app import dates
from app.artifacts import Feature, ModelMetadata

RECORD_SCHEMA = "Features"
BATCH_SCHEMA = "BatchRequest"


# TypedDict's functional form, called with names and fields known only at run time, which a
# static checker cannot follow.
_typed_dict: Any = TypedDict


@dataclass(frozen=True)
class ExtraField:
    """A request field that is not a model feature, returned as sent with its prediction."""

    name: str
    annotation: Any
    """Its type, with its bounds and description: `Annotated[str, Field(max_length=64, ...)]`."""


EXTRA_FIELDS: tuple[ExtraField, ...] = ()
"""The one place to add a non-feature field (a client's reference, an `explain` flag).

Each is optional in every record of `/predict` and `/predict/batch`, validated with the
features (a bad value is a 422 naming it), documented in the OpenAPI request and response
schemas, and echoed in that record's result when it was sent. Nothing else needs editing;
a field that changes the answer (`explain`) is then read in `ModelService` from the record.
"""


def _describe(feature: Feature) -> str:
    if feature.type == "number":
        text = f"Number between {feature.minimum:g} and {feature.maximum:g}."
    elif feature.type == "date":
        text = f"Date ({dates.FORMAT}); the model reads its year, month and day of year."
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
    elif feature.type == "date":
        # Text, as sent: the model reads its parts (`app.dates`), derived before either
        # backend. Any day is accepted (JSON Schema cannot bound a date, so no document could
        # say which); one outside training's range is counted as drift.
        base = Annotated[
            str,
            Field(strict=True, json_schema_extra={"format": "date", "pattern": dates.PATTERN}),
            AfterValidator(_date),
        ]
    else:
        base = Literal[feature.categories]
    example = [] if feature.example is None else [feature.example]
    info = Field(description=_describe(feature), examples=example)
    if feature.nullable:
        return Annotated[base | None, info]
    # Training's contract marks every imputed feature nullable; one that is not must be sent.
    return Required[Annotated[base, info]]


def _date(value: str) -> str:
    if not dates.is_date(value):
        raise PydanticCustomError(
            "date_parsing",
            "Input should be a valid date in the format {format}",
            {"format": dates.FORMAT},
        )
    return value


def record_type(metadata: ModelMetadata, extra: Sequence[ExtraField] = ()) -> type:
    """A TypedDict of every feature and extra field, unknown keys forbidden; nullable
    features may also be omitted, extra fields always."""
    fields = {feature.name: _annotation(feature) for feature in metadata.features}
    for added in extra:
        if added.name in fields:
            raise ValueError(f"extra field {added.name!r} is also a feature of the model")
        fields[added.name] = added.annotation
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
    extra: dict[str, TypeAdapter[Any]]
    """The extra fields by name, each with its validator: echoed in each record's result when
    sent (an Arrow body's columns are checked value by value with it)."""


def _omitted_when_not_sent(schema: dict[str, Any]) -> None:
    # The default None means "not sent", and the encoder then leaves the field out.
    schema.pop("default", None)


def _prediction_models(
    metadata: ModelMetadata, extra: Sequence[ExtraField]
) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    result: dict[str, Any]
    if metadata.task == "regression":
        result = {
            "prediction": (
                float,
                Field(allow_inf_nan=False, description=f"The predicted {metadata.target}."),
            )
        }
    else:
        label: Any = Literal[metadata.classes]
        result = {
            "prediction": (label, Field(description=f"The predicted {metadata.target}.")),
            "probability": (
                float,
                Field(ge=0, le=1, description="The predicted class's probability."),
            ),
            "probabilities": (
                dict[str, float],
                Field(description="Every class's probability, in the model's class order."),
            ),
        }
    for added in extra:
        result[added.name] = (
            added.annotation,
            Field(default=None, json_schema_extra=_omitted_when_not_sent),
        )
    prediction = create_model("Prediction", __config__=ConfigDict(extra="forbid"), **result)
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


def build_schemas(
    metadata: ModelMetadata, max_batch_records: int, extra: Sequence[ExtraField] | None = None
) -> Schemas:
    """`extra` defaults to `EXTRA_FIELDS`, read when called (a test may set it)."""
    extra = EXTRA_FIELDS if extra is None else tuple(extra)
    record = record_type(metadata, extra)
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
    prediction, single, batch_response = _prediction_models(metadata, extra)
    return Schemas(
        record=record_adapter,
        batch=batch_adapter,
        prediction=prediction,
        prediction_response=single,
        batch_response=batch_response,
        components=components,
        record_example=example,
        sparse_example=sparse,
        extra={added.name: TypeAdapter(added.annotation) for added in extra},
    )
