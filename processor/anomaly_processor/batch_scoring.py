"""Scoring one decoded batch: retried while the scorer is down, bisected when it rejects some events."""

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from anomaly_processor.batches import BatchConsumer
from anomaly_processor.errors import ScoringProtocolError, ScoringRejectedError, ScoringUnavailableError
from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.ml_client import Score, Scorer
from anomaly_processor.output import Printer
from anomaly_processor.records import ConsumedRecord, DecodedBatch
from anomaly_processor.retry import Backoff, retry_after
from eventbus import LogEvent

log = logging.getLogger(__name__)


@dataclass
class ScoredBatch:
    """A batch's outcome: verdicts, and dead letters (undecodable, or rejected by the scorer)."""

    verdicts: list[tuple[LogEvent, Score]]
    dead_letters: list[tuple[ConsumedRecord, str]]


def score_isolating(scorer: Scorer, events: Sequence[LogEvent]) -> tuple[list[Score | None], list[tuple[int, str]]]:
    """Score ``events``; when the scorer rejects a batch, bisect it to find the events it rejects.

    Returns the scores (``None`` for rejected events) and ``(index, reason)`` for each rejected event, so
    valid events are never lost with the bad ones. ``ScoringUnavailableError`` propagates: retry it all.
    """
    scores: list[Score | None] = [None] * len(events)
    rejected: list[tuple[int, str]] = []
    pending = [(0, len(events))] if events else []
    while pending:
        start, stop = pending.pop()
        try:
            scores[start:stop] = scorer.score(events[start:stop])
        except ScoringRejectedError as exc:
            if stop - start == 1:
                rejected.append((start, f"ML service rejected the event ({exc.status}): {exc.detail}"))
            else:
                middle = (start + stop) // 2
                pending.extend([(middle, stop), (start, middle)])
    rejected.sort()
    return scores, rejected


class BatchScorer:
    """Scores a decoded batch, waiting out an unavailable scorer with the partitions paused.

    While it waits, records of partitions lost to a rebalance are dropped from the batch (their new owner
    handles them); on stop it gives up and returns None, leaving the batch uncommitted.
    """

    def __init__(
        self,
        scorer: Scorer,
        batches: BatchConsumer,
        *,
        printer: Printer,
        metrics: ProcessorMetrics,
        stop: threading.Event,
        backoff: Callable[[], Backoff],
        scorer_name: str,
    ) -> None:
        self._scorer = scorer
        self._batches = batches
        self._printer = printer
        self._metrics = metrics
        self._stop = stop
        self._backoff = backoff
        self._name = scorer_name

    def score(self, decoded: DecodedBatch, epoch: int) -> ScoredBatch | None:
        backoff = self._backoff()
        while True:
            try:
                scores, rejected = score_isolating(self._scorer, decoded.events)
            except ScoringUnavailableError as exc:
                if self._stop.is_set():
                    log.warning(
                        "stopping while %s is unavailable: %d events left uncommitted", self._name, len(decoded.events)
                    )
                    return None
                self._metrics.scoring_retries.inc()
                if isinstance(exc, ScoringProtocolError):
                    log.error("%s broke the scoring contract: %s", self._name, exc.reason)
                retry_after(
                    backoff,
                    self._batches.hold,
                    self._printer,
                    log,
                    "scoring %d events failed (attempt %d): %s; retrying in %.1fs",
                    len(decoded.events),
                    backoff.attempts + 1,  # the attempt this delay follows
                    exc.reason,
                    shown=f"ML service unavailable at {self._name}, retrying in {{delay}}s ({exc.reason})",
                )
                decoded = self._batches.drop_lost(decoded, epoch)
                continue
            if backoff.attempts:
                self._printer.notice(f"ML service at {self._name} is back after {backoff.attempts} retries.")
            break
        verdicts = [(event, score) for event, score in zip(decoded.events, scores, strict=True) if score is not None]
        dead_letters = list(decoded.refused)
        for index, reason in rejected:
            record = decoded.event_records[index]
            log.warning(
                "scorer rejected event %s at %s[%d]@%d: %s",
                decoded.events[index].event_id,
                record.topic,
                record.partition,
                record.offset,
                reason,
            )
            dead_letters.append((record, reason))
        return ScoredBatch(verdicts, dead_letters)
