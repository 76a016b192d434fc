"""Telling "Kafka refused us" from "Kafka is down" while a client connects.

kafka-python retries every failed connection until its bootstrap times out and then reports only the
timeout; the cause (a failed SASL login, a TLS handshake) is logged under ``kafka.net`` on the way.
``watch_refusals`` listens there while a client is built and keeps the first cause that retrying cannot
fix, as one line naming the setting to change. Records still reach the usual handlers as before.
"""

import contextlib
import logging
from collections.abc import Iterator

from kafka.errors import SaslAuthenticationFailedError, UnsupportedSaslMechanismError

from eventbus._settings import KafkaSettings

KAFKA_CONNECTION_LOGGER = "kafka.net"


def refusal_reason(exc: BaseException, settings: KafkaSettings) -> str | None:
    """One line saying why Kafka refused us, or None if ``exc`` may be a broker that is down or starting."""
    text = str(exc)
    where = settings.kafka_bootstrap_servers
    tls = settings.kafka_security_protocol in ("SSL", "SASL_SSL")
    if isinstance(exc, SaslAuthenticationFailedError):
        return (
            f"Kafka at {where} refused the {settings.kafka_sasl_mechanism} login of user "
            f"{settings.kafka_sasl_username!r}: check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"Kafka at {where} does not offer SASL mechanism {settings.kafka_sasl_mechanism}: {text}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return (
            f"Kafka at {where}: its TLS certificate is not trusted ({detail}): "
            "set KAFKA_SSL_CAFILE to the CA that signed it"
        )
    if not tls and _tls_record_read_as_frame(text):
        return (
            f"Kafka at {where} speaks TLS, but KAFKA_SECURITY_PROTOCOL is {settings.kafka_security_protocol}: "
            "use SASL_SSL (or SSL)"
        )
    if tls and ("WRONG_VERSION_NUMBER" in text or "record layer failure" in text):
        return f"Kafka at {where} does not speak TLS, but KAFKA_SECURITY_PROTOCOL is {settings.kafka_security_protocol}"
    return None


def _tls_record_read_as_frame(text: str) -> bool:
    """Whether kafka-python read a TLS record (first byte 0x15 alert or 0x16 handshake) as a frame length:
    the broker answered our plaintext in TLS."""
    if "Invalid frame length" not in text:
        return False
    length = text.rstrip().rsplit(" ", 1)[-1]
    return length.isdigit() and int(length) >> 24 in (0x15, 0x16)


class _Watch(logging.Handler):
    def __init__(self, settings: KafkaSettings, forward_from: int, parent: logging.Logger | None) -> None:
        super().__init__(logging.DEBUG)
        self.settings = settings
        self.forward_from = forward_from
        self.parent = parent
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.reason is None:
            for arg in record.args if isinstance(record.args, tuple) else ():
                if isinstance(arg, BaseException):
                    self.reason = refusal_reason(arg, self.settings)
        if record.levelno >= self.forward_from and self.parent is not None:
            self.parent.handle(record)  # as if we were not listening


@contextlib.contextmanager
def watch_refusals(settings: KafkaSettings) -> Iterator[_Watch]:
    """While a client connects, note why Kafka refused it (``.reason``), if it did."""
    logger = logging.getLogger(KAFKA_CONNECTION_LOGGER)
    saved = logger.level, logger.propagate
    watch = _Watch(settings, logger.getEffectiveLevel(), logger.parent)
    # The connection warnings must reach us even where the application quiets kafka-python.
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
