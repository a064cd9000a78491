"""Stage `prepare`: load the raw data, check it, and split it into train and test sets."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from training import paths
from training.data import BUNDLED_SOURCE, DataError, check_features, clean, load_dataset
from training.io import run_stage
from training.params import read_params
from training.tasks import Task

log = logging.getLogger(__name__)


def split(
    frame: pd.DataFrame, target: str, test_size: float, seed: int, task: Task = "classification"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classes are stratified, so a rare class is represented in both halves."""
    stratify = frame[target] if task == "classification" else None
    if stratify is not None:
        counts = stratify.value_counts()
        rare = counts[counts < 2]
        if len(rare):
            raise DataError(
                f"prepare.target: class {rare.index[0]!r} has {rare.iloc[0]} row; a stratified "
                "split needs at least 2 rows of each class: add rows, or drop or merge the class"
            )
    try:
        train, test = train_test_split(
            frame, test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError as error:  # e.g. a test split smaller than the number of classes
        raise DataError(f"prepare.test_size: {error}") from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def source_path_in_data_dir(source: str, root: Path, data_dir: Path) -> None:
    """A file source must lie under data/, the directory the stage depends on in dvc.yaml:
    anywhere else, editing it would not retrain."""
    if source == BUNDLED_SOURCE:
        return
    path = (root / source).resolve()
    if not path.is_relative_to(data_dir.resolve()):
        raise DataError(
            f"prepare.source: {source} is outside {data_dir.relative_to(root)}/, which is "
            "what DVC watches: move the file there so that editing it retrains"
        )


def main(root: Path = paths.ROOT) -> None:
    params = read_params(paths.PARAMS).prepare
    source_path_in_data_dir(params.source, root, paths.DATA_DIR)
    frame = clean(
        load_dataset(params.source, root), params.target, params.drop_columns, params.task
    )
    check_features(frame, params.target, params.max_categories)
    train, test = split(frame, params.target, params.test_size, params.seed, params.task)
    paths.PREPARED_DIR.mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths.TRAIN_SPLIT, index=False)
    test.to_parquet(paths.TEST_SPLIT, index=False)
    log.info("prepared %d training and %d test rows", len(train), len(test))


if __name__ == "__main__":
    run_stage(main)
