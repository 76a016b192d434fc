"""A Quix Streams pipeline doing the processor's job: per-service context in fault-tolerant state, a score, a verdict.

Run by ``.venv-peers/bin/python`` (Quix Streams only, nothing of the project). It consumes the JSON events of
``PEER_IN`` (the original design's: no key), re-keys them by service (``group_by``: Quix's repartition topic,
as the processor re-keys keyless events), keeps each service's exponentially weighted mean and variance of
latency and error rate in Quix's state (RocksDB, backed by a changelog topic), scores each event by its
largest z-score and produces a verdict JSON to ``PEER_OUT``, at least once, until SIGTERM.
"""

import math
import os
import tempfile
from typing import Any

from quixstreams import Application, State

ALPHA = 0.05  # weight of the newest event in the running mean and variance
THRESHOLD = 3.0  # |z| above which an event is an anomaly
WARM_UP = 30  # events of a service before its verdicts may be anomalies
FEATURES = ("latency_ms", "error_rate")


def score(event: dict[str, Any], state: State) -> dict[str, Any]:
    """Update the service's EWMA mean/variance of each feature; the verdict holds the largest |z|."""
    context = state.get("context") or {"n": 0, "mean": [0.0, 0.0], "var": [0.0, 0.0]}
    n, means, variances = context["n"], context["mean"], context["var"]
    zs = []
    for i, name in enumerate(FEATURES):
        value = float(event[name])
        if n == 0:
            means[i], variances[i] = value, 0.0
        std = math.sqrt(variances[i])
        zs.append((value - means[i]) / std if std > 0 else 0.0)
        delta = value - means[i]
        means[i] += ALPHA * delta
        variances[i] = (1 - ALPHA) * (variances[i] + ALPHA * delta * delta)
    state.set("context", {"n": n + 1, "mean": means, "var": variances})
    worst = max(abs(z) for z in zs)
    return {
        "service": event["service"],
        "timestamp": event.get("timestamp"),
        "latency_ms": event["latency_ms"],
        "error_rate": event["error_rate"],
        "z_latency": zs[0],
        "z_error_rate": zs[1],
        "score": worst,
        "anomaly": n >= WARM_UP and worst > THRESHOLD,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = Application(
            broker_address=os.environ["PEER_BOOTSTRAP"],
            consumer_group=os.environ["PEER_GROUP"],
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
        )
        source = app.topic(os.environ["PEER_IN"], value_deserializer="json")
        target = app.topic(os.environ["PEER_OUT"], value_serializer="json")
        events = app.dataframe(source).group_by("service")
        events.apply(score, stateful=True).to_topic(target)
        app.run()  # until SIGTERM, which Quix handles: it stops polling, flushes and commits


if __name__ == "__main__":
    main()
