"""Code tests for the `prepare` stage."""

from __future__ import annotations

import math

import pandas as pd

from training.prepare import split


def test_split_is_stratified_disjoint_and_complete(data: pd.DataFrame, target: str) -> None:
    train, test = split(data, target, 0.2, seed=42)
    assert len(train) + len(test) == len(data)
    assert len(test) == math.ceil(0.2 * len(data))
    # Stratified: each class keeps its share in the test split to within one row.
    expected = data[target].value_counts() * len(test) / len(data)
    assert (test[target].value_counts() - expected).abs().max() <= 1
    merged = pd.concat([train, test]).sort_values(list(data.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        merged, data.sort_values(list(data.columns)).reset_index(drop=True)
    )


def test_split_is_deterministic_for_a_seed_and_changes_with_it(
    data: pd.DataFrame, target: str
) -> None:
    first, _ = split(data, target, 0.2, seed=42)
    again, _ = split(data, target, 0.2, seed=42)
    other, _ = split(data, target, 0.2, seed=7)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
