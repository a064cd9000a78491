"""Stage `train`: fit the preprocessing + estimator Pipeline and describe it for the service.

Writes the fitted Pipeline (joblib) and `model_metadata.json`, which tells the service
everything it needs without importing this package: the input schema it validates requests
against, the task and class labels, the library versions the model was pickled with, and the sha256
the service checks the model file against before it serves.

Nothing here depends on when or from which commit the stage ran: the same inputs write the
same files, so retraining an unchanged pipeline leaves the git tree clean. The model's
provenance is the commit whose dvc.lock records its hash (and, in a deployment, the revision
the service reports as `deployed_revision`).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import get_tags

from training import paths
from training.data import FeatureSpec, feature_spec, fingerprint, model_frame
from training.io import rounded, run_stage, sha256_file, write_json
from training.params import Params, ParamsError, read_params
from training.tasks import ALIASES, Task
from training.versions import library_versions

log = logging.getLogger(__name__)

METADATA_SCHEMA_VERSION = 1

# The Pipeline's last step, named as scikit-learn names the two kinds of estimator.
FINAL_STEP: dict[Task, str] = {"classification": "classifier", "regression": "regressor"}


def _estimator_error(message: str) -> ParamsError:
    return ParamsError(f"params.yaml: train.estimator: {message}")


def estimator_class(name: str, task: Task) -> type[Any]:
    """The class `train.estimator` names: an alias of the task, or an import path."""
    path = ALIASES[name][task] if name in ALIASES else name
    module_name, _, class_name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise _estimator_error(f"cannot import {path} ({error})") from None
    if not (isinstance(found, type) and hasattr(found, "fit") and hasattr(found, "get_params")):
        raise _estimator_error(f"{path} is not a scikit-learn estimator class")
    return found


def make_estimator(name: str, hyperparameters: dict[str, Any], seed: int, task: Task) -> Any:
    """The configured estimator, checked to fit the task and the service's needs."""
    cls = estimator_class(name, task)
    try:
        estimator = cls(**hyperparameters)
    except TypeError as error:
        raise ParamsError(f"params.yaml: train.hyperparameters.{name}: {error}") from None
    # Only estimators that draw random numbers take a seed (KNeighborsClassifier does not).
    if "random_state" in estimator.get_params(deep=False) and "random_state" not in hyperparameters:
        estimator.set_params(random_state=seed)
    kind = get_tags(estimator).estimator_type
    if kind != FINAL_STEP[task]:
        kind = f"a {kind}" if kind in FINAL_STEP.values() else f"not a {FINAL_STEP[task]}"
        raise _estimator_error(f"{name} is {kind}, but prepare.task is {task}")
    if task == "classification" and not hasattr(estimator, "predict_proba"):
        raise _estimator_error(
            f"{name} has no predict_proba with these hyperparameters; the service answers "
            "with class probabilities, so choose a probabilistic classifier"
        )
    return estimator


def build_pipeline(spec: FeatureSpec, estimator: BaseEstimator, task: Task) -> Pipeline:
    """Preprocessing and model in one object, so serving cannot apply them differently."""
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                spec.model_numeric,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    # Unknown categories become all-zero rows rather than an error, so a batch
                    # scored offline never fails on one new value.
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                list(spec.categorical),
            ),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), (FINAL_STEP[task], estimator)])


def configured_pipeline(spec: FeatureSpec, params: Params) -> Pipeline:
    """The Pipeline params.yaml describes, unfitted."""
    train, task = params.train, params.prepare.task
    assert train.estimator is not None  # Params resolves the task's default
    estimator = make_estimator(train.estimator, train.chosen_hyperparameters, train.seed, task)
    return build_pipeline(spec, estimator, task)


def _bounds(series: pd.Series, margin: float) -> dict[str, float]:
    low, high = float(series.min()), float(series.max())
    spread = (high - low) or abs(high) or 1.0
    minimum = low - margin * spread
    if low >= 0:
        # A measurement never seen negative is not accepted negative.
        minimum = max(0.0, minimum)
    return {"minimum": rounded(minimum), "maximum": rounded(high + margin * spread)}


def input_schema(frame: pd.DataFrame, spec: FeatureSpec, margin: float) -> list[dict[str, Any]]:
    """One entry per feature, in the order of the request's fields (`FeatureSpec.all`).

    Every feature passes through an imputer, so every feature may be null or omitted.
    """
    features: list[dict[str, Any]] = []
    for name in spec.all:
        column = frame[name]
        entry: dict[str, Any] = {
            "name": name,
            "nullable": True,
            "missing_in_training": int(column.isna().sum()),
        }
        if name in spec.numeric:
            is_integer = bool(pd.api.types.is_integer_dtype(column)) or bool(
                np.all(np.mod(column.dropna(), 1) == 0)
            )
            entry |= {
                "type": "number",
                "observed": {"minimum": float(column.min()), "maximum": float(column.max())},
                **_bounds(column, margin),
                "example": float(column.median()) if not is_integer else int(column.median()),
            }
        elif name in spec.dates:
            # Any day is accepted (app.schemas says why). ISO dates order as their text
            # does; the example is an observed date.
            present = column.dropna().astype(str).sort_values()
            entry |= {
                "type": "date",
                "observed": {"earliest": str(present.iloc[0]), "latest": str(present.iloc[-1])},
                "example": str(present.iloc[len(present) // 2]),
            }
        else:
            categories = sorted(column.dropna().astype(str).unique().tolist())
            entry |= {
                "type": "category",
                "categories": categories,
                "example": str(column.mode().iloc[0]),
            }
        features.append(entry)
    return features


def _training_data(train: pd.DataFrame, target: str, task: Task) -> dict[str, Any]:
    described: dict[str, Any] = {"rows": len(train), "fingerprint_sha256": fingerprint(train)}
    if task == "classification":
        counts = train[target].value_counts().sort_index()
        described["class_counts"] = {str(k): int(v) for k, v in counts.items()}
    else:
        values = train[target].astype(float)
        described["target_summary"] = {
            stat: rounded(getattr(values, stat)()) for stat in ("min", "max", "mean", "std")
        }
    return described


def build_metadata(
    *,
    model: Pipeline,
    train: pd.DataFrame,
    spec: FeatureSpec,
    params: Params,
    model_sha256: str,
) -> dict[str, Any]:
    target, task = params.prepare.target, params.prepare.task
    classes = [str(c) for c in model.classes_] if task == "classification" else []
    return {
        "schema_version": METADATA_SCHEMA_VERSION,
        "model_version": model_sha256[:12],
        "model_file": paths.MODEL.name,
        "model_sha256": model_sha256,
        "task": task,
        "estimator": params.train.estimator,
        "hyperparameters": params.train.chosen_hyperparameters,
        "target": target,
        "classes": classes,
        "input_schema": {"features": input_schema(train, spec, params.train.schema_margin)},
        "training_data": _training_data(train, target, task),
        # What the service checks before it unpickles (the `versions` stage's very output).
        "library_versions": library_versions(type(model[-1])),
    }


def fit_and_save(
    train: pd.DataFrame,
    params: Params,
    directory: Path,
    *,
    model: Pipeline | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit the configured Pipeline (or `model`) on `train`; write it and its metadata.

    The files land in `directory` under the names the service expects.
    """
    target = params.prepare.target
    spec = feature_spec(train, target)
    if model is None:
        model = configured_pipeline(spec, params)
    model.fit(model_frame(train, spec.kinds), train[target])

    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / paths.MODEL.name
    joblib.dump(model, model_path)
    metadata = build_metadata(
        model=model,
        train=train,
        spec=spec,
        params=params,
        model_sha256=sha256_file(model_path),
    )
    write_json(directory / paths.METADATA.name, metadata)
    return model, metadata


def main() -> None:
    params = read_params(paths.PARAMS)
    _, metadata = fit_and_save(pd.read_parquet(paths.TRAIN_SPLIT), params, paths.ARTIFACTS_DIR)
    log.info(
        "trained %s with %s, model version %s",
        metadata["estimator"],
        metadata["hyperparameters"] or "its default hyperparameters",
        metadata["model_version"],
    )


if __name__ == "__main__":
    run_stage(main)
