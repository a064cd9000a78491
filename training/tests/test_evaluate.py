"""Code tests for the `evaluate` stage: metrics, the baseline gate and the report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier

from training.evaluate import (
    confusion_table,
    cv_metrics,
    gate_failures,
    holdout_metrics,
    improvement,
    render_report,
)
from training.tasks import GATED, HIGHER_IS_BETTER, Task

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def _frame() -> tuple[pd.DataFrame, pd.Series]:
    labels = pd.Series(["Adelie"] * 5 + ["Chinstrap"] * 3 + ["Gentoo"] * 2)
    return pd.DataFrame({"x": np.arange(len(labels), dtype=float)}), labels


def test_holdout_metrics_of_a_majority_baseline() -> None:
    features, labels = _frame()
    baseline = DummyClassifier(strategy="prior").fit(features, labels)
    metrics = holdout_metrics(baseline, features, labels, CLASSES)
    assert metrics["accuracy"] == 0.5
    assert metrics["per_class"]["Adelie"] == {"precision": 0.5, "recall": 1.0}
    assert metrics["per_class"]["Gentoo"] == {"precision": 0.0, "recall": 0.0}
    # Prior probabilities give a finite log loss, unlike hard 0/1 predictions.
    assert 0 < metrics["log_loss"] < 2


def test_cv_metrics_report_mean_and_std_per_gated_metric() -> None:
    features, labels = _frame()
    scores = cv_metrics(DummyClassifier(strategy="prior"), features, labels, folds=2, seed=0)
    assert set(scores) == {"accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std"}
    assert 0 <= scores["accuracy_mean"] <= 1


def test_gate_passes_a_clear_improvement_and_names_each_shortfall() -> None:
    model = {"accuracy": 0.97, "macro_f1": 0.96}
    baseline = {"accuracy": 0.44, "macro_f1": 0.2}
    assert gate_failures(improvement(model, baseline), 0.2) == []
    failures = gate_failures(improvement({"accuracy": 0.5, "macro_f1": 0.9}, baseline), 0.2)
    assert len(failures) == 1
    assert failures[0].startswith("accuracy improves on the baseline by 0.0600")


def test_confusion_table_counts_actual_rows_against_predicted_columns() -> None:
    actual = pd.Series(["Adelie", "Adelie", "Gentoo"])
    predicted = np.array(["Adelie", "Gentoo", "Gentoo"])
    table = confusion_table(actual, predicted, CLASSES).splitlines()
    assert table[0] == "| actual \\ predicted | Adelie | Chinstrap | Gentoo |"
    assert table[2] == "| **Adelie** | 1 | 0 | 1 |"
    assert table[4] == "| **Gentoo** | 0 | 0 | 1 |"


def test_report_shows_model_against_baseline_and_the_data(
    metrics: dict[str, Any], metadata: dict[str, Any]
) -> None:
    task: Task = metadata.get("task", "classification")
    values = metadata["classes"][:2] if task == "classification" else [0.0, 1.0]
    test = pd.DataFrame({metadata["target"]: values})
    report = render_report(metrics, metadata, test, np.array(values), 0.2)
    name = GATED[task][0]
    model, baseline = metrics["model"]["test"][name], metrics["baseline"]["test"][name]
    gain = model - baseline if HIGHER_IS_BETTER[task][name] else baseline - model
    assert f"| {name} | {model:.4f} | {baseline:.4f} | {gain:+.4f} |" in report
    sections = {
        "classification": ("## Per class", "## Confusion matrix (test"),
        "regression": ("## Residuals",),
    }
    for section in ("## Cross-validation", *sections[task], "## Data"):
        assert section in report
    for feature in metadata["input_schema"]["features"]:
        assert f"| {feature['name']} | {feature['type']} | " in report
    assert metadata["model_version"] in report
