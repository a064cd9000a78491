"""The ceiling `make bench` compares the service with: the framework doing its typed best,
with no model.

A FastAPI app with the service's record schema (built from the same metadata by
`app.schemas`), served by the same gunicorn configuration and worker class as the service
(`gunicorn -c app/gunicorn.conf.py bench.ceiling_app:app`). FastAPI validates the body into
the record type and answers a fixed prediction: what is left is HTTP, routing and
validation, the part of a request no model work can make cheaper. The service's throughput
as a fraction of this one's is the share of the framework's speed it keeps.

    gunicorn -c app/gunicorn.conf.py bench.ceiling_app:app     # from serving/
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.artifacts import load_metadata
from app.schemas import batch_type, record_type
from app.settings import get_settings

settings = get_settings()
metadata = load_metadata(settings.model_dir)
Record: Any = record_type(metadata)
Batch: Any = batch_type(Record, settings.max_batch_records)
# The shape of the service's answer: a regressor's is a number alone.
ANSWER: dict[str, Any] = {"prediction": 0.0}
if metadata.task == "classification":
    first = metadata.classes[0]
    ANSWER = {
        "prediction": first,
        "probability": 1.0,
        "probabilities": {label: float(label == first) for label in metadata.classes},
    }

app = FastAPI(title="ceiling: no model")


@app.post("/predict")
async def predict(record: Record) -> dict[str, Any]:
    return {**ANSWER, "model_version": metadata.model_version}


@app.post("/predict/batch")
async def predict_batch(batch: Batch) -> dict[str, Any]:
    return {
        "predictions": [ANSWER] * len(batch["records"]),
        "model_version": metadata.model_version,
    }
