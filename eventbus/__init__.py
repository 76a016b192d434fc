"""What every service of the pipeline shares: the event schema, topic names, settings, Kafka clients.

Public surface (pinned by ``tests/unit/eventbus/test_contract.py``)::

    LogEvent, Verdict            the one schema for events in ``logs`` and verdicts in ``predictions``
    Incident, Explanation        incident records (topic ``incidents``) and a verdict's reason
    EventOrigin                  where a message sits: the id and time of an event that carries none
    parse_event, event_object, validate_event, epoch_seconds, time_cell_seconds, EVENT_MAX_BYTES
    plain_event                  a decoded event of the plain form, without pydantic (the processor's hot path)
    json_schemas, SCHEMA_FILES        the published JSON Schemas of both (docs/schema/, GET /schema/...)
    ServiceName, LatencyMs, ErrorRate, Timestamp, EventId, Label: the fields' types, for other schemas
    KafkaSettings                broker address, topic names and security, from the environment
    make_producer, make_consumer, make_admin, ensure_topics, wait_for_broker
    make_stream_consumer, make_stream_producer, stream_client   the processor's loop clients (KAFKA_CLIENT)
    ConsumerPort, ProducerPort, StreamRecord, CommitFuture, SendFuture: what those clients offer
    EventBusError                root of this package's exceptions (see ``eventbus.errors``)
"""

from eventbus._clients import (
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
    make_stream_consumer,
    make_stream_producer,
    stream_client,
    wait_for_broker,
)
from eventbus._contract import SCHEMA_FILES, json_schemas
from eventbus._incidents import Explanation, Incident
from eventbus._ports import CommitFuture, ConsumerPort, ProducerPort, SendFuture, StreamRecord
from eventbus._schema import (
    EVENT_MAX_BYTES,
    LABEL_NORMAL,
    TIMESTAMP_TEXT_MAX,
    VERDICT_FIELDS,
    ErrorRate,
    EventId,
    EventOrigin,
    Label,
    LatencyMs,
    LogEvent,
    ServiceName,
    Timestamp,
    Verdict,
    epoch_seconds,
    event_object,
    parse_event,
    plain_event,
    time_cell_seconds,
    validate_event,
)
from eventbus._settings import KafkaSettings
from eventbus.errors import BadEventError, BrokerRefusedError, BrokerUnavailableError, EventBusError

__all__ = [
    "EVENT_MAX_BYTES",
    "SCHEMA_FILES",
    "json_schemas",
    "LABEL_NORMAL",
    "TIMESTAMP_TEXT_MAX",
    "VERDICT_FIELDS",
    "ErrorRate",
    "EventId",
    "EventOrigin",
    "Label",
    "LatencyMs",
    "ServiceName",
    "Timestamp",
    "epoch_seconds",
    "event_object",
    "time_cell_seconds",
    "validate_event",
    "BadEventError",
    "BrokerRefusedError",
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
    "make_stream_consumer",
    "make_stream_producer",
    "stream_client",
    "CommitFuture",
    "ConsumerPort",
    "ProducerPort",
    "SendFuture",
    "StreamRecord",
    "parse_event",
    "plain_event",
    "wait_for_broker",
]
