"""One settings pattern for every service: environment variables named as in DESIGN.md."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import topics


class ServiceSettings(BaseSettings):
    """What every service reads from its environment. Each service subclasses it once."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "localhost:9092"
    mongodb_url: str = "mongodb://localhost:27017"
    mongodb_database: str = "cities_survey"
    topic_responses: str = topics.RESPONSES
    topic_pilots: str = topics.PILOTS
    # For the topics created by `python -m shared.kafka_topics` or by a service that finds one
    # missing; existing topics keep theirs. One broker locally, 3 (or more) in production.
    kafka_topic_partitions: int = Field(default=topics.PARTITIONS, ge=1)
    kafka_topic_replication_factor: int = Field(default=1, ge=1)
    log_level: str = "INFO"
    # How every Kafka client (producers, consumers, admin) connects: docs/security.md, "Kafka".
    # SASL_PLAINTEXT sends the SCRAM exchange unencrypted: for a closed test network only.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_file: Path | None = None  # None: the system's trusted CAs
    kafka_ssl_cert_file: Path | None = None  # with the key: a client certificate (mutual TLS)
    kafka_ssl_key_file: Path | None = None

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        # A half-configured client would fail later with a broker error far from its cause.
        sasl = self.kafka_security_protocol.startswith("SASL_")
        login = bool(self.kafka_sasl_username or self.kafka_sasl_password.get_secret_value())
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if login and not sasl:
            raise ValueError(
                "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not send them (SASL_SSL does)"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together (mutual TLS)")
        files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        if not self.kafka_security_protocol.endswith("SSL") and any(files):
            raise ValueError(
                "KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not use TLS (SSL or SASL_SSL does)"
            )
        names = ("KAFKA_SSL_CA_FILE", "KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE")
        for name, path in zip(names, files, strict=True):
            if path is not None and not path.is_file():
                raise ValueError(f"{name}={path}: no such file")
        return self
