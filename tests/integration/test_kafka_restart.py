"""A Kafka crash while analytics and the notifier consume: the broker is SIGKILLed while
analytics has records it has not committed and a pilot's emails are going out, and restarted on
the same data. Both services ride it out in their processes; afterwards the aggregates equal a
hand recount, and each matching focal point got each pilot's email exactly once.

The broker is the test's own (tests/private_broker.py); the shared stack's broker is never
touched. Analytics and the notifier run as operators run them, each in its own process.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import mongo
from shared.kafka import consumer_lag, ensure_topics, topics_with_dlq
from shared.taxonomy import load_taxonomy
from tests.private_broker import Broker
from tests.recount import assert_api_exact, with_focal_points
from tests.support import (
    Mailbox,
    ServiceProcess,
    Stack,
    assert_clean_exit,
    eventually,
    produce,
    start_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault]

RESPONSES = 1200
FOCAL_POINT_SHARE = 0.15
PARTITIONS = 3
DELIVERIES = "notifier_deliveries"  # the notifier's collection of delivery records
WAIT = 240.0  # seconds: generous, the machine is shared


@dataclass
class Consumers:
    """The analytics and notifier processes of the test, and their settings."""

    environment: dict[str, str]
    analytics: ServiceProcess
    notifier: ServiceProcess


@pytest.fixture
def consumers(stack: Stack, run_id: str, broker: Broker, tmp_path: Path) -> Iterator[Consumers]:
    environment = {
        **stack.environment(run_id),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        # Slow enough that the pilot's emails are still going out when the broker dies.
        "SEND_RATE_PER_SECOND": "4",
        "ANALYTICS_BATCH_SIZE": "50",
        # About a Kafka crash, not consent: no confirmation step (test_notifier_consent.py).
        "DOUBLE_OPT_IN": "false",
    }
    topics = topics_with_dlq(environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"])
    asyncio.run(ensure_topics(broker.bootstrap, topics, partitions=PARTITIONS))
    analytics = start_service("analytics", environment, tmp_path)
    notifier = start_service("notifier", environment, tmp_path)
    client = mongo.new_client(stack.mongodb_url)
    try:
        analytics.wait_ready(within=120)
        notifier.wait_ready(within=120)
        yield Consumers(environment, analytics, notifier)
    finally:
        for service in (analytics, notifier):
            assert_clean_exit(service, service.terminate())
        asyncio.run(drop(client, environment["MONGODB_DATABASE"]))


async def drop(client: Any, name: str) -> None:
    await client.drop_database(name)
    await client.close()


def responses(rng: random.Random, run_id: str) -> list[dict[str, Any]]:
    """`RESPONSES` responses, some with a consenting focal point of this run's own address."""
    prefix = f"generic:kafka-{run_id}"
    return with_focal_points(rng, prefix, RESPONSES, FOCAL_POINT_SHARE, run_id)


def pilot(rng: random.Random, pilot_id: str) -> dict[str, Any]:
    """An open pilot for every country, on a few themes and SDGs."""
    taxonomy = load_taxonomy()
    return {
        "pilot_id": pilot_id,
        "title": f"Kafka restart pilot {pilot_id}",
        "summary": "Co-financed demonstration.",
        "themes": rng.sample(sorted(taxonomy.themes), 4),
        "sdgs": rng.sample(sorted(taxonomy.sdgs), 3),
        "eligible_countries": [],
        "lead_agency": "UNOSSC",
        "apply_by": "2099-12-31",
        "url": f"https://example.org/pilots/{pilot_id}",
    }


def due(bodies: list[dict[str, Any]], pilots: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(pilot id, address) of every email due, worked out here from what the test sends."""
    emails = set()
    for body in bodies:
        if (person := body.get("focal_point")) is None:
            continue
        codes = {*body["collaboration_interests"], *body["development_priorities"]}
        for announced in pilots:
            if codes & {*announced["themes"], *announced["sdgs"]}:
                emails.add((announced["pilot_id"], person["email"]))
    return emails


def as_records(bodies: list[dict[str, Any]], key: str) -> list[tuple[bytes, bytes]]:
    return [(body[key].encode(), json.dumps(body).encode()) for body in bodies]


def not_ready(service: ServiceProcess) -> bool:
    try:
        return httpx.get(f"{service.url}/readyz", timeout=5).status_code == 503
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(600)
async def test_kafka_sigkill_while_consuming_counts_exactly_and_emails_once(
    consumers: Consumers, broker: Broker, stack: Stack, run_id: str
) -> None:
    seed = random.SystemRandom().randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    environment = consumers.environment
    topic, pilots_topic = environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"]
    group, notifier_group = environment["ANALYTICS_GROUP_ID"], environment["NOTIFIER_GROUP_ID"]
    bodies = responses(rng, run_id)
    first, second = pilot(rng, f"pilot-{run_id}-1"), pilot(rng, f"pilot-{run_id}-2")
    client = mongo.new_client(stack.mongodb_url)
    deliveries = mongo.database(client, environment["MONGODB_DATABASE"])[DELIVERIES]

    async def lag(consumer_group: str, consumed: str) -> int:
        return await consumer_lag(broker.bootstrap, consumer_group, consumed)

    async def states() -> Counter[str]:
        return Counter([d["state"] async for d in deliveries.find({}, {"state": 1})])

    try:
        # Half the responses, registered; then the first pilot, a burst of emails at 4 a second,
        # and the other half of the responses, which analytics is still applying at the kill.
        half = RESPONSES // 2
        await produce(broker.bootstrap, topic, as_records(bodies[:half], "response_id"))
        await eventually(
            lambda: lag(f"{notifier_group}.registry", topic), lambda n: n == 0, within=WAIT
        )
        await produce(broker.bootstrap, pilots_topic, as_records([first], "pilot_id"))
        await eventually(states, lambda s: s["sent"] >= 3, within=WAIT, interval=0.1)
        await produce(broker.bootstrap, topic, as_records(bodies[half:], "response_id"))

        # The kill hits work in progress: records analytics has not committed, emails unsent.
        behind = await lag(group, topic)
        at_kill = await states()
        await asyncio.to_thread(broker.stop)
        killed_at = time.monotonic()
        print(f"killed with analytics {behind} behind, deliveries {dict(at_kill)}")
        assert behind > 0
        assert at_kill["sent"] >= 3 and at_kill["pending"] + at_kill["sending"] > 0, at_kill
        # Both services see the broker gone (readiness), and keep running.
        for service in (consumers.analytics, consumers.notifier):
            await eventually(lambda s=service: asyncio.to_thread(not_ready, s), bool, within=60)
        await asyncio.sleep(3)
        await asyncio.to_thread(broker.start)
        print(f"restarted after {time.monotonic() - killed_at:.1f}s")

        # A pilot announced after the restart reaches the same people.
        await produce(broker.bootstrap, pilots_topic, as_records([second], "pilot_id"))
        for consumer_group, consumed in [
            (group, topic),
            (f"{notifier_group}.registry", topic),
            (f"{notifier_group}.pilots", pilots_topic),
        ]:
            await eventually(
                lambda g=consumer_group, t=consumed: lag(g, t),
                lambda n: n == 0,
                within=WAIT,
                interval=1.0,
            )
        expected = due(bodies, [first, second])
        final = await eventually(
            states, lambda s: s["sent"] == len(expected), within=WAIT, interval=1.0
        )
        assert set(final) == {"sent"}, final
    finally:
        await client.close()

    for service in (consumers.analytics, consumers.notifier):
        assert service.process.poll() is None, service.log_tail()
    messages = await eventually(
        lambda: Mailbox(stack.mail_api).messages_of_run(run_id),
        lambda found: len(found) >= len(expected),
        within=60,
    )
    sent = Counter(
        (announced["pilot_id"], message["To"][0]["Address"])
        for message in messages
        for announced in (first, second)
        if announced["pilot_id"] in message["Subject"]
    )
    assert sent.total() == len(messages), "a message names no pilot, or several"
    assert [pair for pair, n in sent.items() if n > 1] == [], "sent more than once"
    assert set(sent) == expected, (sorted(expected - set(sent))[:5], sorted(set(sent) - expected))
    await assert_api_exact(environment, consumers.analytics, bodies, rng)
    print(f"exact: {RESPONSES} responses, {len(expected)} emails, each once")
