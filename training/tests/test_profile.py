"""Tests of the `profile` stage: the code on small frames, the written profile against the
training split and the model it belongs to."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from training import paths
from training.params import read_params
from training.profile import build_profile, training_predictions

QUANTILES = [0.05, 0.5, 0.95]
METADATA: dict[str, Any] = {
    "model_sha256": "ab" * 32,
    "target": "label",
    "classes": ["no", "yes", "never-seen"],
    "input_schema": {
        "features": [{"name": "size", "type": "number"}, {"name": "colour", "type": "category"}]
    },
}


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [1.0, 2.0, 3.0, np.nan, 5.0, 4.0, 6.0, 7.0, 8.0, 9.0],
            "colour": ["red", "blue", None, "red", "red", "blue", "red", "red", "red", "blue"],
            "label": ["yes", "no", "yes", "yes", "no", "yes", "yes", "no", "yes", "yes"],
            "unused": range(10),
        }
    )


def test_numeric_feature_records_training_range_quantiles_and_missing_rate(
    frame: pd.DataFrame,
) -> None:
    size = build_profile(frame, METADATA, QUANTILES)["features"][0]
    assert size["name"] == "size"
    assert size["type"] == "number"
    assert (size["minimum"], size["maximum"]) == (1.0, 9.0)
    assert size["missing_rate"] == 0.1
    assert size["quantiles"] == {"p5": 1.4, "p50": 5.0, "p95": 8.6}


def test_categorical_feature_records_every_category_seen_with_its_share(
    frame: pd.DataFrame,
) -> None:
    colour = build_profile(frame, METADATA, QUANTILES)["features"][1]
    assert colour["type"] == "category"
    assert colour["categories"] == {"blue": pytest.approx(3 / 9, abs=1e-6), "red": 0.666667}
    assert colour["missing_rate"] == 0.1


def test_class_priors_cover_every_class_of_the_model_in_its_order(frame: pd.DataFrame) -> None:
    profile = build_profile(frame, METADATA, QUANTILES)
    assert profile["class_priors"] == {"no": 0.3, "yes": 0.7, "never-seen": 0.0}
    assert profile["rows"] == 10


def test_profile_names_the_model_and_nothing_volatile(frame: pd.DataFrame) -> None:
    profile = build_profile(frame, METADATA, QUANTILES)
    assert profile["model_sha256"] == METADATA["model_sha256"]
    assert set(profile) == {
        "schema_version",
        "model_sha256",
        "target",
        "rows",
        "class_priors",
        "features",
    }
    # Same input, same bytes: git shows a change only when the data or the model changed.
    again = build_profile(frame.sample(frac=1, random_state=1), METADATA, QUANTILES)
    assert json.dumps(again) == json.dumps(profile)


def test_feature_missing_from_the_split_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'size'"):
        build_profile(frame.drop(columns="size"), METADATA, QUANTILES)


REGRESSOR = {**METADATA, "task": "regression", "classes": []}


def test_regressor_profiles_its_training_predictions_in_quantile_bins(
    frame: pd.DataFrame,
) -> None:
    predictions = np.arange(10, dtype=np.float64)  # 0 .. 9
    profile = build_profile(frame, REGRESSOR, QUANTILES, predictions)
    assert profile["class_priors"] == {}
    described = profile["predictions"]
    assert (described["minimum"], described["maximum"]) == (0.0, 9.0)
    assert described["quantiles"] == {"p5": 0.45, "p50": 4.5, "p95": 8.55}
    # 0 | 1 2 3 4 | 5 6 7 8 | 9: a bin per pair of consecutive edges, shares summing to 1.
    assert described["bins"] == {"p0-p5": 0.1, "p5-p50": 0.4, "p50-p95": 0.4, "p95-p100": 0.1}


def test_regressor_profile_without_predictions_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="predictions for every training row"):
        build_profile(frame, REGRESSOR, QUANTILES)


# The artifacts `make train` wrote.


@pytest.fixture(scope="module")
def written() -> dict[str, Any]:
    if not paths.PROFILE.exists():
        pytest.fail(f"{paths.PROFILE.name} is missing: run `make train`")
    loaded: dict[str, Any] = json.loads(paths.PROFILE.read_text(encoding="utf-8"))
    return loaded


def test_written_profile_is_the_training_split_profile() -> None:
    train = pd.read_parquet(paths.TRAIN_SPLIT)
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    quantiles = read_params(paths.PARAMS).profile.quantiles
    assert json.loads(paths.PROFILE.read_text(encoding="utf-8")) == build_profile(
        train, metadata, quantiles, training_predictions(train, metadata)
    )


def test_training_range_lies_inside_the_bounds_the_service_accepts(
    written: dict[str, Any], metadata: dict[str, Any]
) -> None:
    # Otherwise a value inside the training range could be rejected, and the out-of-range
    # counter would count values the service never scores.
    accepted = {f["name"]: f for f in metadata["input_schema"]["features"]}
    for feature in written["features"]:
        schema = accepted[feature["name"]]
        if feature["type"] == "number":
            assert (
                schema["minimum"] <= feature["minimum"] <= feature["maximum"] <= schema["maximum"]
            )
        elif feature["type"] == "date":  # any day is accepted; the profile is what was seen
            observed = schema["observed"]
            assert (feature["minimum"], feature["maximum"]) == (
                observed["earliest"],
                observed["latest"],
            )
        else:
            assert sorted(feature["categories"]) == schema["categories"]
