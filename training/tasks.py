"""The learning tasks the template trains for, and what each is measured by: one place.

Plain data, no scikit-learn import, so that tools outside the pipeline (the pull-request
report in `.github/scripts`) import the same metric names and directions as the params
validation and the evaluate stage.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Task = Literal["classification", "regression"]
TASKS: Final[tuple[Task, ...]] = get_args(Task)

# The test-split metrics of each task that metrics.json reports under model.test and
# baseline.test, and whether a higher value is the better one. roc_auc and
# average_precision exist for binary classification only (of `prepare.positive_class`).
HIGHER_IS_BETTER: Final[dict[Task, dict[str, bool]]] = {
    "classification": {
        "accuracy": True,
        "macro_f1": True,
        "log_loss": False,
        "roc_auc": True,
        "average_precision": True,
    },
    "regression": {"rmse": False, "mae": False, "r2": True},
}
BINARY_ONLY: Final[frozenset[str]] = frozenset({"roc_auc", "average_precision"})
# Errors in the target's units (or nats): no fixed scale, so `compare.max_regression` is a
# fraction of the base branch's value for them; the others lie in [0, 1] (r2 at most 1)
# and are compared by difference.
RELATIVE: Final[frozenset[str]] = frozenset({"rmse", "mae", "log_loss"})

# The metrics the baseline gate (`evaluate.min_improvement_over_baseline`) applies to, and
# which are cross-validated (mean and std in metrics.json's "cv" block).
GATED: Final[dict[Task, tuple[str, ...]]] = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("rmse",),
}
CROSS_VALIDATED: Final[dict[Task, tuple[str, ...]]] = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
}

# Short names for `train.estimator`, per task: the same alias trains the classifier or the
# regressor of a family, so switching `prepare.task` alone keeps the family.
ALIASES: Final[dict[str, dict[Task, str]]] = {
    "logistic_regression": {"classification": "sklearn.linear_model.LogisticRegression"},
    "ridge": {"regression": "sklearn.linear_model.Ridge"},
    "random_forest": {
        "classification": "sklearn.ensemble.RandomForestClassifier",
        "regression": "sklearn.ensemble.RandomForestRegressor",
    },
    "hist_gradient_boosting": {
        "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
        "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
    },
}
# What trains when `train.estimator` is not set: both convert to ONNX (the fast path).
DEFAULT_ESTIMATOR: Final[dict[Task, str]] = {
    "classification": "logistic_regression",
    "regression": "ridge",
}
