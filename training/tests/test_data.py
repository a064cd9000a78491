"""Data tests: loading and cleaning any data set, and the facts of the bundled penguins
(marked `example_data`: a fork states its own data's facts there instead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.data import DataError, check_features, clean, feature_spec, fingerprint, load_dataset

NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
CATEGORICAL = ("island", "sex")
SPECIES = {"Adelie", "Chinstrap", "Gentoo"}


@pytest.mark.example_data
def test_bundled_dataset_loads_offline_with_all_rows(raw_penguins: pd.DataFrame) -> None:
    assert len(raw_penguins) == 344
    assert {"species", *NUMERIC, *CATEGORICAL, "year"} <= set(raw_penguins.columns)


@pytest.mark.example_data
def test_labels_are_exactly_the_three_species(penguins: pd.DataFrame) -> None:
    assert set(penguins["species"]) == SPECIES
    assert penguins["species"].notna().all()


@pytest.mark.example_data
def test_features_are_typed_numeric_and_categorical(penguins: pd.DataFrame) -> None:
    spec = feature_spec(penguins, "species")
    assert spec.numeric == NUMERIC
    assert spec.categorical == CATEGORICAL


@pytest.mark.example_data
def test_nulls_appear_only_in_imputable_features(penguins: pd.DataFrame) -> None:
    nulls = penguins.isna().sum()
    assert nulls[nulls > 0].index.isin([*NUMERIC, "sex"]).all()
    # The known gaps of the data set: two birds without measurements, eleven without sex.
    assert nulls["bill_length_mm"] == 2
    assert nulls["sex"] == 11


@pytest.mark.example_data
def test_measurements_are_positive_and_plausible(penguins: pd.DataFrame) -> None:
    numeric = penguins[list(NUMERIC)]
    assert (numeric.dropna() > 0).all().all()
    assert penguins["body_mass_g"].dropna().between(2000, 7000).all()


def test_own_csv_and_parquet_load_to_the_same_frame(
    tmp_path: Path, raw_penguins: pd.DataFrame
) -> None:
    raw_penguins.to_csv(tmp_path / "mine.csv", index=False)
    raw_penguins.to_parquet(tmp_path / "mine.parquet", index=False)
    from_csv = load_dataset("mine.csv", tmp_path)
    from_parquet = load_dataset(str(tmp_path / "mine.parquet"), Path("/nonexistent"))
    assert fingerprint(from_csv) == fingerprint(from_parquet) == fingerprint(raw_penguins)


def test_missing_or_unsupported_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file"):
        load_dataset("absent.csv", tmp_path)
    (tmp_path / "data.xlsx").write_bytes(b"")
    with pytest.raises(DataError, match=r"\.csv or \.parquet"):
        load_dataset("data.xlsx", tmp_path)


def test_clean_rejects_a_target_or_drop_column_that_does_not_exist(
    raw_data: pd.DataFrame, target: str
) -> None:
    with pytest.raises(DataError, match=r"prepare\.target"):
        clean(raw_data, "\x00 no such column", [])
    with pytest.raises(DataError, match=r"prepare\.drop_columns"):
        clean(raw_data, target, ["\x00 no such column"])


def test_clean_drops_rows_without_a_label() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", None, "b"]})
    cleaned = clean(frame, "y", [])
    assert cleaned["y"].tolist() == ["a", "b"]


def test_clean_rejects_a_single_class_target() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "a"]})
    with pytest.raises(DataError, match="at least two classes"):
        clean(frame, "y", [])


def test_fingerprint_changes_when_one_value_changes(data: pd.DataFrame, target: str) -> None:
    altered = data.copy()
    # Another row's value keeps the column's dtype (text classes, a regression's numbers).
    altered.loc[0, target] = next(v for v in data[target] if v != data[target].iloc[0])
    assert fingerprint(altered) != fingerprint(data)
    assert fingerprint(data.copy()) == fingerprint(data)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ([np.nan] * 4, r"column 'f' is empty in every row: list 'f' in prepare\.drop_columns"),
        (
            [f"id-{i}" for i in range(4)],
            r"column 'f' has 4 distinct values, more than prepare\.max_categories \(3\).*"
            r"or raise prepare\.max_categories",
        ),
        (
            pd.to_timedelta([1, 2, 3, 4], unit="s"),
            r"column 'f' has type timedelta64\[\w+\], which the pipeline cannot encode",
        ),
        ([[1], [2], "a", "b"], r"column 'f' holds list values besides text"),
    ],
    ids=["all empty", "too many categories", "timedelta", "lists"],
)
def test_a_feature_the_pipeline_cannot_learn_from_is_refused_naming_it(
    column: Any, message: str
) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "f": column, "y": ["a", "b", "a", "b"]})
    with pytest.raises(DataError, match=message):
        check_features(frame, "y", max_categories=3)


def test_categories_up_to_the_limit_are_accepted(data: pd.DataFrame, target: str) -> None:
    check_features(data, target, max_categories=50)
    frame = pd.DataFrame({"f": ["a", "b", "c", None], "y": ["a", "b", "a", "b"]})
    check_features(frame, "y", max_categories=3)


def test_text_whose_every_value_is_an_iso_date_is_a_date_feature_without_a_category_limit() -> None:
    """A date column has as many distinct values as days, and is no category: prepare keeps
    it under any prepare.max_categories, and the model reads its parts."""
    days = [f"2020-01-{d:02d}" for d in range(1, 9)]
    frame = pd.DataFrame({"when": [*days, None], "x": range(9), "y": list("ababababa")})
    check_features(frame, "y", max_categories=3)
    assert feature_spec(frame, "y").dates == ("when",)
    for not_a_date in ("2020-02-30", "2020-01-9", "yesterday"):
        frame.loc[0, "when"] = not_a_date
        assert feature_spec(frame, "y").dates == ()
        with pytest.raises(DataError, match=r"more than prepare\.max_categories"):
            check_features(frame, "y", max_categories=3)


def test_a_column_named_as_a_date_part_is_refused_naming_it() -> None:
    frame = pd.DataFrame({"when": ["2020-01-01"] * 2, "when__year": [1, 2], "y": ["a", "b"]})
    with pytest.raises(DataError, match=r"\['when__year'\] clash with the date parts"):
        feature_spec(frame, "y")
