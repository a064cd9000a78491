"""The tasks end to end on data sets of other shapes than the example's, as a fork trains them:
regression (scikit-learn's diabetes), binary classification (breast cancer, integer labels,
column names with spaces). Each is written to a file `prepare.source` names and goes through
the stages' own functions; expectations come from the params, the data and the metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import average_precision_score, roc_auc_score, root_mean_squared_error

from app.artifacts import load_metadata, load_profile, verify_model_file
from app.predictor import load_predictor
from training import paths
from training.data import DataError, clean
from training.evaluate import gate_failures, positive_class
from training.io import write_json
from training.params import Params
from training.profile import build_profile, training_predictions
from training.tasks import BINARY_ONLY, CROSS_VALIDATED, HIGHER_IS_BETTER, TASKS

Trainer = Callable[[pd.DataFrame, Params, Path], Any]


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    frame: pd.DataFrame = load_diabetes(as_frame=True, scaled=False).frame
    return frame


@pytest.fixture(scope="module")
def breast_cancer() -> pd.DataFrame:
    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


@pytest.fixture(scope="module")
def regression(
    diabetes: pd.DataFrame,
    params_with: Callable[..., Params],
    trained_on: Trainer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    """Only the task changed (and the data): the task's default estimator trains."""
    params = params_with(
        prepare={
            "source": "diabetes.parquet",
            "target": "target",
            "drop_columns": [],
            "task": "regression",
            "positive_class": None,
        },
        train={"estimator": None},
        compare={"metrics": ["rmse", "r2"]},
    )
    return trained_on(diabetes, params, tmp_path_factory.mktemp("regression"))


@pytest.fixture(scope="module")
def binary(
    breast_cancer: pd.DataFrame,
    params_with: Callable[..., Params],
    trained_on: Trainer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    params = params_with(
        prepare={
            "source": "cancer.parquet",
            "target": "target",
            "drop_columns": [],
            "task": "classification",
            "positive_class": None,
        },
        train={"estimator": None},
        compare={"metrics": ["accuracy", "macro_f1"]},
    )
    return trained_on(breast_cancer, params, tmp_path_factory.mktemp("binary"))


# Regression.


def test_regression_metrics_have_the_contract_shape(regression: Any) -> None:
    metrics = regression.metrics
    test_metrics = set(HIGHER_IS_BETTER["regression"])
    cv = {f"{name}_{stat}" for name in CROSS_VALIDATED["regression"] for stat in ("mean", "std")}
    for side in ("model", "baseline"):
        assert set(metrics[side]) == {"test", "cv"}
        assert set(metrics[side]["test"]) == test_metrics
        assert set(metrics[side]["cv"]) == cv
    assert set(metrics["improvement"]) == {"rmse"}
    model, baseline = metrics["model"]["test"]["rmse"], metrics["baseline"]["test"]["rmse"]
    assert metrics["improvement"]["rmse"] == pytest.approx((baseline - model) / baseline, abs=1e-5)


def test_regression_metrics_are_those_of_the_test_predictions(regression: Any) -> None:
    actual = regression.test[regression.params.prepare.target]
    rmse = root_mean_squared_error(actual, regression.predicted)
    assert regression.metrics["model"]["test"]["rmse"] == pytest.approx(rmse, abs=1e-5)
    # The DummyRegressor predicts the training mean.
    mean = regression.train[regression.params.prepare.target].mean()
    baseline = root_mean_squared_error(actual, np.full(len(actual), mean))
    assert regression.metrics["baseline"]["test"]["rmse"] == pytest.approx(baseline, abs=1e-5)


def test_regression_model_passes_the_gate_and_a_demanding_gate_stops_it(regression: Any) -> None:
    gain = regression.metrics["improvement"]["rmse"]
    minimum = regression.params.evaluate.min_improvement_over_baseline
    assert gate_failures(regression.metrics["improvement"], minimum) == []
    [failure] = gate_failures(regression.metrics["improvement"], gain + 0.01)
    assert failure.startswith(f"rmse improves on the baseline by {gain:.4f}")


def test_regression_artifacts_load_and_predict_in_the_service(regression: Any) -> None:
    directory = regression.directory
    metadata = load_metadata(directory)
    assert (metadata.task, metadata.classes) == ("regression", ())
    assert regression.metadata["estimator"] == regression.params.train.estimator
    target = regression.train[regression.params.prepare.target]
    assert regression.metadata["training_data"]["target_summary"]["max"] == target.max()
    assert verify_model_file(directory, metadata).is_file()
    predictions = training_predictions(regression.train, regression.metadata, directory)
    write_json(
        directory / "reference_profile.json",
        build_profile(regression.train, regression.metadata, [0.5], predictions),
    )
    profile = load_profile(directory, metadata)
    assert profile is not None
    assert profile.predictions is not None
    predictor = load_predictor(directory, metadata, backend="sklearn")
    records = regression.test.head(5)
    columns = {name: records[name].tolist() for name in metadata.feature_names}
    predicted = predictor.predict(columns)
    assert predicted.dtype == np.float64
    assert predicted.shape == (5,)
    np.testing.assert_allclose(predicted, regression.predicted[:5])


def test_regression_report_compares_errors_with_the_baseline(regression: Any) -> None:
    report = regression.report
    test = regression.metrics["model"]["test"]
    base = regression.metrics["baseline"]["test"]
    assert "`DummyRegressor`" in report
    gain = base["rmse"] - test["rmse"]
    assert f"| rmse | {test['rmse']:.4f} | {base['rmse']:.4f} | {gain:+.4f} |" in report
    for section in ("## Cross-validation", "## Residuals", "## Data"):
        assert section in report
    assert "Confusion" not in report


def test_text_target_is_refused_for_regression(breast_cancer: pd.DataFrame) -> None:
    frame = breast_cancer.assign(target=breast_cancer["target"].map({0: "malignant", 1: "benign"}))
    with pytest.raises(DataError, match=r"^prepare\.target: 'target' holds text .*classificat"):
        clean(frame, "target", [], "regression")


def test_continuous_target_is_refused_for_classification(diabetes: pd.DataFrame) -> None:
    frame = diabetes.assign(target=diabetes["target"] + 0.5)
    with pytest.raises(DataError, match=r"^prepare\.target: 'target' holds continuous") as raised:
        clean(frame, "target", [], "classification")
    assert "set prepare.task: regression" in str(raised.value)


def test_integer_classes_stay_classes(breast_cancer: pd.DataFrame) -> None:
    cleaned = clean(breast_cancer, "target", [], "classification")
    assert set(cleaned["target"]) == {str(v) for v in breast_cancer["target"].unique()}


# Binary classification.


def test_binary_metrics_add_roc_auc_and_average_precision_of_the_minority_class(
    binary: Any,
) -> None:
    target = binary.params.prepare.target
    counts = binary.train[target].value_counts()
    positive = counts.idxmin()
    classes = binary.metadata["classes"]
    scores = binary.model.predict_proba(binary.test.drop(columns=target))[
        :, classes.index(positive)
    ]
    is_positive = binary.test[target] == positive
    test = binary.metrics["model"]["test"]
    assert test["roc_auc"] == pytest.approx(roc_auc_score(is_positive, scores), abs=1e-6)
    assert test["average_precision"] == pytest.approx(
        average_precision_score(is_positive, scores), abs=1e-6
    )
    # The prior baseline ranks nothing: chance AUC, and precision equal to the prevalence.
    baseline = binary.metrics["baseline"]["test"]
    assert baseline["roc_auc"] == 0.5
    assert baseline["average_precision"] == pytest.approx(is_positive.mean(), abs=1e-6)
    assert f"those of the class `{positive}`" in binary.report


def test_positive_class_is_configured_checked_and_binary_only() -> None:
    labels = pd.Series(["a", "b", "b"])
    assert positive_class(labels, ["a", "b"], None) == "a"
    assert positive_class(labels, ["a", "b"], "b") == "b"
    with pytest.raises(DataError, match=r"prepare\.positive_class: 'c' is not one of"):
        positive_class(labels, ["a", "b"], "c")
    with pytest.raises(DataError, match=r"prepare\.positive_class: set, but the target has 3"):
        positive_class(labels, ["a", "b", "c"], "a")
    assert positive_class(labels, ["a", "b", "c"], None) is None


def test_committed_metrics_have_the_shape_of_their_task(
    metrics: dict[str, Any], metadata: dict[str, Any]
) -> None:
    task = metadata.get("task", "classification")
    expected = set(HIGHER_IS_BETTER[task])
    if task == "classification":
        expected.add("per_class")
        if len(metadata["classes"]) != 2:
            expected -= BINARY_ONLY
    assert set(metrics["model"]["test"]) == set(metrics["baseline"]["test"]) == expected


# The plot in dvc.yaml follows the task.


@pytest.mark.parametrize("task", TASKS)
def test_the_plot_template_of_each_task_exists(task: str) -> None:
    stages = yaml.safe_load((paths.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    [plot] = stages["evaluate"]["plots"]
    [options] = plot.values()
    assert options["template"] == "${prepare.task}"
    template = json.loads((paths.ROOT / ".dvc" / "plots" / f"{task}.json").read_text())
    assert template["data"] == {"values": "<DVC_METRIC_DATA>"}
