"""Stage `export`: compile the fitted Pipeline to ONNX and prove that it predicts the same.

The joblib Pipeline stays the single source of truth. This stage derives a second form of
it, an ONNX graph that onnxruntime evaluates in microseconds where scikit-learn spends
milliseconds per call, and checks the two against each other on every row of the prepared
data and on randomly generated valid records (values anywhere within the schema's bounds,
missing values, categories never seen in training). The outcome lands in `onnx_export.json`
(git-tracked): the service uses the graph only when that record says parity held, was made
from the very model it serves, and names the sha256 of the graph file it finds.

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
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from training import paths
from training.io import load_params, sha256_file, write_json

log = logging.getLogger(__name__)

RECORD_SCHEMA_VERSION = 1
# Read by the service (serving/app/onnx_predictor.py), which imports nothing from here: keep
# these names in step with it.
RECORD = paths.ARTIFACTS_DIR / "onnx_export.json"
# A directory rather than a file, so that DVC has an output to cache even when there is no
# graph to write: an empty directory when the model could not be exported.
ONNX_DIR = paths.ARTIFACTS_DIR / "onnx"
ONNX_FILE = "model.onnx"
PROBABILITIES = "probabilities"

# ONNX string tensors cannot hold a missing value, so a missing category travels as this
# token and the graph's imputer replaces it, as SimpleImputer replaces None/NaN. It cannot
# come from a client: the service only accepts the schema's categories or null.
MISSING_CATEGORY = "\x00missing"

# Categories the random parity records use for "never seen in training".
UNSEEN_CATEGORIES = ("", "unseen category")


@dataclass(frozen=True)
class Features:
    """The model's inputs as the metadata describes them, in schema order."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Features:
        features = metadata["input_schema"]["features"]
        numeric = tuple(f["name"] for f in features if f["type"] == "number")
        categorical = tuple(f["name"] for f in features if f["type"] == "category")
        unknown = [f["name"] for f in features if f["type"] not in {"number", "category"}]
        if unknown:
            raise ValueError(f"features of unknown type in the metadata: {unknown}")
        return cls(numeric=numeric, categorical=categorical)

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


def convert(model: Pipeline, features: Features, name: str) -> Any:
    """The ONNX ModelProto of `model`: one input per feature, double precision throughout.

    Raises whatever skl2onnx raises when a step has no converter.
    """
    from skl2onnx import convert_sklearn
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
        options={id(final_step): {"zipmap": False}},
        custom_conversion_functions={SimpleImputer: _convert_simple_imputer},
        custom_shape_calculators={SimpleImputer: calculate_sklearn_imputer_output_shapes},
    )
    # skl2onnx lists the opsets in an order that follows the interpreter's hash seed (about
    # one run in thirty differs here), and the file's bytes with it; sorted, the same model
    # always exports to the same bytes.
    opsets = sorted(onnx_model.opset_import, key=lambda opset: opset.domain)
    del onnx_model.opset_import[:]
    onnx_model.opset_import.extend(opsets)
    return onnx_model


def inference_session(model_bytes: bytes) -> Any:
    """An onnxruntime session configured as the service configures its own."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


# --- parity ---------------------------------------------------------------------------------


def onnx_feed(frame: pd.DataFrame, features: Features) -> dict[str, npt.NDArray[Any]]:
    """The frame as the graph's inputs: (n, 1) float64 per number, (n, 1) str per category."""
    feed: dict[str, npt.NDArray[Any]] = {}
    for name in features.numeric:
        feed[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)
    for name in features.categorical:
        values = [MISSING_CATEGORY if pd.isna(v) else str(v) for v in frame[name].tolist()]
        feed[name] = np.array(values, dtype=object).reshape(-1, 1)
    return feed


def random_records(
    metadata: dict[str, Any], count: int, missing_rate: float, seed: int
) -> pd.DataFrame:
    """`count` records a client could send: every value valid, some missing, some unseen.

    Numbers are drawn uniformly within the schema's accepted bounds (the first two records
    sit exactly on them); categories from the schema's list plus UNSEEN_CATEGORIES; each
    value is missing with probability `missing_rate`.
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for feature in metadata["input_schema"]["features"]:
        missing = rng.random(count) < missing_rate
        if feature["type"] == "number":
            low, high = float(feature["minimum"]), float(feature["maximum"])
            values = rng.uniform(low, high, count)
            values[missing] = np.nan
            values[: min(count, 2)] = [low, high][: min(count, 2)]
            columns[feature["name"]] = values
        else:
            choices = [*feature["categories"], *UNSEEN_CATEGORIES]
            drawn = rng.choice(np.array(choices, dtype=object), count)
            # NaN, as in the training data: SimpleImputer(missing_values=np.nan) does not
            # see a None in an object column as missing, but as one more unknown category.
            drawn[missing] = np.nan
            columns[feature["name"]] = pd.Series(drawn, dtype=object)
    return pd.DataFrame(columns)


def check_parity(
    model: Pipeline,
    session: Any,
    frame: pd.DataFrame,
    features: Features,
    tolerance: float,
) -> dict[str, Any]:
    """Probabilities and labels of the graph against the Pipeline's, row by row."""
    expected = model.predict_proba(frame[list(features.all)])
    expected_labels = model.predict(frame[list(features.all)])
    (actual,) = session.run([PROBABILITIES], onnx_feed(frame, features))
    if actual.shape != expected.shape:
        raise ExportUnavailable(
            f"the graph returns probabilities of shape {actual.shape}, "
            f"the Pipeline {expected.shape}"
        )
    difference = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    actual_labels = np.asarray(model.classes_)[np.argmax(actual, axis=1)]
    disagreements = int(np.sum(actual_labels != np.asarray(expected_labels)))
    finite = math.isfinite(difference)
    return {
        # NaN compares false to everything, so a NaN output never passes.
        "passed": finite and difference <= tolerance and disagreements == 0,
        "tolerance": tolerance,
        "max_abs_probability_difference": difference if finite else None,
        "label_agreement": round(1 - disagreements / len(frame), 6),
        "label_disagreements": disagreements,
        "rows_checked": len(frame),
    }


def _without_figure(check: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in check.items() if k != "max_abs_probability_difference"}


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
    random = random_records(
        metadata, int(params["random_records"]), float(params["missing_rate"]), int(params["seed"])
    )
    record: dict[str, Any] = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "status": "unavailable",
        "reason": None,
        "model_sha256": model_sha256,
        "onnx_file": None,
        "onnx_sha256": None,
        "opsets": None,
        "inputs": [{"name": f, "type": "double"} for f in features.numeric]
        + [{"name": f, "type": "string"} for f in features.categorical],
        "output": PROBABILITIES,
        "classes": [str(c) for c in metadata["classes"]],
        "missing_category": MISSING_CATEGORY,
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
        onnx_bytes = onnx_model.SerializeToString()
        record["opsets"] = {op.domain or "ai.onnx": op.version for op in onnx_model.opset_import}
        session = inference_session(onnx_bytes)
        names = [i.name for i in session.get_inputs()]
        if names != list(features.all):
            raise ExportUnavailable(f"graph inputs {names} differ from the features")
        parity = {
            name: check_parity(model, session, frame, features, float(params["tolerance"]))
            for name, frame in (("prepared_data", prepared), ("random_records", random))
        }
        record["parity"] = {
            # The measured difference of a passing check is ulp-level noise that changes with
            # the BLAS kernel the CPU selects (1e-16 on one, 7e-16 on another), so the
            # git-tracked record keeps only what every machine reproduces and the figure goes
            # to the log; a failing check keeps it, as the reason.
            **{name: p if not p["passed"] else _without_figure(p) for name, p in parity.items()},
            "passed": all(p["passed"] for p in parity.values()),
            "rows_checked": sum(p["rows_checked"] for p in parity.values()),
            "random_records_seed": int(params["seed"]),
        }
        if not record["parity"]["passed"]:
            failed = {k: v for k, v in parity.items() if not v["passed"]}
            raise ExportUnavailable(
                "parity failed: "
                + "; ".join(
                    f"{k}: max |p_onnx - p_pipeline| = {v['max_abs_probability_difference']} "
                    f"(tolerance {v['tolerance']}), {v['label_disagreements']} different labels"
                    for k, v in failed.items()
                )
            )
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
            max(p["max_abs_probability_difference"] for p in parity.values()),
        )
    write_json(record_path, record)
    return record


def load_prepared(target: str) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in (paths.TRAIN_SPLIT, paths.TEST_SPLIT)]
    return pd.concat(frames, ignore_index=True).drop(columns=[target])


def main() -> None:
    params = load_params("export", paths.PARAMS)
    target = load_params("prepare", paths.PARAMS)["target"]
    metadata = json.loads(paths.METADATA.read_text(encoding="utf-8"))
    export(
        model_path=paths.MODEL,
        metadata=metadata,
        prepared=load_prepared(target),
        params=params,
        onnx_dir=ONNX_DIR,
        record_path=RECORD,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
