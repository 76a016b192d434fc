"""Kafka clients built the same way for every service, from ``KafkaSettings``."""

import contextlib
import importlib.util
import logging
import time
from typing import Any, Literal, cast

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from eventbus._ports import ConsumerPort, ProducerPort
from eventbus._refusals import watch_refusals
from eventbus._settings import KafkaSettings
from eventbus.errors import BrokerRefusedError, BrokerUnavailableError

log = logging.getLogger(__name__)

# The changelog keeps the last state of each service; a state is up to ~195 KiB (a full history, 4 weeks of hours).
STATE_TOPIC_CONFIGS = {"cleanup.policy": "compact", "max.message.bytes": str(4 * 1024 * 1024)}


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for every in-sync replica (acks=all) and keeps order per key."""
    configs: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "enable_idempotence": True,
        "client_id": "log-pipeline",
    }
    configs.update(settings.client_configs())
    configs.update(overrides)
    return _connect(KafkaProducer, configs, settings)


def make_consumer(settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer that never auto-commits: callers commit after their work is durable."""
    configs: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "client_id": "log-pipeline",
    }
    configs.update(settings.client_configs())
    configs.update(overrides)
    consumer = _connect(KafkaConsumer, configs, settings)
    if topics:
        consumer.subscribe(list(topics))
    return consumer


def stream_client(settings: KafkaSettings) -> Literal["confluent", "kafka-python"]:
    """The client ``KAFKA_CLIENT`` names; ``auto``: confluent (librdkafka) when it is installed."""
    if settings.kafka_client != "auto":
        return settings.kafka_client
    return "confluent" if importlib.util.find_spec("confluent_kafka") is not None else "kafka-python"


def make_stream_consumer(settings: KafkaSettings, *, group_id: str | None, **options: Any) -> ConsumerPort:
    """A consumer for a hot loop, on the client ``stream_client`` picks; ``options`` in kafka-python's names.
    Not subscribed, never auto-committing, from the earliest offset when the group has none."""
    if stream_client(settings) == "kafka-python":
        return cast(ConsumerPort, make_consumer(settings, group_id=group_id, **options))
    from eventbus._confluent import ConfluentConsumer, librdkafka_options

    configs = {
        **settings.librdkafka_configs(),
        "enable.auto.offset.store": False,
        # librdkafka prefetches up to 64 MiB by default; a few batches ahead is enough and keeps memory flat.
        "queued.max.messages.kbytes": 16 * 1024,
    }
    configs.update(
        librdkafka_options(
            {"enable_auto_commit": False, "auto_offset_reset": "earliest", "client_id": "log-pipeline", **options}
        )
    )
    if group_id is not None:
        configs["group.id"] = group_id
    return ConfluentConsumer(configs, max_records=int(options.get("max_poll_records") or 500))


def make_stream_producer(settings: KafkaSettings, **options: Any) -> ProducerPort:
    """A producer for a hot loop (acks=all, idempotent, murmur2 partitioning as kafka-python and Java),
    on the client ``stream_client`` picks; ``options`` in kafka-python's names."""
    if stream_client(settings) == "kafka-python":
        return cast(ProducerPort, make_producer(settings, **options))
    from eventbus._confluent import ConfluentProducer, librdkafka_options

    configs = {
        **settings.librdkafka_configs(),
        "partitioner": "murmur2_random",
        # kafka-python's delivery_timeout_ms: a record not acknowledged by then fails (retriable) and is resent
        "message.timeout.ms": 120_000,
    }
    configs.update(librdkafka_options({"acks": "all", "enable_idempotence": True, "linger_ms": 5,
                                       "client_id": "log-pipeline", **options}))  # fmt: skip
    return ConfluentProducer(configs)


def make_admin(settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    configs: dict[str, Any] = {"client_id": "log-pipeline-admin"}
    configs.update(settings.client_configs())
    configs.update(overrides)
    return _connect(KafkaAdminClient, configs, settings)


def topic_replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for ``brokers`` brokers: three copies where the cluster allows,
    and a write (acks=all) needs two of them, so one broker may fail without losing or refusing anything."""
    replication = max(1, min(3, brokers))
    return replication, 2 if replication >= 3 else 1


def ensure_topics(settings: KafkaSettings, timeout_s: float = 30.0) -> list[str]:
    """Create ``logs`` (several partitions), ``predictions``, ``logs.dlq``, ``incidents``, the repartition topic
    and the state changelog if missing; return those created. The repartition topic and the changelog get as many
    partitions as ``logs`` has, so that a service's partition has the same number in all three and one consumer
    owns them (the processor assigns by range). All are replicated as the cluster allows (``topic_replication``);
    the changelog is compacted (the last state of each service is kept)."""
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        logs_partitions = settings.logs_partitions
        if settings.logs_topic in existing:
            logs_partitions = _partition_count(admin, settings.logs_topic) or logs_partitions
        wanted = {
            settings.logs_topic: settings.logs_partitions,
            settings.predictions_topic: settings.logs_partitions,
            settings.dlq_topic: 1,
            settings.repartition_topic: logs_partitions,
            settings.state_topic: logs_partitions,
            settings.incidents_topic: settings.logs_partitions,
        }
        missing = {name: n for name, n in wanted.items() if name not in existing}
        if missing:
            replication, min_isr = topic_replication(len(admin.describe_cluster().get("brokers") or ()))
            specs: dict[str, dict[str, Any]] = {
                name: {
                    "num_partitions": n,
                    "replication_factor": replication,
                    "configs": {
                        "min.insync.replicas": str(min_isr),
                        **(STATE_TOPIC_CONFIGS if name == settings.state_topic else {}),
                    },
                }
                for name, n in missing.items()
            }
            # Another process may create a topic between our list and our create.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(specs, timeout_ms=int(timeout_s * 1000))
        return sorted(missing)
    finally:
        admin.close()


def _partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    for described in admin.describe_topics([topic]):
        # kafka-python 3 names the topic "name", 2 "topic"
        if described.get("name", described.get("topic")) == topic and not described.get("error_code"):
            return len(described.get("partitions") or ()) or None
    return None


def _connect(client_class: type, configs: dict[str, Any], settings: KafkaSettings) -> Any:
    with watch_refusals(settings) as watch:
        try:
            return client_class(**configs)
        except KafkaTimeoutError:
            if watch.reason:
                raise BrokerRefusedError(watch.reason) from None
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {','.join(configs['bootstrap_servers'])}"
            ) from None


def wait_for_broker(settings: KafkaSettings, timeout_s: float) -> None:
    """Block until the broker answers a metadata request, or raise ``BrokerUnavailableError``;
    ``BrokerRefusedError`` at once if it answers but refuses us (retrying cannot fix that)."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        with watch_refusals(settings) as watch:
            try:
                admin = KafkaAdminClient(
                    **settings.client_configs(), bootstrap_timeout_ms=2000, request_timeout_ms=3000
                )
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except (KafkaError, OSError) as exc:
                last_error = exc
        if watch.reason:
            raise BrokerRefusedError(watch.reason)
        time.sleep(0.5)
    raise BrokerUnavailableError(
        f"Kafka at {settings.kafka_bootstrap_servers} did not answer within {timeout_s:.0f}s ({last_error})"
    )
