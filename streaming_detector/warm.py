"""``python -m streaming_detector.warm``: compile every numba kernel now, into numba's cache beside ``kernels.py``.

``make test`` runs it before its parallel workers start: on a fresh clone each of them, and each service they
start, would otherwise compile the same kernels at the same time (about 16 s of CPU each) until one had written
the cache.
"""

import numpy as np
from sklearn.ensemble import IsolationForest

from streaming_detector.forest import FlatForest
from streaming_detector.tracker import load_compiled_tracker


def compile_kernels() -> None:
    load_compiled_tracker()
    points = np.random.default_rng(0).normal(size=(16, 2))
    FlatForest(IsolationForest(n_estimators=2, max_samples=8, random_state=0).fit(points)).score_samples(points)


if __name__ == "__main__":
    compile_kernels()
