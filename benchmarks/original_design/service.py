"""The original design's ML service: one row per request, no validation."""

import os

import joblib
import numpy as np
from fastapi import FastAPI, Request

app = FastAPI()
model = joblib.load(os.environ.get("ORIGINAL_MODEL_PATH", "model.joblib"))


@app.post("/predict")
async def predict(request: Request) -> dict[str, bool]:
    data = await request.json()
    features = np.array([[data["latency_ms"], data["error_rate"]]])
    prediction = model.predict(features)
    return {"anomaly": bool(prediction[0] == -1)}
