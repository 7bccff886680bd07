"""Kafka client security from the settings: what each protocol turns into, and the combinations
refused at start."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.kafka_security import KafkaSecurity, check_access, kafka_security
from shared.settings import ServiceSettings


def settings(**values: object) -> ServiceSettings:
    return ServiceSettings(**values)  # type: ignore[arg-type]


def test_map_plaintext_to_no_security() -> None:
    security = kafka_security(settings())
    assert security.faststream() is None
    assert security.client_options() == {}


def test_map_sasl_ssl_to_scram_over_verified_tls() -> None:
    security = kafka_security(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="intake",
            kafka_sasl_password="s3cret",
        )
    )
    options = security.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("intake", "s3cret")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_map_scram_sha_256_when_chosen() -> None:
    security = KafkaSecurity(
        protocol="SASL_PLAINTEXT", mechanism="SCRAM-SHA-256", username="u", password="p"
    )
    options = security.client_options()
    assert (options["security_protocol"], options["sasl_mechanism"]) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
    )
    assert options["ssl_context"] is None


def test_map_ssl_to_tls_without_sasl() -> None:
    options = KafkaSecurity(protocol="SSL").client_options()
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options


def test_describe_never_shows_the_password() -> None:
    security = KafkaSecurity(protocol="SASL_SSL", username="notifier", password="hunter2")
    assert "hunter2" not in security.describe()
    assert "hunter2" not in repr(security)
    assert security.describe() == "SASL_SSL SCRAM-SHA-512 as 'notifier'"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME and"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "intake"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_sasl_username": "intake", "kafka_sasl_password": "x"}, "does not send them"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": __file__},
            "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together",
        ),
        ({"kafka_ssl_ca_file": __file__}, "does not use TLS"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CA_FILE=/nonexistent/ca.pem: no such file",
        ),
    ],
)
def test_refuse_incomplete_kafka_security(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**values)


def test_read_kafka_security_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "analytics")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-a-secret")
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", str(ca))
    security = kafka_security()
    assert (security.protocol, security.username, security.password) == (
        "SASL_SSL",
        "analytics",
        "from-a-secret",
    )
    assert security.ca_file == str(ca)


async def test_check_access_takes_an_unreachable_broker_for_an_outage() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens: no refusal, the services wait for Kafka as before.
    await check_access(f"127.0.0.1:{port}", KafkaSecurity(), within=2)


async def test_check_access_takes_a_closed_connection_for_an_outage() -> None:
    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # Plain TCP that closes at once is no TLS listener: an outage, not a refusal.
        await check_access(f"127.0.0.1:{port}", KafkaSecurity(), within=2)
    finally:
        server.close()
        await server.wait_closed()
