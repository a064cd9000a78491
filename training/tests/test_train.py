"""Code tests for the `train` stage: the Pipeline it builds and the metadata it writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from training import paths
from training.data import feature_spec
from training.params import read_params
from training.train import build_metadata, build_pipeline, input_schema, make_estimator


@pytest.fixture(scope="module")
def fitted(penguins: pd.DataFrame) -> tuple[Pipeline, pd.DataFrame]:
    spec = feature_spec(penguins, "species")
    estimator = make_estimator("logistic_regression", {"max_iter": 1000}, 42, "classification")
    pipeline = build_pipeline(spec, estimator, "classification")
    pipeline.fit(penguins[list(spec.all)], penguins["species"])
    return pipeline, penguins


def test_pipeline_bundles_preprocessing_and_classifier(
    fitted: tuple[Pipeline, pd.DataFrame],
) -> None:
    pipeline, _ = fitted
    assert [name for name, _ in pipeline.steps] == ["preprocess", "classifier"]
    assert list(pipeline.classes_) == ["Adelie", "Chinstrap", "Gentoo"]


def test_pipeline_predicts_rows_with_missing_values_and_unknown_categories(
    fitted: tuple[Pipeline, pd.DataFrame],
) -> None:
    pipeline, frame = fitted
    rows = frame.drop(columns="species").head(2).copy()
    rows.loc[rows.index[0], ["bill_length_mm", "sex"]] = [np.nan, None]
    rows.loc[rows.index[1], "island"] = "Atlantis"
    probabilities = pipeline.predict_proba(rows)
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_input_schema_bounds_contain_the_observed_range_and_stay_non_negative(
    penguins: pd.DataFrame,
) -> None:
    schema = {f["name"]: f for f in input_schema(penguins, feature_spec(penguins, "species"), 0.5)}
    bill = schema["bill_length_mm"]
    assert bill["type"] == "number"
    assert bill["observed"] == {"minimum": 32.1, "maximum": 59.6}
    assert bill["minimum"] == pytest.approx(32.1 - 0.5 * (59.6 - 32.1))
    assert bill["maximum"] == pytest.approx(59.6 + 0.5 * (59.6 - 32.1))
    assert all(f["minimum"] >= 0 for f in schema.values() if f["type"] == "number")
    assert schema["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert schema["sex"] == {
        "name": "sex",
        "nullable": True,
        "missing_in_training": 11,
        "type": "category",
        "categories": ["female", "male"],
        "example": "male",
    }


def test_input_schema_examples_are_valid_values(penguins: pd.DataFrame) -> None:
    for feature in input_schema(penguins, feature_spec(penguins, "species"), 0.5):
        if feature["type"] == "number":
            assert feature["minimum"] <= feature["example"] <= feature["maximum"]
        else:
            assert feature["example"] in feature["categories"]


def test_metadata_describes_model_data_and_provenance(
    fitted: tuple[Pipeline, pd.DataFrame],
) -> None:
    pipeline, frame = fitted
    metadata = build_metadata(
        model=pipeline,
        train=frame,
        spec=feature_spec(frame, "species"),
        params=read_params(paths.PARAMS),
        model_sha256="ab" * 32,
    )
    assert metadata["model_version"] == "abababababab"
    assert metadata["model_sha256"] == "ab" * 32
    # Nothing that changes from run to run: retraining the same inputs rewrites no file.
    assert not {"trained_at", "git_revision"} & set(metadata)
    assert metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert [f["name"] for f in metadata["input_schema"]["features"]] == list(
        feature_spec(frame, "species").all
    )
    assert metadata["training_data"]["rows"] == len(frame)
    assert len(metadata["training_data"]["fingerprint_sha256"]) == 64
    assert {"python", "scikit-learn", "joblib", "numpy", "pandas"} <= set(
        metadata["library_versions"]
    )
