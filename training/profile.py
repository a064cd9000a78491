"""Stage `profile`: describe the training split as the service's reference for drift.

Writes `reference_profile.json` beside the model metadata: per numeric feature the range
and a few quantiles seen in training, per date feature its range, per categorical feature
the categories seen (with their shares), every feature's missing-value rate, and the class
priors. For a regressor, whose output has no class mix, the distribution of its predictions
on the training split instead: their range, quantiles and the share of them between
consecutive quantiles (the bins the service counts live predictions in). The service
counts live values against it (outside the range, unseen, missing) and shows it in
`GET /model`.

The profile names the model's sha256, read from the metadata the train stage wrote, so the
service can refuse a profile that belongs to another model. Nothing volatile (time, git
revision) goes in: the same split and model give the same bytes, and git shows a change
only when the data or the model changed.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training import paths
from training.data import model_frame, schema_kinds
from training.io import rounded, run_stage, write_json
from training.params import read_params

log = logging.getLogger(__name__)

PROFILE_SCHEMA_VERSION = 1


def _quantile_key(q: float) -> str:
    return f"p{round(q * 100, 4):g}"


def numeric_profile(column: pd.Series, quantiles: list[float]) -> dict[str, Any]:
    present = column.dropna().astype(float)
    if present.empty:
        raise ValueError(f"feature {column.name!r} has no value in the training split")
    values = present.quantile(quantiles, interpolation="linear")
    return {
        "type": "number",
        "minimum": rounded(present.min()),
        "maximum": rounded(present.max()),
        "mean": rounded(present.mean()),
        "quantiles": {_quantile_key(q): rounded(v) for q, v in zip(quantiles, values, strict=True)},
    }


def categorical_profile(column: pd.Series) -> dict[str, Any]:
    present = column.dropna().astype(str)
    shares = present.value_counts(normalize=True).sort_index()
    return {
        "type": "category",
        "categories": {str(k): rounded(v) for k, v in shares.items()},
    }


def date_profile(column: pd.Series) -> dict[str, Any]:
    # ISO dates order as their text does.
    present = column.dropna().astype(str)
    return {"type": "date", "minimum": present.min(), "maximum": present.max()}


def prediction_profile(predictions: np.ndarray, quantiles: list[float]) -> dict[str, Any]:
    """A regressor's training predictions: range, quantiles, and each bin's share. Bins lie
    between consecutive edges (minimum, the quantiles, maximum), named by their quantiles
    (`p25-p50`); a value on an edge counts in the bin above it, as the service counts."""
    described = numeric_profile(pd.Series(predictions, name="prediction"), quantiles)
    del described["type"]  # a feature's kind; predictions are always numbers
    keys = ["p0", *described["quantiles"], "p100"]
    edges = list(described["quantiles"].values())
    index = np.searchsorted(edges, np.asarray(predictions, dtype=np.float64), side="right")
    shares = np.bincount(index, minlength=len(keys) - 1) / len(predictions)
    names = [f"{low}-{high}" for low, high in itertools.pairwise(keys)]
    return {**described, "bins": {n: rounded(v) for n, v in zip(names, shares, strict=True)}}


def build_profile(
    train: pd.DataFrame,
    metadata: dict[str, Any],
    quantiles: list[float],
    predictions: np.ndarray | None = None,
) -> dict[str, Any]:
    """The reference profile of `train` for the model `metadata` describes.

    Features are taken from the metadata's input schema, in its order and with its types,
    so the profile describes exactly what the service validates and the model reads.
    `predictions` are a regressor's predictions for `train`, required for one.
    """
    target = metadata["target"]
    features = []
    for entry in metadata["input_schema"]["features"]:
        name = entry["name"]
        if name not in train.columns:
            raise ValueError(f"feature {name!r} of the metadata is not in the training split")
        column = train[name]
        if entry["type"] == "number":
            described = numeric_profile(column, quantiles)
        elif entry["type"] == "date":
            described = date_profile(column)
        else:
            described = categorical_profile(column)
        features.append({"name": name, "missing_rate": rounded(column.isna().mean()), **described})
    profile = {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "model_sha256": metadata["model_sha256"],
        "target": target,
        "rows": len(train),
        "class_priors": {},
        "features": features,
    }
    if metadata.get("task") == "regression":
        if predictions is None or len(predictions) != len(train):
            raise ValueError("a regressor's profile needs its predictions for every training row")
        profile["predictions"] = prediction_profile(predictions, quantiles)
    else:
        priors = train[target].astype(str).value_counts(normalize=True)
        classes = metadata["classes"]
        profile["class_priors"] = {cls: rounded(priors.get(cls, 0.0)) for cls in classes}
    return profile


def training_predictions(
    train: pd.DataFrame, metadata: dict[str, Any], model_dir: Path = paths.ARTIFACTS_DIR
) -> np.ndarray | None:
    """A regressor's predictions for the training split, from the model the train stage
    wrote into `model_dir`; None for a classifier, whose profile holds class priors instead."""
    if metadata.get("task") != "regression":
        return None
    import joblib

    model = joblib.load(model_dir / metadata["model_file"])
    return np.asarray(model.predict(model_frame(train, schema_kinds(metadata))), dtype=np.float64)


def main() -> None:
    params = read_params(paths.PARAMS).profile
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    train = pd.read_parquet(paths.TRAIN_SPLIT)
    profile = build_profile(
        train, metadata, params.quantiles, training_predictions(train, metadata)
    )
    write_json(paths.PROFILE, profile)
    log.info(
        "profiled %d training rows and %d features for model %s",
        profile["rows"],
        len(profile["features"]),
        metadata["model_version"],
    )


if __name__ == "__main__":
    run_stage(main)
