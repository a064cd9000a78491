"""SklearnPredictor for either task: what it answers, and the models it refuses.

The Pipelines are fitted here on a tiny frame (one number, one category), so the checks do
not depend on the model `make train` wrote or on its task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from app.artifacts import ModelIntegrityError, ModelMetadata, parse_metadata
from app.predictor import SklearnPredictor

FRAME = pd.DataFrame(
    {
        "size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "colour": ["red", "blue", "red", "blue", "red", "blue"],
    }
)
LABELS = ["no", "no", "no", "yes", "yes", "yes"]
VALUES = [1.0, 2.1, 2.9, 4.2, 5.0, 5.8]


def _pipeline(estimator: Any, target: list[Any]) -> Any:
    preprocess = make_column_transformer(
        (SimpleImputer(), ["size"]),
        (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), ["colour"]),
    )
    return make_pipeline(preprocess, estimator).fit(FRAME, target)


def _metadata(task: str, classes: list[str]) -> ModelMetadata:
    return parse_metadata(
        {
            "schema_version": 1,
            "model_version": "abababababab",
            "model_file": "model.joblib",
            "model_sha256": "ab" * 32,
            "task": task,
            "target": "label",
            "classes": classes,
            "input_schema": {
                "features": [
                    {"name": "size", "type": "number", "minimum": 0.0, "maximum": 10.0},
                    {"name": "colour", "type": "category", "categories": ["blue", "red"]},
                ]
            },
            "library_versions": {"scikit-learn": "1.0"},
        }
    )


COLUMNS: dict[str, list[Any]] = {"size": [2.0, None, 5.5], "colour": ["red", "blue", None]}


def test_regressor_predicts_one_float64_per_record_with_missing_values() -> None:
    pipeline = _pipeline(Ridge(), VALUES)
    predictor = SklearnPredictor(pipeline, _metadata("regression", []))
    predicted = predictor.predict(COLUMNS)
    assert predicted.dtype == np.float64
    assert predicted.shape == (3,)
    np.testing.assert_allclose(predicted, pipeline.predict(predictor.frame(COLUMNS)))


def test_classifier_answers_probabilities_in_the_metadata_class_order() -> None:
    predictor = SklearnPredictor(
        _pipeline(LogisticRegression(), LABELS), _metadata("classification", ["no", "yes"])
    )
    probabilities = predictor.predict_proba(COLUMNS)
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_metadata_without_a_task_is_classification() -> None:
    raw = _metadata("classification", ["no", "yes"]).raw
    del raw["task"]
    assert parse_metadata(raw).task == "classification"


@pytest.mark.parametrize(
    ("estimator", "target", "task", "classes", "message"),
    [
        (LogisticRegression(), LABELS, "regression", [], "not a regressor, but the metadata's"),
        (Ridge(), VALUES, "classification", ["no", "yes"], "has no predict_proba"),
        (LogisticRegression(), LABELS, "classification", ["yes", "no"], "predicts classes"),
    ],
)
def test_model_that_does_not_fit_the_metadata_task_is_refused(
    estimator: Any, target: list[Any], task: str, classes: list[str], message: str
) -> None:
    with pytest.raises(ModelIntegrityError, match=message):
        SklearnPredictor(_pipeline(estimator, target), _metadata(task, classes))


@pytest.mark.parametrize(
    ("task", "classes", "message"),
    [
        ("regression", ["no", "yes"], "a regression model has no classes"),
        ("classification", [], "at least two classes"),
    ],
)
def test_metadata_classes_must_fit_its_task(task: str, classes: list[str], message: str) -> None:
    with pytest.raises(ModelIntegrityError, match=message):
        _metadata(task, classes)


def test_each_task_answers_only_its_own_method() -> None:
    regressor = SklearnPredictor(_pipeline(Ridge(), VALUES), _metadata("regression", []))
    with pytest.raises(TypeError, match="predict_proba answers classification models"):
        regressor.predict_proba(COLUMNS)
    classifier = SklearnPredictor(
        _pipeline(LogisticRegression(), LABELS), _metadata("classification", ["no", "yes"])
    )
    with pytest.raises(TypeError, match="predict answers regression models"):
        classifier.predict(COLUMNS)
