"""How every Kafka client connects: PLAINTEXT, TLS (mutual TLS with a client certificate) or
SCRAM over TLS, from the service's settings (docs/security.md, "Kafka"), and a start-up check that
tells a refused login or handshake from an outage."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLScram256, SASLScram512

from shared.settings import ServiceSettings

# Errors that no retry cures: the broker refused the client's credentials or mechanism.
ACCESS_ERRORS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,  # SASL against a listener without it
)


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client connects: `protocol` as Kafka names it, SCRAM credentials for SASL, and for
    TLS the CA to trust (None: the system's) and a client certificate for mutual TLS."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (server certificate and host name verified), or None without TLS."""
        if not self.protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def faststream(self) -> BaseSecurity | None:
        """The same as FastStream's `security=` (which also documents it in AsyncAPI)."""
        if self.protocol == "PLAINTEXT":
            return None
        context, tls = self.ssl_context(), self.protocol.endswith("SSL")
        if not self.protocol.startswith("SASL_"):
            return BaseSecurity(ssl_context=context, use_ssl=True)
        scram = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLScram256
        return scram(self.username, self.password, ssl_context=context, use_ssl=tls)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        return parse_security(self.faststream())

    def describe(self) -> str:
        """For error messages: protocol, mechanism and user; never the password."""
        if self.protocol.startswith("SASL_"):
            return f"{self.protocol} {self.mechanism} as {self.username!r}"
        client = " with a client certificate" if self.cert_file else ""
        return f"{self.protocol}{client}"


def kafka_security(settings: ServiceSettings | None = None) -> KafkaSecurity:
    """The Kafka security of `settings` (None: of the environment), `KAFKA_SECURITY_PROTOCOL`,
    `KAFKA_SASL_*` and `KAFKA_SSL_*_FILE`; ServiceSettings refuses incomplete combinations."""
    settings = settings if settings is not None else ServiceSettings()
    return KafkaSecurity(
        protocol=settings.kafka_security_protocol,
        mechanism=settings.kafka_sasl_mechanism,
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ca_file=_text(settings.kafka_ssl_ca_file),
        cert_file=_text(settings.kafka_ssl_cert_file),
        key_file=_text(settings.kafka_ssl_key_file),
    )


def _text(path: object | None) -> str | None:
    return None if path is None else str(path)


class KafkaAccessRefused(Exception):
    """The broker refused this client's credentials: a configuration error, not an outage."""


async def check_access(
    bootstrap_servers: str, security: KafkaSecurity, *, within: float = 10.0
) -> None:
    """Raise `KafkaAccessRefused` when a broker refuses this client: wrong credentials or
    mechanism, or a failed TLS handshake (untrusted certificate, no client certificate, TLS
    against a plain listener). A broker that does not answer is an outage, not a refusal: nothing
    is raised, so a service may start before Kafka and wait for it. aiokafka's own clients log
    such refusals and then report only "Unable to bootstrap", hence this direct connection."""
    options = security.client_options()
    for host, port, _ in collect_hosts(bootstrap_servers):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(within * 1000), **options), within
            )
        except (OSError, KafkaError, TimeoutError) as exc:
            cause = _refused_by(exc)
            if isinstance(cause, ssl.SSLError):
                raise KafkaAccessRefused(
                    f"TLS with Kafka at {host}:{port} failed ({security.describe()}): {cause}; "
                    "check KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CA_FILE, KAFKA_SSL_CERT_FILE and "
                    "KAFKA_SSL_KEY_FILE"
                ) from exc
            if cause is not None:
                raise KafkaAccessRefused(
                    f"Kafka at {host}:{port} refused the client ({security.describe()}): {cause}; "
                    "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
                ) from exc
            # Connected, then closed without an answer (not refused, not timed out): maybe a
            # TLS listener that could not read our plaintext request.
            plain = not security.protocol.endswith("SSL") and isinstance(exc, KafkaConnectionError)
            if plain and await _speaks_tls(host, port, within):
                raise KafkaAccessRefused(
                    f"Kafka at {host}:{port} expects TLS but KAFKA_SECURITY_PROTOCOL="
                    f"{security.protocol}; set SSL or SASL_SSL and their KAFKA_SSL_*, KAFKA_SASL_*"
                ) from exc
            continue  # not reachable now: an outage, which the clients ride out
        conn.close()
        return


async def _speaks_tls(host: str, port: int, within: float) -> bool:
    # A TLS listener closes a plaintext client's connection without an answer, which looks like
    # an outage; a TLS handshake (certificate not checked: only the protocol matters) tells.
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=probe), within)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _refused_by(exc: BaseException) -> BaseException | None:
    # A TLS alert (e.g. "certificate required" under TLS 1.3) arrives after the handshake, on
    # the first read: aiokafka then reports a broken connection caused by the SSL error.
    # A connection closed mid-handshake (EOF) is no refusal: a broker stopping does that too.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return None
        if isinstance(seen, (*ACCESS_ERRORS, ssl.SSLError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
