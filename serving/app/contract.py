"""The request contract of `/predict`, applied to a whole columnar batch at once.

`/predict` validates one JSON record at a time with the pydantic schema built from the model
metadata (`app.schemas`). Files and Arrow bodies hold many rows per column, and validating
them record by record would cost more than the model. `Contract.check` applies the same
rules per column with Arrow compute and numpy: types, bounds, finiteness, allowed
categories, nullable and required fields. Each rejected row keeps the problems it had, and
is worded with the message pydantic gives that field, so a row refused here reads exactly
as `/predict`'s 422 for the same record. Those messages are not written here: they are
taken from the record schema itself, by validating one probe value per kind of problem,
so a change to the schema's rules shows up as a failing probe rather than a silent
difference (`test_contract` proves the two agree on generated tables).

How a column maps to JSON: a null is JSON's null (accepted when the feature is nullable);
integers, floats and decimals are JSON numbers; strings are JSON strings (a number feature
refuses them, as the strict schema does, except in a CSV, whose text is parsed with the
contract's type: `parse_text`); booleans and any other type are refused like a JSON value
of the wrong type. A column that is missing is an omitted field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from app.artifacts import Feature, ModelMetadata
from app.dates import is_date
from app.messages import describe

# The kinds of problem a value can have; 0 means none. One code per row and feature.
OK, MISSING, NULL, NOT_A_NUMBER, NOT_FINITE, BELOW, ABOVE, NOT_ALLOWED, NOT_TEXT, NOT_A_DATE = (
    range(10)
)

# What a CSV cell must look like to be parsed as a number (Arrow's parser accepts these, and
# refuses the whole column on anything else, so the other cells are found first).
_NUMBER_TEXT = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[iI]nf(inity)?|INF(INITY)?|[nN]a[nN])$"


class ContractError(ValueError):
    """The batch as a whole cannot be checked (not a row's problem): the message says why."""


@dataclass(frozen=True)
class Problem:
    type: str
    msg: str
    """pydantic's message for this kind of problem on this feature, without the path."""


@dataclass(frozen=True)
class Checked:
    """One batch after the contract: the accepted rows ready for the predictor, and the
    problems of the others."""

    columns: dict[str, npt.NDArray[Any]]
    """Every feature for the accepted rows, as the predictor takes them: float64 with NaN
    for a missing number; for a category, its position in the feature's categories, -1
    when missing (no Python object per value: `app.predictor.Predictor`); a date's text,
    None when missing."""
    accepted: npt.NDArray[np.bool_]
    rejected: npt.NDArray[np.intp]
    """Positions in the batch of the rows refused."""
    codes: npt.NDArray[np.uint8]
    """(rejected rows, features): the problem of each field of each refused row."""
    missing: dict[str, int]
    """Accepted rows whose value was null or omitted, per feature (imputed by the model)."""

    @property
    def n_accepted(self) -> int:
        return len(self.accepted) - len(self.rejected)


def _probe(adapter: TypeAdapter[Any], name: str, value: Any, omit: bool = False) -> Problem:
    record = {} if omit else {name: value}
    try:
        adapter.validate_python(record)
    except ValidationError as error:
        for detail in error.errors(include_url=False, include_input=False):
            if tuple(detail["loc"]) == (name,):
                return Problem(detail["type"], detail["msg"])
    raise RuntimeError(f"the record schema accepts {value!r} for {name}, the contract refuses it")


def _problems(feature: Feature, adapter: TypeAdapter[Any]) -> dict[int, Problem]:
    name = feature.name
    problems: dict[int, Problem] = {}
    if not feature.nullable:
        problems[MISSING] = _probe(adapter, name, None, omit=True)
        problems[NULL] = _probe(adapter, name, None)
    if feature.type == "number":
        assert feature.minimum is not None
        assert feature.maximum is not None
        problems[NOT_A_NUMBER] = _probe(adapter, name, "not a number")
        problems[NOT_FINITE] = _probe(adapter, name, math.nan)
        problems[BELOW] = _probe(adapter, name, math.nextafter(feature.minimum, -math.inf))
        problems[ABOVE] = _probe(adapter, name, math.nextafter(feature.maximum, math.inf))
    elif feature.type == "date":
        problems[NOT_TEXT] = _probe(adapter, name, 0)
        problems[NOT_A_DATE] = _probe(adapter, name, "not a date")
    else:
        problems[NOT_ALLOWED] = _probe(adapter, name, "".join(feature.categories) + "?")
    return problems


def _column_or_none(batch: pa.RecordBatch | pa.Table, name: str, category: bool) -> pa.Array | None:
    """The column, dictionary-decoded unless it is a category's whose dictionary holds no
    null (then its indices' nulls are its nulls, and its few values are checked once)."""
    index = batch.schema.get_field_index(name)
    if index < 0:
        return None
    column = batch.column(index)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type) and not (category and column.dictionary.null_count == 0):
        column = column.dictionary_decode()
    return column


def _valid(column: pa.Array) -> npt.NDArray[np.bool_]:
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    return np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _is_text(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
    )


def _as_date_text(column: pa.Array) -> pa.Array:
    """A Parquet/Arrow date or timestamp column as a JSON client would send it: a date as its
    ISO day; a timestamp without a time zone at midnight as its day (pandas writes dates so),
    any other timestamp as a date and time, which is refused as the API refuses one."""
    type_ = column.type
    if pa.types.is_date(type_):
        return pc.cast(column, pa.string())
    if not pa.types.is_timestamp(type_):
        return column
    text = pc.cast(column, pa.string())
    if type_.tz is not None:
        return text
    day = pc.cast(column, pa.date32())
    return pc.if_else(pc.equal(pc.cast(day, type_), column), pc.cast(day, pa.string()), text)


def _parse_numbers(column: pa.Array) -> pa.Array:
    """CSV text as float64; a cell that is not a number becomes null here, and is found by
    the caller as a valid input with a null result."""
    try:
        return pc.cast(column, pa.float64())
    except pa.ArrowInvalid:
        numeric = pc.match_substring_regex(column, _NUMBER_TEXT).fill_null(False)
        return pc.cast(pc.if_else(numeric, column, pa.scalar(None, column.type)), pa.float64())


class Contract:
    """The record schema's rules for every feature of `metadata`, applied per column."""

    def __init__(self, metadata: ModelMetadata, record: TypeAdapter[Any]) -> None:
        self.features = metadata.features
        self.names = frozenset(metadata.feature_names)
        problems = [_problems(feature, record) for feature in self.features]
        self.problems = problems
        # The text a row's problem on each feature reads as, exactly as the API words it.
        self._texts = [
            {
                code: describe({"loc": (f.name,), "msg": p.msg, "type": p.type})["msg"]
                for code, p in feature_problems.items()
            }
            for f, feature_problems in zip(self.features, problems, strict=True)
        ]
        self._categories = [
            pa.array(f.categories, pa.string()) if f.type == "category" else None
            for f in self.features
        ]

    def unknown_columns(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name not in self.names]

    def check(self, batch: pa.RecordBatch | pa.Table, *, parse_text: bool = False) -> Checked:
        """Every row of `batch` against the contract. `parse_text`: number features may
        arrive as text (a CSV read with the contract's types) and are parsed as numbers."""
        names = batch.schema.names
        duplicated = sorted({n for n in names if n in self.names and names.count(n) > 1})
        if duplicated:
            raise ContractError(f"the columns {duplicated} appear more than once")
        n = batch.num_rows
        values: list[npt.NDArray[Any]] = []
        codes: list[npt.NDArray[np.uint8]] = []
        missing: list[npt.NDArray[np.bool_]] = []
        for index, feature in enumerate(self.features):
            column = _column_or_none(batch, feature.name, feature.type == "category")
            code = np.zeros(n, dtype=np.uint8)
            if column is None:
                valid = np.zeros(n, dtype=bool)
                value: npt.NDArray[Any] = (
                    np.full(n, np.nan)
                    if feature.type == "number"
                    else np.full(n, None, object)
                    if feature.type == "date"
                    else np.full(n, -1, np.intp)
                )
                if not feature.nullable:
                    code[:] = MISSING
            else:
                valid = _valid(column)
                if feature.type == "number":
                    value = self._number(feature, column, valid, code, parse_text)
                elif feature.type == "date":
                    value = self._date(column, valid, code)
                else:
                    value = self._category(index, column, valid, code)
                if not feature.nullable:
                    code[~valid] = NULL
            values.append(value)
            codes.append(code)
            missing.append(~valid)
        refused = np.zeros(n, dtype=bool)
        for code in codes:
            refused |= code != OK
        accepted = ~refused
        rejected = np.flatnonzero(refused)
        everyone = not len(rejected)
        return Checked(
            columns={
                f.name: value if everyone else value[accepted]
                for f, value in zip(self.features, values, strict=True)
            },
            accepted=accepted,
            rejected=rejected,
            codes=np.stack([code[rejected] for code in codes], axis=1),
            missing={
                f.name: int((gone & accepted).sum())
                for f, gone in zip(self.features, missing, strict=True)
            },
        )

    def _number(
        self,
        feature: Feature,
        column: pa.Array,
        valid: npt.NDArray[np.bool_],
        code: npt.NDArray[np.uint8],
        parse_text: bool,
    ) -> npt.NDArray[np.float64]:
        type_ = column.type
        if parse_text and _is_text(type_):
            column = _parse_numbers(column)
            code[valid & ~_valid(column)] = NOT_A_NUMBER
        elif pa.types.is_null(type_):
            return np.full(len(column), np.nan)
        elif not (
            pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)
        ):
            # Text, booleans, dates, lists...: a JSON value of another type than a number.
            code[valid] = NOT_A_NUMBER
            return np.full(len(column), np.nan)
        # Nulls become NaN; numbers that do not fit a float64 exactly are rounded, as JSON's are.
        numbers = np.asarray(
            pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        low, high = feature.minimum, feature.maximum
        assert low is not None
        assert high is not None
        with np.errstate(invalid="ignore"):
            code[numbers < low] = BELOW
            code[numbers > high] = ABOVE
        # After the bounds: pydantic refuses infinity as not finite before comparing it.
        code[_valid(column) & ~np.isfinite(numbers)] = NOT_FINITE
        return numbers

    def _date(
        self, column: pa.Array, valid: npt.NDArray[np.bool_], code: npt.NDArray[np.uint8]
    ) -> npt.NDArray[Any]:
        """The dates as sent (str, None where missing or refused): the record schema's rule,
        `app.dates.is_date`, applied once per distinct value (a file holds few days, many
        times over)."""
        column = _as_date_text(column)
        if not _is_text(column.type):
            code[valid] = NOT_TEXT
            return np.full(len(column), None, dtype=object)
        distinct = [v for v in pc.unique(column).to_pylist() if is_date(v)]
        known = _valid(pc.index_in(column, value_set=pa.array(distinct, pa.string())))
        code[valid & ~known] = NOT_A_DATE
        values: npt.NDArray[Any] = np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
        values[~known] = None
        return values

    def _category(
        self,
        index: int,
        column: pa.Array,
        valid: npt.NDArray[np.bool_],
        code: npt.NDArray[np.uint8],
    ) -> npt.NDArray[Any]:
        categories = self._categories[index]
        assert categories is not None
        dictionary = pa.types.is_dictionary(column.type)
        values = column.dictionary if dictionary else column
        if not _is_text(values.type):
            code[valid] = NOT_ALLOWED
            return np.full(len(column), -1, dtype=np.intp)
        # -1 where missing or refused.
        positions = np.asarray(
            pc.index_in(values, value_set=categories).fill_null(-1).to_numpy(), dtype=np.intp
        )
        if dictionary:
            indices = column.indices.fill_null(0).to_numpy(zero_copy_only=False)
            positions = positions[indices] if len(positions) else np.full(len(column), -1)
            positions[~valid] = -1
        code[valid & (positions < 0)] = NOT_ALLOWED
        return positions

    def messages(self, checked: Checked) -> list[str]:
        """Per rejected row, what `/predict` answers for that record: every problem, in the
        schema's field order, as `field: message`, joined by "; "."""
        if not len(checked.rejected):
            return []
        kinds, inverse = np.unique(checked.codes, axis=0, return_inverse=True)
        texts = ["; ".join(self._texts[j][int(c)] for j, c in enumerate(row) if c) for row in kinds]
        return [texts[i] for i in inverse.ravel()]

    def errors(self, checked: Checked) -> list[dict[str, Any]]:
        """The rejected rows' problems as `/predict/batch` reports a JSON batch's:
        `records[i].field`, pydantic's type and message."""
        found = []
        for row, row_codes in zip(checked.rejected.tolist(), checked.codes, strict=True):
            for j in np.flatnonzero(row_codes).tolist():
                problem = self.problems[j][int(row_codes[j])]
                loc = ("body", "records", row, self.features[j].name)
                found.append({"type": problem.type, "loc": loc, "msg": problem.msg})
        return found

    def unseen(self, checked: Checked) -> dict[str, int]:
        """Refused rows per category feature whose value the model never saw (drift)."""
        counts = {}
        for j, feature in enumerate(self.features):
            if feature.type == "category" and len(checked.rejected):
                count = int((checked.codes[:, j] == NOT_ALLOWED).sum())
                if count:
                    counts[feature.name] = count
        return counts
