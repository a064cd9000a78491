"""The baseline `make bench` compares the service with: the common tutorial pattern.

One uvicorn process; an `async def` endpoint that builds a DataFrame and calls `predict`,
then `predict_proba`, on the event loop. Every request runs the Pipeline twice and blocks
the loop while it does. Kept deliberately naive: do not copy it.

    uvicorn bench.naive_app:app --port 8001     # from serving/
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI

MODEL_DIR = Path(os.environ.get("SERVICE_MODEL_DIR", Path(__file__).parent.parent / "app" / "data"))
metadata = json.loads((MODEL_DIR / "model_metadata.json").read_text(encoding="utf-8"))
columns = [feature["name"] for feature in metadata["input_schema"]["features"]]
model = joblib.load(MODEL_DIR / metadata["model_file"])

app = FastAPI(title="naive baseline")


def _answer(frame: pd.DataFrame) -> list[dict[str, Any]]:
    labels = model.predict(frame)
    probabilities = model.predict_proba(frame)
    return [
        {
            "prediction": str(label),
            "probability": float(max(row)),
            "probabilities": {str(c): float(p) for c, p in zip(model.classes_, row, strict=True)},
        }
        for label, row in zip(labels, probabilities, strict=True)
    ]


@app.post("/predict")
async def predict(record: dict[str, Any]) -> dict[str, Any]:
    return _answer(pd.DataFrame([record], columns=columns))[0]


@app.post("/predict/batch")
async def predict_batch(body: dict[str, Any]) -> dict[str, Any]:
    return {"predictions": _answer(pd.DataFrame(body["records"], columns=columns))}
