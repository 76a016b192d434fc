"""Which connection failures mean "Kafka refused us" (stop, fix a setting) and which mean "retry"."""

from kafka.errors import KafkaConnectionError, SaslAuthenticationFailedError
from pydantic import SecretStr

from eventbus import KafkaSettings
from eventbus._refusals import refusal_reason

SECURE = KafkaSettings(
    kafka_bootstrap_servers="broker:9093",
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-512",
    kafka_sasl_username="pipeline",
    kafka_sasl_password=SecretStr("s3cret-value"),
)


def test_a_failed_login_names_the_user_and_the_settings_but_not_the_password() -> None:
    reason = refusal_reason(SaslAuthenticationFailedError("invalid credentials"), SECURE)
    assert reason is not None
    assert "'pipeline'" in reason and "KAFKA_SASL_PASSWORD" in reason and "s3cret" not in reason


def test_an_untrusted_certificate_points_at_the_ca_file() -> None:
    exc = KafkaConnectionError(
        "Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "self-signed certificate in certificate chain (_ssl.c:1006)"
    )
    assert refusal_reason(exc, SECURE) == (
        "Kafka at broker:9093: its TLS certificate is not trusted (self-signed certificate in certificate chain): "
        "set KAFKA_SSL_CAFILE to the CA that signed it"
    )


def test_a_tls_alert_read_as_a_frame_means_the_broker_wants_tls() -> None:
    plain = SECURE.model_copy(update={"kafka_security_protocol": "SASL_PLAINTEXT"})
    reason = refusal_reason(KafkaConnectionError("Invalid frame length: 352518912"), plain)
    assert reason is not None and "speaks TLS" in reason and "SASL_PLAINTEXT" in reason


def test_a_broker_that_is_down_or_restarting_is_not_a_refusal() -> None:
    for text in ("111 ECONNREFUSED", "socket disconnected", "Invalid frame length: 1000000000"):
        assert refusal_reason(KafkaConnectionError(text), SECURE) is None
        assert refusal_reason(KafkaConnectionError(text), KafkaSettings()) is None
