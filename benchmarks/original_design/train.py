"""The original design's training: both features drawn from N(200, 50)."""

import sys

import joblib
import numpy as np
from sklearn.ensemble import IsolationForest

data = np.random.normal(200, 50, (1000, 2))
model = IsolationForest(contamination=0.1)
model.fit(data)
joblib.dump(model, sys.argv[1] if len(sys.argv) > 1 else "model.joblib")
