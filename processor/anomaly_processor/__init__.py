"""The stream processor: consumes log events, scores them in micro-batches, produces verdicts, commits.

Public surface::

    Pipeline, consumer_overrides, producer_overrides   the loop, and the client options it is tuned for
    Scorer, Score, HttpScorer                          the pluggable scoring transport and its HTTP default
    ContextualScorer                                   per-service context around HttpScorer (the default;
                                                       from ``streaming_detector``)
    ProcessorMetrics, MetricsServer                    Prometheus metrics and the /metrics + /health server
    ProcessorSettings                                  configuration from the environment
    Printer                                            what is shown on stdout
    DeadLetter                                         the schema of a dead-letter record
    ProcessorError and subclasses                      see ``anomaly_processor.errors``
"""

from anomaly_processor.errors import (
    ProcessorError,
    ScoringConfigError,
    ScoringProtocolError,
    ScoringRejectedError,
    ScoringUnavailableError,
)
from anomaly_processor.metrics import MetricsServer, ProcessorMetrics
from anomaly_processor.ml_client import HttpScorer, Score, Scorer
from anomaly_processor.output import Printer
from anomaly_processor.pipeline import Pipeline, consumer_overrides, producer_overrides
from anomaly_processor.records import DeadLetter
from anomaly_processor.settings import ProcessorSettings
from streaming_detector import ContextualScorer

__all__ = [
    "ContextualScorer",
    "MetricsServer",
    "ProcessorMetrics",
    "DeadLetter",
    "HttpScorer",
    "Pipeline",
    "Printer",
    "ProcessorError",
    "ProcessorSettings",
    "Score",
    "Scorer",
    "ScoringConfigError",
    "ScoringProtocolError",
    "ScoringRejectedError",
    "ScoringUnavailableError",
    "consumer_overrides",
    "producer_overrides",
]
