"""Tests of `training.params`: params.yaml is validated once, each error names its key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from training import paths
from training.params import ParamsError, parse, read_params
from training.tasks import (
    BINARY_ONLY,
    DEFAULT_ESTIMATOR,
    GATED,
    HIGHER_IS_BETTER,
    TASKS,
    Task,
)


def _with(raw: dict[str, Any], block: str, **values: Any) -> dict[str, Any]:
    changed = copy.deepcopy(raw)
    changed[block].update(values)
    return changed


def _without(raw: dict[str, Any], block: str, key: str) -> dict[str, Any]:
    changed = copy.deepcopy(raw)
    del changed[block][key]
    return changed


def _as_task(raw: dict[str, Any], task: Task, **prepare: Any) -> dict[str, Any]:
    """The committed params switched to `task`, what follows the task (the estimator, the
    compared metrics) left to its defaults: valid whichever task the committed file has."""
    changed = _with(_without(raw, "compare", "metrics"), "prepare", task=task, **prepare)
    changed["train"].pop("estimator", None)
    return changed


def test_committed_params_are_valid_and_every_stage_block_is_read(
    committed_params: dict[str, Any],
) -> None:
    params = read_params(paths.PARAMS)
    # Every key written in params.yaml is a field: none is ignored.
    assert params.model_dump(exclude_unset=True).keys() == committed_params.keys()
    for block, values in committed_params.items():
        assert set(values) <= set(getattr(params, block).model_dump(exclude_unset=True))


@pytest.mark.parametrize(
    ("block", "key", "value", "message"),
    [
        ("prepare", "task", "clustering", r"prepare\.task: Input should be 'classification'"),
        ("prepare", "test_size", 1.5, r"prepare\.test_size: Input should be less than 1"),
        ("prepare", "max_categories", 1, r"prepare\.max_categories: .*greater than or equal"),
        ("train", "schema_margin", "wide", r"train\.schema_margin: Input should be a valid"),
        ("train", "estimator", "svm", r"train\.estimator: 'svm' is neither an alias"),
        ("evaluate", "cv_folds", 1, r"evaluate\.cv_folds: .*greater than or equal to 2"),
        ("profile", "quantiles", [0.9, 0.1], r"profile\.quantiles: .*ascending"),
        ("export", "missing_rate", 2, r"export\.missing_rate: .*less than or equal to 1"),
        ("export", "random_records", 0, r"export\.random_records: .*greater than or equal to 1"),
        ("compare", "max_regression", -1, r"compare\.max_regression: .*greater than or equal"),
        # A misspelt key is refused, not ignored.
        ("train", "hyperparamters", {}, r"train\.hyperparamters: Extra inputs are not permitted"),
        # Flat hyperparameters, and those of a misspelt estimator.
        ("train", "hyperparameters", {"C": 1.0}, r"train\.hyperparameters: C: hyperparameters go"),
        (
            "train",
            "hyperparameters",
            {"logistic_regresion": {}},
            r"train\.hyperparameters: logistic_regresion: not an estimator alias",
        ),
    ],
)
def test_invalid_value_is_refused_naming_its_key(
    committed_params: dict[str, Any], block: str, key: str, value: Any, message: str
) -> None:
    with pytest.raises(ParamsError, match=rf"^params\.yaml: {message}"):
        parse(_with(committed_params, block, **{key: value}))


def test_missing_block_and_missing_key_are_named(committed_params: dict[str, Any]) -> None:
    raw = _without(committed_params, "prepare", "target")
    del raw["evaluate"]
    with pytest.raises(ParamsError, match=r"prepare\.target: Field required; evaluate: Field"):
        parse(raw)


def test_unreadable_file_is_a_params_error(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("prepare: [unclosed", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"^params\.yaml: unreadable"):
        read_params(tmp_path / "params.yaml")


def test_declared_defaults(committed_params: dict[str, Any]) -> None:
    raw = _as_task(committed_params, "classification")
    for key in ("task", "max_categories", "positive_class"):
        del raw["prepare"][key]
    prepare = parse(raw).prepare
    assert (prepare.task, prepare.max_categories, prepare.positive_class) == (
        "classification",
        50,
        None,
    )


@pytest.mark.parametrize("task", TASKS)
def test_without_an_estimator_each_task_trains_its_default(
    committed_params: dict[str, Any], task: Task
) -> None:
    params = parse(_as_task(committed_params, task))
    assert params.train.estimator == DEFAULT_ESTIMATOR[params.prepare.task]
    # The committed file holds the default's hyperparameters, which therefore apply.
    assert params.train.chosen_hyperparameters == (
        committed_params["train"]["hyperparameters"].get(params.train.estimator, {})
    )
    assert params.compare.metrics == list(GATED[params.prepare.task])


def test_hyperparameters_apply_only_to_the_estimator_that_trains(
    committed_params: dict[str, Any],
) -> None:
    params = parse(
        _with(
            committed_params,
            "train",
            estimator="sklearn.ensemble.ExtraTreesClassifier",
            hyperparameters={
                "sklearn.ensemble.ExtraTreesClassifier": {"n_estimators": 7},
                "logistic_regression": {"C": 2.0},
            },
        )
    )
    assert params.train.chosen_hyperparameters == {"n_estimators": 7}


def test_old_classifier_key_still_trains_with_a_deprecation_warning(
    committed_params: dict[str, Any],
) -> None:
    old = copy.deepcopy(committed_params)
    old["train"] = {
        "seed": 1,
        "classifier": "random_forest",
        "hyperparameters": {"n_estimators": 10},
        "schema_margin": 0.5,
    }
    with pytest.warns(DeprecationWarning, match=r"train\.classifier is deprecated"):
        params = parse(old)
    assert params.train.estimator == "random_forest"
    assert params.train.chosen_hyperparameters == {"n_estimators": 10}


def test_classifier_and_estimator_together_are_refused(committed_params: dict[str, Any]) -> None:
    with pytest.raises(ParamsError, match=r"train: .*train\.classifier is its old name"):
        parse(_with(committed_params, "train", classifier="random_forest", estimator="ridge"))


def test_alias_without_a_variant_for_the_task_names_the_choices(
    committed_params: dict[str, Any],
) -> None:
    raw = _with(committed_params, "prepare", task="regression")
    raw["train"]["estimator"] = "logistic_regression"
    raw["compare"]["metrics"] = ["rmse"]
    with pytest.raises(ParamsError, match=r"train\.estimator: logistic_regression has no regr"):
        parse(raw)


@pytest.mark.parametrize("task", TASKS)
def test_compare_metrics_accept_the_task_metrics_and_refuse_the_others(
    committed_params: dict[str, Any], task: Task
) -> None:
    own = list(HIGHER_IS_BETTER[task])
    raw = _with(committed_params, "prepare", task=task)
    raw["compare"]["metrics"] = own
    assert parse(raw).compare.metrics == own
    other = next(name for t in TASKS if t != task for name in HIGHER_IS_BETTER[t])
    raw["compare"]["metrics"] = [other]
    with pytest.raises(ParamsError, match=rf"compare\.metrics: \['{other}'\] are not metrics"):
        parse(raw)


def test_every_metric_has_a_direction_and_binary_ones_are_classification_metrics() -> None:
    assert HIGHER_IS_BETTER["regression"] == {"rmse": False, "mae": False, "r2": True}
    assert set(HIGHER_IS_BETTER["classification"]) >= BINARY_ONLY
    for task in TASKS:
        assert set(GATED[task]) <= set(HIGHER_IS_BETTER[task])


def test_positive_class_is_read_as_a_label_and_only_for_classification(
    committed_params: dict[str, Any],
) -> None:
    classification = _as_task(committed_params, "classification", positive_class=1)
    assert parse(classification).prepare.positive_class == "1"
    regression = _as_task(committed_params, "regression", positive_class="yes")
    with pytest.raises(ParamsError, match=r"prepare: .*positive_class applies to task classif"):
        parse(regression)


def test_params_file_keys_are_the_stage_blocks_dvc_reads() -> None:
    stages = yaml.safe_load((paths.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = read_params(paths.PARAMS)
    for stage in stages.values():
        for name in stage.get("params", []):
            block, _, key = str(name).partition(".")
            assert hasattr(params, block), name
            assert not key or key in type(getattr(params, block)).model_fields, name
