"""Data-quality and drift signals: what the service is sent, compared with the training split
(`reference_profile.json`); docs/serving.md, "Drift and data-quality signals", lists them.

`InputMonitor` observes and never decides: what is accepted or rejected stays the request
schema's business (`app.schemas`). A value beyond the accepted bounds or an unseen category
is a 422, so out-of-range counts values the model scored although training never saw them,
and unseen categories are counted from the 422 they cause. Without a profile no drift is
counted, but validation errors by field still are: they need only the input schema.

A batch of `VECTORISE_FROM` records or more is counted vectorised, a smaller one (above all
the one record of `/predict`) by a plain loop.
"""

from __future__ import annotations

import bisect
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app import metrics
from app.artifacts import CategoryProfile, DateProfile, ModelMetadata, ReferenceProfile

UNKNOWN_FIELD = "unknown_field"
BODY = "body"
# Below this many records a Python loop beats building numpy arrays (measured: 3 µs for
# one record against 21 µs; they break even around 64).
VECTORISE_FROM = 64


def _number(bound: float | str) -> float:
    """A range's bound as a number: a date (ISO text) as its day number."""
    return float(_days([bound])[0]) if isinstance(bound, str) else bound


def _days(values: Any) -> np.ndarray:
    """ISO dates (None for missing) as float day numbers, NaN where missing."""
    days = np.asarray(values, dtype="datetime64[D]")
    return np.where(np.isnat(days), np.nan, days.astype(np.int64))


def _nulls(values: Any) -> int:
    """Missing categories: None in a list, -1 in `app.contract`'s positions."""
    if isinstance(values, np.ndarray):
        return int((values < 0).sum())
    return int(values.count(None))


class InputMonitor:
    def __init__(self, metadata: ModelMetadata, profile: ReferenceProfile | None) -> None:
        self.model_version = metadata.model_version
        self.profile = profile
        self._features = frozenset(metadata.feature_names)
        # Numbers and dates have a range (ISO dates compare as their text does; vectorised,
        # as day numbers).
        ranged = (
            [f for f in profile.features if not isinstance(f, CategoryProfile)] if profile else []
        )
        self._numeric = [f.name for f in ranged]
        self._dates = {f.name for f in ranged if isinstance(f, DateProfile)}
        self._ranges = [(f.name, f.minimum, f.maximum) for f in ranged]
        self._low = np.array([[_number(f.minimum)] for f in ranged], dtype=np.float64)
        self._high = np.array([[_number(f.maximum)] for f in ranged], dtype=np.float64)
        self._categorical = tuple(
            f.name for f in (profile.features if profile else ()) if isinstance(f, CategoryProfile)
        )
        predictions = profile.predictions if profile else None
        self._bins: tuple[str, ...] = ()
        if predictions is not None:
            self._bins = ("below", *predictions.bins, "above")
            self._edges = list(predictions.quantiles.values())
            self._prediction_range = (predictions.minimum, predictions.maximum)

    @property
    def counts_drift(self) -> bool:
        return self.profile is not None

    def observe_records(self, columns: Mapping[str, Any], n: int) -> None:
        """Counts the drift signals of n scored records given column by column (None is
        missing), as `ModelService.predict_columns` hands them to the predictor."""
        if self.profile is None:
            return
        if n < VECTORISE_FROM and all(isinstance(v, list) for v in columns.values()):
            out, missing, records = self._numeric_loop(columns)
        else:
            out, missing, records = self.range_counts(columns)
        for name in self._categorical:
            if count := _nulls(columns[name]):
                missing.append((name, count))
        if out or missing:
            metrics.count_drift(
                self.model_version, out_of_range=out, out_of_range_records=records, missing=missing
            )

    def observe_predictions(self, values: np.ndarray) -> None:
        """Counts a regressor's predictions per bin of the training predictions: a value on
        an edge belongs to the bin above it, as in the profile stage's shares."""
        if not self._bins:
            return
        low, high = self._prediction_range
        above = len(self._bins) - 1
        if len(values) < VECTORISE_FROM:
            counts = [0] * len(self._bins)
            for value in values.tolist():
                if value < low:
                    counts[0] += 1
                elif value > high:
                    counts[above] += 1
                else:
                    counts[bisect.bisect_right(self._edges, value) + 1] += 1
        else:
            index = np.searchsorted(self._edges, values, side="right") + 1
            index[values < low] = 0
            index[values > high] = above
            counts = np.bincount(index, minlength=len(self._bins)).tolist()
        metrics.count_prediction_bins(self.model_version, zip(self._bins, counts, strict=True))

    def _numeric_loop(
        self, columns: Mapping[str, Any]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
        """The non-zero counts, one value at a time."""
        out: list[tuple[str, int]] = []
        missing: list[tuple[str, int]] = []
        flagged: set[int] = set()
        for name, low, high in self._ranges:
            values = columns[name]
            if count := values.count(None):
                missing.append((name, count))
            outside = [i for i, v in enumerate(values) if v is not None and not low <= v <= high]
            if outside:
                out.append((name, len(outside)))
                flagged.update(outside)
        return out, missing, len(flagged)

    def range_counts(
        self, columns: Mapping[str, Any]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
        """The non-zero counts per number and date feature of values outside the training
        range and of missing values, and the records with any value outside, vectorised
        (`app.score` reports the same for a file)."""
        if not self._numeric:
            return [], [], 0
        # (features, records); None becomes NaN, which compares False either way.
        values = np.array(
            [_days(columns[n]) if n in self._dates else columns[n] for n in self._numeric],
            dtype=np.float64,
        )
        outside = (values < self._low) | (values > self._high)
        per_feature = outside.sum(axis=1).tolist()
        missing = np.isnan(values).sum(axis=1).tolist()
        return (
            [(name, c) for name, c in zip(self._numeric, per_feature, strict=True) if c],
            [(name, c) for name, c in zip(self._numeric, missing, strict=True) if c],
            int(outside.any(axis=0).sum()),
        )

    def observe_validation_errors(self, errors: Sequence[dict[str, Any]]) -> None:
        """Counts a rejected body's problems by field, and the unseen categories among them.

        Field names come from the model's schema, never from the request, so a client
        sending made-up fields cannot grow the set of metrics.
        """
        fields: Tally[str] = Tally()
        unseen: Tally[str] = Tally()
        categorical = self._categorical
        for error in errors:
            field = self._field(error)
            fields[field] += 1
            if field in categorical and error.get("type") == "literal_error":
                unseen[field] += 1
        metrics.count_validation_errors(self.model_version, fields)
        if unseen:
            metrics.count_drift(self.model_version, unseen=unseen.items())

    def _field(self, error: dict[str, Any]) -> str:
        if error.get("type") == "extra_forbidden":
            return UNKNOWN_FIELD
        names = [part for part in error.get("loc", ()) if isinstance(part, str)]
        return names[-1] if names and names[-1] in self._features else BODY

    def reference(self) -> dict[str, Any] | None:
        """The profile as `GET /model` shows it."""
        if self.profile is None:
            return None
        return self.profile.model_dump(mode="json")
