"""Code tests for the `prepare` stage."""

from __future__ import annotations

import pandas as pd

from training.prepare import split


def test_split_is_stratified_disjoint_and_complete(penguins: pd.DataFrame) -> None:
    train, test = split(penguins, "species", 0.2, seed=42)
    assert len(train) + len(test) == len(penguins)
    assert len(test) == round(0.2 * len(penguins))
    # Stratified: each class keeps its share in the test split to within one row.
    expected = penguins["species"].value_counts() * len(test) / len(penguins)
    assert (test["species"].value_counts() - expected).abs().max() <= 1
    merged = pd.concat([train, test]).sort_values(list(penguins.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        merged, penguins.sort_values(list(penguins.columns)).reset_index(drop=True)
    )


def test_split_is_deterministic_for_a_seed_and_changes_with_it(penguins: pd.DataFrame) -> None:
    first, _ = split(penguins, "species", 0.2, seed=42)
    again, _ = split(penguins, "species", 0.2, seed=42)
    other, _ = split(penguins, "species", 0.2, seed=7)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
