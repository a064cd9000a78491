"""Stage `prepare`: load the raw data, check it, and split it into train and test sets."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from training import paths
from training.data import clean, load_dataset
from training.io import load_params

log = logging.getLogger(__name__)


def split(
    frame: pd.DataFrame, target: str, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified split, so a rare class is represented in both halves."""
    train, test = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=frame[target]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main(root: Path = paths.ROOT) -> None:
    params = load_params("prepare", paths.PARAMS)
    frame = clean(
        load_dataset(params["source"], root), params["target"], list(params["drop_columns"])
    )
    train, test = split(frame, params["target"], params["test_size"], params["seed"])
    paths.PREPARED_DIR.mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths.TRAIN_SPLIT, index=False)
    test.to_parquet(paths.TEST_SPLIT, index=False)
    log.info("prepared %d training and %d test rows", len(train), len(test))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
