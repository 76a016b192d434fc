"""Exceptions of a model client (``streaming_detector.ModelClient``), which the processor's pipeline acts on.

::

    ScoringError
    ├── ScoringUnavailableError   the ML service is down, slow, not ready or answered 5xx/429: retry the same batch
    │   └── ScoringProtocolError  it answered 200 with a body that breaks the contract: retry, and log it loudly
    ├── ScoringRejectedError      it answered 400/413/422 for a batch: bad data or our bug, isolate the events
    └── ScoringConfigError        it answered 401/403/404/405...: wrong URL or API key, stop (nothing is committed)

Bad Kafka messages are not exceptions here: ``eventbus.BadEventError`` turns them into dead letters.
"""


class ScoringError(Exception):
    """Root of the exceptions a model client raises."""


class ScoringUnavailableError(ScoringError):
    """The scorer could not give an answer now; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ScoringProtocolError(ScoringUnavailableError):
    """The scorer answered, but not in the shape of the contract (wrong length, wrong types)."""


class ScoringRejectedError(ScoringError):
    """The scorer refused a batch because of what is in it; ``detail`` is the service's own message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"ML service rejected the batch ({status}): {detail}")
        self.status = status
        self.detail = detail


class ScoringConfigError(ScoringError):
    """The scorer refused us whatever the data (wrong URL, missing or wrong API key)."""
