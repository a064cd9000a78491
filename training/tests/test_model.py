"""Model tests on the artifacts `make train` wrote: quality floors and behavioural cases.

The floors and cases are facts of the penguin model (`example_data`): a fork writes its own."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

MIN_TEST_ACCURACY = 0.95
GENTOO = {
    "island": "Biscoe",
    "bill_length_mm": 47.5,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 217.0,
    "body_mass_g": 5076.0,
    "sex": "male",
}


def _predict(model: Any, metadata: dict[str, Any], **values: Any) -> str:
    features = metadata["input_schema"]["features"]
    row = pd.DataFrame([{f["name"]: values.get(f["name"]) for f in features}])
    numeric = [f["name"] for f in features if f["type"] == "number"]
    row[numeric] = row[numeric].astype(float)
    return str(model.predict(row)[0])


@pytest.mark.example_data
def test_model_meets_the_minimum_test_accuracy(metrics: dict[str, Any]) -> None:
    assert metrics["model"]["test"]["accuracy"] >= MIN_TEST_ACCURACY


@pytest.mark.example_data
def test_model_beats_the_majority_baseline(metrics: dict[str, Any]) -> None:
    baseline = metrics["baseline"]["test"]["accuracy"]
    assert baseline == pytest.approx(0.44, abs=0.02)
    assert metrics["model"]["test"]["accuracy"] - baseline >= 0.4
    assert metrics["model"]["cv"]["macro_f1_mean"] > metrics["baseline"]["cv"]["macro_f1_mean"]


def test_metadata_matches_the_model_file(model: Any, metadata: dict[str, Any]) -> None:
    from training import paths
    from training.io import sha256_file

    assert sha256_file(paths.MODEL) == metadata["model_sha256"]
    # A regressor has no classes_, and its metadata lists none.
    assert list(getattr(model, "classes_", [])) == metadata["classes"]


@pytest.mark.example_data
@pytest.mark.parametrize(
    ("expected", "record"),
    [
        # Typical birds of each species, as described in the Palmer penguins documentation.
        ("Gentoo", GENTOO),
        # A missing sex does not change a clear Gentoo.
        ("Gentoo", {**GENTOO, "sex": None}),
        (
            "Adelie",
            {
                "island": "Torgersen",
                "bill_length_mm": 38.8,
                "bill_depth_mm": 18.3,
                "flipper_length_mm": 190.0,
                "body_mass_g": 3700.0,
                "sex": "female",
            },
        ),
        (
            "Chinstrap",
            {
                "island": "Dream",
                "bill_length_mm": 48.8,
                "bill_depth_mm": 18.4,
                "flipper_length_mm": 196.0,
                "body_mass_g": 3733.0,
                "sex": "male",
            },
        ),
    ],
)
def test_typical_bird_of_each_species_is_recognised(
    model: Any, metadata: dict[str, Any], expected: str, record: dict[str, Any]
) -> None:
    assert _predict(model, metadata, **record) == expected


@pytest.mark.example_data
def test_long_bill_separates_chinstrap_from_adelie_on_dream(
    model: Any, metadata: dict[str, Any]
) -> None:
    common = {
        "island": "Dream",
        "bill_depth_mm": 18.4,
        "flipper_length_mm": 193.0,
        "body_mass_g": 3700.0,
        "sex": "female",
    }
    assert _predict(model, metadata, bill_length_mm=37.0, **common) == "Adelie"
    assert _predict(model, metadata, bill_length_mm=50.0, **common) == "Chinstrap"
