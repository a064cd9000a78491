"""The model behind the endpoints: one interface, two implementations.

`Predictor` is all the routes know. `SklearnPredictor` runs the joblib Pipeline training
wrote, the single source of truth. `app.onnx_predictor`, when present, offers a compiled
fast path derived from that Pipeline; `load_predictor` tries it first and falls back to the
Pipeline whenever it cannot apply, saying which backend answers and why.

`load_predictor` runs once per process group: under gunicorn (`preload_app`) it runs in the
master before the workers fork, so they share the loaded model. Anything that owns threads
or sockets (an onnxruntime session) must therefore be created lazily in the worker, on its
first call: each worker makes a warm-up prediction before it reports ready.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from app.artifacts import ModelIntegrityError, ModelMetadata, parse_metadata, verify_model_file

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

BackendChoice = Literal["auto", "sklearn", "onnx"]
# Feature name -> n values, as `Predictor` describes them.
Columns = dict[str, Any]


class Predictor(Protocol):
    """`columns` maps every model input (`ModelMetadata.model_names`: a date feature's
    numeric parts in its place, `app.dates`) to n values: numbers (None or NaN is missing);
    for a category, the strings (None is missing), or, as `app.contract` gives a columnar
    batch, an integer array of positions in the feature's categories (-1 is missing).

    A classification model (metadata `task`) answers `predict_proba`, a regression model
    `predict`; the routes call the one of the metadata's task.
    """

    backend: str
    """Which path answers: "sklearn" (the joblib Pipeline) or "onnx" (the fast path)."""

    def predict_proba(self, columns: Columns) -> np.ndarray:
        """Classification: a float64 array of shape (n, n_classes), the class probabilities
        of n records, columns in metadata["classes"] order."""
        ...

    def predict(self, columns: Columns) -> np.ndarray:
        """Regression: a float64 array of shape (n,), the predicted value of n records."""
        ...


class SklearnPredictor:
    """The fitted Pipeline, called exactly as training evaluated it."""

    backend = "sklearn"

    def __init__(self, pipeline: Any, metadata: ModelMetadata) -> None:
        # Unpickling the Pipeline has imported scikit-learn already.
        from sklearn.base import is_regressor

        held = f"{metadata.model_file} holds a {type(pipeline).__name__}"
        if metadata.task == "regression":
            if not is_regressor(pipeline):
                raise ModelIntegrityError(
                    f"{held}, which is not a regressor, but the metadata's task is regression"
                )
        else:
            if not hasattr(pipeline, "predict_proba"):
                raise ModelIntegrityError(
                    f"{held}, which has no predict_proba: the service needs a probabilistic "
                    "classifier"
                )
            model_classes = [str(c) for c in getattr(pipeline, "classes_", [])]
            if model_classes != list(metadata.classes):
                raise ModelIntegrityError(
                    f"{metadata.model_file} predicts classes {model_classes}, but the metadata "
                    f"lists {list(metadata.classes)}"
                )
        self.task = metadata.task
        self._pipeline = pipeline
        self._order = metadata.model_names
        self._numeric = set(self._order) - {
            f.name for f in metadata.features if f.type == "category"
        }
        # Position -1 (missing) picks the NaN.
        self._categories = {
            f.name: np.array([*f.categories, np.nan], dtype=object)
            for f in metadata.features
            if f.type == "category"
        }

    def frame(self, columns: Columns) -> pd.DataFrame:
        """The DataFrame training fitted on: schema column order, float64 numbers, and
        missing categories as NaN (the marker SimpleImputer looks for; None is not matched
        in object columns)."""
        import pandas as pd

        data: dict[str, Any] = {}
        for name in self._order:
            values = columns[name]
            if name in self._numeric:
                data[name] = np.asarray(values, dtype=np.float64)  # None becomes NaN
            elif isinstance(values, np.ndarray) and values.dtype.kind in "iu":
                data[name] = self._categories[name][values]
            else:
                data[name] = np.asarray(
                    [np.nan if value is None else value for value in values], dtype=object
                )
        return pd.DataFrame(data, columns=self._order)

    def predict_proba(self, columns: Columns) -> np.ndarray:
        # One call per request or batch: the label is the argmax of these probabilities,
        # never a second `predict` that would run the whole Pipeline again.
        self._require("classification", "predict_proba")
        return np.asarray(self._pipeline.predict_proba(self.frame(columns)), dtype=np.float64)

    def predict(self, columns: Columns) -> np.ndarray:
        self._require("regression", "predict")
        predicted = self._pipeline.predict(self.frame(columns))
        return np.asarray(predicted, dtype=np.float64).reshape(-1)

    def _require(self, task: str, method: str) -> None:
        if self.task != task:
            raise TypeError(f"{method} answers {task} models; this model's task is {self.task}")


def load_sklearn_predictor(verified: Path, metadata: ModelMetadata) -> SklearnPredictor:
    """The Pipeline in `verified`, a path `verify_model_file` returned (it hashes the file,
    which is done once per start)."""
    # joblib, pandas and scikit-learn are imported only on this path: they cost seconds of
    # cold start that a service answering through the fast path does not need to pay.
    import joblib

    return SklearnPredictor(joblib.load(verified), metadata)


def load_predictor(
    data_dir: Path,
    metadata: ModelMetadata | dict[str, Any],
    backend: BackendChoice = "auto",
) -> Predictor:
    """Verify the model file, then build the fastest predictor that applies.

    `backend="auto"` tries the fast path and falls back to the Pipeline; "sklearn" skips the
    fast path; "onnx" requires it and fails the start when it cannot apply.
    """
    parsed = parse_metadata(metadata) if isinstance(metadata, dict) else metadata
    # Integrity first: no backend ever loads a file that differs from the reviewed record.
    verified = verify_model_file(data_dir, parsed)
    if backend == "sklearn":
        log.info("model backend: sklearn (chosen by SERVICE_BACKEND)", extra={"backend": "sklearn"})
        return load_sklearn_predictor(verified, parsed)
    fast, reason = _try_fast_path(data_dir, parsed)
    if fast is not None:
        log.info("model backend: %s", fast.backend, extra={"backend": fast.backend})
        return fast
    if backend == "onnx":
        raise ModelIntegrityError(f"SERVICE_BACKEND=onnx, but the ONNX fast path {reason}")
    log.warning(
        "model backend: sklearn (the ONNX fast path %s)",
        reason,
        extra={"backend": "sklearn", "fallback_reason": reason},
    )
    return load_sklearn_predictor(verified, parsed)


def _try_fast_path(data_dir: Path, metadata: ModelMetadata) -> tuple[Predictor | None, str]:
    """The fast-path predictor, or None and the reason it cannot serve this model."""
    # Imported by name: the fast path is optional, and a template user may delete it.
    try:
        module = importlib.import_module("app.onnx_predictor")
    except ImportError as error:
        return None, f"is not installed ({error})"
    try:
        predictor: Predictor = module.load_onnx_predictor(data_dir, metadata.raw)
    except module.FastPathUnavailable as error:
        return None, f"does not apply: {error}"
    return predictor, ""
