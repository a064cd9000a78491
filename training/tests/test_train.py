"""Code tests for the `train` stage: the Pipeline it builds and the metadata it writes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import is_classifier, is_regressor
from sklearn.datasets import load_wine
from sklearn.pipeline import Pipeline

from training import paths
from training.data import feature_spec, model_frame
from training.params import ParamsError, Prepare, read_params
from training.tasks import ALIASES, TASKS, Task
from training.train import (
    FINAL_STEP,
    build_metadata,
    build_pipeline,
    configured_pipeline,
    input_schema,
    make_estimator,
)


def _fits(
    frame: pd.DataFrame, name: str, hyperparameters: dict[str, Any], target: str = "target"
) -> Pipeline:
    spec = feature_spec(frame, target)
    estimator = make_estimator(name, hyperparameters, 42, "classification")
    pipeline = build_pipeline(spec, estimator, "classification")
    return pipeline.fit(model_frame(frame, spec.kinds), frame[target])


@pytest.fixture(scope="module")
def fitted(data: pd.DataFrame, target: str) -> tuple[Pipeline, pd.DataFrame]:
    """The Pipeline params.yaml describes, fitted on the configured data."""
    spec = feature_spec(data, target)
    pipeline = configured_pipeline(spec, read_params(paths.PARAMS))
    return pipeline.fit(model_frame(data, spec.kinds), data[target]), data


def test_pipeline_bundles_preprocessing_and_the_tasks_estimator(
    fitted: tuple[Pipeline, pd.DataFrame], target: str, prepare_params: Prepare
) -> None:
    pipeline, frame = fitted
    task = prepare_params.task
    assert [name for name, _ in pipeline.steps] == ["preprocess", FINAL_STEP[task]]
    if task == "classification":
        assert list(pipeline.classes_) == sorted(frame[target].unique())
    else:
        assert is_regressor(pipeline)


def test_pipeline_predicts_rows_with_missing_values_and_unknown_categories(
    fitted: tuple[Pipeline, pd.DataFrame], target: str
) -> None:
    pipeline, frame = fitted
    spec = feature_spec(frame, target)
    rows = frame.drop(columns=target).head(2).copy()
    rows.loc[rows.index[0], :] = np.nan
    rows.loc[rows.index[1], list(spec.categorical)] = "\x00 never seen"
    if is_regressor(pipeline):
        predicted = pipeline.predict(model_frame(rows, spec.kinds))
        assert predicted.shape == (2,)
        assert np.isfinite(predicted).all()
    else:
        probabilities = pipeline.predict_proba(model_frame(rows, spec.kinds))
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
    for name in spec.dates:
        first, last = data[name].dropna().min(), data[name].dropna().max()
        assert schema[name]["observed"] == {"earliest": first, "latest": last}


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
        elif feature["type"] == "date":
            observed = feature["observed"]
            assert observed["earliest"] <= feature["example"] <= observed["latest"]
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
    classes = [] if is_regressor(pipeline) else sorted(frame[target].unique())
    assert metadata["classes"] == classes
    assert [f["name"] for f in metadata["input_schema"]["features"]] == list(
        feature_spec(frame, target).all
    )
    assert metadata["training_data"]["rows"] == len(frame)
    assert len(metadata["training_data"]["fingerprint_sha256"]) == 64
    assert {"python", "scikit-learn", "joblib", "numpy", "scipy"} <= set(
        metadata["library_versions"]
    )


# Estimators by alias or import path, against the task (`make_estimator`), on scikit-learn's
# wine data (three classes, numeric) with a text column added: not the configured data set.


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    frame: pd.DataFrame = load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame["cellar"] = np.where(frame["alcohol"] > frame["alcohol"].median(), "north", "south")
    return frame


@pytest.mark.parametrize(
    ("name", "hyperparameters"),
    [
        ("random_forest", {"n_estimators": 20}),
        ("hist_gradient_boosting", {"max_iter": 20}),
        ("sklearn.ensemble.ExtraTreesClassifier", {"n_estimators": 20, "max_depth": 4}),
        # Takes no random_state: passing the seed to every estimator broke it.
        ("sklearn.neighbors.KNeighborsClassifier", {"n_neighbors": 3}),
        ("sklearn.naive_bayes.GaussianNB", {"var_smoothing": 1e-8}),
    ],
)
def test_classifier_by_alias_or_import_path_trains_with_its_hyperparameters(
    wine: pd.DataFrame, name: str, hyperparameters: dict[str, Any]
) -> None:
    pipeline = _fits(wine, name, hyperparameters)
    final = pipeline.steps[-1][1]
    assert final.get_params() | hyperparameters == final.get_params()
    assert list(pipeline.classes_) == sorted(wine["target"].unique())
    probabilities = pipeline.predict_proba(wine.drop(columns="target").head(3))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_seed_goes_to_random_state_only_where_the_estimator_has_one() -> None:
    forest = make_estimator("random_forest", {}, 42, "classification")
    assert forest.random_state == 42
    assert (
        make_estimator("random_forest", {"random_state": 7}, 42, "classification").random_state == 7
    )
    knn = make_estimator("sklearn.neighbors.KNeighborsRegressor", {}, 42, "regression")
    assert "random_state" not in knn.get_params()


@pytest.mark.parametrize("task", TASKS)
def test_an_alias_trains_the_estimator_of_the_task(task: Task) -> None:
    for alias, variants in ALIASES.items():
        if task in variants:
            estimator = make_estimator(alias, {}, 0, task)
            assert (is_classifier if task == "classification" else is_regressor)(estimator)


@pytest.mark.parametrize(
    ("name", "task", "hyperparameters", "message"),
    [
        (
            "sklearn.linear_model.Ridge",
            "classification",
            {},
            "is a regressor, but prepare.task is c",
        ),
        ("sklearn.ensemble.ExtraTreesClassifier", "regression", {}, "is a classifier, but prepare"),
        ("sklearn.preprocessing.StandardScaler", "regression", {}, "is not a regressor"),
        ("sklearn.svm.LinearSVC", "classification", {}, "has no predict_proba"),
        ("sklearn.ensemble.NoSuchForest", "classification", {}, "cannot import"),
        ("no_such_package.Model", "classification", {}, "cannot import"),
        ("collections.OrderedDict", "classification", {}, "is not a scikit-learn estimator"),
    ],
)
def test_estimator_that_cannot_serve_the_task_is_a_one_line_error(
    name: str, task: Task, hyperparameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParamsError, match=r"^params\.yaml: train\.estimator: ") as raised:
        make_estimator(name, hyperparameters, 0, task)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unknown_hyperparameter_names_the_estimator_block() -> None:
    with pytest.raises(ParamsError, match=r"train\.hyperparameters\.random_forest: .*n_trees"):
        make_estimator("random_forest", {"n_trees": 3}, 0, "classification")


def test_configured_pipeline_is_what_params_yaml_describes(data: pd.DataFrame, target: str) -> None:
    params = read_params(paths.PARAMS)
    pipeline = configured_pipeline(feature_spec(data, target), params)
    final = pipeline.steps[-1][1]
    assert pipeline.steps[-1][0] == FINAL_STEP[params.prepare.task]
    assert final.get_params() | params.train.chosen_hyperparameters == final.get_params()


def test_a_date_text_column_is_requested_as_text_and_fitted_as_its_parts(
    wine: pd.DataFrame,
) -> None:
    """The metadata asks for the date's text and records the observed days; the Pipeline
    fits on the parts app.dates derives (numbers, after the numeric features)."""
    frame = wine.copy()
    days = pd.date_range("2019-12-01", periods=len(frame), freq="3D")
    frame["bottled"] = days.strftime("%Y-%m-%d")
    spec = feature_spec(frame, "target")
    assert spec.dates == ("bottled",)
    pipeline = _fits(frame, "logistic_regression", {"max_iter": 1000})
    parts = [f"bottled__{part}" for part in ("year", "month", "day_of_year")]
    assert list(pipeline.feature_names_in_) == [*spec.numeric, *parts, *spec.categorical]
    [entry] = [f for f in input_schema(frame, spec, 0.5) if f["name"] == "bottled"]
    first, last = days.min(), days.max()
    assert entry == {
        "name": "bottled",
        "nullable": True,
        "missing_in_training": 0,
        "type": "date",
        "observed": {"earliest": f"{first:%Y-%m-%d}", "latest": f"{last:%Y-%m-%d}"},
        "example": f"{days[len(days) // 2]:%Y-%m-%d}",
    }
