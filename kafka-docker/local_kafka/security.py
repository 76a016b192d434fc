"""TLS and SASL/SCRAM for the local brokers: a throwaway CA, a broker keystore and two SCRAM users.

Everything is generated once under one folder (mode 0700) and reused by later starts, so a restarted
broker keeps its users. ``admin`` is the brokers' own (inter-broker) user; ``pipeline`` is the services'.
Passwords are random, kept in ``credentials.json`` (mode 0600) and written nowhere else but the brokers'
properties files (also 0600) and, for the user who asks, ``client.env`` (0600). The controller listener
stays PLAINTEXT on the brokers' own host: clients never use it.
"""

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "admin"
CLIENT_USER = "pipeline"
CERT_DAYS = 30


class ScramTls:
    """SASL_SSL with SCRAM-SHA-512: what the brokers, Kafka's storage tool and the clients need."""

    protocol = "SASL_SSL"
    mechanism = MECHANISM

    def __init__(self, folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        self.folder = folder
        self.hosts = hosts

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def credentials_file(self) -> Path:
        return self.folder / "credentials.json"

    def ensure(self) -> None:
        """Generate the CA, the broker's keystore and the passwords unless they exist."""
        if self.credentials_file.exists() and self.keystore.exists() and self.ca_file.exists():
            return
        from local_kafka.broker import BrokerError

        openssl = shutil.which("openssl")
        if openssl is None:
            raise BrokerError("openssl is not installed: it is needed to make the brokers' TLS certificates")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        passwords = {"keystore": secrets.token_urlsafe(18), BROKER_USER: secrets.token_urlsafe(18)}
        passwords[CLIENT_USER] = secrets.token_urlsafe(18)
        san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in self.hosts)
        (self.folder / "broker.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
        steps = [
            # A CA that lives for this cluster only; its key is deleted once the broker's certificate is signed.
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"]
            + ["-days", str(CERT_DAYS), "-subj", "/CN=local-kafka throwaway CA"]
            + ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr"]
            + ["-subj", f"/CN={self.hosts[-1]}"],
            ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
            + ["-out", "broker.pem", "-days", str(CERT_DAYS), "-extfile", "broker.ext"],
            ["pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem"]
            + ["-name", "broker", "-out", "broker.p12", "-passout", "env:KEYSTORE_PASSWORD"],
        ]
        env = {**os.environ, "KEYSTORE_PASSWORD": passwords["keystore"]}
        for step in steps:
            result = subprocess.run([openssl, *step], cwd=self.folder, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise BrokerError(f"openssl {step[0]} failed: {result.stderr.strip()[-300:]}")
        for name in ("ca.key", "broker.key", "broker.csr", "ca.srl"):
            (self.folder / name).unlink(missing_ok=True)
        self.credentials_file.write_text(json.dumps(passwords))
        self.credentials_file.chmod(0o600)

    def _passwords(self) -> dict[str, str]:
        passwords: dict[str, str] = json.loads(self.credentials_file.read_text())
        return passwords

    def broker_properties(self) -> list[str]:
        """Lines for server.properties: the SASL_SSL listener's keystore, trust and SCRAM login."""
        self.ensure()
        passwords = self._passwords()
        listener = f"listener.name.{self.protocol.lower()}.{self.mechanism.lower()}"
        return [
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={self.keystore}",
            f"ssl.keystore.password={passwords['keystore']}",
            f"ssl.key.password={passwords['keystore']}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
            f"sasl.enabled.mechanisms={self.mechanism}",
            f"sasl.mechanism.inter.broker.protocol={self.mechanism}",
            f"{listener}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{passwords[BROKER_USER]}";',
        ]

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create both SCRAM users in the cluster's first metadata."""
        self.ensure()
        passwords = self._passwords()
        args: list[str] = []
        for user in (BROKER_USER, CLIENT_USER):
            args += ["--add-scram", f"{self.mechanism}=[name={user},password={passwords[user]}]"]
        return args

    def client_env(self) -> dict[str, str]:
        """The services' environment variables (read by ``eventbus.KafkaSettings``) for the ``pipeline`` user."""
        self.ensure()
        return {
            "KAFKA_SECURITY_PROTOCOL": self.protocol,
            "KAFKA_SASL_MECHANISM": self.mechanism,
            "KAFKA_SASL_USERNAME": CLIENT_USER,
            "KAFKA_SASL_PASSWORD": self._passwords()[CLIENT_USER],
            "KAFKA_SSL_CAFILE": str(self.ca_file),
        }

    def client_configs(self) -> dict[str, Any]:
        """kafka-python keyword arguments for the ``pipeline`` user."""
        env = self.client_env()
        return {
            "security_protocol": env["KAFKA_SECURITY_PROTOCOL"],
            "sasl_mechanism": env["KAFKA_SASL_MECHANISM"],
            "sasl_plain_username": env["KAFKA_SASL_USERNAME"],
            "sasl_plain_password": env["KAFKA_SASL_PASSWORD"],
            "ssl_cafile": env["KAFKA_SSL_CAFILE"],
        }
