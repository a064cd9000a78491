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
def fitted(data: pd.DataFrame, target: str) -> tuple[Pipeline, pd.DataFrame]:
    spec = feature_spec(data, target)
    estimator = make_estimator("logistic_regression", {"max_iter": 1000}, 42, "classification")
    pipeline = build_pipeline(spec, estimator, "classification")
    pipeline.fit(data[list(spec.all)], data[target])
    return pipeline, data


def test_pipeline_bundles_preprocessing_and_classifier(
    fitted: tuple[Pipeline, pd.DataFrame], target: str
) -> None:
    pipeline, frame = fitted
    assert [name for name, _ in pipeline.steps] == ["preprocess", "classifier"]
    assert list(pipeline.classes_) == sorted(frame[target].unique())


def test_pipeline_predicts_rows_with_missing_values_and_unknown_categories(
    fitted: tuple[Pipeline, pd.DataFrame], target: str
) -> None:
    pipeline, frame = fitted
    spec = feature_spec(frame, target)
    rows = frame.drop(columns=target).head(2).copy()
    rows.loc[rows.index[0], :] = np.nan
    rows.loc[rows.index[1], list(spec.categorical)] = "\x00 never seen"
    probabilities = pipeline.predict_proba(rows)
    assert probabilities.shape == (2, len(pipeline.classes_))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_input_schema_bounds_contain_the_observed_range_and_stay_non_negative(
    data: pd.DataFrame, target: str
) -> None:
    spec = feature_spec(data, target)
    schema = {f["name"]: f for f in input_schema(data, spec, 0.5)}
    for name in spec.numeric:
        low, high = float(data[name].min()), float(data[name].max())
        assert schema[name]["observed"] == {"minimum": low, "maximum": high}
        assert schema[name]["minimum"] <= low <= high <= schema[name]["maximum"]
        assert schema[name]["minimum"] >= 0 or low < 0
    for name in spec.categorical:
        assert schema[name]["categories"] == sorted(data[name].dropna().astype(str).unique())
        assert schema[name]["missing_in_training"] == data[name].isna().sum()


@pytest.mark.example_data
def test_input_schema_of_the_penguins_bounds_their_bills_and_lists_their_categories(
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


def test_input_schema_examples_are_valid_values(data: pd.DataFrame, target: str) -> None:
    for feature in input_schema(data, feature_spec(data, target), 0.5):
        if feature["type"] == "number":
            assert feature["minimum"] <= feature["example"] <= feature["maximum"]
        else:
            assert feature["example"] in feature["categories"]


def test_metadata_describes_model_data_and_provenance(
    fitted: tuple[Pipeline, pd.DataFrame], target: str
) -> None:
    pipeline, frame = fitted
    metadata = build_metadata(
        model=pipeline,
        train=frame,
        spec=feature_spec(frame, target),
        params=read_params(paths.PARAMS),
        model_sha256="ab" * 32,
    )
    assert metadata["model_version"] == "abababababab"
    assert metadata["model_sha256"] == "ab" * 32
    # Nothing that changes from run to run: retraining the same inputs rewrites no file.
    assert not {"trained_at", "git_revision"} & set(metadata)
    assert metadata["classes"] == sorted(frame[target].unique())
    assert [f["name"] for f in metadata["input_schema"]["features"]] == list(
        feature_spec(frame, target).all
    )
    assert metadata["training_data"]["rows"] == len(frame)
    assert len(metadata["training_data"]["fingerprint_sha256"]) == 64
    assert {"python", "scikit-learn", "joblib", "numpy", "scipy"} <= set(
        metadata["library_versions"]
    )
