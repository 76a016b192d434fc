"""Kafka settings, read from the environment in this one place."""

from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Where the broker is, what the topics are called, and how to authenticate.

    Every field is read from the environment variable of the same name in upper case.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092", description="Comma-separated host:port list of the Kafka brokers."
    )
    logs_topic: str = Field(default="logs", description="Topic the simulator writes log events to.")
    predictions_topic: str = Field(default="predictions", description="Topic the processor writes verdicts to.")
    dlq_topic: str = Field(default="logs.dlq", description="Topic bad messages are dead-lettered to.")
    incidents_topic: str = Field(
        default="incidents", description="Topic the processor writes incident records to (keyed by service)."
    )
    repartition_topic: str = Field(
        default="logs.by-service",
        description="Internal topic the processor re-keys events by service through, when their key is not their "
        "service (a keyless producer's), so that each service's state lives in one processor.",
    )
    state_topic: str = Field(
        default="logs.state",
        description="Compacted changelog topic keyed by service where the processor saves each service's detector "
        "state, so a restart or a rebalance resumes it instead of warming up again (as many partitions as logs).",
    )
    logs_partitions: int = Field(default=3, ge=1, description="Partitions of the logs topic when it is created.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Security protocol for a staging or production cluster."
    )
    kafka_sasl_mechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password; never logged.")
    kafka_ssl_cafile: str | None = Field(default=None, description="CA bundle to verify the brokers with.")
    kafka_ssl_certfile: str | None = Field(default=None, description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: str | None = Field(default=None, description="Client key for mutual TLS.")
    kafka_client: Literal["auto", "confluent", "kafka-python"] = Field(
        default="auto",
        description="Kafka client of the processor's loop: confluent (librdkafka, several times less CPU per "
        "record), kafka-python (pure Python, the original design's), or auto: confluent when it is installed.",
    )

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    def environment(self) -> dict[str, str]:
        """The variables that point another process at this broker and these topics (security not included)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "LOGS_TOPIC": self.logs_topic,
            "PREDICTIONS_TOPIC": self.predictions_topic,
            "DLQ_TOPIC": self.dlq_topic,
            "INCIDENTS_TOPIC": self.incidents_topic,
            "REPARTITION_TOPIC": self.repartition_topic,
            "STATE_TOPIC": self.state_topic,
            "LOGS_PARTITIONS": str(self.logs_partitions),
        }

    def librdkafka_configs(self) -> dict[str, Any]:
        """The same connection and security settings, as librdkafka (confluent-kafka) names them."""
        configs: dict[str, Any] = {
            "bootstrap.servers": ",".join(self.bootstrap_servers),
            "security.protocol": self.kafka_security_protocol,
            "socket.nagle.disable": True,  # as kafka-python (TCP_NODELAY): a lone small request is not held back
        }
        if self.kafka_sasl_mechanism:
            configs["sasl.mechanism"] = self.kafka_sasl_mechanism
            configs["sasl.username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                configs["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        for name, option in (("cafile", "ca"), ("certfile", "certificate"), ("keyfile", "key")):
            value = getattr(self, f"kafka_ssl_{name}")
            if value:
                configs[f"ssl.{option}.location"] = value
        return configs

    def client_configs(self) -> dict[str, Any]:
        """Connection and security keyword arguments shared by every kafka-python client."""
        configs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            configs["sasl_mechanism"] = self.kafka_sasl_mechanism
            configs["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                configs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, f"kafka_{name}")
            if value:
                configs[name] = value
        return configs
