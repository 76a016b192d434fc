"""Capped exponential backoff with jitter, and the one retry step (wait, log, show) every retry of it takes."""

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kafka.errors import KafkaError


class Backoff:
    """Delays of ``initial_s * 2**n``, capped at ``max_s``, each shortened by up to ``jitter`` (a fraction).

    The jitter spreads the retries of many processors so a recovering service is not hit all at once;
    it only ever shortens a delay, so the cap holds.
    """

    def __init__(
        self, initial_s: float, max_s: float, *, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got initial_s={initial_s}, max_s={max_s}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; every call counts one more failed attempt."""
        base = min(self.max_s, self.initial_s * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from ``initial_s`` (after a success)."""
        self.attempts = 0


class RetryPrinter(Protocol):
    def retry(self, message: str) -> None: ...

    def notice(self, message: str) -> None: ...


@dataclass(frozen=True)
class RetryContext:
    """What a unit of the loop needs to retry while Kafka is away: where to say so, when to give up, how to
    wait (``hold`` keeps the consumer in its group), a fresh backoff per operation, and the broker's name."""

    printer: RetryPrinter
    stop: threading.Event
    hold: Callable[[float], None]
    backoff: Callable[[], Backoff]
    bootstrap: str


def retry_after(
    backoff: Backoff,
    wait: Callable[[float], object],
    printer: RetryPrinter,
    logger: logging.Logger,
    message: str,
    *args: object,
    shown: str,
) -> float:
    """One step of a retry loop: the next delay, logged and shown, then waited; returns the delay.

    ``message % (*args, delay)`` is logged as a warning (so it ends with the delay's ``%.1f``); ``shown`` is the
    printer's retry line, where ``{delay}`` stands for the delay in seconds.
    """
    delay = backoff.next_delay()
    logger.warning(message, *args, delay)
    printer.retry(shown.replace("{delay}", f"{delay:.1f}"))
    wait(delay)
    return delay


def describe(error: BaseException) -> str:
    """``Type: message`` of an exception, or its type alone when it has no message."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text and text != "None" else type(error).__name__


def retriable(error: BaseException | None) -> bool:
    """A Kafka error the client marks as worth retrying (a broker away, a leader moving)."""
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))
