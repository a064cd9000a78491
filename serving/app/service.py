"""The loaded model and everything a request needs from it, built once per process group."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import to_json

from app import columnar, metrics
from app.artifacts import ModelMetadata
from app.columnar import PredictorOutputError
from app.contract import Contract
from app.drift import InputMonitor
from app.predictor import Predictor
from app.schemas import Schemas
from app.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


__all__ = ["ModelService", "PredictorOutputError", "ResultEncoder"]


@dataclass
class ModelService:
    settings: Settings
    metadata: ModelMetadata
    predictor: Predictor
    schemas: Schemas
    monitor: InputMonitor
    evaluation: dict[str, Any] | None = None
    ready: bool = field(default=False)
    """Set in each worker once its warm-up prediction succeeded."""
    _executor: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    @property
    def model_version(self) -> str:
        return self.metadata.model_version

    def __post_init__(self) -> None:
        self._encoder = result_encoder(self.metadata)
        self._contract = Contract(self.metadata, self.schemas.record)

    async def answer(self, work: Callable[[bytes], T], body: bytes) -> T:
        """`work(body)`: on the event loop when the body is small, else on the model thread.

        Handing a small request to the thread and back costs more CPU than answering it, and
        the GIL changing hands makes the tail (measured in docs/performance.md); its work
        takes well under the 5 ms the loop may wait for the GIL anyway, so `/health` answers
        as promptly. A larger body goes to the model thread while the loop keeps serving.
        """
        if len(body) <= self.settings.inline_max_bytes:
            return work(body)
        return await self.run(work, body)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Runs model work off the event loop, on this process's one model thread.

        One thread rather than a pool: the GIL lets a single thread compute at a time anyway,
        and more threads only take turns with the event loop in 5 ms slices, which shows as
        tail latency under concurrency. Requests queue here in arrival order instead. The
        thread is created on first use, in the worker process that uses it (gunicorn forks
        workers after building the app, and threads do not survive a fork). The work runs in
        the request's context, so what it counts lands in the request's metrics.
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, context.run, work, *args
        )

    def shutdown(self) -> None:
        """Waits for queued model work to finish (graceful shutdown) and stops the thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def predict_columns(
        self, records: list[dict[str, Any]], *, counted: bool = True
    ) -> tuple[np.ndarray, list[int]]:
        """The model's output for n records from a single predictor call, checked before
        anything reaches a client: a classifier's probabilities (n, classes) and the index of
        each record's best class; a regressor's predictions (n,) and no index."""
        columns = {name: [r.get(name) for r in records] for name in self.metadata.feature_names}
        return _encodable(self._predict(columns, len(records), counted=counted))

    def _predict(
        self, columns: dict[str, Any], n: int, *, counted: bool = True
    ) -> columnar.Predictions:
        predictions = columnar.predict(self.predictor, self.metadata, columns, n)
        if counted:
            if predictions.values is not None:
                metrics.count_records(n)
                self.monitor.observe_predictions(predictions.values)
            else:
                metrics.count_predictions(
                    self.model_version, self.metadata.classes, predictions.best
                )
            self.monitor.observe_records(columns, n)
        return predictions

    def _echoed(self, records: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Each record's extra fields as sent (`app.schemas.EXTRA_FIELDS`), or None when
        the service declares none."""
        names = self.schemas.extra
        if not names:
            return None
        return [{name: record[name] for name in names if name in record} for record in records]

    # The two handlers below run in a worker thread: parsing, validation, prediction and
    # serialisation all stay off the event loop.

    def predict_one_json(self, body: bytes) -> bytes:
        records = [_validate(self.schemas.record.validate_json, body)]
        output, best = self.predict_columns(records)
        return self._encoder.single(output, best, self._echoed(records))

    def predict_batch_json(self, body: bytes) -> tuple[bytes, int]:
        batch = _validate(self.schemas.batch.validate_json, body)
        records: list[dict[str, Any]] = batch["records"]
        output, best = self.predict_columns(records)
        return self._encoder.batch(output, best, self._echoed(records)), len(records)

    def predict_batch_arrow(self, body: bytes, answer_arrow: bool) -> tuple[bytes, int]:
        """An Arrow IPC stream of records, checked by the same contract as a file
        (`app.contract`), except that a column neither the model nor EXTRA_FIELDS knows is
        refused, as an unknown field of a JSON record is; answered in Arrow or in JSON."""
        try:
            table = columnar.read_ipc_stream(body)
        except ValueError as error:
            raise _invalid(("body",), "arrow_invalid", str(error)) from None
        limit = self.settings.max_arrow_records
        if not 1 <= table.num_rows <= limit:
            raise _invalid(
                ("body", "records"),
                "too_long" if table.num_rows else "too_short",
                f"an Arrow body holds 1 to {limit} records, this one {table.num_rows}",
            )
        unknown = self._contract.unknown_columns(table.column_names)
        extra = [name for name in unknown if name in self.schemas.extra]
        try:
            checked = self._contract.check(table)
        except ValueError as error:
            raise _invalid(("body",), "value_error", str(error)) from None
        echoed, extra_errors = self._echoed_columns(table, extra)
        errors = [
            {"type": "extra_forbidden", "loc": ("body", name), "msg": "unknown field"}
            for name in unknown
            if name not in extra
        ] + self._contract.errors(checked)
        if errors or extra_errors:
            raise RequestValidationError(errors + extra_errors)
        predictions = self._predict(checked.columns, table.num_rows)
        if not answer_arrow:
            return self._encoder.batch(*_encodable(predictions), echoed), table.num_rows
        schema = pa.schema(
            [*columnar.output_schema(self.metadata), *(table.field(name) for name in extra)],
            metadata={columnar.MODEL_VERSION: self.model_version},
        )
        answer = pa.Table.from_arrays(
            [
                *columnar.output_columns(self.metadata, predictions),
                *(table.column(name) for name in extra),
            ],
            schema=schema,
        )
        return columnar.ipc_stream(answer), table.num_rows

    def _echoed_columns(
        self, table: pa.Table, names: list[str]
    ) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
        """An Arrow body's extra fields per record as `_echoed` gives a JSON batch's, each
        value checked as a JSON record's is (a null is a field not sent), and the errors."""
        if not names:
            return None, []
        echoed: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
        errors = []
        for name in names:
            for row, value in enumerate(table.column(name).to_pylist()):
                if value is None:
                    continue
                try:
                    echoed[row][name] = self.schemas.extra[name].validate_python(value)
                except ValidationError as error:
                    errors += [
                        {"type": e["type"], "loc": ("body", "records", row, name), "msg": e["msg"]}
                        for e in error.errors(include_url=False, include_input=False)
                    ]
        return echoed, errors

    def warm_up(self) -> None:
        """A real prediction on the metadata's example, so the first client does not pay for
        lazy initialisation, and readiness means the model has answered once."""
        self.predict_columns(
            [self.schemas.record_example, self.schemas.sparse_example], counted=False
        )
        self.ready = True

    @cached_property
    def description_json(self) -> bytes:
        return json.dumps(self.describe(), separators=(",", ":")).encode()

    def describe(self) -> dict[str, Any]:
        raw = self.metadata.raw
        return {
            "model_version": self.model_version,
            "model_sha256": self.metadata.model_sha256,
            "backend": self.predictor.backend,
            "deployed_revision": self.settings.deployed_revision,
            "estimator": raw.get("estimator"),
            "hyperparameters": raw.get("hyperparameters"),
            "task": self.metadata.task,
            "target": self.metadata.target,
            "classes": list(self.metadata.classes),
            "metrics": self.evaluation,
            "training_data": raw.get("training_data"),
            "library_versions": raw.get("library_versions"),
            "input_schema": raw.get("input_schema"),
            "reference_profile": self.monitor.reference(),
            "limits": {
                "max_batch_records": self.settings.max_batch_records,
                "max_arrow_records": self.settings.max_arrow_records,
                "max_body_bytes": self.settings.max_body_bytes,
            },
        }


def _encodable(predictions: columnar.Predictions) -> tuple[np.ndarray, list[int]]:
    return (
        (predictions.values, [])
        if predictions.values is not None
        else (predictions.probabilities, predictions.best.tolist())
    )


def _invalid(loc: tuple[str, ...], kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": message}])


def _validate(validator: Any, body: bytes) -> dict[str, Any]:
    try:
        value: dict[str, Any] = validator(body)
    except ValidationError as error:
        if not body.strip():
            raise _invalid(("body",), "missing", "the request body is empty") from None
        # `include_input=False`: a validation error never echoes what the client sent
        # (it may be megabytes, or a NaN that JSON cannot encode).
        raise RequestValidationError(
            [
                {**detail, "loc": ("body", *detail["loc"])}
                for detail in error.errors(include_url=False, include_input=False)
            ]
        ) from None
    return value


class ResultEncoder:
    """Writes prediction responses as JSON text straight from the model's output array.

    Building a dict per record and handing the list to `json.dumps` costs more than the
    model itself on a 1,000-record batch, and so does Python's `repr` of each float. Here
    pydantic-core writes every number in one call (shortest round-trip form, as
    `json.dumps` does, though it may spell an exponent differently: `1e-5` for `1e-05`),
    and one precompiled %-template per record places them: the parsed floats are exactly
    the model's. A subclass per task says what one record's result holds; the extra fields
    a record was sent with (`app.schemas.EXTRA_FIELDS`) are appended to it as JSON.
    """

    def __init__(self, model_version: str) -> None:
        self._version = json.dumps(model_version)

    def _rows(self, output: np.ndarray, best: list[int]) -> list[str]:
        """Each record's result as a JSON object without its closing brace."""
        raise NotImplementedError

    @staticmethod
    def _numbers(output: np.ndarray) -> list[str]:
        # Finite values only (checked by the caller), so every token is a JSON number.
        return to_json(output.ravel().tolist())[1:-1].decode().split(",")

    def _results(
        self, output: np.ndarray, best: list[int], echoed: list[dict[str, Any]] | None
    ) -> list[str]:
        rows = self._rows(output, best)
        if echoed is None:
            return rows
        return [
            f"{row},{to_json(fields)[1:-1].decode()}" if fields else row
            for row, fields in zip(rows, echoed, strict=True)
        ]

    def single(
        self, output: np.ndarray, best: list[int], echoed: list[dict[str, Any]] | None = None
    ) -> bytes:
        (row,) = self._results(output, best, echoed)
        return f'{row},"model_version":{self._version}}}'.encode()

    def batch(
        self, output: np.ndarray, best: list[int], echoed: list[dict[str, Any]] | None = None
    ) -> bytes:
        rows = "},".join(self._results(output, best, echoed))
        return f'{{"predictions":[{rows}}}],"model_version":{self._version}}}'.encode()


class ClassEncoder(ResultEncoder):
    """`{"prediction": <class>, "probability": p, "probabilities": {<class>: p, ...}}`."""

    def __init__(self, classes: tuple[str, ...], model_version: str) -> None:
        super().__init__(model_version)
        self._labels = [json.dumps(label) for label in classes]
        self._width = len(classes)
        probabilities = ",".join(f"{label}:%s" for label in self._labels)
        self._row = '{"prediction":%s,"probability":%s,"probabilities":{' + probabilities + "}"

    def _rows(self, output: np.ndarray, best: list[int]) -> list[str]:
        numbers = self._numbers(output)
        labels, row, width = self._labels, self._row, self._width
        rows = []
        for start, index in zip(range(0, len(numbers), width), best, strict=True):
            values = numbers[start : start + width]
            rows.append(row % (labels[index], values[index], *values))
        return rows


class ValueEncoder(ResultEncoder):
    """`{"prediction": <number>}`: a regressor's answer."""

    def _rows(self, output: np.ndarray, best: list[int]) -> list[str]:
        return ['{"prediction":' + number for number in self._numbers(output)]


def result_encoder(metadata: ModelMetadata) -> ResultEncoder:
    if metadata.task == "regression":
        return ValueEncoder(metadata.model_version)
    return ClassEncoder(metadata.classes, metadata.model_version)
