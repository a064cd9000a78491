"""`params.yaml`, typed: one pydantic model, one block per DVC stage.

Every stage reads its block from `read_params()`, which validates the whole file once: a misspelt
key, a value of the wrong type or a metric the task does not have fails before any work,
as one line naming the key (`params.yaml: train.estimator: ...`), instead of training with
a default nobody chose.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.tasks import (
    ALIASES,
    BINARY_ONLY,
    DEFAULT_ESTIMATOR,
    GATED,
    HIGHER_IS_BETTER,
    Task,
)

# A dotted import path: `package.module.Class`.
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")

Seed = Annotated[int, Field(ge=0)]


class ParamsError(ValueError):
    """params.yaml is not valid; the message names the key."""


class _Block(BaseModel):
    # A key the model does not know is refused: a typo would otherwise be ignored silently.
    model_config = ConfigDict(extra="forbid")


class Prepare(_Block):
    # "palmerpenguins" (bundled) or a .csv/.parquet path, relative to the repository root.
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    task: Task = "classification"
    drop_columns: list[str] = []
    test_size: float = Field(gt=0, lt=1)
    seed: Seed
    max_categories: int = Field(default=50, ge=2)
    # Binary classification: the class ROC AUC and average precision are reported for.
    # None means the minority class of the training split.
    positive_class: str | None = None

    @field_validator("positive_class", mode="before")
    @classmethod
    def _as_label(cls, value: Any) -> Any:
        # Labels are compared as strings (the target is read as text); YAML may give 1 or true.
        return value if value is None or isinstance(value, str) else str(value)

    @model_validator(mode="after")
    def _positive_class_is_for_classification(self) -> Prepare:
        if self.positive_class is not None and self.task != "classification":
            raise ValueError("positive_class applies to task classification only")
        return self


class Train(_Block):
    seed: Seed
    # An alias of tasks.ALIASES or the import path of an estimator class; None (the key
    # left out) means the task's default, resolved by `Params`.
    estimator: str | None = None
    # Per estimator, under the name `estimator` uses: only the block of the estimator that
    # trains applies, so switching estimators keeps each one's settings.
    hyperparameters: dict[str, dict[str, Any]] = {}
    schema_margin: float = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _accept_classifier(cls, data: Any) -> Any:
        """`train.classifier` (with flat hyperparameters) was this block's old spelling."""
        if not isinstance(data, dict) or "classifier" not in data:
            return data
        if "estimator" in data:
            raise ValueError("set train.estimator only; train.classifier is its old name")
        warnings.warn(
            "params.yaml: train.classifier is deprecated: rename it train.estimator and put "
            "train.hyperparameters under the estimator's name",
            DeprecationWarning,
            stacklevel=2,
        )
        data = dict(data)
        name = data.pop("classifier")
        data["estimator"] = name
        data["hyperparameters"] = {name: data.get("hyperparameters") or {}}
        return data

    @field_validator("estimator")
    @classmethod
    def _alias_or_import_path(cls, value: str | None) -> str | None:
        if value is not None and value not in ALIASES and not IMPORT_PATH.match(value):
            raise ValueError(
                f"{value!r} is neither an alias ({', '.join(ALIASES)}) nor an import path "
                "such as sklearn.ensemble.ExtraTreesClassifier"
            )
        return value

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _per_estimator(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name, block in value.items():
                if not isinstance(block, dict) and block is not None:
                    raise ValueError(
                        f"{name}: hyperparameters go under the estimator's name, e.g. "
                        "hyperparameters: {logistic_regression: {C: 1.0}}"
                    )
                if name not in ALIASES and not IMPORT_PATH.match(str(name)):
                    raise ValueError(
                        f"{name}: not an estimator alias ({', '.join(ALIASES)}) or import path"
                    )
            return {name: block or {} for name, block in value.items()}
        return value

    @property
    def chosen_hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters of the estimator that trains."""
        return dict(self.hyperparameters.get(self.estimator or "", {}))


class Profile(_Block):
    # Quantiles of each numeric feature recorded in the reference profile.
    quantiles: list[Annotated[float, Field(ge=0, le=1)]] = Field(min_length=1)

    @field_validator("quantiles")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if sorted(value) != value:
            raise ValueError(f"{value} must be in ascending order")
        return value


class Evaluate(_Block):
    seed: Seed
    cv_folds: int = Field(ge=2)
    # Classification: the least increase of test accuracy and macro F1 over the baseline.
    # Regression: the least relative reduction of test RMSE, (baseline - model) / baseline.
    min_improvement_over_baseline: float


class Export(_Block):
    tolerance: float = Field(gt=0)
    # At least one: without them the parity check fails and the service loses its ONNX path.
    random_records: int = Field(ge=1)
    missing_rate: float = Field(ge=0, le=1)
    seed: Seed


class Compare(_Block):
    # Test-split metrics of the task (tasks.HIGHER_IS_BETTER); None (the key left out)
    # means the task's gated metrics, resolved by `Params`.
    metrics: list[str] | None = Field(default=None, min_length=1)
    max_regression: float = Field(ge=0)


class Params(_Block):
    prepare: Prepare
    train: Train
    profile: Profile
    evaluate: Evaluate
    export: Export
    compare: Compare

    @model_validator(mode="after")
    def _fit_the_task(self) -> Params:
        task = self.prepare.task
        if self.train.estimator is None:
            self.train.estimator = DEFAULT_ESTIMATOR[task]
        alias = ALIASES.get(self.train.estimator)
        if alias is not None and task not in alias:
            raise ValueError(
                f"train.estimator: {self.train.estimator} has no {task} estimator; for "
                f"prepare.task {task} use one of "
                f"{', '.join(a for a, paths in ALIASES.items() if task in paths)} or an import path"
            )
        if self.compare.metrics is None:
            self.compare.metrics = list(GATED[task])
        known = HIGHER_IS_BETTER[task]
        unknown = [name for name in self.compare.metrics if name not in known]
        if unknown:
            raise ValueError(
                f"compare.metrics: {unknown} are not metrics of task {task}; choose from "
                + ", ".join(
                    f"{name} ({'higher' if higher else 'lower'} is better"
                    + (", binary only)" if name in BINARY_ONLY else ")")
                    for name, higher in known.items()
                )
            )
        return self


def _explain(error: ValidationError, where: str) -> str:
    """Each problem as `params.yaml: block.key: message`, the value never echoed in full."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(f"{key}: {message}" if key else message)
    return f"{where}: " + "; ".join(problems)


def parse(raw: Any, where: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_explain(error, where)) from None


def read_params(path: Path) -> Params:
    """The validated params; raises `ParamsError` naming the file and key of each problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"{path.name}: unreadable: {error}") from None
    return parse(raw, path.name)
