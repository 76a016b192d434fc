"""Exceptions of the shared package.

::

    EventBusError
    ├── BadEventError            a message is not a valid log event: data, dead-letter it
    ├── BrokerUnavailableError   Kafka did not answer in time: a condition, retry it
    └── BrokerRefusedError       Kafka answered but refused us (credentials, TLS): configuration, stop
"""


class EventBusError(Exception):
    """Root of the exceptions raised by ``eventbus``."""


class BadEventError(EventBusError):
    """A message could not be read as a log event; ``reason`` says why, naming the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrokerUnavailableError(EventBusError):
    """The Kafka broker could not be reached."""


class BrokerRefusedError(EventBusError):
    """Kafka answered but refused this client (wrong credentials, no TLS, an untrusted certificate).

    Retrying cannot help; the message is one line saying which setting to fix, and never holds a secret.
    """
