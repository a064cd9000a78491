"""Loading the data set and describing its features.

Swap in your own data by pointing `prepare.source` in params.yaml at a CSV or Parquet file:
everything downstream (the preprocessing, the service's request schema) is derived from the
columns it finds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.api import types as ptypes
from sklearn.utils.multiclass import type_of_target

from app.dates import expand, is_date, part_names
from training.tasks import Task

BUNDLED_SOURCE = "palmerpenguins"


class DataError(ValueError):
    """The data set cannot be used as it is; the message says why."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns are features, and how the pipeline treats each kind."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    dates: tuple[str, ...] = ()
    """Text columns of ISO dates: requests send the text, the model reads its numeric parts."""

    @property
    def all(self) -> tuple[str, ...]:
        """The features as requests send them, in the input schema's order."""
        return self.numeric + self.dates + self.categorical

    @property
    def kinds(self) -> list[tuple[str, str]]:
        """Each feature with the input schema's type for it."""
        kind = {**dict.fromkeys(self.dates, "date"), **dict.fromkeys(self.categorical, "category")}
        return [(name, kind.get(name, "number")) for name in self.all]

    @property
    def model_numeric(self) -> list[str]:
        """The Pipeline's number columns: the numeric features, then each date's parts."""
        return [*self.numeric, *(p for name in self.dates for p in part_names(name))]


def load_dataset(source: str, root: Path) -> pd.DataFrame:
    """Load the raw data set named by `source`: the bundled penguins, or a CSV/Parquet path."""
    if source == BUNDLED_SOURCE:
        # Imported here so that users who bring their own data need not install it.
        from palmerpenguins import load_penguins

        frame: pd.DataFrame = load_penguins()
        return frame
    path = Path(source)
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise DataError(f"prepare.source: no such file: {path}")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    raise DataError(f"prepare.source: expected a .csv or .parquet file, got {path.name}")


def clean(
    frame: pd.DataFrame, target: str, drop_columns: list[str], task: Task = "classification"
) -> pd.DataFrame:
    """Drop unused columns and rows without a label; fail clearly when the target is absent
    or does not fit the task."""
    if target not in frame.columns:
        raise DataError(
            f"prepare.target: column {target!r} not in the data (columns: {list(frame.columns)})"
        )
    missing = [c for c in drop_columns if c not in frame.columns]
    if missing:
        raise DataError(f"prepare.drop_columns: columns not in the data: {missing}")
    frame = frame.drop(columns=drop_columns)
    frame = frame.dropna(subset=[target]).reset_index(drop=True)
    frame[target] = target_for_task(frame[target], task)
    if task == "classification" and frame[target].nunique() < 2:
        raise DataError(f"prepare.target: {target!r} needs at least two classes")
    if len(frame.columns) < 2:
        raise DataError("the data has no feature columns besides the target")
    return frame


def target_for_task(values: pd.Series, task: Task) -> pd.Series:
    """The target as the task needs it: class labels as text, or float64 numbers."""
    name = values.name
    if task == "regression":
        if ptypes.is_bool_dtype(values) or not ptypes.is_numeric_dtype(values):
            example = values.iloc[0] if len(values) else None
            raise DataError(
                f"prepare.target: {name!r} holds text (e.g. {str(example)[:40]!r}), which "
                "regression cannot predict: set prepare.task: classification"
            )
        return values.astype("float64")
    numeric = ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values)
    if numeric and type_of_target(values.to_numpy()) == "continuous":
        raise DataError(
            f"prepare.target: {name!r} holds continuous numbers ({values.nunique()} distinct "
            "values), not classes: set prepare.task: regression"
        )
    return values.astype(str)


def check_features(frame: pd.DataFrame, target: str, max_categories: int) -> None:
    """Refuse, in one line naming the column and the param that fixes it, a feature the
    pipeline cannot learn from: empty throughout, of a type it cannot encode, or with so many
    distinct values (an identifier, free text) that one-hot encoding would memorise rows."""
    for name in (c for c in frame.columns if c != target):
        column = frame[name]
        drop = f"list {name!r} in prepare.drop_columns"
        if column.isna().all():
            raise DataError(f"column {name!r} is empty in every row: {drop}")
        if ptypes.is_numeric_dtype(column) or ptypes.is_bool_dtype(column):
            if ptypes.is_complex_dtype(column):
                raise DataError(f"column {name!r} holds complex numbers: {drop}")
            continue
        if ptypes.is_object_dtype(column):
            kinds = {type(v).__name__ for v in column.dropna() if not isinstance(v, str | bool)}
            if kinds:
                raise DataError(
                    f"column {name!r} holds {', '.join(sorted(kinds))} values besides text, "
                    f"which the pipeline cannot encode: {drop}"
                )
        elif not (ptypes.is_string_dtype(column) or isinstance(column.dtype, pd.CategoricalDtype)):
            raise DataError(
                f"column {name!r} has type {column.dtype}, which the pipeline cannot encode: "
                f"{drop}, or convert it to numbers or text (dates as YYYY-MM-DD) in your data"
            )
        distinct = column.nunique()
        if distinct > max_categories and not is_date_column(column):
            raise DataError(
                f"column {name!r} has {distinct} distinct values, more than "
                f"prepare.max_categories ({max_categories}): an identifier or free text? "
                f"{drop}, or raise prepare.max_categories"
            )


def is_date_column(column: pd.Series) -> bool:
    """Text whose every non-null value is an ISO date, `YYYY-MM-DD` (`app.dates.is_date`)."""
    if not (ptypes.is_object_dtype(column) or ptypes.is_string_dtype(column)):
        return False
    values = column.dropna().unique()
    return len(values) > 0 and all(is_date(value) for value in values)


def feature_spec(frame: pd.DataFrame, target: str) -> FeatureSpec:
    """Numeric columns are scaled; date text becomes numeric parts, scaled too; everything
    else (strings, booleans, categories) is one-hot."""
    features = [c for c in frame.columns if c != target]
    numeric = tuple(
        c
        for c in features
        if ptypes.is_numeric_dtype(frame[c]) and not ptypes.is_bool_dtype(frame[c])
    )
    dates = tuple(c for c in features if c not in numeric and is_date_column(frame[c]))
    taken = [p for name in dates for p in part_names(name) if p in frame.columns]
    if taken:
        raise DataError(f"columns {taken} clash with the date parts the model derives: rename them")
    categorical = tuple(c for c in features if c not in numeric and c not in dates)
    return FeatureSpec(numeric=numeric, categorical=categorical, dates=dates)


def model_frame(frame: pd.DataFrame, kinds: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """The features (name, input schema type) of `frame` as the model reads them: a date's
    numeric parts in its place, derived by the service's own function (`app.dates.expand`)."""
    kinds = list(kinds)
    dates = [name for name, kind in kinds if kind == "date"]
    if not dates:
        return frame[[name for name, _ in kinds]]
    columns: dict[str, Any] = {name: frame[name] for name, kind in kinds if kind != "date"}
    for name in dates:
        values = frame[name].to_numpy(dtype=object, copy=True)
        values[pd.isna(values)] = None  # as the service hands over a missing date
        columns[name] = values
    columns = {name: columns[name] for name, _ in kinds}
    return pd.DataFrame(expand(columns, dates), index=frame.index)


def schema_kinds(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    """The metadata's features as (name, type), in the input schema's order."""
    return [(f["name"], f["type"]) for f in metadata["input_schema"]["features"]]


def fingerprint(frame: pd.DataFrame) -> str:
    """A sha256 of the rows and column names, independent of the file format they came in."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
