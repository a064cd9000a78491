"""The ONNX fast path predicts what the joblib Pipeline predicts, and steps aside otherwise.

Parity: through `load_onnx_predictor`, on random valid
records (missing values), probabilities within 1e-6 of the Pipeline's
and identical labels (a regressor's values: within 1e-6, relative to their size). Fallback:
every reason the fast path must not answer raises FastPathUnavailable, which makes the
service answer with the Pipeline.

These tests check the artifacts the service would ship, in serving/app/data (conftest's
`model_dir`): after `make train` locally, and after the retraining in CI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from app import columnar
from app.artifacts import ModelIntegrityError, parse_metadata
from app.dates import expand
from app.onnx_predictor import EXPORT_RECORD, FastPathUnavailable, load_onnx_predictor
from app.predictor import SklearnPredictor, load_predictor

TOLERANCE = 1e-6
RANDOM_RECORDS = 5000


@pytest.fixture(scope="module")
def predictor(model_dir: Path, metadata: dict[str, Any], fast_path: None) -> Any:
    # Without a fast path the service serves the Pipeline, which
    # test_fast_path_is_used_exactly_when_exported and the service's own tests cover.
    return load_onnx_predictor(model_dir, metadata)


@pytest.fixture(scope="module")
def pipeline(model_dir: Path) -> Any:
    return joblib.load(model_dir / "model.joblib")


def _names(metadata: dict[str, Any]) -> list[str]:
    return [f["name"] for f in metadata["input_schema"]["features"]]


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """What the service hands a predictor: lists of JSON-like values, None for missing."""
    return {
        name: [None if pd.isna(v) else v for v in frame[name].astype(object).tolist()]
        for name in frame.columns
    }


def _random_frame(metadata: dict[str, Any], count: int, seed: int) -> pd.DataFrame:
    """Valid requests drawn independently of the export's own generator: numbers within the
    accepted bounds (whole numbers too, as JSON clients send them), any day's date, the
    schema's categories (the service refuses any other before a predictor sees it), and
    missing values everywhere; as the predictors take them, a date as its parts
    (`app.dates.expand`)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for feature in metadata["input_schema"]["features"]:
        missing = rng.random(count) < 0.25
        if feature["type"] == "date":
            first, last = np.datetime64("0001-01-01"), np.datetime64("9999-12-31")
            days = first + rng.integers(0, int((last - first) / np.timedelta64(1, "D")) + 1, count)
            texts = np.datetime_as_string(days.astype("datetime64[D]")).astype(object)
            texts[missing] = None
            columns[feature["name"]] = texts
        elif feature["type"] == "number":
            values = rng.uniform(feature["minimum"], feature["maximum"], count)
            whole = rng.random(count) < 0.3
            values[whole] = np.round(values[whole])
            values = np.clip(values, feature["minimum"], feature["maximum"])
            values[missing] = np.nan
            columns[feature["name"]] = values
        else:
            drawn = rng.choice(np.array(feature["categories"], dtype=object), count)
            drawn[missing] = np.nan
            columns[feature["name"]] = pd.Series(drawn, dtype=object)
    dated = [f["name"] for f in metadata["input_schema"]["features"] if f["type"] == "date"]
    return pd.DataFrame(expand(columns, dated))


def _answers(model: Any, rows: Any, task: str) -> np.ndarray:
    """What a backend (or the Pipeline) answers for `task`: a classifier's class
    probabilities, a regressor's predictions."""
    answers: np.ndarray = (
        model.predict_proba(rows) if task == "classification" else model.predict(rows)
    )
    return answers


def _shape(rows: int, metadata: dict[str, Any]) -> tuple[int, ...]:
    classes = metadata["classes"]
    return (rows, len(classes)) if classes else (rows,)


def _assert_close(actual: np.ndarray, expected: np.ndarray, task: str) -> None:
    """Probabilities within TOLERANCE; a regressor's values also relative to their size, as
    the export's parity check allows."""
    rtol = TOLERANCE if task == "regression" else 0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=TOLERANCE)


def _assert_parity(
    predictor: Any, pipeline: Any, frame: pd.DataFrame, metadata: dict[str, Any], task: str
) -> None:
    """`frame` marks missing values with NaN, as the training data does."""
    actual = _answers(predictor, _columns(frame), task)
    expected = _answers(pipeline, frame, task)
    assert actual.dtype == np.float64
    assert actual.shape == expected.shape == _shape(len(frame), metadata)
    _assert_close(actual, expected, task)
    if task == "classification":
        # The service's label is the most probable class on either backend (app.columnar):
        # SGDClassifier's predict departs from it where its probabilities saturate and tie.
        np.testing.assert_array_equal(np.argmax(actual, axis=1), np.argmax(expected, axis=1))


# --- parity -----------------------------------------------------------------------------------


@pytest.mark.example_data
def test_onnx_matches_pipeline_on_every_row_of_the_penguins_data_set(predictor, pipeline, metadata):
    from palmerpenguins import load_penguins

    frame = load_penguins()[_names(metadata)]
    assert len(frame) == 344
    assert frame.isna().any().any()  # the data set's own missing values are part of the check
    assert predictor.backend == "onnx"
    _assert_parity(predictor, pipeline, frame, metadata, "classification")


def test_onnx_matches_pipeline_on_random_valid_records_with_missing_values(
    predictor, pipeline, metadata, task
):
    frame = _random_frame(metadata, RANDOM_RECORDS, seed=20261128)
    _assert_parity(predictor, pipeline, frame, metadata, task)


def _positions(metadata: dict[str, Any], columns: dict[str, list[Any]]) -> dict[str, Any]:
    """`columns` as app.contract gives a columnar batch: numbers (a date's parts too) as
    float64, categories as their positions in the schema's list, -1 for missing."""
    features = metadata["input_schema"]["features"]
    categories = {f["name"]: f["categories"] for f in features if f["type"] == "category"}
    found: dict[str, Any] = {}
    for name, values in columns.items():
        if name in categories:
            index = {c: i for i, c in enumerate(categories[name])}
            found[name] = np.array([index.get(v, -1) for v in values], np.intp)
        else:
            found[name] = np.array(values, dtype=np.float64)
    return found


def test_both_backends_answer_category_positions_as_they_answer_the_strings(
    predictor, pipeline, metadata, task
):
    """The columnar paths (Arrow bodies, files) hand over positions, JSON the strings."""
    columns = _columns(_random_frame(metadata, 500, seed=5))
    sklearn_path = SklearnPredictor(pipeline, parse_metadata(metadata))
    expected = _answers(predictor, columns, task)
    for backend in (predictor, sklearn_path):
        _assert_close(_answers(backend, _positions(metadata, columns), task), expected, task)


def test_a_category_the_schema_does_not_list_is_refused_not_imputed(predictor, metadata):
    """No code stands for it: the service refuses such a record before any predictor does,
    and were one to get through, the fast path must fail rather than answer for another."""
    record: dict[str, list[Any]] = {name: [None] for name in _names(metadata)}
    categorical = [f for f in metadata["input_schema"]["features"] if f["type"] == "category"]
    if not categorical:
        pytest.skip("the model has no category feature")
    record[categorical[0]["name"]] = ["".join(categorical[0]["categories"]) + "?"]
    with pytest.raises(ValueError, match=re.escape(categorical[0]["name"])):
        # As the service hands a record over: a date feature as its parts.
        columnar.predict(predictor, parse_metadata(metadata), record, 1)


def test_onnx_matches_pipeline_one_record_at_a_time(predictor, pipeline, metadata, task):
    """Single-row requests take the same path as batches; check them as the service sends
    them, including a record with every field missing."""
    frame = _random_frame(metadata, 60, seed=7)
    frame.loc[0, :] = np.nan
    for i in range(len(frame)):
        _assert_parity(predictor, pipeline, frame.iloc[[i]].reset_index(drop=True), metadata, task)


def test_onnx_and_the_services_sklearn_path_agree_on_the_services_input(
    predictor, pipeline, metadata, task
):
    """Both backends receive the same columns (None for missing): they must answer alike."""
    sklearn_path = SklearnPredictor(pipeline, parse_metadata(metadata))
    columns = _columns(_random_frame(metadata, 2000, seed=11))
    _assert_close(_answers(predictor, columns, task), _answers(sklearn_path, columns, task), task)


def test_empty_input_gives_an_empty_result(predictor, metadata, task):
    result = _answers(predictor, {name: [] for name in _names(metadata)}, task)
    assert result.shape == _shape(0, metadata)


def test_concurrent_calls_from_threads_each_get_their_own_answer(predictor, metadata, task):
    frame = _random_frame(metadata, 400, seed=3)
    rows = [_columns(frame.iloc[[i]]) for i in range(len(frame))]
    expected = [_answers(predictor, row, task) for row in rows]
    results: dict[int, list[np.ndarray]] = {}

    def work(worker: int) -> None:
        # Each thread walks the rows from a different offset, so calls overlap in time.
        order = [(worker * 50 + i) % len(rows) for i in range(len(rows))]
        results[worker] = [_answers(predictor, rows[i], task) for i in order]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8
    for worker, answers in results.items():
        order = [(worker * 50 + i) % len(rows) for i in range(len(rows))]
        for i, answer in zip(order, answers, strict=True):
            np.testing.assert_array_equal(answer, expected[i])


def _predict_in_child(predictor: Any, columns: dict[str, list[Any]], task: str, conn: Any) -> None:
    conn.send(_answers(predictor, columns, task))
    conn.close()


@pytest.mark.skipif(sys.platform != "linux", reason="gunicorn forks its workers on Linux")
def test_predictor_loaded_before_fork_predicts_in_the_forked_worker(predictor, metadata, task):
    """gunicorn loads the model in its master (preload_app) and forks the workers."""
    columns = _columns(_random_frame(metadata, 50, seed=5))
    expected = _answers(predictor, columns, task)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_predict_in_child, args=(predictor, columns, task, sender))
    child.start()
    try:
        assert receiver.poll(60), "the forked process did not answer"
        np.testing.assert_array_equal(receiver.recv(), expected)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


# --- fallback ---------------------------------------------------------------------------------


@pytest.fixture
def artifacts_copy(model_dir: Path, tmp_path: Path, predictor: Any) -> Path:
    """A copy of artifacts whose fast path applies, for a test to damage."""
    target = tmp_path / "data"
    shutil.copytree(model_dir, target)
    return target


GRAPH = "onnx/model.onnx"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (EXPORT_RECORD, None, "no ONNX export"),
        (EXPORT_RECORD, b"{not json", "unreadable"),
        (GRAPH, None, "dvc pull"),
        (GRAPH, b"not the graph the export recorded", r"has sha256 \w+, the export recorded"),
    ],
    ids=["record-missing", "record-unreadable", "graph-not-pulled", "graph-altered"],
)
def test_a_missing_or_altered_export_file_means_no_fast_path(
    artifacts_copy, metadata, name, content, message
):
    if content is None:
        (artifacts_copy / name).unlink()
    else:
        (artifacts_copy / name).write_bytes(content)
    with pytest.raises(FastPathUnavailable, match=message):
        load_onnx_predictor(artifacts_copy, metadata)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"status": "unavailable", "reason": "MissingShapeCalculator: LabelSpreading"},
            "'unavailable': MissingShapeCalculator",
        ),
        ({"parity": {"passed": False}}, "parity"),
        ({"onnx_file": "../../etc/passwd"}, "outside"),
        ({"library_versions": {"onnxruntime": "0.0.1"}}, r"proven with onnxruntime 0\.0\.1"),
    ],
    ids=["recorded-unavailable", "parity-not-proven", "graph-outside", "other-onnxruntime"],
)
def test_an_export_record_that_does_not_vouch_for_the_graph_is_not_served(
    artifacts_copy, metadata, changes, message
):
    _edit_record(artifacts_copy, **changes)
    with pytest.raises(FastPathUnavailable, match=message):
        load_onnx_predictor(artifacts_copy, metadata)


def _edit_record(directory: Path, **changes: Any) -> None:
    """Sets each field of the export record; a dict updates the field's own fields."""
    path = directory / EXPORT_RECORD
    record = json.loads(path.read_text())
    for key, value in changes.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(record))


def test_graph_exported_from_another_model_is_not_served(artifacts_copy, metadata):
    """A retrained model whose export was not re-run: the graph is the old model's."""
    retrained = {**metadata, "model_sha256": "f" * 64}
    with pytest.raises(
        FastPathUnavailable, match=r"exported from model \w+, the service serves f{64}"
    ):
        load_onnx_predictor(artifacts_copy, retrained)


def test_graph_onnxruntime_cannot_load_is_not_served(artifacts_copy, metadata):
    garbage = b"not an onnx graph"
    (artifacts_copy / GRAPH).write_bytes(garbage)
    _edit_record(artifacts_copy, onnx_sha256=hashlib.sha256(garbage).hexdigest())
    with pytest.raises(FastPathUnavailable, match="onnxruntime cannot load the graph"):
        load_onnx_predictor(artifacts_copy, metadata)


def test_missing_onnxruntime_means_no_fast_path(artifacts_copy, metadata, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(FastPathUnavailable, match="onnxruntime is not importable"):
        load_onnx_predictor(artifacts_copy, metadata)


def test_schema_that_no_longer_matches_the_graph_is_not_served(artifacts_copy, metadata):
    features = [dict(f) for f in metadata["input_schema"]["features"]]
    features[0]["name"] = "beak_length_mm"
    changed = {**metadata, "input_schema": {"features": features}}
    with pytest.raises(FastPathUnavailable, match="inputs differ"):
        load_onnx_predictor(artifacts_copy, changed)


# --- the service's choice ---------------------------------------------------------------------


def test_fast_path_is_used_exactly_when_exported(model_dir, metadata, export_record):
    expected = "onnx" if export_record["status"] == "exported" else "sklearn"
    assert load_predictor(model_dir, metadata).backend == expected


def test_default_estimator_has_a_fast_path(metadata, export_record):
    """The template's own model must not silently lose its fast path."""
    if metadata["estimator"] != "logistic_regression":
        pytest.skip("another estimator was chosen in params.yaml")
    assert export_record["status"] == "exported", export_record["reason"]


def test_service_falls_back_to_the_pipeline_and_logs_why(artifacts_copy, metadata, task, caplog):
    graph = artifacts_copy / "onnx" / "model.onnx"
    graph.write_bytes(b"tampered" + graph.read_bytes())
    with caplog.at_level(logging.WARNING):
        chosen = load_predictor(artifacts_copy, metadata)
    assert chosen.backend == "sklearn"
    assert "has sha256" in caplog.text
    columns = _columns(_random_frame(metadata, 5, seed=5))
    assert _answers(chosen, columns, task).shape == _shape(5, metadata)


def test_service_required_to_use_onnx_refuses_to_start_without_it(artifacts_copy, metadata):
    (artifacts_copy / EXPORT_RECORD).unlink()
    with pytest.raises(ModelIntegrityError, match="no ONNX export"):
        load_predictor(artifacts_copy, metadata, backend="onnx")
