"""The hand-written JSON encoder of prediction responses against the json module.

The encoder may spell a number differently from `json.dumps` (`1e-5` for `1e-05`), never
its value: every float parses back to exactly the model's float64.
"""

from __future__ import annotations

import json

import numpy as np

from app.service import ClassEncoder, ValueEncoder

CLASSES = ("Adelie", 'quo"ted', "ünï\\code")


def _strict_loads(encoded: bytes) -> object:
    """Parses as JSON proper: NaN, Infinity and non-UTF-8 bytes fail."""

    def refuse(token: str) -> float:
        raise ValueError(f"not JSON: {token}")

    return json.loads(encoded.decode("utf-8"), parse_constant=refuse)


def expected(probabilities: np.ndarray) -> list[dict[str, object]]:
    return [
        {
            "prediction": CLASSES[int(row.argmax())],
            "probability": float(row.max()),
            "probabilities": dict(zip(CLASSES, row.tolist(), strict=True)),
        }
        for row in probabilities
    ]


def test_batch_encoding_parses_to_exactly_the_models_values() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([0.1, 1.0, 1.0], size=200)
    probabilities[0] = [1e-300, 0.5, 0.5 - 1e-300]  # exponent notation and a tie
    probabilities[1] = [1.0, 0.0, 0.0]
    best = probabilities.argmax(axis=1).tolist()
    encoded = ClassEncoder(CLASSES, "v1").batch(probabilities, best)
    reference = {"predictions": expected(probabilities), "model_version": "v1"}
    assert _strict_loads(encoded) == reference


def test_single_encoding_parses_to_exactly_the_models_values() -> None:
    probabilities = np.array([[0.2, 0.7, 0.1]])
    encoded = ClassEncoder(CLASSES, 'v"2').single(probabilities, [1])
    reference = {**expected(probabilities)[0], "model_version": 'v"2'}
    assert _strict_loads(encoded) == reference


def test_regression_encoding_parses_to_exactly_the_models_values() -> None:
    values = np.random.default_rng(1).normal(scale=1e3, size=300)
    values[:4] = [1e-300, -0.0, 3.0, 1.7976931348623157e308]  # exponents, signed zero, extremes
    encoder = ValueEncoder("v1")
    batch = _strict_loads(encoder.batch(values, []))
    assert batch == {
        "predictions": [{"prediction": v} for v in values.tolist()],
        "model_version": "v1",
    }
    single = _strict_loads(encoder.single(values[4:5], []))
    assert single == {"prediction": values[4], "model_version": "v1"}


def test_extra_fields_are_echoed_per_record_only_when_sent() -> None:
    sent = [{"reference": 'a"b', "explain": True}, {}]
    encoded = ValueEncoder("v1").batch(np.array([1.5, 2.5]), [], sent)
    assert _strict_loads(encoded) == {
        "predictions": [
            {"prediction": 1.5, "reference": 'a"b', "explain": True},
            {"prediction": 2.5},
        ],
        "model_version": "v1",
    }
    probabilities = np.array([[0.2, 0.7, 0.1]])
    single = ClassEncoder(CLASSES, "v1").single(probabilities, [1], [{"reference": "r-1"}])
    assert _strict_loads(single) == {
        **expected(probabilities)[0],
        "reference": "r-1",
        "model_version": "v1",
    }
