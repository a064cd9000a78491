"""The baseline `make bench` compares the service with: the common tutorial pattern.

One uvicorn process; an `async def` endpoint that builds a DataFrame and calls `predict`,
then `predict_proba` (a classifier's), on the event loop. Every request runs the Pipeline
twice and blocks the loop while it does. Kept deliberately naive: do not copy it.

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

from app.dates import expand

MODEL_DIR = Path(os.environ.get("SERVICE_MODEL_DIR", Path(__file__).parent.parent / "app" / "data"))
metadata = json.loads((MODEL_DIR / "model_metadata.json").read_text(encoding="utf-8"))
columns = [feature["name"] for feature in metadata["input_schema"]["features"]]
dated = [f["name"] for f in metadata["input_schema"]["features"] if f["type"] == "date"]
model = joblib.load(MODEL_DIR / metadata["model_file"])

app = FastAPI(title="naive baseline")


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=columns)
    if dated:  # the Pipeline reads a date as its numeric parts (app.dates), as in the service
        sent = {c: frame[c].astype(object).where(frame[c].notna(), None) for c in columns}
        frame = pd.DataFrame(expand({c: v.to_numpy() for c, v in sent.items()}, dated))
    return frame


def _answer(frame: pd.DataFrame) -> list[dict[str, Any]]:
    labels = model.predict(frame)
    if metadata.get("task") == "regression":
        return [{"prediction": float(value)} for value in labels]
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
    return _answer(_frame([record]))[0]


@app.post("/predict/batch")
async def predict_batch(body: dict[str, Any]) -> dict[str, Any]:
    return {"predictions": _answer(_frame(body["records"]))}
