"""The fast inference path: the model's ONNX graph, evaluated by onnxruntime.

Training compiles the fitted Pipeline to ONNX and checks, row by row, that the graph gives
the Pipeline's probabilities and labels (stage `export`, training/export.py). Its record,
`onnx_export.json`, is git-tracked like the model metadata. This module serves the graph
only when that record vouches for it: exported, parity proven, made from the very model the
service loaded, and with the sha256 of the graph file found next to it. Anything else
raises FastPathUnavailable with the reason, and the service answers with the Pipeline
(app.predictor.load_predictor), which stays the source of truth.

A call costs tens of microseconds where the Pipeline's costs milliseconds: scikit-learn's
per-call overhead (DataFrame handling, validation, one Python call per step) is almost all
of the Pipeline's time on a small request, and the graph has none of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Written by training/export.py; the two are kept in step by the parity tests.
EXPORT_RECORD = "onnx_export.json"
RECORD_SCHEMA_VERSION = 1


class FastPathUnavailable(Exception):
    """The ONNX path cannot answer for this model; the message says why."""


class OnnxPredictor:
    """Probabilities from the ONNX graph, for columnar input already validated by the service.

    Thread-safe: onnxruntime's `InferenceSession.run` may be called from several threads at
    once, each call builds its own input arrays, and the session is created under a lock.
    """

    backend = "onnx"

    def __init__(
        self,
        graph: bytes,
        *,
        numeric: tuple[str, ...],
        categorical: tuple[str, ...],
        output: str,
        missing_category: str,
        n_classes: int,
        session: Any = None,
    ) -> None:
        self._graph = graph
        self._n_classes = n_classes
        self._numeric = numeric
        self._categorical = categorical
        self._outputs = [output]
        self._missing_category = missing_category
        self._lock = threading.Lock()
        self._session = session
        # A session is not carried across fork(): gunicorn loads the model in its master
        # (preload_app) and forks the workers, and each builds its own on its first call.
        os.register_at_fork(after_in_child=functools.partial(_forget_session, weakref.ref(self)))

    def _get_session(self) -> Any:
        session = self._session
        if session is None:
            with self._lock:
                if self._session is None:
                    self._session = _new_session(self._graph)
                session = self._session
        return session

    def predict_proba(self, columns: dict[str, list[Any]]) -> npt.NDArray[np.float64]:
        """float64 (n, n_classes) in the model's class order; None means missing."""
        if not any(len(values) for values in columns.values()):
            # onnxruntime rejects empty tensors in some operators; there is nothing to run.
            return np.empty((0, self._n_classes), dtype=np.float64)
        feed: dict[str, npt.NDArray[Any]] = {}
        for name in self._numeric:
            # numpy turns None into NaN for a float array, and the graph imputes NaN.
            feed[name] = np.array(columns[name], dtype=np.float64).reshape(-1, 1)
        missing = self._missing_category
        for name in self._categorical:
            # A string tensor has no missing value: the graph imputes this token instead.
            values = [missing if value is None else value for value in columns[name]]
            feed[name] = np.array(values, dtype=object).reshape(-1, 1)
        probabilities: npt.NDArray[np.float64] = self._get_session().run(self._outputs, feed)[0]
        return probabilities


def _read_record(data_dir: Path) -> dict[str, Any]:
    path = data_dir / EXPORT_RECORD
    if not path.is_file():
        raise FastPathUnavailable(
            f"no ONNX export: {path} is missing (the `export` stage of `dvc repro` writes it)"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FastPathUnavailable(f"{path} is unreadable: {error}") from error
    if not isinstance(record, dict) or record.get("schema_version") != RECORD_SCHEMA_VERSION:
        raise FastPathUnavailable(
            f"{path} is not an export record of schema version {RECORD_SCHEMA_VERSION}"
        )
    return record


def _graph_bytes(data_dir: Path, record: dict[str, Any]) -> bytes:
    relative = record.get("onnx_file")
    if not isinstance(relative, str):
        raise FastPathUnavailable(f"{EXPORT_RECORD} names no ONNX file")
    path = (data_dir / relative).resolve()
    if not path.is_relative_to(data_dir.resolve()):
        raise FastPathUnavailable(f"{EXPORT_RECORD} names a file outside {data_dir}")
    try:
        payload = path.read_bytes()
    except OSError as error:
        raise FastPathUnavailable(
            f"the ONNX file the export recorded is unreadable ({error}); "
            "`dvc pull` fetches it from the remote"
        ) from error
    # Hash the very bytes handed to onnxruntime, so nothing can change between check and use.
    digest = hashlib.sha256(payload).hexdigest()
    if digest != record.get("onnx_sha256"):
        raise FastPathUnavailable(
            f"{relative} has sha256 {digest}, the export recorded {record.get('onnx_sha256')}"
        )
    return payload


# Sessions inherited from the parent process: kept referenced, never destroyed in the child,
# where the threads their destructor might wait for do not exist.
_inherited_sessions: list[Any] = []


def _forget_session(predictor: weakref.ref[OnnxPredictor]) -> None:
    instance = predictor()
    if instance is not None:
        _inherited_sessions.append(instance._session)
        instance._session = None
        instance._lock = threading.Lock()  # a lock held at fork time stays held in the child


def _new_session(payload: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per call and no thread pools: the service's parallelism is its workers and
    # their threads, a request is far too small to split, and pool threads would only spin
    # against each other on one vCPU (and would not survive gunicorn's fork).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def _check_runtime(record: dict[str, Any]) -> None:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise FastPathUnavailable(f"onnxruntime is not importable: {error}") from error
    # Parity was proven with one onnxruntime; another may compute differently.
    proven_with = record.get("library_versions", {}).get("onnxruntime")
    if proven_with != ort.__version__:
        raise FastPathUnavailable(
            f"parity was proven with onnxruntime {proven_with}, {ort.__version__} is installed"
        )


def load_onnx_predictor(data_dir: Path, metadata: dict[str, Any]) -> OnnxPredictor:
    """The ONNX predictor for the model `metadata` describes, or FastPathUnavailable."""
    record = _read_record(data_dir)
    if record.get("status") != "exported":
        raise FastPathUnavailable(
            f"the export recorded the model as {record.get('status')!r}: {record.get('reason')}"
        )
    if record.get("model_sha256") != metadata["model_sha256"]:
        raise FastPathUnavailable(
            f"the ONNX graph was exported from model {record.get('model_sha256')}, "
            f"the service serves {metadata['model_sha256']}: re-run `dvc repro`"
        )
    if not record.get("parity", {}).get("passed"):
        raise FastPathUnavailable("the export record does not show parity with the Pipeline")
    if record.get("classes") != metadata["classes"]:
        raise FastPathUnavailable(
            f"the graph's classes {record.get('classes')} differ from {metadata['classes']}"
        )
    features = metadata["input_schema"]["features"]
    numeric = tuple(f["name"] for f in features if f["type"] == "number")
    categorical = tuple(f["name"] for f in features if f["type"] == "category")
    expected_inputs = [{"name": f, "type": "double"} for f in numeric] + [
        {"name": f, "type": "string"} for f in categorical
    ]
    if record.get("inputs") != expected_inputs or len(expected_inputs) != len(features):
        raise FastPathUnavailable("the graph's inputs differ from the model's input schema")

    _check_runtime(record)
    graph = _graph_bytes(data_dir, record)
    try:
        session = _new_session(graph)
    except Exception as error:  # onnxruntime raises its own, undocumented exception types.
        raise FastPathUnavailable(f"onnxruntime cannot load the graph: {error}") from error
    graph_inputs = [(i.name, i.type) for i in session.get_inputs()]
    wanted = [(i["name"], f"tensor({i['type']})") for i in expected_inputs]
    if graph_inputs != wanted:
        raise FastPathUnavailable(f"the graph takes {graph_inputs}, the record says {wanted}")
    outputs = {o.name: o.type for o in session.get_outputs()}
    if outputs.get(record.get("output")) != "tensor(double)":
        raise FastPathUnavailable(f"the graph has no double output {record.get('output')!r}")

    predictor = OnnxPredictor(
        graph,
        numeric=numeric,
        categorical=categorical,
        output=record["output"],
        missing_category=record["missing_category"],
        n_classes=len(metadata["classes"]),
        session=session,
    )
    # One all-missing row proves the graph runs here, before the service commits to it.
    try:
        probe = predictor.predict_proba({f["name"]: [None] for f in features})
    except Exception as error:  # as above
        raise FastPathUnavailable(f"the graph fails on a probe record: {error}") from error
    if probe.shape != (1, len(metadata["classes"])) or not np.isclose(probe.sum(), 1.0):
        raise FastPathUnavailable(f"the graph returns {probe!r} for a probe record")
    return predictor
