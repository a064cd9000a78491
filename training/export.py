"""Stage `export`: compile the fitted Pipeline to ONNX and prove that it predicts the same.

The joblib Pipeline stays the single source of truth. Its ONNX graph, which onnxruntime
evaluates in microseconds where scikit-learn spends milliseconds per call, is checked
against it on every row of the prepared data and on random valid records (values anywhere
within the schema's bounds, missing values). The outcome lands in `onnx_export.json`
(git-tracked): the service uses the graph only when that record says parity held, was made
from the very model it serves, and names the sha256 of the graph file it finds.

The graph's feed and session are the service's own (app.onnx_predictor, which imports no
web framework): parity is proven on exactly the inputs the service will give the graph.
The stage runs with serving/ on PYTHONPATH (dvc.yaml says so); the service never imports
this package.

When the Pipeline holds a step skl2onnx cannot convert (a user's own estimator, say) or the
graph disagrees with the Pipeline, the stage records why and succeeds: the service then
answers with the Pipeline itself and says so.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
import sklearn
from sklearn.base import is_classifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from app.artifacts import EXPORT_FILE, EXPORT_VERSION, GraphInput, parse_export_record
from app.onnx_predictor import MISSING_CATEGORY, OUTPUTS, Feed, new_session, split_features
from training import paths
from training.data import model_frame, schema_kinds
from training.io import rounded, run_stage, sha256_file, write_json
from training.params import read_params

log = logging.getLogger(__name__)

RECORD = paths.ARTIFACTS_DIR / EXPORT_FILE
# A directory rather than a file, so that DVC has an output to cache even when there is no
# graph to write: an empty directory when the model could not be exported.
ONNX_DIR = paths.ARTIFACTS_DIR / "onnx"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class Features:
    """The model's inputs as the metadata describes them, in schema order."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    schema: tuple[dict[str, Any], ...] = ()
    """The metadata's `input_schema.features`."""

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Features:
        schema = tuple(metadata["input_schema"]["features"])
        numeric, categorical = split_features(schema)
        return cls(numeric=tuple(numeric), categorical=tuple(categorical), schema=schema)

    def categories(self, name: str) -> list[str]:
        return next(list(f["categories"]) for f in self.schema if f["name"] == name)

    @property
    def all(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


class ExportUnavailable(Exception):
    """The model cannot be served through ONNX; the message says why."""


# --- conversion ---------------------------------------------------------------------------


def _is_nan_marker(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _convert_simple_imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer in full precision, for numbers and for categories.

    skl2onnx's own converter stores the fill values as float32 (its ai.onnx.ml `Imputer`
    node has no double form), so an imputed number is not scikit-learn's, and it rejects
    string columns whose missing marker is NaN, which is how pandas and scikit-learn mark
    them. This one emits `Where(is_missing, statistics, X)` in the input's own type instead;
    other configurations go to the stock converter.
    """
    from skl2onnx.common.data_types import StringTensorType, guess_proto_type
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.proto import onnx_proto

    imputer = operator.raw_operator
    if not _is_nan_marker(imputer.missing_values):
        convert_sklearn_imputer(scope, operator, container)
        return
    if imputer.add_indicator:
        raise NotImplementedError("SimpleImputer(add_indicator=True) is not supported")
    statistics = imputer.statistics_
    is_string = isinstance(operator.inputs[0].type, StringTensorType)
    if not is_string and np.isnan(statistics.astype(np.float64)).any():
        # scikit-learn drops (or zero-fills) columns that were empty in training.
        raise NotImplementedError("SimpleImputer with a feature that was empty in training")

    features = concatenate_variables(scope, operator.inputs, container)
    fill = scope.get_unique_variable_name("imputer_fill")
    is_missing = scope.get_unique_variable_name("imputer_is_missing")
    if is_string:
        if container.target_opset < 19:
            raise NotImplementedError("string Equal needs ONNX opset 19 or later")
        container.add_initializer(
            fill,
            onnx_proto.TensorProto.STRING,
            [1, statistics.size],
            [str(value).encode() for value in statistics],
        )
        token = scope.get_unique_variable_name("missing_category")
        container.add_initializer(
            token, onnx_proto.TensorProto.STRING, [], [MISSING_CATEGORY.encode()]
        )
        container.add_node("Equal", [features, token], [is_missing])
    else:
        proto = guess_proto_type(operator.inputs[0].type)
        dtype = np.float64 if proto == onnx_proto.TensorProto.DOUBLE else np.float32
        container.add_initializer(
            fill, proto, [1, statistics.size], statistics.astype(dtype).tolist()
        )
        container.add_node("IsNaN", [features], [is_missing])
    container.add_node("Where", [is_missing, fill, features], [operator.outputs[0].full_name])


# skl2onnx writes tree ensembles with ai.onnx.ml 1 nodes, whose thresholds and leaf values
# are float32 and whose output is float: a row near a split takes the other branch than
# scikit-learn (a 0.01 probability apart on wine), and a double input is refused outright.
# Written as ai.onnx.ml 3 nodes instead, thresholds and leaves are the model's float64s
# (`*_as_tensor`) and only the output is float32 (cast to double here): the parity check
# then holds at 1e-6 (relative, for a regressor's large outputs).
_TREE_NODES = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})
_TREE_DOUBLES = ("nodes_values", "class_weights", "target_weights", "base_values")


def _in_double(converter: Any) -> Any:
    """`converter` (skl2onnx's for a tree ensemble) emitting ai.onnx.ml 3 tree nodes whose
    attributes are the model's float64 values and whose float outputs are cast to double."""
    from onnx import TensorProto, numpy_helper
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    def convert_in_double(scope: Any, operator: Any, container: Any) -> None:
        add_node = container.add_node

        def add_tree_node(
            op_type: str, inputs: Any, outputs: Any, op_domain: str = "", **attrs: Any
        ) -> None:
            if op_domain != "ai.onnx.ml" or op_type not in _TREE_NODES:
                add_node(op_type, inputs, outputs, op_domain=op_domain, **attrs)
                return
            for key in _TREE_DOUBLES:
                if key in attrs:
                    values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                    attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values)
            for key, value in attrs.items():
                # numpy integers and booleans (HistGradientBoosting's) where ONNX takes ints
                if isinstance(value, list) and value and isinstance(value[0], np.generic):
                    attrs[key] = [int(v) for v in value]
            outputs = [outputs] if isinstance(outputs, str) else list(outputs)
            # A classifier's first output is its labels; the scores are float32.
            labels = outputs[:1] if op_type == "TreeEnsembleClassifier" else []
            scores = outputs[len(labels) :]
            floats = [scope.get_unique_variable_name(f"{name}_float") for name in scores]
            add_node(op_type, inputs, [*labels, *floats], op_domain=op_domain, **attrs)
            for single, wanted in zip(floats, scores, strict=True):
                name = scope.get_unique_operator_name("Cast")
                add_node("Cast", [single], [wanted], to=TensorProto.DOUBLE, name=name)

        for variable in operator.outputs:
            if isinstance(variable.type, FloatTensorType):
                variable.type = DoubleTensorType(variable.type.shape)
        container.add_node = add_tree_node
        try:
            converter(scope, operator, container, op_version=3)
        finally:
            container.add_node = add_node

    return convert_in_double


def _tree_converters() -> dict[type, Any]:
    from skl2onnx.operator_converters import decision_tree, gradient_boosting
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier as classifier,
    )
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_regressor_converter as regressor,
    )
    from sklearn import ensemble, tree

    # skl2onnx's graphs of these on double inputs declare double outputs of a tree node,
    # which onnxruntime refuses to load: through the same wrapper they export.
    others = {
        tree.DecisionTreeClassifier: decision_tree.convert_sklearn_decision_tree_classifier,
        tree.DecisionTreeRegressor: decision_tree.convert_sklearn_decision_tree_regressor,
        ensemble.GradientBoostingClassifier: (
            gradient_boosting.convert_sklearn_gradient_boosting_classifier
        ),
        ensemble.GradientBoostingRegressor: (
            gradient_boosting.convert_sklearn_gradient_boosting_regressor
        ),
    }
    return {
        getattr(ensemble, f"{family}{kind}"): _in_double(converter)
        for family in ("RandomForest", "ExtraTrees", "HistGradientBoosting")
        for kind, converter in (("Classifier", classifier), ("Regressor", regressor))
    } | {estimator: _in_double(converter) for estimator, converter in others.items()}


def convert(model: Pipeline, features: Features, name: str) -> Any:
    """The ONNX ModelProto of `model`: one input per feature, double precision throughout.

    Raises whatever skl2onnx raises when a step has no converter.
    """
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    initial_types = [(f, DoubleTensorType([None, 1])) for f in features.numeric] + [
        (f, StringTensorType([None, 1])) for f in features.categorical
    ]
    final_step = model.steps[-1][1] if isinstance(model, Pipeline) else model
    onnx_model = convert_sklearn(
        model,
        # A fixed name: skl2onnx otherwise draws a random one, and the file's sha256 with it.
        name=name,
        initial_types=initial_types,
        # Plain probability tensor, not a list of {class: probability} maps.
        options={id(final_step): {"zipmap": False}} if is_classifier(final_step) else None,
        # ai.onnx.ml 3 for tree ensembles in double; the file lists the versions it uses.
        target_opset={"": get_latest_tested_opset_version(), "ai.onnx.ml": 3},
        custom_conversion_functions={SimpleImputer: _convert_simple_imputer, **_tree_converters()},
        custom_shape_calculators={SimpleImputer: calculate_sklearn_imputer_output_shapes},
    )
    # skl2onnx lists the opsets in an order that follows the interpreter's hash seed (about
    # one run in thirty differs here), and the file's bytes with it; sorted, the same model
    # always exports to the same bytes.
    onnx_model.opset_import.sort(key=lambda opset: opset.domain)
    return onnx_model


# Operators that carry values through unchanged (moved, selected, reshaped), with the
# inputs holding those values: given codes there, they give the codes of what they would
# have given. Every other input (indices, shapes, a condition) must not be a category.
_ALL = range(1 << 16)
_CARRY = {
    **dict.fromkeys(["Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten"], range(1)),
    **dict.fromkeys(["Transpose", "Gather", "Slice", "Split", "Expand", "Tile"], range(1)),
    "ai.onnx.ml.ArrayFeatureExtractor": range(1),
    "Concat": _ALL,
    "Where": range(1, 3),
    # Equality only: its output is a boolean, not a category.
    "Equal": range(2),
}


class CodesUnavailable(Exception):
    """The graph reads the category strings in a way int64 codes cannot stand for."""


def category_codes(metadata: dict[str, Any]) -> tuple[str, ...]:
    """The strings int64 codes stand for (code = position): every feature's categories
    and the missing token, each once, so a string means one code whichever feature holds
    it (the graph may compare one feature's values with another's constants after a
    Concat)."""
    features = metadata["input_schema"]["features"]
    found = {c for f in features if f["type"] == "category" for c in f["categories"]}
    return (*sorted(found), MISSING_CATEGORY)


def with_category_codes(onnx_model: Any, categorical: set[str], codes: tuple[str, ...]) -> Any:
    """A copy of the graph whose `categorical` inputs take int64 codes instead of strings.

    Strings map to codes one to one, so every operator that only moves strings or tests
    them for equality computes the same on codes: the carrying ones above, Equal, and
    ai.onnx.ml's OneHotEncoder and LabelEncoder, whose string constants are replaced by
    their codes (a constant no category has, such as an encoder's category never listed in
    the schema, gets a code of its own). Any other operator reading a category (string
    functions, a cast) raises CodesUnavailable naming it."""
    from onnx import TensorProto, helper, numpy_helper

    model = type(onnx_model)()
    model.CopyFrom(onnx_model)
    graph = model.graph
    code = {value: i for i, value in enumerate(codes)}

    def coded(value: bytes | str) -> int:
        text = value.decode() if isinstance(value, bytes) else value
        return code.setdefault(text, len(code))

    constants = {i.name: i for i in graph.initializer if i.data_type == TensorProto.STRING}
    replaced: dict[str, str] = {}

    def constant_codes(name: str) -> str:
        if name not in replaced:
            values = numpy_helper.to_array(constants[name])
            array = np.vectorize(coded, otypes=[np.int64])(values) if values.size else values
            replaced[name] = f"{name}_codes"
            graph.initializer.append(
                numpy_helper.from_array(np.asarray(array, np.int64), replaced[name])
            )
        return replaced[name]

    carried = set(categorical)
    for node in graph.node:
        if not carried & {*node.input}:
            continue
        kind = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        data = _CARRY.get(kind, range(1))
        if kind not in _CARRY and kind not in (
            "ai.onnx.ml.OneHotEncoder",
            "ai.onnx.ml.LabelEncoder",
        ):
            raise CodesUnavailable(f"the graph's {kind} node {node.name!r} reads category values")
        for position, name in enumerate(node.input):
            if position not in data and name in carried:
                raise CodesUnavailable(f"{kind} {node.name!r} takes a category as an index")
            if name in constants and name not in carried:
                node.input[position] = constant_codes(name)
            elif name not in carried and position in data:
                raise CodesUnavailable(f"{kind} {node.name!r} mixes categories with {name}")
        if kind in _CARRY and kind != "Equal":
            carried.update(node.output)
        for attribute in node.attribute:
            if attribute.name in ("cats_strings", "keys_strings"):
                ints = [coded(value) for value in attribute.strings]
                renamed = attribute.name.replace("strings", "int64s")
                attribute.CopyFrom(helper.make_attribute(renamed, ints))
            elif attribute.name in ("values_strings", "default_string", "keys_tensor"):
                raise CodesUnavailable(f"{kind} {node.name!r} maps categories to strings")
    if carried & {output.name for output in graph.output}:
        raise CodesUnavailable("a category value is one of the graph's outputs")
    for graph_input in graph.input:
        if graph_input.name in categorical:
            graph_input.type.tensor_type.elem_type = TensorProto.INT64
    # Types inferred by the converter for what now carries codes would contradict them.
    _keep(graph.value_info, lambda value: value.name not in carried)
    return model


def _keep(field: Any, wanted: Any) -> None:
    """Delete, in place and keeping the order, the items of a repeated proto field not `wanted`."""
    for i in reversed(range(len(field))):
        if not wanted(field[i]):
            del field[i]


def pruned(onnx_model: Any, output: str) -> Any:
    """The graph computing only `output`, the one the service reads: onnxruntime runs every
    node of a graph whatever the outputs asked for (a classifier's label costs a tenth of
    its time)."""
    graph = onnx_model.graph
    needed = {output}
    for node in reversed(graph.node):
        if needed & {*node.output}:
            needed.update(node.input)
    # Nodes come in topological order: no node the walk left out feeds one it kept.
    _keep(graph.node, lambda node: needed & {*node.output})
    _keep(graph.output, lambda graph_output: graph_output.name == output)
    _keep(graph.initializer, lambda initializer: initializer.name in needed)
    return onnx_model


def graph_inputs(session: Any, features: Features) -> tuple[GraphInput, ...]:
    """Each feature with the name and type the graph gave its input (the same position:
    skl2onnx keeps the order of `initial_types`, and makes names such as "mean radius"
    identifiers)."""
    found = session.get_inputs()
    names = [i.name for i in found]
    if len(names) != len(features.all) or len(set(names)) != len(names):
        raise ExportUnavailable(f"graph inputs {names} do not match the features one to one")
    return tuple(
        GraphInput(name=name, graph_name=i.name, type=i.type.removeprefix("tensor(")[:-1])
        for name, i in zip(features.all, found, strict=True)
    )


# --- parity ---------------------------------------------------------------------------------


def _positions(frame: pd.DataFrame, features: Features, name: str) -> npt.NDArray[np.intp]:
    column = frame[name]
    text = column.where(column.isna(), column.astype(str))
    codes = pd.Categorical(text, categories=features.categories(name)).codes
    return np.asarray(codes, dtype=np.intp)


def servable(frame: pd.DataFrame, features: Features) -> npt.NDArray[np.bool_]:
    """The rows the service would predict: every category one the schema lists, or missing.
    It refuses the others (an unseen category is a 422), so no graph ever sees them."""
    keep = np.ones(len(frame), dtype=bool)
    for name in features.categorical:
        keep &= (_positions(frame, features, name) >= 0) | frame[name].isna().to_numpy()
    return keep


def columns_of(frame: pd.DataFrame, features: Features) -> dict[str, npt.NDArray[Any]]:
    """The servable frame as the service hands a predictor a columnar batch
    (`app.contract`): float64 numbers, NaN for missing; categories as their positions in
    the schema's list, -1 for missing."""
    columns: dict[str, npt.NDArray[Any]] = {}
    for name in features.numeric:
        columns[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    for name in features.categorical:
        columns[name] = _positions(frame, features, name)
    return columns


def random_records(
    metadata: dict[str, Any], count: int, missing_rate: float, seed: int
) -> pd.DataFrame:
    """`count` records a client could send: every value valid, some missing.

    Numbers are drawn uniformly within the schema's accepted bounds, dates over the whole
    calendar (the first two records sit exactly on the limits); categories from the schema's
    list (the service refuses any other); each value is missing with probability
    `missing_rate`.
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for feature in metadata["input_schema"]["features"]:
        missing = rng.random(count) < missing_rate
        if feature["type"] == "number":
            low, high = float(feature["minimum"]), float(feature["maximum"])
            values: npt.NDArray[Any] = rng.uniform(low, high, count)
            limits: list[Any] = [low, high]
        elif feature["type"] == "date":
            # Any day a client may send, from 0001-01-01 to 9999-12-31.
            first, last = np.datetime64(date.min, "D"), np.datetime64(date.max, "D")
            span = int((last - first) / np.timedelta64(1, "D"))
            values = np.datetime_as_string(first + rng.integers(0, span + 1, count)).astype(object)
            limits = [str(first), str(last)]
        else:
            values = rng.choice(np.array(feature["categories"], dtype=object), count)
            limits = []
        # NaN, as in the training data: SimpleImputer(missing_values=np.nan) does not see a
        # None in an object column as missing, but as one more unknown category.
        values[missing] = np.nan
        if limits:
            values[: min(count, 2)] = limits[: min(count, 2)]
        number = feature["type"] == "number"
        columns[feature["name"]] = values if number else pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


def check_parity(
    model: Pipeline,
    session: Any,
    frame: pd.DataFrame,
    features: Features,
    feed: Feed,
    tolerance: float,
    task: str,
) -> dict[str, Any]:
    """The graph's answers against the Pipeline's, row by row, fed by the service's own feed:
    a classifier's probabilities within `tolerance` and the same labels (the service's: the
    most probable class, whichever backend answers; the Pipeline's `predict` can differ from
    it, as SGDClassifier's does where its probabilities saturate and tie); a regressor's
    predictions each within `tolerance` absolutely or relative to the prediction's size,
    whichever is larger. NaN compares false to everything, so a NaN output never passes."""
    rows = frame[list(features.all)]
    (actual,) = session.run([OUTPUTS[task]], feed(columns_of(frame, features)))
    if task == "classification":
        expected, what = model.predict_proba(rows), "probabilities"
    else:
        expected = np.asarray(model.predict(rows), dtype=np.float64)
        actual, what = np.asarray(actual, dtype=np.float64).reshape(-1), "predictions"
    if actual.shape != expected.shape:
        raise ExportUnavailable(
            f"the graph returns {what} of shape {actual.shape}, the Pipeline {expected.shape}"
        )
    difference = np.abs(actual.astype(np.float64) - expected)
    if task == "classification":
        largest = float(np.max(difference))
        disagreements = int(np.sum(np.argmax(actual, axis=1) != np.argmax(expected, axis=1)))
        finite = math.isfinite(largest)
        return {
            "passed": finite and largest <= tolerance and disagreements == 0,
            "tolerance": tolerance,
            "max_abs_probability_difference": largest if finite else None,
            "label_agreement": rounded(1 - disagreements / len(frame)),
            "label_disagreements": disagreements,
            "rows_checked": len(frame),
        }
    outside = int(np.sum(~(difference <= tolerance * np.maximum(1.0, np.abs(expected)))))
    largest = float(np.max(difference)) if len(difference) else 0.0
    return {
        "passed": outside == 0,
        "tolerance": tolerance,
        "max_abs_difference": largest if math.isfinite(largest) else None,
        "rows_outside_tolerance": outside,
        "rows_checked": len(frame),
    }


FIGURES = ("max_abs_probability_difference", "max_abs_difference")


# --- the stage ------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import skl2onnx

    return {
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def export(
    *,
    model_path: Path,
    metadata: dict[str, Any],
    prepared: pd.DataFrame,
    params: dict[str, Any],
    onnx_dir: Path,
    record_path: Path,
) -> dict[str, Any]:
    """Convert, check and write the graph and its record; return the record.

    Never raises because the model cannot be exported: that outcome is recorded. Raises
    only when its inputs are inconsistent (a model file that is not the one the metadata
    describes), which no fallback could make right.
    """
    model_sha256 = sha256_file(model_path)
    if model_sha256 != metadata["model_sha256"]:
        raise ValueError(
            f"{model_path} has sha256 {model_sha256}, the metadata records "
            f"{metadata['model_sha256']}: re-run the train stage"
        )
    model = joblib.load(model_path)
    features = Features.from_metadata(metadata)
    task = metadata.get("task", "classification")
    random = random_records(
        metadata, int(params["random_records"]), float(params["missing_rate"]), int(params["seed"])
    )
    # Only rows the service would predict: it refuses an unseen category before any model.
    prepared = prepared[servable(prepared, features)]
    # The graph, like the Pipeline, reads a date as its parts, derived before either backend.
    kinds = schema_kinds(metadata)
    prepared, random = model_frame(prepared, kinds), model_frame(random, kinds)
    types = ["double"] * len(features.numeric) + ["string"] * len(features.categorical)
    record: dict[str, Any] = {
        "schema_version": EXPORT_VERSION,
        "status": "unavailable",
        "reason": None,
        "model_sha256": model_sha256,
        "onnx_file": None,
        "onnx_sha256": None,
        "opsets": None,
        # The names asked of the converter; the graph's own once it exists.
        "inputs": [
            {"name": f, "graph_name": f, "type": t}
            for f, t in zip(features.all, types, strict=True)
        ],
        "output": OUTPUTS[task],
        "classes": [str(c) for c in metadata.get("classes", [])],
        "missing_category": MISSING_CATEGORY,
        "category_codes": None,
        "strings_reason": None,
        "parity": None,
        "library_versions": library_versions(),
    }
    # DVC removes its outputs before it runs a stage; a direct run must not leave a stale
    # graph next to a record that says there is none.
    shutil.rmtree(onnx_dir, ignore_errors=True)
    onnx_dir.mkdir(parents=True)

    try:
        onnx_model = convert(model, features, name=f"model-{model_sha256[:12]}")
        onnx_model.metadata_props.add(key="model_sha256", value=model_sha256)
        categorical = {i.name for i in onnx_model.graph.input[len(features.numeric) :]}
        codes = category_codes(metadata)
        try:
            onnx_model = with_category_codes(onnx_model, categorical, codes)
            record["category_codes"] = list(codes)
        except CodesUnavailable as error:
            record["strings_reason"] = str(error)
            log.warning("the graph takes the category strings (slower): %s", error)
        onnx_model = pruned(onnx_model, OUTPUTS[task])
        onnx_bytes = onnx_model.SerializeToString()
        record["opsets"] = {op.domain or "ai.onnx": op.version for op in onnx_model.opset_import}
        session = new_session(onnx_bytes)
        inputs = graph_inputs(session, features)
        record["inputs"] = [i.model_dump() for i in inputs]
        feed = Feed(inputs, features.schema, MISSING_CATEGORY, record["category_codes"])
        tolerance = float(params["tolerance"])
        parity = {
            name: check_parity(model, session, frame, features, feed, tolerance, task)
            for name, frame in (("prepared_data", prepared), ("random_records", random))
        }
        record["parity"] = {
            # The measured difference of a passing check is ulp-level noise that changes with
            # the BLAS kernel the CPU selects (1e-16 on one, 7e-16 on another), so the
            # git-tracked record keeps only what every machine reproduces and the figure goes
            # to the log; a failing check keeps it, as the reason.
            **{
                name: {k: v for k, v in p.items() if not p["passed"] or k not in FIGURES}
                for name, p in parity.items()
            },
            "passed": all(p["passed"] for p in parity.values()),
            "rows_checked": sum(p["rows_checked"] for p in parity.values()),
            "random_records_seed": int(params["seed"]),
        }
        if not record["parity"]["passed"]:
            failed = {k: v for k, v in parity.items() if not v["passed"]}
            raise ExportUnavailable("parity failed: " + "; ".join(map(_failure, failed.items())))
    # Anything the converter or onnxruntime raises (NotImplementedError, RuntimeError,
    # skl2onnx's MissingShapeCalculator...) means the same thing here: no fast path.
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        record["reason"] = f"{type(error).__name__}: {reason}"[:500]
        log.warning("ONNX export unavailable, the service will use the Pipeline: %s", reason)
        log.debug("conversion failure", exc_info=True)
    else:
        (onnx_dir / ONNX_FILE).write_bytes(onnx_bytes)
        record |= {
            "status": "exported",
            "onnx_file": f"{onnx_dir.name}/{ONNX_FILE}",
            "onnx_sha256": sha256_file(onnx_dir / ONNX_FILE),
        }
        log.info(
            "exported %s: parity over %d rows, max |difference| %s",
            ONNX_FILE,
            record["parity"]["rows_checked"],
            max(p[figure] for p in parity.values() for figure in FIGURES if figure in p),
        )
    # Validated as the service will read it, so a record training writes is one it accepts.
    parse_export_record(record)
    write_json(record_path, record)
    return record


def _failure(item: tuple[str, dict[str, Any]]) -> str:
    name, check = item
    if "label_disagreements" in check:
        return (
            f"{name}: max |p_onnx - p_pipeline| = {check['max_abs_probability_difference']} "
            f"(tolerance {check['tolerance']}), {check['label_disagreements']} different labels"
        )
    return (
        f"{name}: max |onnx - pipeline| = {check['max_abs_difference']}, "
        f"{check['rows_outside_tolerance']} rows outside the tolerance {check['tolerance']}"
    )


def load_prepared(target: str) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in (paths.TRAIN_SPLIT, paths.TEST_SPLIT)]
    return pd.concat(frames, ignore_index=True).drop(columns=[target])


def main() -> None:
    params = read_params(paths.PARAMS)
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    export(
        model_path=paths.MODEL,
        metadata=metadata,
        prepared=load_prepared(params.prepare.target),
        params=params.export.model_dump(),
        onnx_dir=ONNX_DIR,
        record_path=RECORD,
    )


if __name__ == "__main__":
    run_stage(main)
