"""Stage `evaluate`: score the model and a dummy baseline the same way, and gate.

Both are cross-validated on the training split and scored on the held-out test split:
classifiers against a DummyClassifier (the class priors), regressors against a
DummyRegressor (the mean). The stage writes metrics.json (DVC metrics), the test
predictions (DVC's plot: a confusion matrix, or predicted against actual values) and a
Markdown report, then exits non-zero when the model does not beat the baseline by
`evaluate.min_improvement_over_baseline`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate

from training import paths
from training.data import DataError, model_frame, schema_kinds
from training.io import rounded, run_stage, write_json
from training.params import Params, read_params
from training.tasks import CROSS_VALIDATED, GATED, HIGHER_IS_BETTER, Task

log = logging.getLogger(__name__)

# cross_validate's scorer for each metric, and the sign that turns its score into the metric
# (scikit-learn maximises, so error scorers are negated).
SCORERS: dict[str, tuple[str, int]] = {
    "accuracy": ("accuracy", 1),
    "macro_f1": ("f1_macro", 1),
    "rmse": ("neg_root_mean_squared_error", -1),
    "mae": ("neg_mean_absolute_error", -1),
    "r2": ("r2", 1),
}


def positive_class(labels: pd.Series, classes: list[str], configured: str | None) -> str | None:
    """The class binary metrics are computed for: `prepare.positive_class`, or the class
    with the fewest training rows (the first in label order on a tie). None unless binary."""
    if len(classes) != 2:
        if configured is not None:
            raise DataError(
                f"prepare.positive_class: set, but the target has {len(classes)} classes; "
                "it applies to binary classification only"
            )
        return None
    if configured is None:
        counts = labels.value_counts()
        return min(classes, key=lambda cls: int(counts.get(cls, 0)))
    if configured not in classes:
        raise DataError(f"prepare.positive_class: {configured!r} is not one of {classes}")
    return configured


def holdout_metrics(
    estimator: Any,
    features: pd.DataFrame,
    labels: pd.Series,
    classes: list[str],
    positive: str | None = None,
) -> dict[str, Any]:
    """Metrics of a fitted classifier on held-out data (binary ones when `positive` is set)."""
    predicted = estimator.predict(features)
    probabilities = estimator.predict_proba(features)
    precision, recall, _, _ = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    metrics: dict[str, Any] = {
        "accuracy": rounded(accuracy_score(labels, predicted)),
        "macro_f1": rounded(f1_score(labels, predicted, average="macro", zero_division=0)),
        "log_loss": rounded(log_loss(labels, probabilities, labels=classes)),
    }
    if positive is not None:
        is_positive = labels == positive
        score = probabilities[:, classes.index(positive)]
        metrics["roc_auc"] = rounded(roc_auc_score(is_positive, score))
        metrics["average_precision"] = rounded(average_precision_score(is_positive, score))
    metrics["per_class"] = {
        cls: {"precision": rounded(p), "recall": rounded(r)}
        for cls, p, r in zip(classes, precision, recall, strict=True)
    }
    return metrics


def regression_metrics(
    estimator: Any, features: pd.DataFrame, values: pd.Series
) -> dict[str, float]:
    """Metrics of a fitted regressor on held-out data."""
    predicted = estimator.predict(features)
    return {
        "rmse": rounded(root_mean_squared_error(values, predicted)),
        "mae": rounded(mean_absolute_error(values, predicted)),
        "r2": rounded(r2_score(values, predicted)),
    }


def cv_metrics(
    estimator: BaseEstimator,
    features: pd.DataFrame,
    labels: pd.Series,
    folds: int,
    seed: int,
    task: Task = "classification",
) -> dict[str, float]:
    """k-fold on the training split (stratified for classes), with an unfitted copy."""
    splitter = (StratifiedKFold if task == "classification" else KFold)(
        n_splits=folds, shuffle=True, random_state=seed
    )
    names = CROSS_VALIDATED[task]
    scores = cross_validate(
        clone(estimator),
        features,
        labels,
        cv=splitter,
        scoring={name: SCORERS[name][0] for name in names},
    )
    return {
        f"{name}_{stat}": rounded(getattr(np, stat)(SCORERS[name][1] * scores[f"test_{name}"]))
        for name in names
        for stat in ("mean", "std")
    }


def improvement(
    model: dict[str, Any], baseline: dict[str, Any], task: Task = "classification"
) -> dict[str, float]:
    """How much the model beats the baseline on each gated metric, positive when better:
    the difference for classification, the relative reduction of the error for regression."""
    gains = {}
    for name in GATED[task]:
        if task == "classification":
            gains[name] = rounded(model[name] - baseline[name])
        else:
            # A constant test target leaves nothing to reduce: no improvement is possible.
            base = baseline[name]
            gains[name] = rounded((base - model[name]) / base) if base else 0.0
    return gains


def gate_failures(improvements: dict[str, float], minimum: float) -> list[str]:
    """The gated metrics on which the model does not beat the baseline by `minimum`."""
    return [
        f"{name} improves on the baseline by {value:.4f}, less than the required {minimum:.4f} "
        "(params.yaml: evaluate.min_improvement_over_baseline)"
        for name, value in improvements.items()
        if value < minimum
    ]


def _table(header: list[str], rows: Iterable[Iterable[Any]], left: int = 1) -> list[str]:
    """A Markdown table whose first `left` columns align left, the others right."""
    header_line, *lines = [f"| {' | '.join(map(str, row))} |" for row in [header, *rows]]
    return [header_line, "|" + "---|" * left + "---:|" * (len(header) - left), *lines]


def confusion_table(labels: pd.Series, predicted: np.ndarray, classes: list[str]) -> str:
    matrix = confusion_matrix(labels, predicted, labels=classes)
    rows = [[f"**{cls}**", *row] for cls, row in zip(classes, matrix, strict=True)]
    return "\n".join(_table(["actual \\ predicted", *classes], rows))


def _comparison(model: dict[str, Any], baseline: dict[str, Any], task: Task) -> list[str]:
    rows = []
    for name, higher_is_better in HIGHER_IS_BETTER[task].items():
        if name in model:
            delta = model[name] - baseline[name]
            gain = delta if higher_is_better else -delta
            rows.append([name, f"{model[name]:.4f}", f"{baseline[name]:.4f}", f"{gain:+.4f}"])
    return _table(["metric", "model", "baseline", "improvement"], rows)


def _cross_validation(metrics: dict[str, Any], task: Task) -> list[str]:
    m, b = metrics["model"]["cv"], metrics["baseline"]["cv"]
    rows = [
        [name, *(f"{s[name + '_mean']:.4f} ± {s[name + '_std']:.4f}" for s in (m, b))]
        for name in CROSS_VALIDATED[task]
    ]
    heading = ["", "## Cross-validation on the training split", ""]
    return heading + _table(["metric", "model", "baseline"], rows)


def _seen(feature: dict[str, Any]) -> str:
    observed = feature.get("observed", {})
    if feature["type"] == "number":
        return f"{observed['minimum']:g} to {observed['maximum']:g}"
    if feature["type"] == "date":
        return f"{observed['earliest']} to {observed['latest']}"
    return ", ".join(feature["categories"])


def _features(metadata: dict[str, Any]) -> list[str]:
    header = ["feature", "type", "values seen in training", "missing in training"]
    rows = [
        [f["name"], f["type"], _seen(f), f["missing_in_training"]]
        for f in metadata["input_schema"]["features"]
    ]
    return ["", *_table(header, rows, left=3)]


def render_report(
    metrics: dict[str, Any],
    metadata: dict[str, Any],
    test: pd.DataFrame,
    predicted: np.ndarray,
    minimum: float,
    positive: str | None = None,
) -> str:
    """report.md: the model against the baseline, the task's own tables and the data."""
    task: Task = metadata.get("task", "classification")
    model, baseline = metrics["model"]["test"], metrics["baseline"]["test"]
    classes: list[str] = metadata["classes"]
    target = metadata["target"]
    predicting = f", predicting `{target}`." if task == "regression" else "."
    lines = [
        "# Training report",
        "",
        f"Model version `{metadata['model_version']}` ({metadata['estimator']}){predicting}",
        "",
        "## Test split: model against the baseline",
        "",
    ]
    if task == "classification":
        lines.append(
            f"The baseline is a `DummyClassifier` that predicts the class priors. Training fails "
            f"unless the model beats it by at least {minimum} on accuracy and macro F1."
        )
        if positive is not None:
            lines.append(f"ROC AUC and average precision are those of the class `{positive}`.")
    else:
        lines.append(
            "The baseline is a `DummyRegressor` that predicts the training mean. Training fails "
            f"unless the model's RMSE is at least {minimum:.0%} below the baseline's (now "
            f"{metrics['improvement']['rmse']:.1%}). Improvement is positive when the model is "
            "better: a lower error, a higher R²."
        )
    lines += ["", *_comparison(model, baseline, task), *_cross_validation(metrics, task), ""]
    if task == "classification":
        per_class = model["per_class"]
        rows = [[c, *(f"{per_class[c][k]:.4f}" for k in ("precision", "recall"))] for c in classes]
        lines += ["## Per class (test split)", "", *_table(["class", "precision", "recall"], rows)]
        lines += ["", "## Confusion matrix (test split)", ""]
        lines.append(confusion_table(test[target], predicted, classes))
    else:
        residuals = test[target].to_numpy(dtype=float) - predicted
        quantiles = np.quantile(np.abs(residuals), [0.5, 0.9, 1.0])
        header = ["mean", "median absolute", "90th percentile absolute", "largest absolute"]
        row = [f"{v:.4g}" for v in (residuals.mean(), *quantiles)]
        lines += ["## Residuals (test split, actual - predicted)", ""]
        lines += _table(header, [row], left=0)
    data = metadata["training_data"]
    lines += [
        "",
        "## Data",
        "",
        f"{data['rows']} training rows and {len(test)} test rows; "
        f"training data fingerprint `{data['fingerprint_sha256'][:16]}`.",
        "",
    ]
    if task == "classification":
        counts = test[target].value_counts()
        counted = [[c, data["class_counts"].get(c, 0), int(counts.get(c, 0))] for c in classes]
        lines += _table(["class", "training rows", "test rows"], counted)
    else:
        summary, actual = data["target_summary"], test[target].astype(float)
        rows = [
            ["training", *(f"{summary[stat]:.4g}" for stat in ("min", "max", "mean", "std"))],
            ["test", *(f"{getattr(actual, stat)():.4g}" for stat in ("min", "max", "mean", "std"))],
        ]
        header = [f"`{target}`", "minimum", "maximum", "mean", "standard deviation"]
        lines += _table(header, rows)
    return "\n".join([*lines, *_features(metadata)]) + "\n"


def evaluate(
    model: Any,
    metadata: dict[str, Any],
    train: pd.DataFrame,
    test: pd.DataFrame,
    params: Params,
) -> tuple[dict[str, Any], np.ndarray, str]:
    """metrics.json's content, the test predictions and the report, for either task."""
    task: Task = metadata.get("task", "classification")
    target, classes = metadata["target"], metadata["classes"]
    kinds = schema_kinds(metadata)
    x_train, y_train = model_frame(train, kinds), train[target]
    x_test, y_test = model_frame(test, kinds), test[target]
    folds, seed = params.evaluate.cv_folds, params.evaluate.seed
    baseline: Any
    positive = None
    if task == "classification":
        positive = positive_class(y_train, classes, params.prepare.positive_class)
        baseline = DummyClassifier(strategy="prior").fit(x_train, y_train)
        model_test = holdout_metrics(model, x_test, y_test, classes, positive)
        baseline_test = holdout_metrics(baseline, x_test, y_test, classes, positive)
    else:
        baseline = DummyRegressor(strategy="mean").fit(x_train, y_train)
        model_test = regression_metrics(model, x_test, y_test)
        baseline_test = regression_metrics(baseline, x_test, y_test)
    metrics: dict[str, Any] = {
        "model": {"test": model_test, "cv": cv_metrics(model, x_train, y_train, folds, seed, task)},
        "baseline": {
            "test": baseline_test,
            "cv": cv_metrics(baseline, x_train, y_train, folds, seed, task),
        },
    }
    metrics["improvement"] = improvement(model_test, baseline_test, task)
    predicted = model.predict(x_test)
    minimum = params.evaluate.min_improvement_over_baseline
    report = render_report(metrics, metadata, test, predicted, minimum, positive)
    return metrics, predicted, report


def main() -> None:
    params = read_params(paths.PARAMS)
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    metrics, predicted, report = evaluate(
        joblib.load(paths.MODEL),
        metadata,
        pd.read_parquet(paths.TRAIN_SPLIT),
        test := pd.read_parquet(paths.TEST_SPLIT),
        params,
    )
    write_json(paths.METRICS, metrics)
    if metadata.get("task") == "regression":
        # Rounded like metrics.json: no last-bit noise of the CPU in a git-tracked file.
        predicted = np.round(predicted.astype(float), 6)
    pd.DataFrame({"actual": test[metadata["target"]], "predicted": predicted}).to_csv(
        paths.TEST_PREDICTIONS, index=False
    )
    paths.REPORT.write_text(report, encoding="utf-8")

    failures = gate_failures(metrics["improvement"], params.evaluate.min_improvement_over_baseline)
    if failures:
        for failure in failures:
            log.error("model rejected: %s", failure)
        sys.exit(1)
    log.info("model accepted: improvement over the baseline %s", metrics["improvement"])


if __name__ == "__main__":
    run_stage(main)
