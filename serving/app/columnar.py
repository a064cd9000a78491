"""Predictions of a columnar batch, and the columns they are written as.

The one place that knows what a classification model's output looks like in Arrow (a file
written by `app.score`, an Arrow answer of `/predict/batch`): `prediction`, the predicted
class, then `probability_<class>` for every class in the model's order. It also scores a
labelled file incrementally (`Evaluation`), with the evaluate stage's metrics, in memory
that does not grow with the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from app import dates
from app.artifacts import ModelMetadata
from app.predictor import Predictor

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PREDICTION = "prediction"
PROBABILITY = "probability_"
MODEL_VERSION = "model_version"


class PredictorOutputError(RuntimeError):
    """The predictor returned something other than one probability row per record."""


@dataclass(frozen=True)
class Predictions:
    probabilities: npt.NDArray[np.float64]
    """Classification: (n, classes), in the metadata's class order; (n, 0) for regression."""
    best: npt.NDArray[np.intp]
    """Classification: the index of each row's predicted class."""
    values: npt.NDArray[np.float64] | None = None
    """Regression: the predicted numbers."""


def predict(
    predictor: Predictor, metadata: ModelMetadata, columns: dict[str, Any], n: int
) -> Predictions:
    """One predictor call for n rows given column by column (lists, or numpy arrays as
    `app.contract` gives them: both predictors read either), checked before any client or
    file sees it."""
    # A date reaches either backend as its numeric parts.
    columns = dates.expand(columns, metadata.dates)
    regression = metadata.task == "regression"
    if regression:
        output = np.asarray(predictor.predict(columns), dtype=np.float64)
        expected: tuple[int, ...] = (n,)
    else:
        output = predictor.predict_proba(columns)
        expected = (n, len(metadata.classes))
    finite = bool(np.isfinite(output).all())
    if output.shape != expected or not finite:
        raise PredictorOutputError(
            f"{predictor.backend} predictor returned shape {output.shape} (finite: {finite}) "
            f"where {expected} was expected"
        )
    if regression:
        return Predictions(np.empty((n, 0)), np.empty(0, dtype=np.intp), output)
    return Predictions(output, output.argmax(axis=1))


def output_schema(metadata: ModelMetadata) -> list[pa.Field]:
    if metadata.task == "regression":
        return [pa.field(PREDICTION, pa.float64())]
    return [
        pa.field(PREDICTION, pa.dictionary(pa.int32(), pa.string())),
        *(pa.field(f"{PROBABILITY}{c}", pa.float64()) for c in metadata.classes),
    ]


def output_columns(metadata: ModelMetadata, predictions: Predictions) -> list[pa.Array]:
    """The prediction columns, in `output_schema`'s order. A class label is
    dictionary-encoded: a few distinct strings over millions of rows."""
    if predictions.values is not None:
        return [pa.array(predictions.values, pa.float64())]
    labels = pa.DictionaryArray.from_arrays(
        pa.array(predictions.best, pa.int32()), pa.array(metadata.classes, pa.string())
    )
    probabilities = predictions.probabilities
    return [labels, *(pa.array(probabilities[:, k]) for k in range(probabilities.shape[1]))]


def constant(value: str, n: int) -> pa.DictionaryArray:
    """A string column holding `value` n times, stored once."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


def ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def read_ipc_stream(body: bytes) -> pa.Table:
    """An Arrow IPC stream as a table; ValueError (with a short reason) for anything else.

    Compressed streams are refused before anything is decompressed: a body within the byte
    limit could otherwise expand to gigabytes (compression belongs to HTTP's
    Content-Encoding, which the load balancer and the limit see)."""
    try:
        for message in pa.ipc.MessageReader.open_stream(pa.py_buffer(body)):
            if message.type in ("record batch", "dictionary batch") and _compressed(
                message.metadata.to_pybytes(), dictionary=message.type == "dictionary batch"
            ):
                raise ValueError("the Arrow stream is compressed: send it uncompressed")
        return pa.ipc.open_stream(body).read_all()
    except (pa.ArrowException, OSError, struct.error) as error:
        raise ValueError(f"not an Arrow IPC stream ({str(error)[:200]})") from None


def _compressed(metadata: bytes, *, dictionary: bool) -> bool:
    """Whether a message's flatbuffer header (Arrow's Message.fbs) has a BodyCompression:
    Message.header (field 2) is a RecordBatch, whose field 3 is the compression, or a
    DictionaryBatch, whose field 1 is that RecordBatch."""

    def slot(table: int, index: int) -> int:
        vtable = table - struct.unpack_from("<i", metadata, table)[0]
        entry = 4 + 2 * index
        if entry >= struct.unpack_from("<H", metadata, vtable)[0]:
            return 0
        return int(struct.unpack_from("<H", metadata, vtable + entry)[0])

    def child(table: int, index: int) -> int:
        where = table + slot(table, index)
        return where + int(struct.unpack_from("<I", metadata, where)[0])

    header = child(struct.unpack_from("<I", metadata, 0)[0], 2)
    batch = child(header, 1) if dictionary else header
    return slot(batch, 3) != 0


def evaluation(metadata: ModelMetadata) -> Evaluation | RegressionEvaluation:
    if metadata.task == "regression":
        return RegressionEvaluation()
    return Evaluation(metadata)


class RegressionEvaluation:
    """The evaluate stage's regression metrics (rmse, mae, r2) from running sums. Rows whose
    label is null or not a finite number are counted apart."""

    def __init__(self) -> None:
        self.rows = self.unlabelled = 0
        self.squared = self.absolute = self.total = self.total_squared = 0.0

    def add(self, labels: pa.Array, predictions: Predictions) -> None:
        assert predictions.values is not None
        actual = np.asarray(
            labels.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        known = np.isfinite(actual)
        self.unlabelled += int((~known).sum())
        actual, error = actual[known], predictions.values[known] - actual[known]
        self.rows += len(actual)
        self.squared += float((error**2).sum())
        self.absolute += float(np.abs(error).sum())
        self.total += float(actual.sum())
        self.total_squared += float((actual**2).sum())

    def metrics(self) -> dict[str, Any]:
        if not self.rows:
            return {"rows": 0, "unlabelled": self.unlabelled}
        spread = self.total_squared - self.total**2 / self.rows
        return {
            "rows": self.rows,
            "unlabelled": self.unlabelled,
            "rmse": _round((self.squared / self.rows) ** 0.5),
            "mae": _round(self.absolute / self.rows),
            "r2": _round(1 - self.squared / spread) if spread > 0 else 0.0,
        }


class Evaluation:
    """The evaluate stage's holdout metrics (accuracy, macro F1, log loss, per-class
    precision and recall), accumulated batch by batch from a confusion matrix and a
    log-loss sum, so scoring a labelled file of any size holds a (classes x classes) table.
    Rows whose label is null or not one of the model's classes are counted apart."""

    def __init__(self, metadata: ModelMetadata) -> None:
        self.classes = metadata.classes
        self._labels = pa.array(self.classes, pa.string())
        k = len(self.classes)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.log_loss_sum = 0.0
        self.unlabelled = 0

    def add(self, labels: pa.Array, predictions: Predictions) -> None:
        import pyarrow.compute as pc

        if pa.types.is_dictionary(labels.type):
            labels = labels.dictionary_decode()
        if not pa.types.is_string(labels.type):
            labels = labels.cast(pa.string())
        positions = pc.index_in(labels, value_set=self._labels)
        known = np.asarray(positions.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        self.unlabelled += int((~known).sum())
        actual = np.asarray(positions.fill_null(0).to_numpy(zero_copy_only=False))[known]
        predicted = predictions.best[known]
        k = len(self.classes)
        self.confusion += np.bincount(actual * k + predicted, minlength=k * k).reshape(k, k)
        # As scikit-learn's log_loss: probabilities clipped away from 0 by float64's epsilon.
        true = predictions.probabilities[known, actual]
        eps = np.finfo(np.float64).eps
        self.log_loss_sum += float(-np.log(np.clip(true, eps, 1 - eps)).sum())

    def metrics(self) -> dict[str, Any]:
        confusion = self.confusion
        total = int(confusion.sum())
        if not total:
            return {"rows": 0, "unlabelled": self.unlabelled}
        hits = np.diag(confusion).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.nan_to_num(hits / confusion.sum(axis=0))
            recall = np.nan_to_num(hits / confusion.sum(axis=1))
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        # scikit-learn's macro F1 averages over the classes present in labels or predictions.
        present = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
        return {
            "rows": total,
            "unlabelled": self.unlabelled,
            "accuracy": _round(hits.sum() / total),
            "macro_f1": _round(f1[present].mean()),
            "log_loss": _round(self.log_loss_sum / total),
            "per_class": {
                c: {"precision": _round(p), "recall": _round(r)}
                for c, p, r in zip(self.classes, precision, recall, strict=True)
            },
        }


def _round(value: float) -> float:
    # Six decimals, as the evaluate stage writes them.
    return round(float(value), 6)
