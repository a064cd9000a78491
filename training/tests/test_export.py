"""Stage `export`: the trained Pipeline becomes an ONNX graph with proven parity, and a
Pipeline the converter cannot handle (or whose graph disagrees) is recorded as unavailable
without failing the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder, SplineTransformer
from sklearn.semi_supervised import LabelSpreading

from app.artifacts import GraphInput
from app.dates import is_date, model_names
from app.onnx_predictor import MISSING_CATEGORY, OUTPUTS, Feed, new_session
from training import export, paths
from training.data import clean, feature_spec, load_dataset, model_frame, schema_kinds
from training.io import sha256_file
from training.params import read_params
from training.prepare import split
from training.tasks import DEFAULT_ESTIMATOR, TASKS, Task
from training.train import build_pipeline, fit_and_save, make_estimator


def _train_into(
    directory: Path, classifier: str | None = None, model: Any = None
) -> dict[str, Any]:
    """What `dvc repro` does up to `train`, into `directory`, with the repository's params."""
    params = read_params(paths.PARAMS)
    prepare, task = params.prepare, params.prepare.task
    target = prepare.target
    frame = clean(load_dataset(prepare.source, paths.ROOT), target, prepare.drop_columns, task)
    train, test = split(frame, target, prepare.test_size, prepare.seed, task)
    if model is None and classifier is not None:
        estimator = make_estimator(classifier, {}, params.train.seed, task)
        model = build_pipeline(feature_spec(train, target), estimator, task)
    model, metadata = fit_and_save(train, params, directory, model=model)
    prepared = pd.concat([train, test], ignore_index=True).drop(columns=[target])
    return {"metadata": metadata, "prepared": prepared, "model": model}


def _task_default() -> str:
    """The configured task's default estimator, which has a fast path: tests of the stage's
    mechanics train it, whatever estimator a fork configured."""
    return DEFAULT_ESTIMATOR[read_params(paths.PARAMS).prepare.task]


def _answers(model: Any, rows: Any, task: Task) -> np.ndarray:
    """What the service answers with, from the Pipeline or the ONNX predictor: a classifier's
    class probabilities, a regressor's predictions."""
    if task == "classification":
        return np.asarray(model.predict_proba(rows))
    return np.asarray(model.predict(rows), dtype=np.float64)


def _export(directory: Path, trained: dict[str, Any], **params: Any) -> dict[str, Any]:
    """The stage on what `_train_into` wrote, with the repository's export params but `params`."""
    return export.export(
        model_path=directory / "model.joblib",
        metadata=trained["metadata"],
        prepared=trained["prepared"],
        params={**read_params(paths.PARAMS).export.model_dump(), **params},
        onnx_dir=directory / "onnx",
        record_path=directory / "onnx_export.json",
    )


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The task's default estimator, which has a fast path: the stage's mechanics are tested
    here whatever a fork picks (one without a fast path, such as SVR, is recorded
    unavailable, and the service's tests skip the graph)."""
    directory = tmp_path_factory.mktemp("artifacts")
    trained = _train_into(directory, classifier=_task_default())
    return directory, trained, _export(directory, trained)


def test_trained_pipeline_is_exported_with_parity_on_every_checked_row(exported):
    _, trained, record = exported
    params = read_params(paths.PARAMS).export.model_dump()
    assert record["status"] == "exported", record["reason"]
    assert record["reason"] is None
    parity = record["parity"]
    assert parity["passed"] is True
    rows = len(trained["prepared"])
    assert parity["prepared_data"]["rows_checked"] == rows
    assert parity["random_records"]["rows_checked"] == params["random_records"]
    assert parity["rows_checked"] == rows + params["random_records"]
    for part in ("prepared_data", "random_records"):
        # A passing check records no figure: it differs from CPU to CPU (see export.py).
        assert not set(export.FIGURES) & set(parity[part])
        if trained["metadata"]["task"] == "classification":
            assert parity[part]["label_disagreements"] == 0
            assert parity[part]["label_agreement"] == 1.0
        else:
            assert parity[part]["rows_outside_tolerance"] == 0


def test_record_pins_the_graph_and_the_model_it_came_from(exported):
    directory, trained, record = exported
    graph = directory / record["onnx_file"]
    assert record["onnx_file"] == "onnx/model.onnx"
    assert sha256_file(graph) == record["onnx_sha256"]
    assert record["model_sha256"] == trained["metadata"]["model_sha256"]
    assert record["model_sha256"] == sha256_file(directory / "model.joblib")
    assert record["classes"] == trained["metadata"]["classes"]
    # The default Pipeline's graph takes int64 codes for categories, every string once.
    assert record["strings_reason"] is None
    assert record["category_codes"] == list(export.category_codes(trained["metadata"]))
    # The model's inputs: a date feature's numeric parts in its place.
    kinds = schema_kinds(trained["metadata"])
    numbers = model_names((n, k) for n, k in kinds if k != "category")
    categories = [n for n, k in kinds if k == "category"]
    assert [(i["name"], i["type"]) for i in record["inputs"]] == [
        *((n, "double") for n in numbers),
        *((n, "int64") for n in categories),
    ]
    session = new_session(graph.read_bytes())
    assert [i["graph_name"] for i in record["inputs"]] == [i.name for i in session.get_inputs()]
    assert record["opsets"]["ai.onnx"] >= 19  # string Equal, used by the imputer
    assert set(record["library_versions"]) >= {"skl2onnx", "onnx", "onnxruntime", "scikit-learn"}
    # What the stage writes is what it returns (and what git will track).
    assert json.loads((directory / "onnx_export.json").read_text()) == record


# With the locked skl2onnx, hash seed 30 is one that lists the opsets in the other order.
_CONVERT = """
import hashlib, json, sys
from pathlib import Path
import joblib
from training import export
directory = Path(sys.argv[1])
metadata = json.loads((directory / "model_metadata.json").read_text())
graph = export.convert(
    joblib.load(directory / "model.joblib"), export.Features.from_metadata(metadata), name="m"
)
print(hashlib.sha256(graph.SerializeToString()).hexdigest())
"""


def test_conversion_gives_the_same_bytes_whatever_the_hash_seed(exported, stage_env):
    """DVC caches the graph by hash and runs each stage in a new interpreter, with a new hash
    seed: a graph whose bytes follow it would rewrite dvc.lock and onnx_export.json on some
    runs and not others."""
    directory, _, _ = exported
    digests = {
        subprocess.run(
            [sys.executable, "-c", _CONVERT, str(directory)],
            cwd=paths.ROOT,
            env={**stage_env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        for seed in ("0", "30")
    }
    assert len(digests) == 1


def test_graph_imputes_missing_values_like_the_pipeline(exported):
    """The case skl2onnx's stock imputer gets wrong: missing categories and numbers."""
    directory, trained, record = exported
    features = export.Features.from_metadata(trained["metadata"])
    session = new_session((directory / record["onnx_file"]).read_bytes())
    # Every value missing, then every other one (each way round).
    prepared = model_frame(trained["prepared"], schema_kinds(trained["metadata"]))
    frame = prepared[list(features.all)].head(3).astype(dict.fromkeys(features.categorical, object))
    frame.iloc[0, :] = np.nan
    frame.iloc[1, ::2] = np.nan
    frame.iloc[2, 1::2] = np.nan
    inputs = export.graph_inputs(session, features)
    feed = Feed(inputs, features.schema, MISSING_CATEGORY, record["category_codes"])
    task = trained["metadata"]["task"]
    (actual,) = session.run([OUTPUTS[task]], feed(export.columns_of(frame, features)))
    expected = _answers(trained["model"], frame, task).reshape(actual.shape)
    tolerance = record["parity"]["prepared_data"]["tolerance"]
    # As the export's parity check: a regressor's values within the tolerance relative to them.
    rtol = 0 if task == "classification" else tolerance
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=tolerance)


def test_random_records_are_valid_and_cover_missing_values(exported):
    _, trained, _ = exported
    metadata = trained["metadata"]
    records = export.random_records(metadata, 2000, missing_rate=0.2, seed=7)
    assert len(records) == 2000
    for feature in metadata["input_schema"]["features"]:
        column = records[feature["name"]]
        assert column.isna().any(), feature["name"]
        present = column.dropna()
        if feature["type"] == "number":
            assert present.between(feature["minimum"], feature["maximum"]).all()
            assert {feature["minimum"], feature["maximum"]} <= set(present.iloc[:2])
        elif feature["type"] == "date":
            assert present.map(is_date).all()
            assert list(column.iloc[:2]) == ["0001-01-01", "9999-12-31"]
        else:
            assert set(present) <= set(feature["categories"])
    pd.testing.assert_frame_equal(records, export.random_records(metadata, 2000, 0.2, seed=7))


def test_graph_reading_category_strings_otherwise_than_by_equality_keeps_string_inputs():
    """A string function of a category (here a StringNormalizer) has no meaning on codes."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("StringNormalizer", ["c"], ["lower"], case_change_action="LOWER")],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.STRING, [None, 1])],
        [helper.make_tensor_value_info("lower", TensorProto.STRING, [None, 1])],
    )
    with pytest.raises(export.CodesUnavailable, match="StringNormalizer"):
        export.with_category_codes(helper.make_model(graph), {"c"}, ("a", MISSING_CATEGORY))


def test_an_ordinal_encoder_a_fork_picks_also_takes_codes_with_parity(tmp_path):
    """skl2onnx selects its columns with ArrayFeatureExtractor and maps them with a
    LabelEncoder: both carry codes as they carried strings. The encoder is under test, so
    the task's default estimator follows it, not the configured one (a k-NN's neighbours at
    equal distances are broken otherwise by the graph: 0.2 apart on two random records)."""
    base = _train_into(tmp_path / "base", classifier=_task_default())["model"]
    preprocess = clone(base.named_steps["preprocess"])
    categorical = preprocess.transformers[1][1]
    categorical.steps[-1] = ("encoder", OrdinalEncoder())
    model = Pipeline([("preprocess", preprocess), ("classifier", clone(base[-1]))])
    trained = _train_into(tmp_path / "ordinal", model=model)

    record = _export(tmp_path / "ordinal", trained)

    assert record["status"] == "exported", record["reason"]
    assert record["category_codes"] is not None, record["strings_reason"]
    assert record["parity"]["passed"] is True


def test_graph_that_cannot_take_codes_is_exported_on_strings_and_says_why(tmp_path, monkeypatch):
    """The fallback a fork's estimator gets: the same parity check, on the string feed, and
    the service serves that graph with the same answers."""
    from app.onnx_predictor import load_onnx_predictor

    def refuse(*_: Any) -> Any:
        raise export.CodesUnavailable("the graph's X node reads category values")

    monkeypatch.setattr(export, "with_category_codes", refuse)
    trained = _train_into(tmp_path, classifier=_task_default())

    record = _export(tmp_path, trained)

    assert record["status"] == "exported", record["reason"]
    assert record["category_codes"] is None
    assert record["strings_reason"] == "the graph's X node reads category values"
    features = export.Features.from_metadata(trained["metadata"])
    types = {i["name"]: i["type"] for i in record["inputs"]}
    assert {types[name] for name in features.categorical} <= {"string"}
    predictor = load_onnx_predictor(tmp_path, trained["metadata"])
    # As the model reads them: a date feature's parts in its place.
    prepared = model_frame(trained["prepared"], schema_kinds(trained["metadata"]))
    columns = export.columns_of(prepared, features)
    task = trained["metadata"]["task"]
    np.testing.assert_allclose(
        _answers(predictor, columns, task),
        _answers(trained["model"], prepared, task),
        # Probabilities absolutely; a regressor's values also relative to their size.
        rtol=0 if task == "classification" else 1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        # None has a converter in skl2onnx: an estimator of each task, a preprocessing step.
        ("estimator", {"classification": LabelSpreading(), "regression": KernelRidge()}),
        ("preprocessing", dict.fromkeys(TASKS, SplineTransformer())),
    ],
)
def test_unconvertible_pipeline_is_recorded_unavailable_without_failing(tmp_path, name, steps):
    base = _train_into(tmp_path / "base")["model"]
    preprocess = clone(base.named_steps["preprocess"])
    final, step = base.steps[-1][0], steps[read_params(paths.PARAMS).prepare.task]
    if name == "estimator":
        model = Pipeline([("preprocess", preprocess), (final, step)])
    else:
        model = Pipeline([("preprocess", preprocess), ("spline", step), (final, clone(base[-1]))])
    directory = tmp_path / "artifacts"
    trained = _train_into(directory, model=model)
    # A graph left by an earlier, successful export must not survive this one.
    (directory / "onnx").mkdir()
    (directory / "onnx" / "model.onnx").write_bytes(b"stale")

    record = _export(directory, trained)

    assert record["status"] == "unavailable"
    assert type(step).__name__ in record["reason"]
    assert record["onnx_file"] is None
    assert record["onnx_sha256"] is None
    assert record["model_sha256"] == trained["metadata"]["model_sha256"]
    assert (directory / "onnx").is_dir()  # DVC's out exists, empty
    assert list((directory / "onnx").iterdir()) == []
    assert json.loads((directory / "onnx_export.json").read_text()) == record


def test_graph_that_disagrees_with_the_pipeline_is_recorded_unavailable(tmp_path):
    """A tree ensemble's graph answers in float32 (ai.onnx.ml's tree output), within 1e-7 of
    the Pipeline: held to a tolerance tighter than that, the parity check fails it, and the
    service keeps the Pipeline. Gradient boosting, whose answers are sums of leaf values
    scaled by the learning rate: a random forest regressor's averages of a target in whole
    units (the penguins' body_mass_g) are float32 numbers, and its graph passed."""
    trained = _train_into(tmp_path, classifier="hist_gradient_boosting")

    record = _export(tmp_path, trained, tolerance=1e-12)

    assert record["status"] == "unavailable"
    assert record["reason"].startswith("ExportUnavailable: parity failed")
    assert record["parity"]["passed"] is False
    # The task's figure (probabilities' or values' difference) is kept, as the reason.
    [figure] = set(export.FIGURES) & set(record["parity"]["prepared_data"])
    assert record["parity"]["prepared_data"][figure] > 1e-12
    assert list((tmp_path / "onnx").iterdir()) == []


def test_labels_are_compared_as_the_service_derives_them():
    """The service's label is the most probable class on either backend, so the graph's is
    compared with the Pipeline's most probable class, not with its `predict`: where
    SGDClassifier's one-vs-rest probabilities saturate to a tie, its `predict` still picks
    by decision values. A graph whose probabilities rank another class first disagrees."""
    schema = ({"name": "x", "type": "number"},)
    features = export.Features(numeric=("x",), categorical=(), schema=schema)
    feed = Feed([GraphInput(name="x", graph_name="x", type="double")], schema, "", None)
    frame = pd.DataFrame({"x": [0.0, 1.0]})
    pipeline = np.array([[0.5, 0.5], [0.2, 0.8]])

    class Model:
        classes_ = np.array(["a", "b"])

        def predict_proba(self, rows: Any) -> np.ndarray:
            return pipeline

        def predict(self, rows: Any) -> np.ndarray:
            return np.array(["b", "b"])  # by decision values, unlike the tied probabilities

    def parity(graph: np.ndarray) -> dict[str, Any]:
        session = type("Session", (), {"run": lambda self, outputs, feed: [graph]})()
        return export.check_parity(Model(), session, frame, features, feed, 1e-6, "classification")

    same = parity(pipeline.copy())
    assert same["passed"] is True
    assert same["label_disagreements"] == 0
    flipped = parity(np.array([[0.5 - 1e-9, 0.5 + 1e-9], [0.2, 0.8]]))
    assert flipped["passed"] is False
    assert flipped["label_disagreements"] == 1


def test_model_file_that_is_not_the_one_the_metadata_describes_fails_the_stage(tmp_path):
    trained = _train_into(tmp_path)
    trained["metadata"] = {**trained["metadata"], "model_sha256": "0" * 64}
    with pytest.raises(ValueError, match="re-run the train stage"):
        _export(tmp_path, trained)
    assert not (tmp_path / "onnx_export.json").exists()


# --- column names and a task the example does not have --------------------------------------

AWKWARD = ["mean radius", "area (cm²)", "ratio.x", "in/out", "größe"]


def _awkward_frame(rows: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.normal(10, 3, rows) for name in AWKWARD[:4]})
    frame[AWKWARD[4]] = rng.choice(np.array(["klein", "groß"], dtype=object), rows)
    frame.iloc[::7, 0] = np.nan
    frame["target"] = (frame[AWKWARD[0]].fillna(10) + frame[AWKWARD[1]] > 20).map(
        {True: "high", False: "low"}
    )
    return frame


def _served(
    directory: Path, task: Task, estimator: Any = None
) -> tuple[Any, pd.DataFrame, dict[str, Any], Any, dict[str, Any]]:
    """The awkward frame (with a number target for regression) fitted as a fork would set
    the params (the configured Pipeline, or `estimator` in it), exported, and loaded by the
    service: the model, the features, the record, the ONNX predictor and the features'
    columns as the service hands them over."""
    from app.onnx_predictor import load_onnx_predictor

    frame = _awkward_frame()
    if task == "regression":
        frame["target"] = 3 * frame[AWKWARD[1]] - frame[AWKWARD[2]] + 1000.0
    params = read_params(paths.PARAMS)
    if estimator is None and task != params.prepare.task:
        # The configured estimator is of the other task: the task's default instead.
        estimator = make_estimator(DEFAULT_ESTIMATOR[task], {}, params.train.seed, task)
    prepare = params.prepare.model_copy(update={"target": "target", "task": task})
    params = params.model_copy(update={"prepare": prepare})
    if estimator is not None:
        estimator = build_pipeline(feature_spec(frame, "target"), estimator, task)
    model, metadata = fit_and_save(frame, params, directory, model=estimator)
    features = frame.drop(columns="target")

    record = _export(directory, {"metadata": metadata, "prepared": features}, random_records=500)

    assert record["status"] == "exported", record["reason"]
    columns = export.columns_of(features, export.Features.from_metadata(metadata))
    return model, features, record, load_onnx_predictor(directory, metadata), columns


def test_feature_names_that_are_not_identifiers_export_and_serve_through_onnx(tmp_path):
    model, features, record, predictor, columns = _served(tmp_path, "classification")

    assert [i["name"] for i in record["inputs"]] == [*AWKWARD[:4], AWKWARD[4]]
    np.testing.assert_allclose(
        predictor.predict_proba(columns), model.predict_proba(features), rtol=0, atol=1e-6
    )


def test_regression_pipeline_exports_with_value_parity_and_predicts_through_onnx(tmp_path):
    model, features, record, predictor, columns = _served(tmp_path, "regression", Ridge())

    assert record["output"] == "variable"
    assert record["classes"] == []
    assert record["parity"]["passed"] is True
    assert record["parity"]["prepared_data"]["rows_outside_tolerance"] == 0
    predicted = predictor.predict(columns)
    assert predicted.dtype == np.float64
    assert predicted.shape == (len(features),)
    np.testing.assert_allclose(predicted, model.predict(features), rtol=1e-6)
    assert predictor.predict({name: [] for name in columns}).shape == (0,)
    with pytest.raises(TypeError, match="predict"):
        predictor.predict_proba(columns)


@pytest.mark.parametrize(
    "name",
    [
        "random_forest",
        "hist_gradient_boosting",
        "sklearn.tree.DecisionTree",
        "sklearn.ensemble.GradientBoosting",
    ],
)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_tree_ensembles_export_within_the_tolerance_and_serve_through_onnx(tmp_path, task, name):
    """Thresholds and leaves in float64 (ai.onnx.ml 3): every row takes scikit-learn's branch,
    and the answers are within export.tolerance, relative to a regressor's large values."""
    # Fewer trees than the defaults keep the test to a second; the conversion is the same.
    small = {
        "random_forest": {"n_estimators": 20},
        "hist_gradient_boosting": {"max_iter": 20},
        "sklearn.ensemble.GradientBoosting": {"n_estimators": 20},
    }
    hyperparameters = small.get(name, {})
    # An import path here names a family: its classifier or regressor, as the task needs.
    if name.startswith("sklearn."):
        name += "Classifier" if task == "classification" else "Regressor"
    params = read_params(paths.PARAMS)
    estimator = make_estimator(name, hyperparameters, params.train.seed, task)
    model, features, record, predictor, columns = _served(tmp_path, task, estimator)
    tolerance = params.export.tolerance

    assert record["opsets"]["ai.onnx.ml"] == 3
    if task == "classification":
        expected = model.predict_proba(features)
        np.testing.assert_allclose(predictor.predict_proba(columns), expected, atol=tolerance)
    else:
        expected = model.predict(features)
        np.testing.assert_allclose(predictor.predict(columns), expected, rtol=tolerance)
