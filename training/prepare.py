"""Stage `prepare`: load the raw data, check it, and split it into train and test sets."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from training import paths
from training.data import clean, load_dataset
from training.io import run_stage
from training.params import read_params
from training.tasks import Task

log = logging.getLogger(__name__)


def split(
    frame: pd.DataFrame, target: str, test_size: float, seed: int, task: Task = "classification"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classes are stratified, so a rare class is represented in both halves."""
    stratify = frame[target] if task == "classification" else None
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main(root: Path = paths.ROOT) -> None:
    params = read_params(paths.PARAMS).prepare
    frame = clean(
        load_dataset(params.source, root), params.target, params.drop_columns, params.task
    )
    train, test = split(frame, params.target, params.test_size, params.seed, params.task)
    paths.PREPARED_DIR.mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths.TRAIN_SPLIT, index=False)
    test.to_parquet(paths.TEST_SPLIT, index=False)
    log.info("prepared %d training and %d test rows", len(train), len(test))


if __name__ == "__main__":
    run_stage(main)
