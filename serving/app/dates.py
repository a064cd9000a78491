"""Date features: what counts as a date, and the numbers a model reads from one.

A text column whose every non-null value is an ISO date (`YYYY-MM-DD`, a day that exists)
is a date feature: training detects it, the request schema and the columnar contract accept
exactly such strings (`is_date`), and the model sees the date as numeric parts (`PARTS`),
derived here, once, for training and for both of the service's backends (`expand`): the
Pipeline and the ONNX graph take the parts as ordinary numbers. Valid ISO dates order as
their text does, so bounds and drift ranges compare the strings themselves.

Only numpy here: the service imports nothing from training, training imports this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "YYYY-MM-DD"
PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_ISO_DATE = re.compile(PATTERN, re.ASCII)
# What the model reads from a date, each as a number column named `part_name(feature, part)`.
PARTS = ("year", "month", "day_of_year")


def is_date(value: object) -> bool:
    """An ISO calendar date, `YYYY-MM-DD`, of a day that exists (no week dates, no times)."""
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:  # 2021-02-30, 0000-01-01
        return False
    return True


def part_name(feature: str, part: str) -> str:
    return f"{feature}__{part}"


def part_names(feature: str) -> list[str]:
    return [part_name(feature, part) for part in PARTS]


def model_names(features: Iterable[tuple[str, str]]) -> list[str]:
    """The model's input columns for (name, type) features in schema order: a date's parts
    in its place, every other feature as itself."""
    return [c for name, kind in features for c in (part_names(name) if kind == "date" else [name])]


def parts(values: Any) -> dict[str, npt.NDArray[np.float64]]:
    """Each part of n valid ISO dates (None for missing) as float64, NaN where missing."""
    days = np.asarray(values, dtype="datetime64[D]")  # None becomes NaT
    years = days.astype("datetime64[Y]")
    found = {
        "year": years.astype(np.int64) + 1970,
        "month": (days.astype("datetime64[M]") - years).astype(np.int64) + 1,
        "day_of_year": (days - years).astype(np.int64) + 1,
    }
    missing = np.isnat(days)
    columns = {}
    for part in PARTS:
        column = found[part].astype(np.float64)
        column[missing] = np.nan
        columns[part] = column
    return columns


def expand(columns: Mapping[str, Any], dates: Iterable[str]) -> dict[str, Any]:
    """`columns` as the model reads them: each date feature in `dates` replaced, in place,
    by its parts."""
    dates = frozenset(dates)
    if not dates:
        return dict(columns)
    expanded: dict[str, Any] = {}
    for name, values in columns.items():
        if name in dates:
            expanded |= {part_name(name, p): v for p, v in parts(values).items()}
        else:
            expanded[name] = values
    return expanded
