"""The hand-written JSON encoder of prediction responses against the json module."""

from __future__ import annotations

import json

import numpy as np

from app.service import ResultEncoder

CLASSES = ("Adelie", 'quo"ted', "ünï\\code")


def expected(probabilities: np.ndarray) -> list[dict[str, object]]:
    return [
        {
            "prediction": CLASSES[int(row.argmax())],
            "probability": float(row.max()),
            "probabilities": dict(zip(CLASSES, row.tolist(), strict=True)),
        }
        for row in probabilities
    ]


def test_batch_encoding_is_exactly_what_json_would_write() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([0.1, 1.0, 1.0], size=200)
    probabilities[0] = [1e-300, 0.5, 0.5 - 1e-300]  # exponent notation and a tie
    probabilities[1] = [1.0, 0.0, 0.0]
    best = probabilities.argmax(axis=1).tolist()
    encoded = ResultEncoder(CLASSES, "v1").batch(probabilities, best)
    reference = {"predictions": expected(probabilities), "model_version": "v1"}
    assert json.loads(encoded) == reference
    assert encoded == json.dumps(reference, separators=(",", ":")).encode()


def test_single_encoding_is_exactly_what_json_would_write() -> None:
    probabilities = np.array([[0.2, 0.7, 0.1]])
    encoded = ResultEncoder(CLASSES, 'v"2').single(probabilities, [1])
    reference = {**expected(probabilities)[0], "model_version": 'v"2'}
    assert encoded == json.dumps(reference, separators=(",", ":")).encode()
