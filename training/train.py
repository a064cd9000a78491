"""Stage `train`: fit the preprocessing + classifier Pipeline and describe it for the service.

Writes the fitted Pipeline (joblib) and `model_metadata.json`, which tells the service
everything it needs without importing this package: the input schema it validates requests
against, the class labels, the library versions the model was pickled with, and the sha256
the service checks the model file against before it serves.

Nothing here depends on when or from which commit the stage ran: the same inputs write the
same files, so retraining an unchanged pipeline leaves the git tree clean. The model's
provenance is the commit whose dvc.lock records its hash (and, in a deployment, the revision
the service reports as `deployed_revision`).
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training import paths
from training.data import FeatureSpec, feature_spec, fingerprint
from training.io import load_params, sha256_file, write_json

log = logging.getLogger(__name__)

METADATA_SCHEMA_VERSION = 1

CLASSIFIERS: dict[str, type[Any]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}


def build_pipeline(
    spec: FeatureSpec, classifier: str, hyperparameters: dict[str, Any], seed: int
) -> Pipeline:
    """Preprocessing and model in one object, so serving cannot apply them differently."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"train.classifier: {classifier!r} is not one of {sorted(CLASSIFIERS)}")
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                list(spec.numeric),
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
    model = CLASSIFIERS[classifier](random_state=seed, **hyperparameters)
    return Pipeline([("preprocess", preprocess), ("classifier", model)])


def _bounds(series: pd.Series, margin: float) -> dict[str, float]:
    low, high = float(series.min()), float(series.max())
    spread = (high - low) or abs(high) or 1.0
    minimum = low - margin * spread
    if low >= 0:
        # A measurement never seen negative is not accepted negative.
        minimum = max(0.0, minimum)
    return {"minimum": round(minimum, 6), "maximum": round(high + margin * spread, 6)}


def input_schema(frame: pd.DataFrame, spec: FeatureSpec, margin: float) -> list[dict[str, Any]]:
    """One entry per feature, in the order the Pipeline expects them.

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
        else:
            categories = sorted(column.dropna().astype(str).unique().tolist())
            entry |= {
                "type": "category",
                "categories": categories,
                "example": str(column.mode().iloc[0]),
            }
        features.append(entry)
    return features


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def build_metadata(
    *,
    model: Pipeline,
    train: pd.DataFrame,
    target: str,
    spec: FeatureSpec,
    params: dict[str, Any],
    model_sha256: str,
) -> dict[str, Any]:
    return {
        "schema_version": METADATA_SCHEMA_VERSION,
        "model_version": model_sha256[:12],
        "model_file": paths.MODEL.name,
        "model_sha256": model_sha256,
        "estimator": params["classifier"],
        "hyperparameters": params["hyperparameters"],
        "target": target,
        "classes": [str(c) for c in model.classes_],
        "input_schema": {"features": input_schema(train, spec, params["schema_margin"])},
        "training_data": {
            "rows": len(train),
            "fingerprint_sha256": fingerprint(train),
            "class_counts": {
                str(k): int(v) for k, v in train[target].value_counts().sort_index().items()
            },
        },
        "library_versions": library_versions(),
    }


def fit_and_save(
    train: pd.DataFrame,
    target: str,
    params: dict[str, Any],
    directory: Path,
    *,
    model: Pipeline | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit the configured Pipeline (or `model`) on `train`; write it and its metadata.

    The files land in `directory` under the names the service expects.
    """
    spec = feature_spec(train, target)
    if model is None:
        model = build_pipeline(
            spec, params["classifier"], params["hyperparameters"], params["seed"]
        )
    model.fit(train[list(spec.all)], train[target])

    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / paths.MODEL.name
    joblib.dump(model, model_path)
    metadata = build_metadata(
        model=model,
        train=train,
        target=target,
        spec=spec,
        params=params,
        model_sha256=sha256_file(model_path),
    )
    write_json(directory / paths.METADATA.name, metadata)
    return model, metadata


def main() -> None:
    params = load_params("train", paths.PARAMS)
    target = load_params("prepare", paths.PARAMS)["target"]
    _, metadata = fit_and_save(
        pd.read_parquet(paths.TRAIN_SPLIT),
        target,
        params,
        paths.ARTIFACTS_DIR,
    )
    log.info("trained %s, model version %s", params["classifier"], metadata["model_version"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
