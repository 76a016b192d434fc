"""What every service of the pipeline shares: the event schema, topic names, settings, Kafka clients.

Public surface (pinned by ``tests/unit/test_eventbus_surface.py``)::

    LogEvent, Verdict            the one schema for events in ``logs`` and verdicts in ``predictions``
    Incident, Explanation        incident records (topic ``incidents``) and a verdict's reason
    KafkaSettings                broker address, topic names and security, from the environment
    make_producer, make_consumer, make_admin, ensure_topics
    EventBusError                root of this package's exceptions (see ``eventbus.errors``)
"""

from eventbus._clients import ensure_topics, make_admin, make_consumer, make_producer
from eventbus._incidents import Explanation, Incident
from eventbus._schema import LABEL_NORMAL, LogEvent, Verdict, parse_event
from eventbus._settings import KafkaSettings
from eventbus.errors import BadEventError, BrokerUnavailableError, EventBusError

__all__ = [
    "LABEL_NORMAL",
    "BadEventError",
    "BrokerUnavailableError",
    "EventBusError",
    "Explanation",
    "Incident",
    "KafkaSettings",
    "LogEvent",
    "Verdict",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "parse_event",
]
