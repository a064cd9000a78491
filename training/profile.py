"""Stage `profile`: describe the training split as the service's reference for drift.

Writes `reference_profile.json` beside the model metadata: per numeric feature the range
and a few quantiles seen in training, per categorical feature the categories seen (with
their shares), every feature's missing-value rate, and the class priors. The service counts
live values against it (outside the range, unseen, missing) and shows it in `GET /model`.

The profile names the model's sha256, read from the metadata the train stage wrote, so the
service can refuse a profile that belongs to another model. Nothing volatile (time, git
revision) goes in: the same split and model give the same bytes, and git shows a change
only when the data or the model changed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pandas as pd

from training import paths
from training.io import run_stage, write_json
from training.params import read_params

log = logging.getLogger(__name__)

PROFILE_SCHEMA_VERSION = 1


def _round(value: float) -> float:
    # Six decimals: readable in a pull request's diff, stable across platforms' last bits.
    return round(float(value), 6)


def _quantile_key(q: float) -> str:
    return f"p{round(q * 100, 4):g}"


def numeric_profile(column: pd.Series, quantiles: list[float]) -> dict[str, Any]:
    present = column.dropna().astype(float)
    if present.empty:
        raise ValueError(f"feature {column.name!r} has no value in the training split")
    values = present.quantile(quantiles, interpolation="linear")
    return {
        "type": "number",
        "minimum": _round(present.min()),
        "maximum": _round(present.max()),
        "mean": _round(present.mean()),
        "quantiles": {_quantile_key(q): _round(v) for q, v in zip(quantiles, values, strict=True)},
    }


def categorical_profile(column: pd.Series) -> dict[str, Any]:
    present = column.dropna().astype(str)
    shares = present.value_counts(normalize=True).sort_index()
    return {
        "type": "category",
        "categories": {str(k): _round(v) for k, v in shares.items()},
    }


def build_profile(
    train: pd.DataFrame, metadata: dict[str, Any], quantiles: list[float]
) -> dict[str, Any]:
    """The reference profile of `train` for the model `metadata` describes.

    Features are taken from the metadata's input schema, in its order and with its types,
    so the profile describes exactly what the service validates and the model reads.
    """
    target = metadata["target"]
    features = []
    for entry in metadata["input_schema"]["features"]:
        name = entry["name"]
        if name not in train.columns:
            raise ValueError(f"feature {name!r} of the metadata is not in the training split")
        column = train[name]
        described = (
            numeric_profile(column, quantiles)
            if entry["type"] == "number"
            else categorical_profile(column)
        )
        features.append({"name": name, "missing_rate": _round(column.isna().mean()), **described})
    priors = train[target].astype(str).value_counts(normalize=True)
    return {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "model_sha256": metadata["model_sha256"],
        "target": target,
        "rows": len(train),
        "class_priors": {cls: _round(priors.get(cls, 0.0)) for cls in metadata["classes"]},
        "features": features,
    }


def main() -> None:
    params = read_params(paths.PARAMS).profile
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    profile = build_profile(pd.read_parquet(paths.TRAIN_SPLIT), metadata, params.quantiles)
    write_json(paths.PROFILE, profile)
    log.info(
        "profiled %d training rows and %d features for model %s",
        profile["rows"],
        len(profile["features"]),
        metadata["model_version"],
    )


if __name__ == "__main__":
    run_stage(main)
