"""The services on a Kafka broker that authenticates and authorises: SCRAM-SHA-512 over TLS and
mutual TLS, with the ACLs of docs/security.md (tests/secure_broker.py). With their credentials
they carry a webhook and a pilot end to end; with wrong or missing ones they stop at start with an
error naming the setting to fix; the ACLs refuse what a service may not do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from shared.kafka import ensure_topics, topics_with_dlq
from shared.kafka_security import KafkaAccessRefused, check_access
from tests.private_broker import local_kafka_libs
from tests.secure_broker import SecureBroker, service_acls
from tests.support import (
    WEBHOOK_SECRET,
    Mailbox,
    ServiceProcess,
    Stack,
    announce_until_sent,
    assert_clean_exit,
    canonical_response,
    confirm_focal_points,
    dumps,
    eventually,
    flood_pilot,
    produce,
    read_topic,
    signed_headers,
    start_service,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SERVICES = ("intake", "analytics", "notifier")
# A service refused by Kafka stops within this bound (its start plus one direct connection).
REFUSED_EXIT_BOUND_SECONDS = 60.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    libs = local_kafka_libs()
    assert libs is not None, "the SASL broker runs from the local stack's jars (set STACK_DIR)"
    secure = SecureBroker(libs, tmp_path_factory.mktemp("secure-kafka"))
    try:
        secure.start()
        yield secure
    finally:
        secure.close()


@pytest.fixture
def settings(stack: Stack, run_id: str) -> dict[str, str]:
    """The test's settings, Kafka's connection aside."""
    return {
        **stack.environment(run_id),
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": WEBHOOK_SECRET,
    }


@pytest.fixture
async def environment(
    broker: SecureBroker, settings: dict[str, str]
) -> AsyncIterator[dict[str, str]]:
    """The settings with the ACLs granted and the topics created, as the topic Job does it."""
    names = topics_with_dlq(
        settings["TOPIC_RESPONSES"],
        settings["TOPIC_PILOTS"],
        settings["TOPIC_ERASURES"],
        settings["TOPIC_REVIEWS"],
    )
    admin = broker.scram("admin")
    await asyncio.to_thread(broker.grant, service_acls(settings))
    job = broker.scram("topics")
    await ensure_topics(broker.bootstrap, names, partitions=2, replication_factor=1, security=job)
    try:
        yield settings
    finally:
        client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, **admin.client_options())
        await client.start()
        try:
            await client.delete_topics(names)
        finally:
            await client.close()


def start_all(
    names: tuple[str, ...], environment: dict[str, str], kafka: dict[str, dict[str, str]], log: Path
) -> list[ServiceProcess]:
    return [start_service(name, {**environment, **kafka[name]}, log) for name in names]


def exit_code(service: ServiceProcess) -> int:
    """The code of a service that stops by itself within the bound."""
    deadline = time.monotonic() + REFUSED_EXIT_BOUND_SECONDS
    while (code := service.process.poll()) is None:
        if time.monotonic() > deadline:
            service.process.kill()
            raise AssertionError(f"{service.name} still runs:\n{service.log_tail()}")
        time.sleep(0.3)
    return code


async def deliver_webhook_and_pilot(
    intake: str, analytics: str, notifier: str | None, stack: Stack, run_id: str
) -> None:
    """A webhook counted by analytics; with a notifier, a pilot emailed to its focal point."""
    email = f"kafka-auth-{run_id}@example.org"
    async with httpx.AsyncClient(timeout=15) as client:
        body = dumps(
            canonical_response(
                f"auth-{run_id}",
                collaboration_interests=["climate-resilience"],
                focal_point={"name": "Focal Point", "email": email, "consent": True},
            )
        )
        webhook = f"{intake}/v1/webhooks/generic/cities-2024-priorities"
        answer = await client.post(webhook, content=body, headers=signed_headers(body, run_id))
        assert answer.status_code == 202, answer.text

        async def total() -> int:
            summary = await client.get(f"{analytics}/v1/surveys/cities-2024-priorities/summary")
            return int(summary.json()["total"])

        assert await eventually(total, lambda n: n == 1, within=60) == 1
        if notifier is None:
            return
        await confirm_focal_points(client, Mailbox(stack.mail_api), email, notifier=notifier)
        pilot = flood_pilot(f"pilot-{run_id}", "https://example.org/pilots/kafka-auth")
        await announce_until_sent(client, intake, notifier, pilot, sent=1)
    inbox = await eventually(lambda: Mailbox(stack.mail_api).messages_to(email), lambda m: m)
    assert len(inbox) == 1


async def test_pipeline_with_scram_credentials_delivers_end_to_end(
    broker: SecureBroker,
    environment: dict[str, str],
    stack: Stack,
    run_id: str,
    tmp_path: Path,
) -> None:
    kafka = {name: broker.scram_environment(name) for name in SERVICES}
    services = start_all(SERVICES, environment, kafka, tmp_path)
    try:
        for service in services:
            await asyncio.to_thread(service.wait_ready)
        intake, analytics, notifier = (service.url for service in services)
        await deliver_webhook_and_pilot(intake, analytics, notifier, stack, run_id)
    finally:
        for service in services:
            assert_clean_exit(service, service.terminate())
    # The event on the topic, read by the admin: what the intake wrote as `intake`.
    records = await read_topic(
        broker.bootstrap, environment["TOPIC_RESPONSES"], security=broker.scram("admin")
    )
    assert len(records) == 1
    assert records[0].key.decode().endswith(f"auth-{run_id}")


async def test_pipeline_with_client_certificates_counts_a_webhook(
    broker: SecureBroker, environment: dict[str, str], stack: Stack, run_id: str, tmp_path: Path
) -> None:
    names = ("intake", "analytics")
    kafka = {name: broker.mutual_tls_environment(name) for name in names}
    services = start_all(names, environment, kafka, tmp_path)
    try:
        for service in services:
            await asyncio.to_thread(service.wait_ready)
        intake, analytics = (service.url for service in services)
        await deliver_webhook_and_pilot(intake, analytics, None, stack, run_id)
    finally:
        for service in services:
            assert_clean_exit(service, service.terminate())


def test_start_with_a_wrong_password_stops_naming_the_user(
    broker: SecureBroker, settings: dict[str, str], tmp_path: Path
) -> None:
    wrong = "not-the-password-of-this-service"
    kafka = {name: broker.scram_environment(name, password=wrong) for name in SERVICES}
    for service in start_all(SERVICES, settings, kafka, tmp_path):
        assert exit_code(service) != 0, service.log_tail()
        log = service.log.read_text(errors="replace")
        assert "KafkaAccessRefused" in log, service.log_tail()
        assert f"refused the client (SASL_SSL SCRAM-SHA-512 as '{service.name}')" in log
        assert "KAFKA_SASL_PASSWORD" in log
        assert wrong not in log, f"{service.name} logged the password"


def test_start_without_credentials_stops_naming_the_settings(
    broker: SecureBroker, settings: dict[str, str], tmp_path: Path
) -> None:
    unset = {"KAFKA_SASL_USERNAME": "", "KAFKA_SASL_PASSWORD": ""}
    kafka = {name: {**broker.scram_environment(name), **unset} for name in SERVICES}
    for service in start_all(SERVICES, settings, kafka, tmp_path):
        assert exit_code(service) != 0, service.log_tail()
        log = service.log.read_text(errors="replace")
        assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME and" in log, log[-2000:]


def test_start_in_plaintext_against_tls_stops_naming_the_protocol(
    broker: SecureBroker, settings: dict[str, str], tmp_path: Path
) -> None:
    plain = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    for service in start_all(SERVICES, settings, dict.fromkeys(SERVICES, plain), tmp_path):
        assert exit_code(service) != 0, service.log_tail()
        log = service.log.read_text(errors="replace")
        assert "expects TLS but KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in log, service.log_tail()


async def test_refuse_a_client_without_certificate_on_the_mutual_tls_listener(
    broker: SecureBroker,
) -> None:
    with pytest.raises(KafkaAccessRefused, match=r"TLS with Kafka at .* failed"):
        await check_access(broker.tls_bootstrap, broker.mutual_tls(None))
    await check_access(broker.tls_bootstrap, broker.mutual_tls("notifier"))


async def test_acls_refuse_what_a_service_may_not_do(
    broker: SecureBroker, environment: dict[str, str]
) -> None:
    responses, pilots = environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"]
    # Only the intake writes responses and pilots: analytics and notifier cannot forge them.
    for name, topic in (("analytics", responses), ("notifier", pilots), ("analytics", pilots)):
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(broker.bootstrap, topic, [(b"k", b"forged")], security=broker.scram(name))
    # The intake reads nothing, and no service reads with another service's consumer group.
    for name, topic, group, refusal in (
        ("intake", responses, environment["ANALYTICS_GROUP_ID"], GroupAuthorizationFailedError),
        ("analytics", pilots, environment["ANALYTICS_GROUP_ID"], TopicAuthorizationFailedError),
        (
            "analytics",
            responses,
            f"{environment['NOTIFIER_GROUP_ID']}.registry",
            GroupAuthorizationFailedError,
        ),
    ):
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            **broker.scram(name).client_options(),
        )
        try:
            with pytest.raises(refusal):
                await consumer.start()
                await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 30)
        finally:
            await consumer.stop()
    # What the ACLs grant works: the intake writes a response, the admin reads it back.
    await produce(broker.bootstrap, responses, [(b"k", b"{}")], security=broker.scram("intake"))
    records = await read_topic(broker.bootstrap, responses, security=broker.scram("admin"))
    assert [record.value for record in records] == [b"{}"]
