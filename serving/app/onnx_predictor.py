"""The fast inference path: the model's ONNX graph, evaluated by onnxruntime.

Training compiles the fitted Pipeline to ONNX and checks, row by row, that the graph gives
the Pipeline's probabilities and labels (stage `export`, training/export.py). Its record,
`onnx_export.json`, is git-tracked like the model metadata. This module serves the graph
only when that record vouches for it: exported, parity proven, made from the very model the
service loaded, and with the sha256 of the graph file found next to it. Anything else
raises FastPathUnavailable with the reason, and the service answers with the Pipeline
(app.predictor.load_predictor), which stays the source of truth.

The graph's feed (which features are numbers and which categories, as int64 codes or
strings, how a missing value travels, the session options) is defined here once: training's
export stage imports it to check parity, so the graph is proven on exactly the inputs the
service will give it. This module therefore imports nothing from FastAPI, nor `training`.

A call costs tens of microseconds where the Pipeline's costs milliseconds: scikit-learn's
per-call overhead (DataFrame handling, validation, one Python call per step) is almost all
of the Pipeline's time on a small request, and the graph has none of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts import EXPORT_FILE, EXPORT_VERSION, ExportRecord, GraphInput, parse_export_record
from app.dates import model_names
from app.predictor import Columns

EXPORT_RECORD = EXPORT_FILE
# The graph's output the service reads, by task: skl2onnx's names for a classifier's
# probability tensor (zipmap off) and a regressor's predictions.
OUTPUTS = {"classification": "probabilities", "regression": "variable"}
# ONNX string tensors cannot hold a missing value, so a missing category travels as this
# token and the graph's imputer replaces it, as SimpleImputer replaces None/NaN. It cannot
# come from a client: the service only accepts the schema's categories or null.
MISSING_CATEGORY = "\x00missing"


class FastPathUnavailable(Exception):
    """The ONNX path cannot answer for this model; the message says why."""


def split_features(features: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The model's inputs as (numbers, categories): the graph's input order, which is the
    Pipeline's (numbers first, as its ColumnTransformer lists them). A date feature is its
    numeric parts (`app.dates`), derived before the feed."""
    unknown = [f["name"] for f in features if f["type"] not in ("number", "category", "date")]
    if unknown:
        raise FastPathUnavailable(f"features of a type the graph cannot take: {unknown}")
    numeric = model_names((f["name"], f["type"]) for f in features if f["type"] != "category")
    return numeric, [f["name"] for f in features if f["type"] == "category"]


class Feed:
    """The graph's inputs for n records given column by column: (n, 1) float64 per number
    (None or NaN is missing, which the graph imputes), (n, 1) per category.

    A category column arrives either as the category strings (None is missing: a JSON
    request's records) or as their positions in the schema's categories, -1 for missing
    (`app.contract`'s form for a columnar batch: no Python object per value). The graph takes
    it as int64 codes, the string's position in the export record's `category_codes`
    (onnxruntime compares integers where it would hash strings: 59 ms against 139 ms per
    131,072 penguin rows), or, when the
    export could not rewrite the graph that way (its record says why), as the strings.
    A missing category becomes `missing_category`, which the graph imputes. A string the
    schema does not list is a ValueError: the service refuses such records before any
    predictor sees them, and no code could stand for one.
    """

    def __init__(
        self,
        inputs: Sequence[GraphInput],
        features: Sequence[Mapping[str, Any]],
        missing_category: str,
        category_codes: Sequence[str] | None,
    ) -> None:
        self._inputs = tuple(inputs)
        categories = {f["name"]: list(f["categories"]) for f in features if f["type"] == "category"}
        self._index = {name: {c: i for i, c in enumerate(cs)} for name, cs in categories.items()}
        code = {value: i for i, value in enumerate(category_codes or ())}
        self._lookup: dict[str, npt.NDArray[Any]] = {}
        for graph_input in self._inputs:
            # Position -1 (missing) picks the last entry.
            values = [*categories.get(graph_input.name, ()), missing_category]
            if graph_input.type == "string":
                self._lookup[graph_input.name] = np.array(values, dtype=object)
            elif graph_input.type == "int64":
                self._lookup[graph_input.name] = np.array([code[v] for v in values], np.int64)

    def positions(self, name: str, values: Sequence[Any]) -> npt.NDArray[np.intp]:
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            return values
        index = self._index[name]
        try:
            found = [-1 if value is None else index[value] for value in values]
        except (KeyError, TypeError):
            raise ValueError(f"{name}: a value that is not one of its categories") from None
        return np.array(found, dtype=np.intp)

    def __call__(self, columns: Columns) -> dict[str, npt.NDArray[Any]]:
        arrays: dict[str, npt.NDArray[Any]] = {}
        for graph_input in self._inputs:
            values = columns[graph_input.name]
            if graph_input.type == "double":
                array = np.asarray(values, dtype=np.float64)
            else:
                lookup = self._lookup[graph_input.name]
                array = lookup[self.positions(graph_input.name, values)]
            arrays[graph_input.graph_name] = array.reshape(-1, 1)
        return arrays


def new_session(payload: bytes) -> Any:
    """An onnxruntime session as the service runs it (training checks parity with one too)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per call and no thread pools: the service's parallelism is its workers and
    # their threads, a request is far too small to split, and pool threads would only spin
    # against each other on one vCPU (and would not survive gunicorn's fork). `make score`
    # too: two threads used more CPU for no shorter run on two shared cores (measured).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


class OnnxPredictor:
    """Predictions from the ONNX graph, for columnar input already validated by the service:
    `predict_proba` for a classifier, `predict` for a regressor.

    Thread-safe: onnxruntime's `InferenceSession.run` may be called from several threads at
    once, each call builds its own input arrays, and the session is created under a lock.
    """

    backend = "onnx"

    def __init__(
        self,
        graph: bytes,
        *,
        feed: Feed,
        output: str,
        n_classes: int,
        session: Any = None,
    ) -> None:
        """`n_classes` 0 means a regressor."""
        self._graph = graph
        self._n_classes = n_classes
        self._feed = feed
        self._outputs = [output]
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
                    self._session = new_session(self._graph)
                session = self._session
        return session

    def _run(self, columns: Columns) -> npt.NDArray[np.float64]:
        arrays = self._feed(columns)
        result: npt.NDArray[np.float64] = self._get_session().run(self._outputs, arrays)[0]
        return result

    def predict_proba(self, columns: Columns) -> npt.NDArray[np.float64]:
        """float64 (n, n_classes) in the model's class order; None means missing."""
        if not self._n_classes:
            raise TypeError("a regressor has no class probabilities: call predict")
        if not any(len(values) for values in columns.values()):
            # onnxruntime rejects empty tensors in some operators; there is nothing to run.
            return np.empty((0, self._n_classes), dtype=np.float64)
        return self._run(columns)

    def predict(self, columns: Columns) -> npt.NDArray[np.float64]:
        """A regressor's float64 (n,) predictions; None means missing."""
        if self._n_classes:
            raise TypeError("a classifier's answer is predict_proba")
        if not any(len(values) for values in columns.values()):
            return np.empty(0, dtype=np.float64)
        return self._run(columns).reshape(-1)


def _read_record(data_dir: Path) -> ExportRecord:
    path = data_dir / EXPORT_RECORD
    if not path.is_file():
        raise FastPathUnavailable(
            f"no ONNX export: {path} is missing (the `export` stage of `dvc repro` writes it)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FastPathUnavailable(f"{path} is unreadable: {error}") from error
    if not isinstance(raw, dict) or raw.get("schema_version") != EXPORT_VERSION:
        raise FastPathUnavailable(
            f"{path} is not an export record of schema version {EXPORT_VERSION}: re-run `dvc repro`"
        )
    try:
        return parse_export_record(raw)
    except ValueError as error:
        raise FastPathUnavailable(str(error)) from None


def _graph_bytes(data_dir: Path, record: ExportRecord) -> bytes:
    relative = record.onnx_file
    if relative is None:
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
    if digest != record.onnx_sha256:
        raise FastPathUnavailable(
            f"{relative} has sha256 {digest}, the export recorded {record.onnx_sha256}"
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


def _check_runtime(record: ExportRecord) -> None:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise FastPathUnavailable(f"onnxruntime is not importable: {error}") from error
    # Parity was proven with one onnxruntime; another may compute differently.
    proven_with = record.library_versions.get("onnxruntime")
    if proven_with != ort.__version__:
        raise FastPathUnavailable(
            f"parity was proven with onnxruntime {proven_with}, {ort.__version__} is installed"
        )


def load_onnx_predictor(data_dir: Path, metadata: dict[str, Any]) -> OnnxPredictor:
    """The ONNX predictor for the model `metadata` describes, or FastPathUnavailable."""
    record = _read_record(data_dir)
    if record.status != "exported":
        raise FastPathUnavailable(
            f"the export recorded the model as {record.status!r}: {record.reason}"
        )
    if record.model_sha256 != metadata["model_sha256"]:
        raise FastPathUnavailable(
            f"the ONNX graph was exported from model {record.model_sha256}, "
            f"the service serves {metadata['model_sha256']}: re-run `dvc repro`"
        )
    if record.parity is None or not record.parity.passed:
        raise FastPathUnavailable("the export record does not show parity with the Pipeline")
    classes = list(metadata.get("classes", []))
    if list(record.classes) != classes:
        raise FastPathUnavailable(
            f"the graph's classes {list(record.classes)} differ from {classes}"
        )
    features = metadata["input_schema"]["features"]
    numeric, categorical = split_features(features)
    layout = "int64" if record.category_codes is not None else "string"
    expected = [(name, "double") for name in numeric] + [(name, layout) for name in categorical]
    if [(i.name, i.type) for i in record.inputs] != expected:
        raise FastPathUnavailable("the graph's inputs differ from the model's input schema")
    coded = {*(c for f in features if f["type"] == "category" for c in f["categories"])}
    if record.category_codes is not None and not coded | {record.missing_category} <= {
        *record.category_codes
    }:
        raise FastPathUnavailable("the graph's category codes lack some of the schema's categories")
    output = OUTPUTS[metadata.get("task", "classification")]
    if record.output != output:
        raise FastPathUnavailable(f"the graph's output is {record.output!r}, not {output!r}")

    _check_runtime(record)
    graph = _graph_bytes(data_dir, record)
    try:
        session = new_session(graph)
    except Exception as error:  # onnxruntime raises its own, undocumented exception types.
        raise FastPathUnavailable(f"onnxruntime cannot load the graph: {error}") from error
    graph_inputs = [(i.name, i.type) for i in session.get_inputs()]
    wanted = [(i.graph_name, f"tensor({i.type})") for i in record.inputs]
    if graph_inputs != wanted:
        raise FastPathUnavailable(f"the graph takes {graph_inputs}, the record says {wanted}")
    outputs = {o.name: o.type for o in session.get_outputs()}
    if outputs.get(output) != "tensor(double)":
        raise FastPathUnavailable(f"the graph has no double output {output!r}")

    predictor = OnnxPredictor(
        graph,
        feed=Feed(record.inputs, features, record.missing_category, record.category_codes),
        output=output,
        n_classes=len(classes),
        session=session,
    )
    _probe(predictor, features, len(classes))
    return predictor


def _probe(predictor: OnnxPredictor, features: Sequence[Mapping[str, Any]], n_classes: int) -> None:
    """One all-missing row proves the graph runs here, before the service commits to it."""
    record = {name: [None] for name in model_names((f["name"], f["type"]) for f in features)}
    try:
        answer = predictor.predict_proba(record) if n_classes else predictor.predict(record)
    except Exception as error:  # as above
        raise FastPathUnavailable(f"the graph fails on a probe record: {error}") from error
    if n_classes:
        valid = answer.shape == (1, n_classes) and bool(np.isclose(answer.sum(), 1.0))
    else:
        valid = answer.shape == (1,) and math.isfinite(float(answer[0]))
    if not valid:
        raise FastPathUnavailable(f"the graph returns {answer!r} for a probe record")
