"""One settings pattern for every service: environment variables named as in DESIGN.md.

Secrets fail closed: a field typed `Secret` (one value) or `Secrets` (several separated by spaces,
for a rotation) has no default and refuses a value that is empty, a placeholder or short, naming
the variable. `load_settings` turns any refusal into one line per variable and a non-zero exit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import topics

MIN_SECRET_BYTES = 32
# Fewer distinct characters than this is no random value ("aaaa...", "0000...", "abab...").
MIN_DISTINCT_CHARACTERS = 8

# Every value the repository ever shipped for a secret, and the usual stand-ins. Compared without
# case; the length rule already refuses most stand-ins, this list also catches long ones.
KNOWN_PLACEHOLDERS = frozenset(
    value.lower()
    for value in (
        "change-me-in-production",
        "dev-unsubscribe-secret",
        "dev-operator-token",
        "replace-with-a-long-random-string",
        "replace-with-a-long-random-value",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "token",
        "placeholder",
        "example",
        "test",
        "xxx",
        # The development webhook secrets once shipped in deploy/local/dev.env and the dev overlay.
        "whsec_qEhDZKFlDI5dTKHTZQl5SavkdOUgL3xH",
        "whsec_TMN3mNRpoP0DlRD/1P0x45ZMwl0xTTLO",
        "whsec_6dR+JF68WyBwjzNzCNE6rq3g0miWa3C6",
        "whsec_Kj7wlfexd7/NEBxFpn/mGmeeTV2BrFTS",
        "whsec_RFgrO+BISyNSUZsldRx8SXv1JJQMv02n",
        "whsec_LtDoNHprr3PaKVyFDbXWh6hERAkdv46J",
    )
)
# Words that mark a value as a stand-in whatever surrounds them.
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-with", "placeholder")

S = TypeVar("S", bound=BaseSettings)


def secret_problem(name: str, value: str) -> str | None:
    """Why `value` may not be the secret `name` (one sentence naming it), or None if it may."""
    if not value.strip():
        return f"{name} is empty: set it to a random value of at least {MIN_SECRET_BYTES} bytes"
    if is_placeholder(value):
        return f"{name} is a known placeholder: set it to a random value of its own"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes: set a longer random value"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"{name} is not random (too few distinct characters): set a random value"
    return None


def is_placeholder(value: str) -> bool:
    """Whether `value` is a value the repository shipped or an obvious stand-in."""
    lowered = value.strip().lower()
    return lowered in KNOWN_PLACEHOLDERS or any(word in lowered for word in PLACEHOLDER_WORDS)


def rotation_values(value: str) -> list[str]:
    """The values of a rotation list `NEW OLD ...` (separated by white space), first first."""
    return value.split()


def _environment_name(info: ValidationInfo) -> str:
    return (info.field_name or "secret").upper()


def _one_secret(value: SecretStr, info: ValidationInfo) -> SecretStr:
    problem = secret_problem(_environment_name(info), value.get_secret_value())
    if problem:
        raise ValueError(problem)
    return value


def _rotation(value: SecretStr, info: ValidationInfo) -> SecretStr:
    name = _environment_name(info)
    values = rotation_values(value.get_secret_value())
    if not values:
        raise ValueError(secret_problem(name, ""))
    for position, each in enumerate(values, start=1):
        problem = secret_problem(name if len(values) == 1 else f"{name} (value {position})", each)
        if problem:
            raise ValueError(problem)
    return value


# A required secret: no default, refused when empty, a placeholder or short.
Secret = Annotated[SecretStr, AfterValidator(_one_secret)]
# The same for a rotation list "NEW OLD": every value is checked.
Secrets = Annotated[SecretStr, AfterValidator(_rotation)]


def settings_errors(error: ValidationError) -> list[str]:
    """One line per failing setting, named by its environment variable, without the input."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in item["loc"]).upper() or "settings"
        if item["type"] == "missing":
            lines.append(f"{name} is not set: it has no default")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            lines.append(message if message.startswith(name) else f"{name}: {message}")
    return lines


def load_settings(settings_class: type[S], service: str) -> S:
    """The service's settings from its environment; on any refusal, one line per variable on
    stderr and exit status 2 (no traceback, no secret value)."""
    try:
        return settings_class()
    except ValidationError as error:
        for line in settings_errors(error):
            print(f"{service}: refusing to start: {line}", file=sys.stderr)
        raise SystemExit(2) from None


class ServiceSettings(BaseSettings):
    """What every service reads from its environment. Each service subclasses it once."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "localhost:9092"
    mongodb_url: str = "mongodb://localhost:27017"
    mongodb_database: str = "cities_survey"
    topic_responses: str = topics.RESPONSES
    topic_pilots: str = topics.PILOTS
    topic_erasures: str = topics.ERASURES
    topic_reviews: str = topics.REVIEWS
    # For the topics created by `python -m shared.kafka_topics` or by a service that finds one
    # missing; existing topics keep theirs. One broker locally, 3 (or more) in production.
    kafka_topic_partitions: int = Field(default=topics.PARTITIONS, ge=1)
    kafka_topic_replication_factor: int = Field(default=1, ge=1)
    # retention.ms of the topics that carry names and addresses in clear (the responses topic and
    # its DLQ) when they are created here: how long Kafka keeps them (docs/operations.md).
    kafka_responses_retention_days: float = Field(default=7.0, gt=0)
    log_level: str = "INFO"
    # Every endpoint refuses larger request bodies with 413 (`shared.http.limit_bodies`).
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
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
