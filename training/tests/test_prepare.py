"""Code tests for the `prepare` stage."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from training.data import DataError
from training.params import Prepare
from training.prepare import source_path_in_data_dir, split


def test_split_is_disjoint_complete_and_stratified_for_classes(
    data: pd.DataFrame, target: str, prepare_params: Prepare
) -> None:
    task = prepare_params.task
    train, test = split(data, target, 0.2, seed=42, task=task)
    assert len(train) + len(test) == len(data)
    assert len(test) == math.ceil(0.2 * len(data))
    if task == "classification":
        # Stratified: each class keeps its share in the test split to within one row.
        expected = data[target].value_counts() * len(test) / len(data)
        assert (test[target].value_counts() - expected).abs().max() <= 1
    merged = pd.concat([train, test]).sort_values(list(data.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        merged, data.sort_values(list(data.columns)).reset_index(drop=True)
    )


def test_split_is_deterministic_for_a_seed_and_changes_with_it(
    data: pd.DataFrame, target: str, prepare_params: Prepare
) -> None:
    task = prepare_params.task
    first, _ = split(data, target, 0.2, seed=42, task=task)
    again, _ = split(data, target, 0.2, seed=42, task=task)
    other, _ = split(data, target, 0.2, seed=7, task=task)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_a_class_with_one_row_is_refused_naming_the_target() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": ["a", "a", "b", "b", "c"]})
    with pytest.raises(DataError, match=r"prepare\.target: class 'c' has 1 row"):
        split(frame, "y", 0.4, seed=0)


def test_a_test_split_smaller_than_the_classes_is_refused_naming_test_size() -> None:
    frame = pd.DataFrame({"x": range(8), "y": ["a", "a", "b", "b", "c", "c", "d", "d"]})
    with pytest.raises(DataError, match=r"^prepare\.test_size: "):
        split(frame, "y", 0.2, seed=0)


def test_a_source_file_outside_the_data_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    source_path_in_data_dir("data/mine.csv", tmp_path, tmp_path / "data")
    source_path_in_data_dir("palmerpenguins", tmp_path, tmp_path / "data")
    with pytest.raises(DataError, match=r"prepare\.source: elsewhere/mine\.csv is outside data/"):
        source_path_in_data_dir("elsewhere/mine.csv", tmp_path, tmp_path / "data")
    with pytest.raises(DataError, match="outside data/"):
        source_path_in_data_dir("data/../mine.csv", tmp_path, tmp_path / "data")
