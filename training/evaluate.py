"""Stage `evaluate`: score the model and a DummyClassifier baseline the same way, and gate.

Both are cross-validated on the training split and scored on the held-out test split.
The stage writes metrics.json (DVC metrics), the test predictions (DVC's confusion-matrix
plot) and a Markdown report, then exits non-zero when the model does not beat the baseline
by `evaluate.min_improvement_over_baseline`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.dummy import DummyClassifier
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold, cross_validate

from training import paths
from training.io import load_params, write_json

log = logging.getLogger(__name__)

GATED_METRICS = ("accuracy", "macro_f1")


def _round(value: float) -> float:
    # Six decimals: stable across platforms' last-bit noise, precise enough to compare.
    return round(float(value), 6)


def holdout_metrics(
    estimator: Any, features: pd.DataFrame, labels: pd.Series, classes: list[str]
) -> dict[str, Any]:
    """Metrics of a fitted estimator on held-out data."""
    predicted = estimator.predict(features)
    probabilities = estimator.predict_proba(features)
    precision, recall, _, _ = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    return {
        "accuracy": _round(accuracy_score(labels, predicted)),
        "macro_f1": _round(f1_score(labels, predicted, average="macro", zero_division=0)),
        "log_loss": _round(log_loss(labels, probabilities, labels=classes)),
        "per_class": {
            cls: {"precision": _round(p), "recall": _round(r)}
            for cls, p, r in zip(classes, precision, recall, strict=True)
        },
    }


def cv_metrics(
    estimator: BaseEstimator, features: pd.DataFrame, labels: pd.Series, folds: int, seed: int
) -> dict[str, float]:
    """Stratified k-fold on the training split, with an unfitted copy of the estimator."""
    scores = cross_validate(
        clone(estimator),
        features,
        labels,
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
        scoring={"accuracy": "accuracy", "macro_f1": "f1_macro"},
    )
    return {
        f"{name}_{stat}": _round(getattr(np, stat)(scores[f"test_{name}"]))
        for name in GATED_METRICS
        for stat in ("mean", "std")
    }


def improvement(model: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    return {name: _round(model[name] - baseline[name]) for name in GATED_METRICS}


def gate_failures(improvements: dict[str, float], minimum: float) -> list[str]:
    """The gated metrics on which the model does not beat the baseline by `minimum`."""
    return [
        f"{name} improves on the baseline by {value:.4f}, less than the required {minimum:.4f}"
        for name, value in improvements.items()
        if value < minimum
    ]


def confusion_table(labels: pd.Series, predicted: np.ndarray, classes: list[str]) -> str:
    matrix = confusion_matrix(labels, predicted, labels=classes)
    header = "| actual \\ predicted | " + " | ".join(classes) + " |"
    rule = "|---|" + "---:|" * len(classes)
    rows = [
        f"| **{cls}** | " + " | ".join(str(v) for v in row) + " |"
        for cls, row in zip(classes, matrix, strict=True)
    ]
    return "\n".join([header, rule, *rows])


def render_report(
    metrics: dict[str, Any],
    metadata: dict[str, Any],
    test: pd.DataFrame,
    predicted: np.ndarray,
    minimum: float,
) -> str:
    model, baseline = metrics["model"], metrics["baseline"]
    classes: list[str] = metadata["classes"]
    target = metadata["target"]
    lines = [
        "# Training report",
        "",
        f"Model version `{metadata['model_version']}` ({metadata['estimator']}).",
        "",
        "## Test split: model against the baseline",
        "",
        f"The baseline is a `DummyClassifier` that predicts the class priors. Training fails "
        f"unless the model beats it by at least {minimum} on accuracy and macro F1.",
        "",
        "| metric | model | baseline | improvement |",
        "|---|---:|---:|---:|",
    ]
    for name in (*GATED_METRICS, "log_loss"):
        delta = model["test"][name] - baseline["test"][name]
        lines.append(
            f"| {name} | {model['test'][name]:.4f} | {baseline['test'][name]:.4f} | {delta:+.4f} |"
        )
    lines += [
        "",
        "## Cross-validation on the training split",
        "",
        "| metric | model | baseline |",
        "|---|---:|---:|",
    ]
    for name in GATED_METRICS:
        m, b = model["cv"], baseline["cv"]
        lines.append(
            f"| {name} | {m[name + '_mean']:.4f} ± {m[name + '_std']:.4f} "
            f"| {b[name + '_mean']:.4f} ± {b[name + '_std']:.4f} |"
        )
    lines += [
        "",
        "## Per class (test split)",
        "",
        "| class | precision | recall |",
        "|---|---:|---:|",
    ]
    for cls in classes:
        scores = model["test"]["per_class"][cls]
        lines.append(f"| {cls} | {scores['precision']:.4f} | {scores['recall']:.4f} |")
    lines += [
        "",
        "## Confusion matrix (test split)",
        "",
        confusion_table(test[target], predicted, classes),
    ]
    data = metadata["training_data"]
    lines += [
        "",
        "## Data",
        "",
        f"{data['rows']} training rows and {len(test)} test rows; "
        f"training data fingerprint `{data['fingerprint_sha256'][:16]}`.",
        "",
        "| class | training rows | test rows |",
        "|---|---:|---:|",
    ]
    test_counts = test[target].value_counts()
    for cls in classes:
        lines.append(
            f"| {cls} | {data['class_counts'].get(cls, 0)} | {int(test_counts.get(cls, 0))} |"
        )
    lines += [
        "",
        "| feature | type | values seen in training | missing in training |",
        "|---|---|---|---:|",
    ]
    for feature in metadata["input_schema"]["features"]:
        if feature["type"] == "number":
            seen = f"{feature['observed']['minimum']:g} to {feature['observed']['maximum']:g}"
        else:
            seen = ", ".join(feature["categories"])
        lines.append(
            f"| {feature['name']} | {feature['type']} | {seen} | {feature['missing_in_training']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    params = load_params("evaluate", paths.PARAMS)
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    target, classes = metadata["target"], metadata["classes"]
    feature_names = [f["name"] for f in metadata["input_schema"]["features"]]
    train = pd.read_parquet(paths.TRAIN_SPLIT)
    test = pd.read_parquet(paths.TEST_SPLIT)
    x_train, y_train = train[feature_names], train[target]
    x_test, y_test = test[feature_names], test[target]

    model = joblib.load(paths.MODEL)
    baseline = DummyClassifier(strategy="prior").fit(x_train, y_train)
    folds, seed = params["cv_folds"], params["seed"]
    metrics: dict[str, Any] = {
        "model": {
            "test": holdout_metrics(model, x_test, y_test, classes),
            "cv": cv_metrics(model, x_train, y_train, folds, seed),
        },
        "baseline": {
            "test": holdout_metrics(baseline, x_test, y_test, classes),
            "cv": cv_metrics(baseline, x_train, y_train, folds, seed),
        },
    }
    metrics["improvement"] = improvement(metrics["model"]["test"], metrics["baseline"]["test"])

    predicted = model.predict(x_test)
    write_json(paths.METRICS, metrics)
    pd.DataFrame({"actual": y_test, "predicted": predicted}).to_csv(
        paths.TEST_PREDICTIONS, index=False
    )
    minimum = params["min_improvement_over_baseline"]
    paths.REPORT.write_text(
        render_report(metrics, metadata, test, predicted, minimum), encoding="utf-8"
    )

    failures = gate_failures(metrics["improvement"], minimum)
    if failures:
        for failure in failures:
            log.error("model rejected: %s", failure)
        sys.exit(1)
    log.info(
        "test accuracy %.4f (baseline %.4f)",
        metrics["model"]["test"]["accuracy"],
        metrics["baseline"]["test"]["accuracy"],
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
